"""The /proc/drbd parser: every form DRBD 8 writes, and text it never writes."""

import os

from hypothesis import given, settings, strategies as st

from support import ROOT
from ganeti_cmk import drbd

DATA = os.path.join(ROOT, "tests", "data", "drbd")
FORMS = ("all-states-8.4.txt", "all-states-8.3.txt", "all-states-st.txt")


def fixture(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def by_minor(text):
    return {d.minor: d for d in drbd.parse(text).devices}


def test_versions_of_each_form():
    assert (drbd.parse(fixture(FORMS[0])).version, drbd.parse(fixture(FORMS[0])).major) == ("8.4.11", 8)
    assert drbd.parse(fixture(FORMS[1])).version == "8.3.13"
    assert drbd.parse(fixture(FORMS[2])).version == "8.2.7"
    assert not any(drbd.parse(fixture(name)).torn for name in FORMS)


def test_every_form_gives_the_same_states():
    forms = [by_minor(fixture(name)) for name in FORMS]
    for minor, device in forms[0].items():
        for other in forms[1:]:
            twin = other[minor]
            assert (twin.cs, twin.role, twin.peer_role, twin.disk, twin.peer_disk,
                    twin.oos) == (device.cs, device.role, device.peer_role,
                                  device.disk, device.peer_disk, device.oos)


def test_connected_line():
    d = by_minor(fixture(FORMS[0]))[0]
    assert (d.cs, d.role, d.peer_role, d.disk, d.peer_disk) == (
        "Connected", "Primary", "Secondary", "UpToDate", "UpToDate")
    assert d.oos == 0 and d.counters["ns"] == 2097152 and d.sync is None
    assert d.configured and not d.unknown and d.problem is None


def test_unconfigured_minor():
    d = by_minor(fixture(FORMS[0]))[2]
    assert d.cs == "Unconfigured" and not d.configured and d.problem is None
    assert 2 not in [x.minor for x in drbd.parse(fixture(FORMS[0])).configured()]


def test_resync_in_kib_with_finish_and_speed():
    sync = by_minor(fixture(FORMS[0]))[3].sync
    assert (sync.verify, sync.percent, sync.left, sync.total, sync.finish, sync.speed,
            sync.stalled) == (False, 68.0, 335872 * 1024, 1048576 * 1024, 5, 64512, False)


def test_resync_in_mib_with_finish_glued_on_by_the_kernel_bug():
    sync = by_minor(fixture(FORMS[0]))[4].sync
    assert (sync.percent, sync.left, sync.total, sync.finish) == (
        2.4, 14996 << 20, 15360 << 20, 248)


def test_stalled_resync_and_online_verify():
    devices = by_minor(fixture(FORMS[0]))
    assert devices[25].sync.stalled and devices[25].sync.percent == 0.8
    verify = devices[15].sync
    assert verify.verify and verify.percent == 12.5 and verify.finish == 14


def test_oos_is_bytes_and_absent_before_drbd_8_2_6():
    assert by_minor(fixture(FORMS[0]))[6].oos == 512 << 20
    text = ("version: 8.0.12 (api:86/proto:86)\n 0: cs:Connected st:Primary/Secondary "
            "ds:UpToDate/UpToDate C r---\n    ns:1 nr:0 dw:1 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0\n")
    d = drbd.parse(text).devices[0]
    assert d.oos is None and d.problem is None and d.cs == "Connected"


def test_drbd9_is_recognised():
    parsed = drbd.parse(fixture("drbd9.txt"))
    assert parsed.drbd9 and parsed.version == "9.2.8" and parsed.devices == []
    assert not drbd.parse(fixture(FORMS[0])).drbd9


def test_unknown_words_are_listed_not_guessed():
    devices = by_minor(fixture("unknown-states.txt"))
    assert devices[0].unknown == []
    assert devices[3].unknown == ["cs:TOO_LARGE"]
    assert devices[4].unknown == ["ro:Tertiary"]
    assert devices[5].unknown == ["ds:Sparkling"]
    assert devices[6].unknown == ["ds:Frozen"] and devices[6].cs == "StandAlone"


def test_torn_file():
    parsed = drbd.parse(fixture("torn.txt"))
    assert parsed.torn
    problems = [(d.minor, d.problem) for d in parsed.devices]
    assert problems[0] == (0, "minor 0 appears twice: the file changed while it was read")
    assert problems[1] == (1, "not a DRBD status line")
    assert problems[2] == (2, "oos:4x96 is not a number of KiB")
    assert len(problems) == 4
    last = parsed.devices[-1]
    assert last.minor == 3 and last.sync.percent == 5 and last.sync.left is None


def test_empty_lines_and_missing_version():
    parsed = drbd.parse("\n\n 1: cs:Unconfigured\n\n 4: cs:Unconfigured\n")
    assert parsed.version is None and [d.minor for d in parsed.devices] == [1, 4]
    assert parsed.problems == []
    garbage = drbd.parse("hello\nworld\n")
    assert garbage.problems == ["no version line (first line: hello)"]
    assert drbd.parse("").devices == [] and drbd.parse("").version is None


# Pieces of DRBD's vocabulary and punctuation, glued together at random.
PIECES = st.sampled_from(list(" \t\n:/0123456789%()KM.,[]=>") + [
    "cs:", "ro:", "st:", "ds:", "oos:", "sync'ed:", "verified:", "finish:",
    "speed:", "Connected", "Primary", "UpToDate", "version: ", "9.", "8.4.",
    " 0: cs:", "\u2028", "\xff", "\x00"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=120).map("".join))
def test_any_text_parses_without_raising(text):
    parsed = drbd.parse(text)
    for d in parsed.devices:
        assert d.minor >= 0
        if d.sync is not None and d.sync.percent is not None:
            assert 0 <= d.sync.percent <= 100
        assert d.oos is None or d.oos >= 0
