"""State files are replaced atomically and never through a planted link,
and read without following links, blocking or reading without bound."""

import contextlib
import errno
import os
import signal

import pytest

from ganeti_cmk.safefile import read_file as read_bounded
from ganeti_cmk.statefile import write_atomically


def test_creates_the_directory_and_replaces_the_file(tmp_path):
    path = tmp_path / "state" / "x.json"
    write_atomically(str(path), "one")
    inode = os.stat(path).st_ino
    write_atomically(str(path), "two")
    assert path.read_text() == "two"
    assert os.stat(path).st_ino != inode  # a new file renamed over the old
    assert os.listdir(tmp_path / "state") == ["x.json"]


def test_a_planted_link_at_the_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "x.json"
    os.symlink(victim, "%s.%d.tmp" % (path, os.getpid()))
    write_atomically(str(path), "new")
    assert victim.read_text() == "precious" and path.read_text() == "new"


def test_failure_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    (target / "keep").write_text("")
    with pytest.raises(OSError):
        write_atomically(str(target), "cannot replace a non-empty directory")
    assert sorted(os.listdir(tmp_path)) == ["dir"]


@contextlib.contextmanager
def fails_instead_of_hanging(seconds=5):
    """Turn a hang (a blocking open or read) into a test failure."""
    def alarm(signum, frame):
        raise AssertionError("blocked for %d s" % seconds)
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_read_bounded_reads_a_regular_file_up_to_its_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(str(path), 100) == b"x" * 100
    with pytest.raises(OSError) as e:
        read_bounded(str(path), 99)  # refused, not cut: a cut line would lie
    assert e.value.errno == errno.EFBIG
    path.write_bytes(b"")
    assert read_bounded(str(path), 10) == b""


@pytest.mark.parametrize("target", ["/dev/zero", "regular"])
def test_read_bounded_never_follows_a_symlink(tmp_path, target):
    if target == "regular":
        target = str(tmp_path / "elsewhere")
        with open(target, "w") as f:
            f.write("1234\n")
    link = tmp_path / "link"
    os.symlink(target, str(link))
    with pytest.raises(OSError) as e:
        read_bounded(str(link), 1 << 30)
    assert e.value.errno == errno.ELOOP


