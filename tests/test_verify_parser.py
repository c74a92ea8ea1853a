"""The gnt-cluster verify parser, driven by the corpus in data/verify.

Each case there is NAME.out (stdout), NAME.err (stderr), NAME.rc (exit code),
written from Ganeti's own format strings (lib/cmdlib/cluster/verify.py,
lib/cli.py, lib/utils/text.py SafeEncode, 2.4 to 3.1).
"""

import json
import os
import string

import pytest
from hypothesis import example, given, strategies as st

from support import ROOT
from ganeti_cmk import verify
from ganeti_cmk.verify import (CODES, ERROR, WARNING, Finding, Report, decode,
                               parse)

DATA = os.path.join(ROOT, "tests", "data", "verify")


def read_case(name):
    def read(ext, default=""):
        path = os.path.join(DATA, name + ext)
        if not os.path.exists(path):
            return default
        with open(path, encoding="utf-8") as f:
            return f.read()
    return read(".out"), read(".err"), int(read(".rc", "0"))


def parse_case(name):
    return parse(*read_case(name))


def codes(report):
    return [f.code for f in report.findings]


def test_there_are_41_codes_with_their_item_types():
    assert len(CODES) == 41
    assert set(CODES.values()) == {"cluster", "node", "instance", "group"}


def test_every_code_in_error_codes_form():
    report = parse_case("all-codes-3.0")
    assert sorted(codes(report)) == sorted(CODES)
    for f in report.findings:
        assert f.item_type == CODES[f.code], f
        assert f.severity in (ERROR, WARNING)
        assert f.message and "\\" not in f.message
    by_code = {f.code: f for f in report.findings}
    # item "None" means no item; cluster- and some node-level codes have none
    assert by_code["ECLUSTERCFG"].item is None
    assert by_code["ECLUSTERDANGLINGNODES"].item is None
    # the message keeps its colons, the item its dots
    assert by_code["ENODERPC"].item == "node3.example.com"
    assert by_code["ENODERPC"].message == (
        "while contacting node: Error 7: Failed to connect to "
        "node3.example.com port 1811: No route to host")
    # some 3.0 checks put a node UUID where the name would be
    assert by_code["ENODEDRBDHELPER"].item == "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    # SafeEncoded trailing newline is gone
    assert by_code["ENODESSH"].message.endswith("Permission denied (publickey).")
    assert by_code["ENODEN1"].section == "Verifying N+1 Memory redundancy"
    assert by_code["ENODEHOOKS"].section == "Hooks Results"
    assert [f.severity for f in report.findings].count(WARNING) == 9
    assert report.jobs == [27, 28]
    assert report.notes == ["NOTICE: 1 non-redundant instance(s) found."]
    assert report.unrecognised == [] and report.failure is None


@pytest.mark.parametrize("name", ["all-codes-3.0-plain", "all-codes-2.15-plain"])
def test_plain_forms_give_the_same_findings_without_codes(name):
    coded = parse_case("all-codes-3.0").findings
    plain = parse_case(name).findings
    assert len(plain) == len(coded) == 41
    for p, c in zip(plain, coded):
        assert p.code is None
        assert (p.severity, p.item_type, p.item, p.message, p.section) == \
            (c.severity, c.item_type, c.item, c.message, c.section)


@pytest.mark.parametrize("line, item_type, item, message", [
    ("  - ERROR: cluster : cfg broken: really", "cluster", None, "cfg broken: really"),
    ("  - ERROR: cluster: cfg broken: really", "cluster", None, "cfg broken: really"),
    ("  - ERROR: node : dangling: node9", "node", None, "dangling: node9"),
    ("  - ERROR: node n1.example.com: x: y", "node", "n1.example.com", "x: y"),
    ("  - ERROR: group site-a: PVs differ", "group", "site-a", "PVs differ"),
    ("  - ERROR:ECLUSTERCFG:cluster:None:cfg: broken", "cluster", None, "cfg: broken"),
    ("  - ERROR:ENODEDRBD:node:n1.example.com:", "node", "n1.example.com", ""),
])
def test_single_finding_lines_with_and_without_timestamp(line, item_type, item,
                                                         message):
    for text in (line, "Tue Feb  8 06:54:46 2011 " + line, line.strip()):
        (f,) = parse(text).findings
        assert (f.severity, f.item_type, f.item, f.message) == \
            (ERROR, item_type, item, message), text


