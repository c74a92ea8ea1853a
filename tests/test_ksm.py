"""KSM: the run state against the expectation, the savings formula, the
unprofitable streak, on recorded sysfs trees and on this machine's real KSM
with a real process whose identical pages KSM merges."""

import json
import os
import shutil
import subprocess
import time

import pytest

from support import needs_root
from ganeti_cmk.checks.ksm import (STATE_FILE, Probe, Streak, evaluate, probe,
                                   size, track_streak)

REAL_KSM = "/sys/kernel/mm/ksm"
# A 6.x kernel's /sys/kernel/mm/ksm (values from a node with one guest).
KERNEL_6 = {"run": "1", "pages_shared": "2000", "pages_sharing": "30000",
            "pages_unshared": "5000", "pages_volatile": "100", "full_scans": "12",
            "ksm_zero_pages": "500", "general_profit": "120000000",
            "pages_to_scan": "100", "sleep_millisecs": "20"}
# A 5.10 kernel has neither ksm_zero_pages nor general_profit.
KERNEL_5 = {k: v for k, v in KERNEL_6.items()
            if k not in ("ksm_zero_pages", "general_profit")}


def sys_tree(tmp_path, files):
    ksm = tmp_path / "sys" / "kernel" / "mm" / "ksm"
    ksm.mkdir(parents=True)
    for name, value in files.items():
        (ksm / name).write_text(value + "\n")
    return tmp_path / "sys"


def config(sys_root, **ksm):
    return "[paths]\nsys = %s\n[ksm]\n%s\n" % (
        sys_root, "\n".join("%s = %s" % kv for kv in ksm.items()))


def metrics(service):
    return service["metrics"]


def value(service, name):
    return int(service["metrics"][name])


# --- recorded sysfs trees, end to end -------------------------------------

def test_running_as_expected_is_ok_with_the_documented_formula(agent, tmp_path):
    service = agent("ganeti_ksm", config(sys_tree(tmp_path, KERNEL_6)))["KSM"]
    assert service["state"] == "0"
    page = os.sysconf("SC_PAGE_SIZE")
    # (pages_sharing + ksm_zero_pages) x page size, not sharing - shared
    assert value(service, "ksm_saved_bytes") == (30000 + 500) * page
    assert value(service, "ksm_general_profit_bytes") == 120000000
    assert value(service, "ksm_pages_shared") == 2000
    assert value(service, "ksm_pages_volatile") == 100
    assert value(service, "ksm_full_scans") == 12
    assert service["summary"].startswith("KSM is running, saves ")
    assert service["summary"].endswith("general profit 114 MiB")


def test_old_kernel_without_the_newer_files(agent, tmp_path):
    service = agent("ganeti_ksm", config(sys_tree(tmp_path, KERNEL_5)))["KSM"]
    assert service["state"] == "0"
    assert value(service, "ksm_saved_bytes") == 30000 * os.sysconf("SC_PAGE_SIZE")
    assert "ksm_general_profit_bytes" not in metrics(service)
    assert "general profit" not in service["summary"]
    assert "this kernel has no ksm_zero_pages or general_profit" in service["details"]


def test_stopped_but_expected_on_warns_with_both_remedies(agent, tmp_path):
    sys_root = sys_tree(tmp_path, dict(KERNEL_6, run="0"))
    service = agent("ganeti_ksm", config(sys_root))["KSM"]
    assert service["state"] == "1"
    assert service["summary"].startswith(
        "KSM is stopped, expected running: 'echo 1 > %s/kernel/mm/ksm/run'" % sys_root)
    assert "or set [ksm] expect = off or any" in service["summary"]


def test_running_but_expected_off_warns(agent, tmp_path):
    sys_root = sys_tree(tmp_path, KERNEL_6)
    service = agent("ganeti_ksm", config(sys_root, expect="off"))["KSM"]
    assert service["state"] == "1"
    assert "KSM is running, expected off: 'echo 2 > " in service["summary"]


@pytest.mark.parametrize("run, expect, state, word", [
    ("2", "off", "0", "stopped and unmerged"), ("0", "off", "0", "stopped"),
    ("0", "any", "0", "stopped"), ("1", "any", "0", "running"),
    ("2", "on", "1", "stopped and unmerged")])
