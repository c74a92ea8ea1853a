"""tools/manpage.py: argparse --help -> a man page that renders cleanly.

The pages of the real programs are checked in test_deb.py; this drives
the converter with a program that has what they may grow: a subcommand,
an option too long for its column, an epilog, text that roff would take
for requests or escapes.
"""

import os
import shutil
import subprocess
import sys

import pytest

from support import ROOT

DEMO = r'''
import argparse
parser = argparse.ArgumentParser(
    prog="demo-tool", description="demo-tool 2.0: Checks a thing. More about it.",
    epilog=".starts with a dot and has a back\\slash")
parser.add_argument("--a-very-long-option-name", metavar="SOMETHING_LONG",
                    help="a help text long enough to wrap onto a second line in "
                    "eighty columns, says -v and --quiet")
parser.add_argument("-q", "--quiet", action="store_true", help="say less")
sub = parser.add_subparsers(dest="command", metavar="COMMAND")
run = sub.add_parser("run", help="run it now", description="Run the thing now.")
run.add_argument("--dry", action="store_true", help="only show what it would do")
sub.add_parser("list", help="list the things")
parser.parse_args()
'''


@pytest.fixture
def page(tmp_path):
    program = tmp_path / "demo-tool"
    program.write_text(DEMO)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "manpage.py"),
                    "--source", "demo 2.0", str(tmp_path / "man"), "1:%s" % program],
                   check=True, stdout=subprocess.DEVNULL, timeout=120,
                   env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
    return (tmp_path / "man" / "demo-tool.1").read_text()


def test_sections_from_the_help(page):
    lines = page.splitlines()
    assert lines[0] == '.TH "DEMO-TOOL" "1" "2023-11-14" "demo 2.0" "ganeti-cmk"'
    assert lines[1:3] == [".SH NAME", r"demo\-tool \- Checks a thing"]
    synopsis = lines[lines.index(".SH SYNOPSIS") + 2:lines.index(".fi")]
    assert synopsis[0].startswith(r"demo\-tool [\-h]")
    assert [s.split()[:2] for s in synopsis if s.startswith(r"demo\-tool ")][1:] == \
        [[r"demo\-tool", "run"], [r"demo\-tool", "list"]]
    # every option one tagged paragraph, a long help joined into one line
    options = page.split(".SH OPTIONS\n")[1].split(".SH COMMANDS")[0]
    assert r"\fB\-\-a\-very\-long\-option\-name SOMETHING_LONG\fR" in options
    assert ("a help text long enough to wrap onto a second line in eighty columns, "
            r"says \-v and \-\-quiet") in options
    assert options.count(".TP") == 3
    commands = page.split(".SH COMMANDS\n")[1]
    assert commands.startswith(".SS run\nRun the thing now.\n")
    assert ".SS list\nlist the things\n" in commands
    assert r"\fB\-\-dry\fR" in commands


def test_roff_requests_and_escapes_in_text_are_escaped(page):
    assert "\\&.starts with a dot and has a back\\eslash" in page.splitlines()
    assert not [line for line in page.splitlines()
                if line.startswith(".") and line.split()[0] not in
                (".TH", ".SH", ".SS", ".TP", ".PP", ".RS", ".RE", ".nf", ".fi")]


@pytest.mark.skipif(not shutil.which("man"), reason="no man (man-db)")
def test_renders_without_warnings(page, tmp_path):
    (tmp_path / "demo-tool.1").write_text(page)
    proc = subprocess.run(["man", "--warnings", "-l", str(tmp_path / "demo-tool.1")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "LC_ALL": "C", "MANWIDTH": "80"})
    assert proc.returncode == 0 and proc.stderr == ""
    assert "back\\slash" in proc.stdout and "--a-very-long-option-name" in proc.stdout
