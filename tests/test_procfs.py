"""procfs readers against real processes (and a few /proc-like fakes)."""

import os
import signal
import subprocess

import pytest

from support import as_nobody, needs_root
from ganeti_cmk import procfs
from kvm_doubles import NAME, compile_library, install, wait_until

PROC = "/proc"


def test_own_process():
    pid = os.getpid()
    assert pid in procfs.pids(PROC)
    assert procfs.state(PROC, pid) == "R"
    assert "python" in procfs.cmdline(PROC, pid)[0]
    exe = procfs.exe(PROC, pid)
    assert exe.path == os.path.realpath("/proc/self/exe")
    assert not exe.deleted
    assert procfs.same_file(exe.stat, os.stat(exe.path))
    assert procfs.exe_name(PROC, pid) == os.path.basename(exe.path)


def test_stand_in_process(node, doubles):
    install(doubles["old"], node.binary())
    p = node.start("inst1")
    assert procfs.comm(PROC, p.pid) == NAME
    argv = procfs.cmdline(PROC, p.pid)
    assert argv[:3] == [node.binary(), "-name", "inst1"]
    assert procfs.state(PROC, p.pid) == "S"


def test_replaced_binary_is_deleted_with_the_old_inode(node, doubles):
    install(doubles["old"], node.binary())
    p = node.start("inst1")
    before = os.stat(node.binary())
    install(doubles["new"], node.binary())
    exe = procfs.exe(PROC, p.pid)
    assert exe.deleted and exe.path == node.binary()
    assert procfs.same_file(exe.stat, before)
    assert not procfs.same_file(exe.stat, os.stat(node.binary()))
    assert exe.stat.st_nlink == 0
    assert procfs.exe_name(PROC, p.pid) == NAME


def test_a_file_literally_named_deleted_is_not_deleted(node, doubles):
    path = node.binary(NAME + " (deleted)")
    install(doubles["old"], path)
    p = node.start("inst1", kvm_path=path)
    exe = procfs.exe(PROC, p.pid)
    assert exe.path == path and not exe.deleted
    install(doubles["new"], path)
    exe = procfs.exe(PROC, p.pid)
    assert exe.path == path and exe.deleted


def test_gone_process_gives_none():
    p = subprocess.Popen(["true"])
    p.wait()
    for reader in (procfs.comm, procfs.cmdline, procfs.state, procfs.exe,
                   procfs.exe_name, procfs.deleted_mappings, procfs.start_time):
        assert reader(PROC, p.pid) is None, reader


def test_zombie(node, doubles):
    install(doubles["old"], node.binary())
    p = node.start("inst1")
    os.kill(p.pid, signal.SIGKILL)
    # not waited for: a zombie until the fixture reaps it
    wait_until(lambda: procfs.state(PROC, p.pid) == "Z")
    assert procfs.cmdline(PROC, p.pid) == []
    assert procfs.exe(PROC, p.pid) is None
    assert procfs.comm(PROC, p.pid) == NAME


def test_start_time_until_the_process_exits(node, doubles):
    install(doubles["old"], node.binary())
    before = procfs.boot_time()
    wait_until(lambda: procfs.boot_time() > before + 0.05, "a clock tick or more")
    p = node.start("inst1")
    started = procfs.start_time(PROC, p.pid)
    assert before < started <= procfs.boot_time()
    with open("/proc/%d/stat" % p.pid) as f:  # field 22, counted by hand
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    assert started == ticks / os.sysconf("SC_CLK_TCK")
    assert procfs.start_time(PROC, os.getpid()) < before
    os.kill(p.pid, signal.SIGKILL)
    wait_until(lambda: procfs.state(PROC, p.pid) == "Z")
    assert procfs.start_time(PROC, p.pid) is None  # a zombie has exited
    p.wait()
    assert procfs.start_time(PROC, p.pid) is None


def test_kernel_thread_has_no_exe():
    kthreadd = [pid for pid in procfs.pids(PROC) if procfs.comm(PROC, pid) == "kthreadd"]
    if not kthreadd:
        pytest.skip("no kthreadd visible here")
    assert procfs.exe(PROC, kthreadd[0]) is None
    assert procfs.cmdline(PROC, kthreadd[0]) == []


