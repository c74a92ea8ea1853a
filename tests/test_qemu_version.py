"""Reading the embedded QEMU version string, and its cache."""

import io
import os
import shutil

import pytest

from ganeti_cmk import qemu_version
from ganeti_cmk.qemu_version import CHUNK, Version, VersionCache, scan

REAL = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright"


def scan_bytes(data):
    return scan(io.BytesIO(data))


def test_debian_literal():
    v = scan_bytes(b"\0junk\0" + REAL.encode() + b"\0more")
    assert v == Version("7.2.22", "Debian 1:7.2+dfsg-7+deb12u18+b3")
    assert v.full() == "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"


@pytest.mark.parametrize("literal, number, package", [
    (b"QEMU emulator version 2.1.2 (Debian 1:2.1+dfsg-12+deb8u6), Copyright", "2.1.2",
     "Debian 1:2.1+dfsg-12+deb8u6"),
    (b"QEMU emulator version 8.2.2\nCopyright", "8.2.2", None),
    (b"QEMU emulator version 6.2.0(qemu-kvm-6.2.0-11.el9)\n", "6.2.0", "qemu-kvm-6.2.0-11.el9"),
])
def test_other_shapes(literal, number, package):
    assert scan_bytes(b"x" * 100 + literal + b"\0") == Version(number, package)


def test_no_literal_is_unknown_not_an_error():
    assert scan_bytes(b"") is None
    assert scan_bytes(b"QEMU emulator version \0 nothing") is None
    assert scan_bytes(b"\x7fELF" + b"\0" * 5000) is None


def test_first_valid_literal_wins():
    assert scan_bytes(b"QEMU emulator version %s\0QEMU emulator version 1.0\0") == Version("1.0")


@pytest.mark.parametrize("offset", [0, CHUNK - 200, CHUNK - 30, CHUNK - 10,
                                    CHUNK - 1, CHUNK, 3 * CHUNK - 40])
def test_literal_across_chunk_boundaries(offset):
    data = b"\0" * offset + REAL.encode() + b"\0" * 50
    assert scan_bytes(data).full() == "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"


def test_literal_at_the_very_end():
    assert scan_bytes(b"\0" * (CHUNK - 5) + b"QEMU emulator version 9.0.1") == Version("9.0.1")


@pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-system-x86_64"),
                    reason="qemu-system-x86 is not installed")
def test_the_installed_qemu_binary():
    with open("/usr/bin/qemu-system-x86_64", "rb") as f:
        v = scan(f)
    assert v is not None and v.number[0].isdigit()


def test_cache_reads_each_identity_once(tmp_path):
    binary = tmp_path / "qemu"
    binary.write_bytes(b"\0" + REAL.encode())
    state = str(tmp_path / "state")
    cache = VersionCache(state)
    st = os.stat(str(binary))
    for _ in range(100):
        assert cache.get(str(binary), st).number == "7.2.22"
    assert cache.reads == 1
    cache.save()
    again = VersionCache(state)
    assert again.get(str(binary), st).number == "7.2.22"
    assert again.reads == 0


def cache_lines(state):
    with open(os.path.join(state, qemu_version.CACHE_FILE)) as f:
        return f.read().splitlines()