def test_expectations(agent, tmp_path, run, expect, state, word):
    sys_root = sys_tree(tmp_path, dict(KERNEL_6, run=run))
    service = agent("ganeti_ksm", config(sys_root, expect=expect))["KSM"]
    assert service["state"] == state
    assert service["summary"].startswith("KSM is %s" % word)


def test_bad_expectation_is_a_config_problem_and_uses_on(agent, tmp_path):
    sys_root = sys_tree(tmp_path, dict(KERNEL_6, run="0"))
    service = agent("ganeti_ksm", config(sys_root, expect="maybe"))["KSM"]
    assert service["state"] == "1"
    assert "[ksm] expect: 'maybe' is not one of on, off, any, using on" \
        in service["summary"] + " ".join(service["details"])


def test_kernel_without_ksm(agent, tmp_path):
    (tmp_path / "sys").mkdir()
    cfg = config(tmp_path / "sys")
    service = agent("ganeti_ksm", cfg)["KSM"]
    assert service["state"] == "1"
    assert "KSM is not available: this kernel has no" in service["summary"]
    service = agent("ganeti_ksm", config(tmp_path / "sys", expect="off"))["KSM"]
    assert service["state"] == "0"


def test_unreadable_run_file_is_unknown(agent, tmp_path):
    files = dict(KERNEL_6)
    del files["run"]
    sys_root = sys_tree(tmp_path, files)
    service = agent("ganeti_ksm", config(sys_root))["KSM"]
    assert service["state"] == "3"
    assert service["summary"].startswith("cannot read KSM's state: ")
    assert "run: missing" in service["summary"]


def test_a_link_planted_for_a_counter_is_not_followed(tmp_path):
    sys_root = sys_tree(tmp_path, KERNEL_6)
    counter = sys_root / "kernel" / "mm" / "ksm" / "pages_sharing"
    counter.unlink()
    os.symlink("/dev/zero", counter)
    p = probe(str(sys_root))
    assert p.value("pages_sharing") is None and p.saved_bytes is None
    assert any("pages_sharing" in e for e in p.errors)


def test_attributes_of_a_64k_page_kernel_are_read(tmp_path, monkeypatch):
    # sysfs gives every attribute the size of a page: 64 KiB on ppc64el
    # and on arm64 kernels built with 64K pages.  A 4 KiB limit refused
    # them all and KSM was never readable there.
    sys_root = sys_tree(tmp_path, KERNEL_6)
    for f in (sys_root / "kernel" / "mm" / "ksm").iterdir():
        f.write_text(f.read_text().strip().ljust(65535) + "\n")
    real_sysconf = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 65536 if name == "SC_PAGE_SIZE"
                        else real_sysconf(name))
    p = probe(str(sys_root))
    assert p.errors == [] and p.run == 1
    assert p.saved_bytes == (30000 + 500) * 65536


def test_garbage_in_a_counter_is_reported(tmp_path):
    p = probe(str(sys_tree(tmp_path, dict(KERNEL_6, full_scans="lots"))))
    assert p.value("full_scans") is None
    assert any("'lots' is not a number" in e for e in p.errors)


# --- pure parts -------------------------------------------------------------

def test_negative_profit_is_rendered_negative():
    p = Probe("/sys/kernel/mm/ksm", run=1, counters=dict(
        pages_sharing=10, pages_shared=5, general_profit=-201384320))
    r = evaluate(p, "on", 0, Streak(), 0)
    assert r.state == 0 and "general profit -192 MiB" in r.summary


@pytest.mark.parametrize("nbytes, text", [(0, "0 B"), (1023, "1023 B"),
                                          (1536, "1.5 KiB"), (-(3 << 30), "-3.0 GiB"),
                                          (12 << 20, "12 MiB")])
def test_size(nbytes, text):
    assert size(nbytes) == text


def unprofitable(since, now=10000, after=3600):
    p = Probe("/sys/kernel/mm/ksm", run=1, counters=dict(
        pages_sharing=0, pages_shared=0, general_profit=-4096))
    return evaluate(p, "on", after, Streak(since), now)


