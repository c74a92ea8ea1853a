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