def test_state_with_parenthesis_in_comm(node, doubles):
    path = node.binary("a) Z (b")
    install(doubles["old"], path)
    p = node.start("inst1", kvm_path=path)
    assert procfs.comm(PROC, p.pid) == "a) Z (b"
    assert procfs.state(PROC, p.pid) == "S"


@needs_root
def test_exe_of_another_users_process_raises_permission_error(node, doubles):
    install(doubles["old"], node.binary())
    p = node.start("inst1")
    assert as_nobody(lambda: procfs.exe(PROC, p.pid)) == "PermissionError"

    def comm_is_readable():
        assert procfs.comm(PROC, p.pid) == NAME
    assert as_nobody(comm_is_readable) is None


def test_disk_path_in_our_mount_namespace_is_the_path_itself(node, doubles):
    install(doubles["old"], node.binary())
    p = node.start("inst1")
    assert procfs.disk_path(PROC, p.pid, "/usr/bin/x") == "/usr/bin/x"


@needs_root
def test_chrooted_process_shows_host_paths(node, doubles, tmp_path):
    """qemu -chroot chroots after start: exe stays a host path and
    /proc/PID/root/<path> does not exist, so the host path is the one."""
    jail = tmp_path / "jail"
    jail.mkdir()
    install(doubles["old"], node.binary())
    p = node.start("inst1", extra=["-chroot", str(jail)])
    assert os.readlink("/proc/%d/root" % p.pid) == str(jail)
    exe = procfs.exe(PROC, p.pid)
    assert exe.path == node.binary()
    assert not os.path.exists("/proc/%d/root%s" % (p.pid, exe.path))
    assert procfs.same_file(procfs.disk_stat(PROC, p.pid, exe.path), exe.stat)


@needs_root
def test_other_mount_namespace_uses_proc_pid_root(node, doubles):
    """A tmpfs mounted over the bin dir in the process's own namespace
    hides a different file at the same path: only /proc/PID/root sees it."""
    install(doubles["old"], node.binary())
    p = node.spawn_in_own_mount_namespace("ns1", doubles["new"])
    exe = procfs.exe(PROC, p.pid)
    assert exe.path == node.binary() and not exe.deleted
    assert procfs.disk_path(PROC, p.pid, exe.path) == "/proc/%d/root%s" % (
        p.pid, exe.path)
    assert procfs.same_file(procfs.disk_stat(PROC, p.pid, exe.path), exe.stat)
    assert not procfs.same_file(os.stat(node.binary()), exe.stat)


def test_disk_stat_of_a_path_that_cannot_be_a_file_is_none(tmp_path):
    """A symlink loop, a NUL byte or a file used as a directory: no file
    there (for this process), not an error."""
    loop = str(tmp_path / "loop")
    os.symlink(loop, loop)
    (tmp_path / "file").write_text("")
    pid = os.getpid()
    for path in (loop, str(tmp_path / "k\0vm"), str(tmp_path / "file" / "kvm"),
                 str(tmp_path / "missing")):
        assert procfs.disk_stat(PROC, pid, path) is None, path


@needs_root
def test_disk_stat_not_permitted_raises(tmp_path):
    """PermissionError is the caller's to report ("run as root")."""
    (tmp_path / "closed").mkdir(mode=0o700)
    (tmp_path / "closed" / "kvm").write_text("")
    os.chmod(str(tmp_path), 0o755)
    assert as_nobody(lambda: procfs.disk_stat(
        PROC, os.getpid(), str(tmp_path / "closed" / "kvm"))) == "PermissionError"


def test_deleted_mappings(node, doubles, public_dir, tmp_path):
    """A replaced preloaded library shows up; one under /tmp is ignored."""
    lib = compile_library(public_dir)
    tmp_lib = compile_library(str(tmp_path), "libcmktmp.so.1")
    install(doubles["old"], node.binary())
    env = dict(os.environ, LD_PRELOAD="%s:%s" % (lib, tmp_lib))
    p = node.start("inst1", env=env)
    assert procfs.deleted_mappings(PROC, p.pid) == {}
    install(lib, lib)
    install(tmp_lib, tmp_lib)
    install(doubles["new"], node.binary())
    found = procfs.deleted_mappings(PROC, p.pid)
    assert list(found) == [lib]  # the exe is in /tmp too
    assert sorted(procfs.deleted_mappings(PROC, p.pid, ignore=())) == sorted(
        [lib, tmp_lib, node.binary()])
    assert os.readlink("/proc/%d/map_files/%s" % (p.pid, found[lib])) == lib + " (deleted)"