def test_cache_keeps_only_what_was_used(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(REAL.encode())
    b.write_bytes(b"no version here")
    state = str(tmp_path / "state")
    cache = VersionCache(state)
    cache.get(str(a), os.stat(str(a)))
    assert cache.get(str(b), os.stat(str(b))) is None
    cache.save()
    assert sorted(cache_lines(state)) == sorted([
        qemu_version.identity(os.stat(str(a))) + "\t7.2.22\tDebian 1:7.2+dfsg-7+deb12u18+b3",
        qemu_version.identity(os.stat(str(b)))])
    cache = VersionCache(state)
    assert cache.get(str(b), os.stat(str(b))) is None
    assert cache.reads == 0
    cache.save()
    assert cache_lines(state) == [qemu_version.identity(os.stat(str(b)))]


def test_version_without_package_round_trips(tmp_path):
    binary = tmp_path / "qemu"
    binary.write_bytes(b"QEMU emulator version 8.2.2\n")
    st = os.stat(str(binary))
    cache = VersionCache(str(tmp_path))
    cache.get(str(binary), st)
    cache.save()
    again = VersionCache(str(tmp_path))
    assert again.get(str(binary), st) == Version("8.2.2") and again.reads == 0


def test_a_changed_file_is_read_again(tmp_path):
    binary = tmp_path / "qemu"
    binary.write_bytes(REAL.encode())
    cache = VersionCache(str(tmp_path))
    old = os.stat(str(binary))
    cache.get(str(binary), old)
    tmp = tmp_path / "new"
    tmp.write_bytes(REAL.replace("7.2.22", "7.2.23").encode())
    os.rename(str(tmp), str(binary))
    new = os.stat(str(binary))
    assert cache.get(str(binary), new).number == "7.2.23"
    with pytest.raises(FileNotFoundError):  # the old identity is no longer there
        VersionCache(None).get(str(binary), old)


@pytest.mark.parametrize("content", ["{", "[1, 2]\n", "a:b\t1\t2\t3\t4\n", "\xff\x00\n",
                                     "1:2:3:4\t5\t6\t7\n"])
def test_corrupt_cache_is_ignored(tmp_path, content):
    (tmp_path / qemu_version.CACHE_FILE).write_text(content, errors="surrogateescape")
    binary = tmp_path / "qemu"
    binary.write_bytes(REAL.encode())
    st = os.stat(str(binary))
    cache = VersionCache(str(tmp_path))
    assert cache.get(str(binary), st).number == "7.2.22"
    assert cache.reads == 1
    cache.save()
    assert VersionCache(str(tmp_path)).get(str(binary), st).number == "7.2.22"


@pytest.mark.parametrize("planted", ["symlink to /dev/zero", "fifo", "too long"])
def test_planted_cache_is_not_read_and_is_replaced(tmp_path, planted):
    """A cache that is a link to /dev/zero (unbounded), a FIFO (blocks) or
    too long is ignored without reading it, and replaced on save."""
    from test_statefile import fails_instead_of_hanging
    path = tmp_path / qemu_version.CACHE_FILE
    if planted == "fifo":
        os.mkfifo(str(path))
    elif planted == "too long":
        path.write_text("1:2:3:4\t5\n" * (qemu_version.CACHE_MAX // 10 + 1))
    else:
        os.symlink("/dev/zero", str(path))
    binary = tmp_path / "qemu"
    binary.write_bytes(REAL.encode())
    messages = []
    with fails_instead_of_hanging():
        cache = VersionCache(str(tmp_path), messages.append)
    assert any("unreadable" in m for m in messages), messages
    assert cache.get(str(binary), os.stat(str(binary))).number == "7.2.22"
    cache.save()
    assert not path.is_symlink() and cache_lines(str(tmp_path)) == [
        qemu_version.identity(os.stat(str(binary))) + "\t7.2.22\tDebian 1:7.2+dfsg-7+deb12u18+b3"]


def test_unwritable_state_dir_only_costs_reads(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    binary = tmp_path / "qemu"
    binary.write_bytes(REAL.encode())
    messages = []
    cache = VersionCache(str(blocker / "state"), messages.append)
    assert cache.get(str(binary), os.stat(str(binary))).number == "7.2.22"
    cache.save()
    assert any("cannot write version cache" in m for m in messages)


def test_only_root_or_our_own_files_are_read(tmp_path):
    binary = tmp_path / "qemu"
    binary.write_bytes(REAL.encode())
    cache = VersionCache(str(tmp_path))
    assert cache.get(str(binary), os.stat(str(binary))).number == "7.2.22"
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    os.chown(str(binary), 65534, 65534)
    st = os.stat(str(binary))  # chown changes ctime only: same identity
    cache = VersionCache(str(tmp_path))
    v = cache.get(str(binary), st)
    assert v.full() == "version not read (owned by uid 65534)" and cache.reads == 0
    assert v != cache.get(str(binary), st)  # two unread files are not the same version
    cache.save()  # nothing learnt, nothing kept
    assert not os.path.exists(str(tmp_path / qemu_version.CACHE_FILE))


def test_fifo_is_not_read(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        VersionCache(None).get(fifo, os.stat(fifo))


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_compiled_stand_in_carries_its_version(tmp_path):
    from kvm_doubles import NEW, compile_double
    path = compile_double(str(tmp_path), NEW)
    with open(path, "rb") as f:
        assert scan(f) == Version(*NEW)


def test_a_regular_file_that_would_block_is_an_error_not_a_type_error():
    """/proc/kmsg is a "regular" file whose non-blocking read returns
    nothing yet (None through a buffered reader)."""
    class WouldBlock(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            return None
    with pytest.raises(BlockingIOError):
        scan(io.BufferedReader(WouldBlock()))
