"""The output model and the renderer: valid lines whatever the input."""

import string

import pytest
from hypothesis import given, settings, strategies as st

from ganeti_cmk.localcheck import (CRIT, OK, UNKNOWN, WARN,
                                   Metric, Result, valid_host,
                                   State, format_number, render_line,
                                   render_local, render_nagios, sanitize, worst)
from localcheck_grammar import assert_valid_output, parse_line


def test_state_order_is_checkmks_not_numeric():
    assert worst([OK, UNKNOWN, CRIT]) == CRIT
    assert worst([UNKNOWN, WARN]) == UNKNOWN
    assert worst([OK, WARN]) == WARN
    assert worst([]) == OK
    assert max([CRIT, UNKNOWN]) == CRIT
    assert sorted([CRIT, UNKNOWN, OK, WARN]) == [OK, WARN, UNKNOWN, CRIT]
    assert State.from_name("critical") == CRIT and State.from_name("Warn") == WARN
    with pytest.raises(ValueError):
        State(4)


def test_line_with_metrics_and_details():
    r = Result(WARN, "KVM binary versions", "2 of 14 instances",
               ["web1: pid 12", "db3: pid 13"],
               [Metric("kvm_outdated", 2, 1, None, 0), Metric("kvm_processes", 14)])
    line = render_line(r)
    assert line == ('1 "KVM binary versions" kvm_outdated=2;1;;0|kvm_processes=14 '
                    '2 of 14 instances\\nweb1: pid 12\\ndb3: pid 13')
    fields = parse_line(line)
    assert fields["details"] == ["web1: pid 12", "db3: pid 13"]


def test_service_without_space_is_not_quoted_and_empty_summary_gets_text():
    assert render_line(Result(OK, "kvm", "")) == "0 kvm - OK"


def test_numbers_are_plain():
    assert format_number(1.5) == "1.5"
    assert format_number(2.0) == "2"
    assert format_number(0.0000001) == "0"
    assert format_number(123456789.123) == "123456789.123"
    assert format_number(True) == "1"
    with pytest.raises(ValueError):
        format_number(float("nan"))


def test_metric_names_are_checked():
    with pytest.raises(ValueError):
        Metric("bad name", 1)
    with pytest.raises(ValueError):
        Metric("bad/name", 1)


def test_piggyback_blocks_reopen_the_local_section():
    results = [Result(CRIT, "Ganeti verify", "1 error"),
               Result(CRIT, "Ganeti verify", "EINSTANCEDOWN", host="web1.example.com"),
               Result(OK, "Ganeti verify", "ok", host="bad host\n0 x - y")]
    lines = render_local(results)
    assert lines[1:] == ["<<<<web1.example.com>>>>", "<<<local:sep(0)>>>",
                         '2 "Ganeti verify" - EINSTANCEDOWN', "<<<<>>>>",
                         "<<<local:sep(0)>>>"]
    hosts = assert_valid_output("\n".join(lines) + "\n")
    assert set(hosts) == {None, "web1.example.com"}


def test_nagios_line_and_exit_code():
    line, code = render_nagios([Result(UNKNOWN, "a", "x"), Result(CRIT, "b", "y",
                                metrics=[Metric("m", 1)])])
    assert code == 2
    assert line == "CRITICAL - a: x; b: y | m=1"


HOSTILE = st.lists(st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    list("\n\r\t\x00\x1b\x85\u2028\"'\\|=; ") + ["\\n", '0 "Fake" - ok', "<<<<x>>>>"]),
    max_size=15).map("".join)


@settings(max_examples=300, deadline=None)
@given(service=HOSTILE, summary=HOSTILE, details=st.lists(HOSTILE, max_size=5),
       host=st.one_of(st.none(), HOSTILE))
def test_no_input_can_break_or_inject_a_line(service, summary, details, host):
    results = [Result(CRIT, service, summary, details),
               Result(OK, "Other", summary, details, host=host)]
    text = "\n".join(render_local(results)) + "\n"
    hosts = assert_valid_output(text)
    assert len(hosts[None]) == (2 if host is None else 1)
    shown = host is None or valid_host(host)
    assert sum(len(s) for s in hosts.values()) == (2 if shown else 1)


def test_sanitize_removes_controls_backslashes_and_caps_length():
    assert sanitize("a\nb\tc\r\x00d\x1b[31m\u2028e") == "a b c d [31m e"
    assert sanitize("line1\\nline2") == "line1/nline2"
    long = sanitize("x" * 5000)
    assert len(long) == 1000 and long.endswith("...")
    assert set(sanitize(string.printable)) <= set(string.printable) - set("\n\t\r\x0b\x0c\\")


def test_undecodable_bytes_are_printable():
    name = b"inst\xff1".decode("utf-8", "surrogateescape")
    assert sanitize(name).encode("utf-8") == "inst\ufffd1".encode("utf-8")
    assert sanitize("a\ud800b").encode("utf-8") == b"a?b"


def test_many_details_are_capped():
    r = Result(OK, "s", "sum", ["d%d" % i for i in range(500)])
    fields = parse_line(render_line(r))
    assert len(fields["details"]) == 200
    assert fields["details"][-1] == "... and 301 more"


def test_plural():
    from ganeti_cmk.words import plural
    assert plural(1, "error") == "1 error" and plural(0, "error") == "0 errors"
    assert plural(2, "qemu process", "qemu processes") == "2 qemu processes"


def test_words_kit():
    from ganeti_cmk.words import ago, fit, levels, some
    assert some(["a", "b", "c", "d"], 2) == "a, b, 2 more" and some(["a"], 2) == "a"
    assert some(["a", "b"], None) == "a, b"
    assert levels(5, 5, 10) == (1, " (warn/crit at 5/10)")
    assert levels(10, 5, 10, lambda v: "%d%%" % v) == (2, " (warn/crit at 5%/10%)")
    assert levels(4, 5, 10) == (0, "") and levels(99, None, None) == (0, "")
    assert ago(-30) == "0 s ago" and ago(5400) == "1.5 h ago"
    names = ["instance%d" % i for i in range(200)]

    def build(n):
        return "%d instances outdated: %s: restart them" % (len(names), some(names, n))
    text = fit(build, limit=100)
    assert len(text) <= 100 and text.endswith(": restart them") and "200 instances" in text
    assert fit(lambda n: "x" * 50, limit=20) == "x" * 17 + "..."


def test_format_bytes_picks_the_unit_after_rounding():
    # An amount just under a unit must not read "1024 KiB" or "10.0 KiB".
    from ganeti_cmk.words import format_bytes
    assert [format_bytes(n) for n in (0, 512, 1023, 1024, 1536, 4 << 10)] == [
        "0 B", "512 B", "1023 B", "1 KiB", "1.5 KiB", "4 KiB"]
    assert format_bytes(10239) == "10 KiB"
    assert format_bytes((1 << 20) - 1) == "1.0 MiB"
    assert format_bytes(512 << 20) == "512 MiB" and format_bytes(15 << 30) == "15 GiB"
    assert format_bytes(int(1.5 * (1 << 30))) == "1.5 GiB"
    assert format_bytes(3000 << 40) == "3000 TiB"