@needs_root
def test_mapped_stat_is_the_unlinked_inode(node, doubles, public_dir):
    lib = compile_library(public_dir)
    install(doubles["old"], node.binary())
    p = node.start("inst1", env=dict(os.environ, LD_PRELOAD=lib))
    before = os.stat(lib)
    os.unlink(lib)
    addresses = procfs.deleted_mappings(PROC, p.pid)[lib]
    st = procfs.mapped_stat(PROC, p.pid, addresses)
    assert procfs.same_file(st, before) and st.st_nlink == 0
    assert procfs.mapped_stat(PROC, p.pid, "1000-2000") is None  # no such mapping
    p.kill()
    p.wait()
    assert procfs.mapped_stat(PROC, p.pid, addresses) is None


def test_readers_work_on_a_fake_proc_tree(tmp_path):
    """The proc root is a parameter: a /proc-like tree in a temp dir."""
    proc = tmp_path / "proc"
    pid_dir = proc / "42"
    pid_dir.mkdir(parents=True)
    (proc / "self").mkdir()
    (pid_dir / "comm").write_bytes(b"kvm\n")
    (pid_dir / "cmdline").write_bytes(b"/usr/bin/kvm\0-name\0evil\xff\nx\0")
    (pid_dir / "stat").write_bytes(b"42 (kvm) S 1 42 42 0 -1")
    (pid_dir / "maps").write_bytes(
        b"55d0-55d1 r-xp 00000000 fe:00 123  /usr/lib/libx.so.1 (deleted)\n"
        b"55d1-55d2 rw-p 00000000 fe:00 123  /usr/lib/liby.so.1 (deleted)\n"
        b"55d2-55d3 r-xs 00000000 00:01 9    /memfd:x (deleted)\n"
        b"55d3-55d4 r-xp 00000000 00:00 0    [vdso]\n")
    (proc / "7").mkdir()
    (proc / "sys").mkdir()
    assert sorted(procfs.pids(str(proc))) == [7, 42]
    assert procfs.comm(str(proc), 42) == "kvm"
    assert procfs.cmdline(str(proc), 42) == ["/usr/bin/kvm", "-name", "evil\ufffd\nx"]
    assert procfs.state(str(proc), 42) == "S"
    assert procfs.deleted_mappings(str(proc), 42) == {"/usr/lib/libx.so.1": "55d0-55d1"}
    assert procfs.exe(str(proc), 42) is None  # no exe link: like a kernel thread
    assert procfs.disk_path(str(proc), 42, "/usr/bin/kvm") == "%s/42/root/usr/bin/kvm" % proc


def test_printable():
    assert procfs.printable(os.fsdecode(b"/opt/q\xffemu")) == "/opt/q\ufffdemu"


def test_real_mounts_and_meminfo():
    mounts = procfs.mounts(PROC)
    assert ("/proc", "proc") in [(m[0], m[1]) for m in mounts]
    info = procfs.meminfo(PROC)
    assert info["MemTotal"] > 0 and "HugePages_Total" in info


def test_mounts_decode_escapes(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mounts").write_bytes(
        b"none /mnt/a\\040b\\134c hugetlbfs rw,pagesize=2M 0 0\nshort line\n")
    assert procfs.mounts(str(tmp_path)) == [
        ("/mnt/a b\\c", "hugetlbfs", {"rw": "", "pagesize": "2M"})]


def test_a_mount_table_over_the_limit_is_refused_not_cut(tmp_path):
    # Cut, the mounts after the limit (a hugetlbfs among them) would be
    # missing and a mem_path there would look like a plain directory.
    (tmp_path / "self").mkdir()
    line = b"tmpfs /run/user/%d tmpfs rw 0 0\n"
    table = b"".join(line % i for i in range(700000))
    assert len(table) > procfs.MOUNTS_MAX
    (tmp_path / "self" / "mounts").write_bytes(
        table + b"none /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n")
    with pytest.raises(OSError) as e:
        procfs.mounts(str(tmp_path))
    assert "larger than" in str(e.value)