def test_unprofitable_long_enough_warns():
    r = unprofitable(since=10000 - 7200)
    assert r.state == 1
    assert "KSM has cost more than it saved for 2 h (general profit -4.0 KiB, " \
        "warn after 1 h, [ksm] unprofitable_after)" in r.summary


def test_unprofitable_not_yet_long_enough_is_ok():
    r = unprofitable(since=10000 - 60)
    assert r.state == 0 and "general profit has been <= 0 for 1 min" in r.details[-1]


def test_streak_starts_goes_on_and_ends(tmp_path):
    path = str(tmp_path / "state" / STATE_FILE)
    assert track_streak(path, True, "boot-a", 100).since == 100
    assert track_streak(path, True, "boot-a", 160).since == 100
    assert json.loads(open(path).read())["last"] == 160
    assert track_streak(path, False, "boot-a", 220).since is None
    assert not os.path.exists(path)
    assert track_streak(path, True, "boot-a", 280).since == 280


@pytest.mark.parametrize("why, boot, now", [
    ("another boot", "boot-b", 160),
    ("no look for over an hour", "boot-a", 100 + 3601 + 60),
])
def test_streak_restarts(tmp_path, why, boot, now):
    path = str(tmp_path / STATE_FILE)
    track_streak(path, True, "boot-a", 100)
    track_streak(path, True, "boot-a", 160)
    assert track_streak(path, True, boot, now).since == now, why


def test_a_streak_file_with_another_name_is_not_believed(tmp_path):
    """KSM's state file is read back like every state file (statefile.read:
    one link only, in a state_dir nobody else may write): a hard link from
    elsewhere (a file planted under another name) made KSM's cost look
    older than it is."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"boot_id": "b", "since": 10, "last": 290}))
    os.link(str(planted), str(state_dir / STATE_FILE))
    assert track_streak(str(state_dir / STATE_FILE), True, "b", 300).since == 300


def test_streak_with_times_in_the_future_restarts(tmp_path):
    path = tmp_path / STATE_FILE
    path.write_text(json.dumps({"boot_id": "b", "since": 5000, "last": 9000}))
    assert track_streak(str(path), True, "b", 200).since == 200


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"since": "x", "last": 1}',
                                  '{"since": true, "last": true, "boot_id": "b"}',
                                  "\xff\xfe"])
def test_corrupt_state_heals(tmp_path, text):
    path = tmp_path / STATE_FILE
    path.write_bytes(text.encode("latin-1"))
    assert track_streak(str(path), True, "b", 300).since == 300
    assert json.loads(path.read_text())["since"] == 300


def test_state_that_cannot_be_written_is_said(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    streak = track_streak(str(blocker / STATE_FILE), True, "b", 300)
    assert streak.since is None and "cannot keep the time" in streak.note
    r = unprofitable(None)
    assert r.state == 0
    p = Probe("/sys/kernel/mm/ksm", run=1, counters=dict(general_profit=-1))
    r = evaluate(p, "on", 3600, streak, 300)
    assert r.state == 1 and "cannot keep the unprofitable time" in r.summary


def test_unprofitable_end_to_end_keeps_its_state(agent, tmp_path):
    sys_root = sys_tree(tmp_path, dict(KERNEL_6, general_profit="-5000"))
    cfg = config(sys_root, unprofitable_after="2s")
    service = agent("ganeti_ksm", cfg)["KSM"]
    assert service["state"] == "0"
    assert "general profit has been <= 0 for" in service["details"][-1]
    state_file = tmp_path / "var" / "ganeti_cmk" / STATE_FILE
    state = json.loads(state_file.read_text())
    # Since the boot (the earliest a streak of this boot can start; a test
    # machine may have been up for minutes only), as a run then would have
    # written, and looked at again a second ago.
    assert state["since"] >= 2, "the machine booted less than 2 s ago"
    state.update(since=0.0, last=state["last"] - 1)
    state_file.write_text(json.dumps(state))
    service = agent("ganeti_ksm", cfg)["KSM"]
    assert service["state"] == "1"
    assert "KSM has cost more than it saved for " in service["summary"]
    assert "warn after 2 s, [ksm] unprofitable_after" in service["summary"]


# --- the real KSM of this machine -------------------------------------------

MERGEABLE_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
    size_t size = 64UL << 20;
    char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    memset(p, 0x5a, size);                     /* 16384 identical pages */
    if (madvise(p, size, MADV_MERGEABLE)) { perror("madvise"); return 1; }
    puts("ready"); fflush(stdout);
    pause();
    return 0;
}
"""
TUNABLES = ("run", "pages_to_scan", "sleep_millisecs")


