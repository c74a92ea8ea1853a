"""Config: defaults, typed values, and bad values that never crash."""

import pytest
from hypothesis import assume, example, given, settings, strategies as st

from ganeti_cmk.checks import NAMES, all_defaults
from ganeti_cmk.config import Config, parse_duration, parse_ini
from ganeti_cmk.words import format_duration


def test_missing_file_gives_defaults(tmp_path):
    c = Config(str(tmp_path / "none.cfg"))
    assert c.get_path("paths", "dev_kvm") == "/dev/kvm"
    assert c.get_duration("general", "deadline") == 30
    assert c.problems == []


def test_values_are_read_and_typed():
    c = Config(text="[paths]\ndev_kvm = /tmp/kvm  # test\n[general]\ndeadline = 1m30s\n")
    assert c.get_path("paths", "dev_kvm") == "/tmp/kvm"
    assert c.get_duration("general", "deadline") == 90
    assert c.problems == []


def test_state_dir_expands_mk_vardir(monkeypatch):
    monkeypatch.setenv("MK_VARDIR", "/srv/agent")
    assert Config(text="").get_path("paths", "state_dir") == "/srv/agent/ganeti_cmk"
    monkeypatch.delenv("MK_VARDIR")
    assert Config(text="").get_path("paths", "state_dir") == \
        "/var/lib/check_mk_agent/ganeti_cmk"


@pytest.mark.parametrize("section,key,value,getter,expected,message", [
    ("general", "deadline", "soon", "get_duration", 30, "not a duration"),
    ("general", "deadline", "0", "get_duration", 30, "not a duration"),
    ("paths", "dev_kvm", "relative/kvm", "get_path", "/dev/kvm", "not an absolute path"),
])
def test_bad_value_gives_default_and_a_problem(section, key, value, getter,
                                               expected, message):
    c = Config(text="[%s]\n%s = %s\n" % (section, key, value))
    assert getattr(c, getter)(section, key, **({"minimum": 1} if getter == "get_duration" else {})) == expected
    assert len(c.problems) == 1
    assert "[%s] %s" % (section, key) in c.problems[0] and message in c.problems[0]


def test_unknown_key_and_broken_file_are_reported():
    c = Config(text="[paths]\ndev_kmv = /dev/kvm\n")
    c.get_path("paths", "dev_kvm")
    assert c.problems == ["[paths] dev_kmv: unknown key, ignored"]
    broken = Config(text="dev_kvm = /x\n")
    assert broken.get_path("paths", "dev_kvm") == "/dev/kvm"
    assert "not valid INI" in broken.problems[0]


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path):
    c = Config(str(tmp_path))  # a directory: IsADirectoryError
    assert c.get_path("paths", "dev_kvm") == "/dev/kvm"
    assert "cannot read" in c.problems[0]


def test_bool_number_choice_list():
    from ganeti_cmk.ganeti import node_name
    assert node_name("Node1.Example.COM.", "/nonexistent") == "node1.example.com"
    defaults = {"test_only": {"flag": "no", "count": "3", "ratio": "0.5",
                              "mode": "on", "words": "a b"}}
    t = Config(text="[test_only]\nflag = yes\ncount = x\nratio = nan\n"
               "mode = maybe\nwords = a, b c\n", defaults=defaults)
    assert t.get_bool("test_only", "flag") is True
    assert t.get_number("test_only", "count", integer=True) == 3
    assert "not a whole number" in t.problems[0]
    assert t.get_number("test_only", "ratio", minimum=0) == 0.5
    assert "[test_only] ratio: 'nan' is not a number >= 0" in t.problems[1]
    assert t.get_choice("test_only", "mode", ("on", "off", "any")) == "on"
    assert "one of on, off, any" in t.problems[2]
    assert t.get_list("test_only", "words") == ["a", "b", "c"]


def test_unknown_section_is_reported_like_an_unknown_key():
    c = Config(text="[kvm_binray]\nwarn_after = 1h\n[kvm_binary]\n", sections=NAMES)
    assert c.problems == ["[kvm_binray]: unknown section, ignored"]
    assert Config(text="[kvm_binary]\n[drbd_typo]\n", sections=NAMES).problems == [
        "[drbd_typo]: unknown section, ignored"]


def test_every_check_keeps_its_keys_in_its_own_section():
    from ganeti_cmk.checks import load_all
    for check in load_all():
        assert check.section == check.module
        assert check.name == "ganeti_" + check.module
        assert all(value == value.strip() for value in check.defaults.values())


