"""State files are replaced atomically and never through a planted link."""

import os

import pytest

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