def ksm_read(name):
    with open(os.path.join(REAL_KSM, name)) as f:
        return f.read().strip()


def ksm_write(name, text):
    with open(os.path.join(REAL_KSM, name), "w") as f:
        f.write(text)


@pytest.fixture
def fast_ksm():
    """KSM switched on with a fast scan; the machine's previous run,
    pages_to_scan and sleep_millisecs values back afterwards, whatever
    happens."""
    if not os.path.exists(os.path.join(REAL_KSM, "run")):
        pytest.skip("this kernel has no KSM")
    import fcntl
    # One test at a time per machine: two suites (two checkouts) would each
    # save the other's fast settings as "the machine's" and leave them on.
    with open("/run/lock/cmk-ksm-test.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = {name: ksm_read(name) for name in TUNABLES}
        try:
            ksm_write("pages_to_scan", "5000")
            ksm_write("sleep_millisecs", "10")
            ksm_write("run", "1")
            yield before
        finally:
            for name in ("pages_to_scan", "sleep_millisecs", "run"):
                ksm_write(name, before[name])
            assert {name: ksm_read(name) for name in TUNABLES} == before


@needs_root
@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build the test program")
def test_real_ksm_merges_a_real_process_and_the_savings_rise(agent, tmp_path, fast_ksm):
    src = tmp_path / "mergeable.c"
    src.write_text(MERGEABLE_C)
    subprocess.run(["gcc", "-O1", "-o", str(tmp_path / "mergeable"), str(src)],
                   check=True, timeout=120)
    before = agent("ganeti_ksm")["KSM"]
    assert before["state"] == "0", before          # run=1 as expected by default
    assert before["summary"].startswith("KSM is running")
    saved_before = value(before, "ksm_saved_bytes")
    process = subprocess.Popen([str(tmp_path / "mergeable")], stdout=subprocess.PIPE,
                               universal_newlines=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        wanted = int(ksm_read("pages_sharing")) + 1000
        deadline = time.monotonic() + 120
        while int(ksm_read("pages_sharing")) < wanted:
            assert time.monotonic() < deadline, "KSM merged nothing in 120 s"
            time.sleep(0.5)
        after = agent("ganeti_ksm")["KSM"]
    finally:
        process.kill()
        process.wait(timeout=30)
    assert after["state"] == "0"
    assert value(after, "ksm_saved_bytes") >= saved_before + 1000 * os.sysconf("SC_PAGE_SIZE")
    assert value(after, "ksm_pages_sharing") >= 1000


@needs_root
def test_real_ksm_off_warns_when_expected_on(agent, tmp_path):
    if not os.path.exists(os.path.join(REAL_KSM, "run")):
        pytest.skip("this kernel has no KSM")
    service = agent("ganeti_ksm", config("/sys", expect=(
        "on" if ksm_read("run") != "1" else "off")))["KSM"]
    assert service["state"] == "1"
    assert "expected" in service["summary"]


@pytest.mark.parametrize("since", ["-Infinity", "-1e9", "-1"])
def test_streak_that_began_before_this_boot_restarts(tmp_path, since):
    # The boot clock starts at 0: a start before it (a corrupt file, a
    # JSON -Infinity) is not a streak of this boot, and must not make the
    # first unprofitable look a WARN "for inf d" or "for 31 years".
    path = tmp_path / STATE_FILE
    path.write_text('{"boot_id": "b", "since": %s, "last": 250}' % since)
    streak = track_streak(str(path), True, "b", 300)
    assert streak.since == 300
    p = Probe("/sys/kernel/mm/ksm", run=1, counters=dict(general_profit=-1))
    assert evaluate(p, "on", 3600, streak, 300).state == 0