def test_durations():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2.5") == 2.5
    assert parse_duration("1.5m") == 90 and parse_duration(" 10 m ") == 600
    for bad in ("", "d", "5x", "1h3", "nan", "inf", "1e400", "-5", "1..2s",
                ".s", "11000d"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(45) == "45 s"
    assert format_duration(7200) == "2 h"
    assert format_duration(5400) == "1.5 h"
    assert format_duration(86400 * 12) == "12 d"


def test_example_config_shows_every_key_with_its_default():
    import os
    import re
    from support import ROOT
    DEFAULTS = all_defaults()
    with open(os.path.join(ROOT, "mkp", "ganeti_cmk.cfg.example")) as f:
        text = f.read()
    shown = {}
    section = None
    for line in text.splitlines():
        m = re.match(r"\[(\w+)\]$", line)
        if m:
            section = m.group(1)
        m = re.match(r"#?(\w+) = ?(.*)$", line)
        if m and section:
            shown[(section, m.group(1))] = m.group(2)
    expected = {(s, k): v for s, keys in DEFAULTS.items() for k, v in keys.items()}
    assert shown == expected
    uncommented = Config(text=re.sub(r"(?m)^#(\w+ =)", r"\1", text), defaults=DEFAULTS,
                         sections=NAMES)
    for section, key in expected:
        uncommented._raw(section, key)
    assert uncommented.problems == []


def test_docs_document_every_key():
    import glob
    import os
    from support import ROOT
    readme = ""
    for path in [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")):
        with open(path) as f:
            readme += f.read()
    for section, keys in all_defaults().items():
        for key in keys:
            assert "| `%s` | `%s` |" % (section, key) in readme, (section, key)


# The INI reader must read every file as configparser would (the README
# promises configparser's format); hypothesis writes the files.
KEYS = st.sampled_from(["dev_kvm", "Key", "a", "b", "c", "x y", "k.1", "z"])
VALUES = st.sampled_from(["v", "/dev/kvm", "a#b", "a #b", "a;b", "a ;b", "",
                          "x:y", "=w", "#", "a b  c", "[x]"])
LINES = st.one_of(
    st.builds("[{}]{}".format, st.sampled_from(["paths", "ganeti", "Paths", "a]b", "x y"]),
              st.sampled_from(["", " # c", " ;c", "x"])),
    st.builds("{}{}{}".format, KEYS, st.sampled_from(["=", " = ", ": ", ":", "\t=\t"]), VALUES),
    st.builds("{}{}".format, st.sampled_from([" ", "  ", "\t", "    "]),
              st.sampled_from(["more", "x # c", "a;b", "#c", ";c"])),
    st.sampled_from(["", "   ", "# comment", "; note", "  # indented", "\r"]),
)
ERRORS = st.sampled_from(["novalue", "= x", "[]", " : y"])


@settings(max_examples=500, deadline=None)
@given(st.lists(LINES, max_size=10), st.lists(ERRORS, max_size=1),
       st.integers(0, 10), st.booleans())
@example(["k = v", "", "  more", "   ", "\tlast"], [], 0, True)   # blanks inside a value
@example(["k = a#b ;c #d"], [], 0, True)                       # inline comment rounds
@example(["[a]b] # c", "x = 1", "[a]b]"], [], 0, False)         # greedy header, duplicate
def test_ini_reader_agrees_with_configparser(lines, error, at, header):
    import configparser
    import sys
    if sys.version_info < (3, 11):  # older configparsers cut "[a]b]" at the first "]"
        assume(not any(line.startswith("[") and line.count("]") > 1 for line in lines))
    if header:
        lines.insert(0, "[paths]")
    lines[at:at] = error
    text = "\n".join(lines)
    reference = configparser.ConfigParser(interpolation=None,
                                          inline_comment_prefixes=("#", ";"))
    try:
        reference.read_string(text)
        expected = {s: dict(reference.items(s)) for s in reference.sections()}
    except configparser.Error:
        expected = None
    try:
        got = parse_ini(text)
    except ValueError:
        got = None
    assert got == expected, text


# --- the config file is read as any file the checks did not write -----------

def run_with_config(tmp_path, make, timeout=30):
    """Run ganeti_kvm_device in agent mode with $MK_CONFDIR/ganeti_cmk.cfg
    made by make(path); a subprocess with a timeout, so a read that blocks
    fails the test instead of hanging it."""
    import subprocess
    from support import assert_valid_output, check_command
    etc = tmp_path / "etc"
    etc.mkdir()
    make(str(etc / "ganeti_cmk.cfg"))
    result = subprocess.run(
        check_command("ganeti_kvm_device"), stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "MK_CONFDIR": str(etc),
             "MK_VARDIR": str(tmp_path / "var")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=timeout, cwd="/")
    assert result.returncode == 0, result.stderr
    return assert_valid_output(result.stdout)[None]["KVM device"]


DEFAULTS_NOTE = "using defaults)"


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo", "link to a fifo"])
def test_config_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    """A link to /dev/zero grew a check to 24 GB; a FIFO blocked every run."""
    import os

    def make(path):
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "link to a fifo":
            os.mkfifo(path + ".fifo")
            os.symlink(path + ".fifo", path)
        else:
            os.symlink("/dev/zero", path)
    out = run_with_config(tmp_path, make)
    assert out["state"] in ("1", "2"), out  # at least WARN: the config problem
    assert ("config problem: cannot read %s: not a regular file, using defaults)"
            % (tmp_path / "etc" / "ganeti_cmk.cfg")) in out["summary"]


@pytest.mark.parametrize("chain", ["root's link", "root's link to a user's link"])
def test_a_link_to_a_fifo_or_device_is_refused_without_opening_it(tmp_path, chain):
    """Opening a device can act (a watchdog starts its timer, a tape
    rewinds): the file a trusted link names is looked at (lstat) before it
    is opened, and a link of another user on the way is never followed (it
    was: whoever may write the managed file's directory could point root's
    link at any device).  Seen here with a FIFO: a writer blocked in
    open() is released by the first reader that opens it."""
    import os
    import threading
    if chain != "root's link" and os.geteuid() != 0:
        pytest.skip("needs root (a link of another user)")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    opened = []
    writer = threading.Thread(target=lambda: opened.append(os.open(fifo, os.O_WRONLY)))
    writer.daemon = True
    writer.start()

    def make(path):
        if chain == "root's link":
            os.symlink(fifo, path)
        else:
            theirs = str(tmp_path / "theirs.cfg")
            os.symlink(fifo, theirs)
            os.lchown(theirs, 65534, 65534)
            os.symlink(theirs, path)
    try:
        out = run_with_config(tmp_path, make)
        writer.join(0.5)
        assert not opened, "the check opened the FIFO"
        assert "config problem: cannot read %s: " % (
            tmp_path / "etc" / "ganeti_cmk.cfg") in out["summary"]
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # release the writer
        writer.join(10)
        for fd in opened:
            os.close(fd)


def test_config_through_a_root_link_to_a_root_file_is_read(tmp_path):
    """An operator's link (root's) to a root-owned regular file (a managed
    file elsewhere) is followed: the link's and the file's owner count."""
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    real = tmp_path / "managed.cfg"
    real.write_text("[general]\ndeadline = nonsense\n")

    def make(path):
        os.symlink(str(real), path)
    out = run_with_config(tmp_path, make)
    assert "[general] deadline: 'nonsense' is not a duration" in out["summary"]


@pytest.mark.parametrize("what", ["file", "link"])
def test_config_of_another_user_is_refused(tmp_path, what):
    """A config file, or a link to it, that another user owns: that user
    could set every path the checks (as root) read and run."""
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    real = tmp_path / "theirs.cfg"
    real.write_text("[paths]\ngnt_cluster = /tmp/evil\n")

    def make(path):
        if what == "file":
            os.rename(str(real), path)
            os.chown(path, 65534, 65534)
        else:
            os.symlink(str(real), path)
            os.lchown(path, 65534, 65534)
    out = run_with_config(tmp_path, make)
    config = tmp_path / "etc" / "ganeti_cmk.cfg"
    assert ("config problem: cannot read %s: %s, using defaults)" % (
        config, "owned by uid 65534, not by root" if what == "file"
        else "Too many levels of symbolic links")) in out["summary"]


def test_every_check_has_its_doc_page_and_a_row_in_the_readme():
    import os
    from support import ROOT
    from ganeti_cmk.checks import load_all
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for check in load_all():
        assert os.path.exists(os.path.join(ROOT, "docs", check.module + ".md")), check.module
        assert "| `%s` | `%s` |" % (check.name, check.service) in readme or \
            "| `%s` | `%s" % (check.name, check.service) in readme, check.name
        assert "(docs/%s.md)" % check.module in readme, check.module