ERAS = {
    # name: (codes, first section, last section, jobs, notes, exit code)
    "era-2.4": (["ENODEDRBD", "EINSTANCEDOWN", "ENODEORPHANLV"],
                "Verifying global settings", "Hooks Results", [], 1, 1),
    "era-2.7": (["ENODESSH", "ENODENET"], "Verifying cluster config",
                "Hooks Results", [118, 119], 0, 1),
    "era-2.16-groups": (["EINSTANCESPLITGROUPS", "ENODEVERSION", "ENODEORPHANLV"],
                        "Verifying cluster config",
                        "Empty node group, skipping verification",
                        [4120, 4121, 4122, 4123], 2, 0),
    "era-3.0-clean": ([], "Verifying cluster config", "Hooks Results",
                      [20511, 20512], 1, 0),
    "era-3.1-assessment": (["ENODESSH", "EINSTANCEFAULTYDISK", None],
                           "Verifying cluster config", "Hooks Results",
                           [310, 311], 2, 1),
}


@pytest.mark.parametrize("name", sorted(ERAS))
def test_each_eras_layout(name):
    expected_codes, first, last, jobs, notes, rc = ERAS[name]
    report = parse_case(name)
    assert codes(report) == expected_codes
    assert report.sections[0] == first and report.sections[-1] == last
    assert report.jobs == jobs
    assert len(report.notes) == notes
    assert report.exit_code == rc
    assert report.unrecognised == [] and report.failure is None
    assert report.failed_jobs == 0 and report.job_errors == []


def test_2_4_drbd_text_and_sections_of_findings():
    report = parse_case("era-2.4")
    drbd = report.findings[0]
    assert drbd.item == "node2.example.org"
    assert drbd.message == "drbd minor 0 of instance web1.example.org is not active"
    assert [f.section for f in report.findings] == [
        "Verifying node status", "Verifying instance status",
        "Verifying orphan volumes"]


def test_3_1_assessment_bullets_are_notes_and_hook_warning_is_a_finding():
    report = parse_case("era-3.1-assessment")
    assert report.notes[0].startswith("cpu_type is currently not set")
    hook = report.findings[-1]
    assert (hook.severity, hook.code, hook.item_type, hook.item) == \
        (WARNING, None, None, None)
    assert hook.message.startswith("Communication failure to node node2")


def test_2_7_carriage_return_escape_is_decoded():
    ssh = parse_case("era-2.7").findings[0]
    assert ssh.message.endswith("port 22: No route to host")


def test_failed_job():
    report = parse_case("job-failed")
    assert report.failed_jobs == 1
    # FormatError's text goes on over the following stderr lines
    assert report.job_errors == [
        "Job 513 has failed: Failure: command execution error: Can't get the "
        "node information of node2.example.com: Error 7: Failed to connect to "
        "node2.example.com port 1811: No route to host"]
    assert report.findings == [] and report.failure is None
    assert report.stderr == []


def test_job_error_lines_end_at_the_next_recognised_line():
    report = parse("", "Job 7 has failed: Failure: x:\ndetail\n"
                   "Job 8 is trying to acquire all necessary locks\nafter\n"
                   "Job 9 has failed: Failure: y:\nmore\n", 1)
    assert report.job_errors == ["Job 7 has failed: Failure: x: detail",
                                 "Job 9 has failed: Failure: y: more"]
    assert report.stderr == ["after"] and report.waited_for_locks


def test_failed_group_job_message_is_decoded():
    report = parse_case("job-failed-group")
    assert report.failed_jobs == 1 and report.jobs == [77]
    assert report.job_errors == [
        "Job 77 has failed: Failure: prerequisites not met for this operation: "
        "error type: unknown_entity, error details: Group 'nosuch' not found"]


@pytest.mark.parametrize("name, kind, text", [
    ("not-master", verify.NOT_MASTER, "This is not the master node, please "
     "connect to node 'node1.example.com' and rerun the command"),
    ("not-in-cluster", verify.NOT_IN_CLUSTER,
     "Cluster not initialized or this machine is not part of a cluster"),
    ("no-daemon-2.x", verify.NO_DAEMON, "Cannot communicate with the master "
     "daemon. Is it running and listening for connections?"),
    ("no-daemon-3.0", verify.NO_DAEMON, None),
    ("queue-drained", verify.QUEUE_DRAINED, "Failure: the job queue is marked "
     "for drain and doesn't accept new requests"),
    ("queue-drained-3.0", verify.QUEUE_DRAINED,
     "Unhandled Ganeti error: Queue drained"),
    ("queue-full", verify.QUEUE_FULL, None),
    ("no-permission", verify.NO_PERMISSION, "It seems you don't have "
     "permissions to connect to the master daemon."),
    ("usage", verify.USAGE, None),
    ("corrupt-config", verify.CORRUPT_CONFIG,
     "Corrupt configuration file: Invalid data in the configuration file"),
    ("traceback", verify.CRASHED, "KeyError: 'opresult'"),
])
def test_stderr_only_failures(name, kind, text):
    report = parse_case(name)
    assert report.failure[0] == kind
    if text is not None:
        assert report.failure[1] == text
    assert report.failure[1]
    assert report.findings == []