def test_read_bounded_refuses_a_fifo_without_blocking(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with fails_instead_of_hanging(), pytest.raises(OSError) as e:
        read_bounded(fifo, 64)
    assert e.value.errno == errno.EINVAL and "not a regular file" in str(e.value)


def test_read_bounded_refuses_a_directory_and_a_device(tmp_path):
    for path in (str(tmp_path), "/dev/zero"):
        with fails_instead_of_hanging(), pytest.raises(OSError) as e:
            read_bounded(path, 64)
        assert e.value.errno == errno.EINVAL, path
    with pytest.raises(FileNotFoundError):
        read_bounded(str(tmp_path / "missing"), 64)


# --- state_dir: root's alone -------------------------------------------------

from ganeti_cmk import statefile  # noqa: E402
from ganeti_cmk.statefile import UnsafeState  # noqa: E402
from support import needs_root  # noqa: E402

NOBODY = 65534


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return os.stat(str(path)).st_mode & 0o7777


def test_state_dir_is_created_private_whatever_the_umask(tmp_path):
    """Under umask 000 the state_dir was created world-writable."""
    state = tmp_path / "var" / "lib" / "state"
    with umask(0):
        statefile.write_atomically(str(state / "x"), "data")
    assert mode(state) == 0o700
    assert mode(state / "x") == 0o600
    assert mode(tmp_path / "var") == mode(tmp_path / "var" / "lib") == 0o755
    assert statefile.read(str(state / "x"), 100) == b"data"


@pytest.mark.parametrize("how", ["mode 0777", "mode 0770", "owned by nobody"])
def test_state_dir_others_can_write_is_refused_with_the_fix(tmp_path, how):
    state = tmp_path / "state"
    state.mkdir()
    (state / "x").write_text("planted")
    if how == "owned by nobody":
        if os.geteuid() != 0:
            pytest.skip("needs root")
        os.chown(str(state), NOBODY, NOBODY)
        what = "state_dir owned by uid 65534, not root"
    else:
        os.chmod(str(state), int(how[-4:], 8))
        what = "state_dir writable by other users (mode %s)" % how[-4:]
    fix = "fix: chown root: %s && chmod 700 %s" % (state, state)
    for action in (lambda: statefile.read(str(state / "x"), 100),
                   lambda: statefile.write_atomically(str(state / "y"), "new"),
                   lambda: statefile.make_dir(str(state))):
        with pytest.raises(UnsafeState) as e:
            action()
        assert e.value.strerror == "%s: its files cannot be trusted; %s" % (what, fix)
        assert e.value.filename == str(state)
    assert sorted(os.listdir(str(state))) == ["x"]


@pytest.mark.parametrize("sticky", [False, True], ids=["plain", "sticky"])
def test_state_dir_in_a_directory_others_may_write(tmp_path, sticky):
    """state_dir itself is root's and 0700, but its parent may be written
    by anyone: another user renames state_dir away and puts a directory of
    their own choosing there between the check of the directory and the
    open of a file in it.  A sticky parent (/tmp) forbids that rename."""
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(str(parent), 0o1777 if sticky else 0o777)
    state = parent / "state"
    if sticky:
        statefile.make_dir(str(state))
        statefile.write_atomically(str(state / "x"), "ok")
        assert statefile.read(str(state / "x"), 100) == b"ok"
        return
    with pytest.raises(UnsafeState) as e:
        statefile.make_dir(str(state))
    assert e.value.strerror == (
        "%s, a parent of state_dir, is writable by other users (mode 0777): "
        "they could put another directory in its place; fix: chmod go-w %s "
        "(or choose another [paths] state_dir)" % (parent, parent))
    assert e.value.filename == str(state)


def test_state_dir_that_is_a_link_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "state"
    os.symlink(str(real), str(link))
    os.lchown(str(link), NOBODY, NOBODY)
    with pytest.raises(UnsafeState) as e:
        statefile.make_dir(str(link))
    assert e.value.strerror == "not a directory ([paths] state_dir)"


@needs_root
@pytest.mark.parametrize("planted", ["owned by nobody", "mode 0666", "hard link", "fifo"])
def test_planted_state_file_is_refused(tmp_path, planted):
    """A file in state_dir is read only if we wrote it: root's, 0600-ish,
    one link, a regular file (a FIFO would block)."""
    path = tmp_path / "x"
    if planted == "fifo":
        os.mkfifo(str(path), 0o600)
    else:
        path.write_text("planted")
    if planted == "owned by nobody":
        os.chown(str(path), NOBODY, NOBODY)
    elif planted == "mode 0666":
        os.chmod(str(path), 0o666)
    elif planted == "hard link":
        os.link(str(path), str(tmp_path / "other-name"))
    with fails_instead_of_hanging(), pytest.raises(OSError) as e:
        statefile.read(str(path), 100)
    assert e.value.strerror in ("owned by uid 65534, not by root", "writable by other "
                                "users (mode 0666)", "has 2 hard links",
                                "not a regular file")


def test_leftover_temporary_files_are_removed(tmp_path):
    """A writer killed between create and rename leaves x.<pid>.tmp; the
    next write removes those older than a minute (a younger one may be a
    writer at work)."""
    import time
    old = tmp_path / "x.json.12345.tmp"
    young = tmp_path / "x.json.12346.tmp"
    other = tmp_path / "keep.txt"
    for f in (old, young, other):
        f.write_text("")
    past = time.time() - 2 * statefile.TMP_MAX_AGE
    os.utime(str(old), (past, past))
    os.utime(str(other), (past, past))
    statefile.write_atomically(str(tmp_path / "x.json"), "{}")
    assert sorted(os.listdir(str(tmp_path))) == ["keep.txt", "x.json", "x.json.12346.tmp"]


def kvm_binary_config(tmp_path, state):
    kvm = tmp_path / "kvm"
    kvm.write_bytes(b"\0QEMU emulator version 7.2.22\0")
    kvm.chmod(0o755)
    return ("[paths]\nstate_dir = %s\nganeti_run_dir = %s\nganeti_data_dir = %s\n"
            "[kvm_binary]\nprocess_names = no-such-process-cmk\nkvm_path = %s\n"
            % (state, tmp_path / "run", tmp_path / "lib", kvm))


def test_check_under_umask_000_creates_a_private_state_dir(tmp_path):
    """The agent may run the checks with any umask."""
    import subprocess
    from support import assert_valid_output, check_command
    state = tmp_path / "var" / "state"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "ganeti_cmk.cfg").write_text(kvm_binary_config(tmp_path, state))
    result = subprocess.run(
        ["sh", "-c", 'umask 000; exec "$@"', "sh"] + check_command("ganeti_kvm_binary"),
        env={"PATH": "/usr/bin:/bin", "MK_CONFDIR": str(tmp_path / "etc")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=60, cwd="/")
    out = assert_valid_output(result.stdout)[None]["KVM binary versions"]
    assert out["state"] == "0", out
    assert mode(state) == 0o700 and mode(tmp_path / "var") == 0o755
    assert mode(state / "kvm_binary_versions") == 0o600


def test_check_with_a_world_writable_state_dir_says_so_and_how_to_fix_it(tmp_path):
    """The verdict holds (versions are read afresh), but the service says
    that state_dir is not safe: WARN, with the fix."""
    from support import run_agent
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    (state / "kvm_binary_versions").write_text("planted")
    out = run_agent("ganeti_kvm_binary", tmp_path, kvm_binary_config(tmp_path, state))
    out = out["KVM binary versions"]
    assert out["state"] == "1", out
    assert out["summary"] == (
        "no qemu processes running; installed at %s: QEMU 7.2.22; version cache not used: "
        "%s: state_dir writable by other users (mode 0777): its files cannot be trusted; "
        "fix: chown root: %s && chmod 700 %s" % (tmp_path / "kvm", state, state, state))
    assert (state / "kvm_binary_versions").read_text() == "planted"