def test_exit_code_2_without_known_text_is_a_usage_error():
    report = parse("", "something odd\n", 2)
    assert report.failure == (verify.USAGE, "something odd")
    assert parse("", "", 2).failure == (verify.USAGE, "exit code 2")


def test_waiting_for_locks_is_harmless():
    report = parse_case("locks-then-clean")
    assert report.waited_for_locks
    assert report.stderr == [] and report.failure is None
    assert report.job_errors == [] and report.findings == []
    assert not parse("", "Job 3 has failed: x").waited_for_locks


def test_safeencode_escapes_are_decoded():
    f = parse_case("safeencode").findings
    assert f[0].message == ("ssh communication with node 'node3.example.com': "
                            "ssh problem: line1 line2")
    assert f[1].message == "OS 'debootstrap' has multiple entries: first second"
    # 2.x wrote UTF-8 bytes, 3.x writes code points; both read back
    assert f[2].item == "caf\u00e9.example.com"
    assert f[2].message == "owner M\u00fcller \u20ac"
    # control characters become a blank; an unescaped backslash stays
    assert f[3].message == "bell and path C:\\data"
    # hook output (its own indented line) continues the finding before it
    assert f[4].code == "ENODEHOOKS"
    assert f[4].message == ("Script 50-check-bridges failed, output: "
                            "bridge br0 missing bridge br1 down")


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("a\\nb", "a b"),
    ("a\\tb\\'r\\n", "a b"),
    ("\\xc3\\xa9\\xe9", "\u00e9\u00e9"),    # UTF-8 bytes, then a latin-1 byte
    ("\\u20ac \\U0001f600", "\u20ac \U0001f600"),
    ("\\ud800", "\ufffd"),                  # lone surrogate: not printable
    ("\\x1b[31m red", "[31m red"),          # ESC is a control: a blank, dropped
    ("C:\\data", "C:\\data"),
])
def test_decode(text, expected):
    assert decode(text) == expected


def test_unrecognised_lines_are_kept_and_problem_lines_become_findings():
    report = parse_case("unrecognised")
    assert report.unrecognised == ["something new in Ganeti 3.2",
                                   "random trailing garbage"]
    messages = [(f.severity, f.code, f.message) for f in report.findings]
    assert messages == [
        (ERROR, None, "FATAL:ENEWCODE:node:node1.example.com:a severity we do not know"),
        (ERROR, None, "ERROR node1.example.com lost its disks"),
        (WARNING, None, "hook says WARNING: fan speed low"),
        (ERROR, "ENEWCODE", "an unknown code is still a finding"),
        (ERROR, None, "some untyped message: with colons"),
    ]


@pytest.mark.parametrize("second", [
    "Tue Nov 14 22:13:20 2023    - ERROR:ENODEDRBD:node:n2:b",
    "   - ERROR:ENODEDRBD:node:n2:b",
    "        - ERROR: node n2: b",
    "      - ERROR n2 b",
])
def test_an_indented_finding_after_a_finding_is_a_finding_of_its_own(second):
    """Only hook output continues a finding; a finding line never does."""
    report = parse("  - ERROR:ENODEDRBD:node:n1:a\n%s\n" % second)
    assert len(report.findings) == 2, report.findings
    assert report.findings[0].message == "a"


def test_hook_output_continues_the_finding_before_it():
    report = parse("  - ERROR:ENODEHOOKS:node:n1:Script x failed, output:\n"
                   "      line one\n      - a list item\n      ERROR in hook\n")
    (f,) = report.findings
    assert f.message == ("Script x failed, output: line one - a list item "
                         "ERROR in hook")


def test_hook_output_without_a_finding_before_it_is_unrecognised():
    report = parse("* Hooks Results\n      stray output\n      ERROR in hook")
    assert report.unrecognised == ["stray output"]
    assert report.findings[0].message == "ERROR in hook"


def test_huge_output_is_parsed_completely():
    n = 100000
    lines = ["Submitted jobs 1, 2", "Waiting for job 1 ...",
             "Tue Nov 14 22:13:20 2023 * Verifying instance status"]
    lines += ["Tue Nov 14 22:13:20 2023   - ERROR:EINSTANCEDOWN:instance:"
              "vm%d.example.com:instance not running on its primary node "
              "node%d.example.com" % (i, i % 40) for i in range(n)]
    lines += ["Tue Nov 14 22:13:21 2023   - WARNING: node node%d.example.com: "
              "volume xenvg/lv%d is unknown" % (i % 40, i) for i in range(n)]
    report = parse("\n".join(lines) + "\n", "", 1)
    # every finding is counted, the first MAX_FINDINGS are stored
    assert len(report.findings) == verify.MAX_FINDINGS
    assert report.findings[-1].item == "vm%d.example.com" % (
        verify.MAX_FINDINGS - 1)
    assert report.more == {"ERROR:EINSTANCEDOWN": n - verify.MAX_FINDINGS,
                           "WARNING:": n}
    assert report.unrecognised == [] and report.dropped == {}


def test_other_lines_and_long_lines_are_capped():
    n = verify.MAX_LINES + 5
    stdout = "".join("  - NOTICE: note %d\n" % i for i in range(n))
    stdout += "x" * (verify.MAX_LINE * 3) + "\n"
    report = parse(stdout, "".join("debug %d\n" % i for i in range(n)), 1)
    assert len(report.notes) == len(report.stderr) == verify.MAX_LINES
    assert report.dropped == {"notes": 5, "stderr": 5}
    assert report.unrecognised == ["x" * verify.MAX_LINE]


def test_report_survives_a_json_round_trip():
    for name in ("all-codes-3.0", "traceback", "unrecognised", "job-failed"):
        report = parse_case(name)
        back = Report.from_data(json.loads(json.dumps(report.to_data())))
        assert back.to_data() == report.to_data()
        assert back.findings == report.findings
        assert back.failure == report.failure


ITEM = st.text(string.ascii_lowercase + string.digits + ".-_", min_size=1,
               max_size=30).filter(lambda s: s != "None")
MESSAGE = st.text(string.ascii_letters + string.digits + " .:,'()[]/-_=",
                  max_size=80).map(str.strip)


@given(st.sampled_from(sorted(CODES)), st.sampled_from([ERROR, WARNING]), ITEM,
       MESSAGE, st.booleans())
def test_any_coded_finding_reads_back(code, severity, item, message, stamp):
    line = "  - %s:%s:%s:%s:%s" % (severity, code, CODES[code], item, message)
    if stamp:
        line = "Wed Mar 20 03:10:04 2019 " + line
    (f,) = parse(line + "\n").findings
    assert (f.severity, f.code, f.item_type, f.item, f.message) == \
        (severity, code, CODES[code], item, message)


@given(st.sampled_from(["node", "instance", "group"]),
       st.sampled_from([ERROR, WARNING]), ITEM, MESSAGE)
def test_any_plain_finding_reads_back(item_type, severity, item, message):
    (f,) = parse("  - %s: %s %s: %s" % (severity, item_type, item, message)).findings
    assert (f.severity, f.code, f.item_type, f.item, f.message) == \
        (severity, None, item_type, item, message)


FRAGMENTS = ["Tue Nov 14 22:13:20 2023 ", "  - ", " - ", "      ", "* ", "ERROR",
             "WARNING", "NOTICE", "INFO", ":", " ", "node", "cluster", "None",
             "ENODEDRBD", "n1.example.com", "\\n", "\\x", "c3", "\\'r", "x",
             "Submitted jobs 1", ", 2", "Waiting for job 3 ...", "\t", "\r"]
LINES = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)


STAMP = "Tue Nov 14 22:13:20 2023 "


def says_error(line):
    """A stdout line that must give a finding of its own: it says ERROR,
    and is no section title, note or hook output (which continues the
    finding before it)."""
    if "ERROR" not in line.replace(":", " ").split():
        return False
    message = line[len(STAMP):] if line.startswith(STAMP) else line
    if message.startswith("   ") and not message.lstrip(" ").startswith("- "):
        return False  # hook output: part of the finding before it
    message = message.strip()
    return not message.startswith(("* ", "- NOTICE:", "- INFO:"))


@given(st.lists(LINES | st.text(max_size=40), max_size=10))
@example(["  - ERROR:ENODEDRBD:node:n1:a", STAMP + "   - ERROR:ENODEDRBD:node:n2:b"])
def test_any_text_parses_and_no_error_line_is_dropped(lines):
    text = "\n".join(lines)
    report = parse(text, text, 1)
    Report.from_data(json.loads(json.dumps(report.to_data())))
    # each line saying ERROR is a finding of its own: count them line by line
    expected = [line for line in text.split("\n") if says_error(line.rstrip())]
    assert len(report.findings) >= len(expected), (expected, report.findings)


def test_finding_repr_and_equality():
    f = Finding(ERROR, "ENODEDRBD", "node", "n1", "msg", "sect")
    assert "ENODEDRBD" in repr(f)
    assert f == Finding(*f.to_list()) and f != f.to_list()
