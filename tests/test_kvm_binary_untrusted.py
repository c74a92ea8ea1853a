"""KVM binary versions: qemu processes of other users are untrusted input.

A user may start a qemu-named program, choose its argv (argv[0] naming
/proc/kmsg, a FIFO, a device, a huge log), delete its binary, or run it in
a user and mount namespace of its own where any file can be bind-mounted
over its path.  None of that may make the check (as root) open or stat a
file of that user's choosing, go UNKNOWN, or turn WARN or CRIT: such
processes are listed in the details, never inspected.  Real processes run
as nobody (uid 65534), real namespaces.
"""

import errno
import json
import os
import shutil
import subprocess
import time

import pytest

from support import needs_root, run_agent
from ganeti_cmk import procfs
from ganeti_cmk.checks import kvm_binary
from ganeti_cmk.localcheck import OK, WARN
from ganeti_cmk.qemu_version import VersionCache
from kvm_doubles import NAME, NAMES, Node, install, wait_for_pidfile, wait_until

SERVICE = "KVM binary versions"
NOBODY = 65534
NOT_INSPECTED = ("run by uid 65534: not inspected (only root's qemu processes and "
                 "Ganeti's instances are)")

pytestmark = needs_root


@pytest.fixture
def shared(public_dir):
    """A Node every user can reach, with a directory nobody owns."""
    n = Node(public_dir)
    n.user_dir = os.path.join(public_dir, "user")
    os.mkdir(n.user_dir)
    os.chown(n.user_dir, NOBODY, NOBODY)
    for d, _, _ in os.walk(public_dir):
        os.chmod(d, 0o755 if d != n.user_dir else 0o777)
    n.extra_pids = []
    yield n
    n.stop_all()
    for pid in n.extra_pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def users_copy(node, source):
    """The user's own copy of a qemu stand-in, named like our doubles."""
    path = os.path.join(node.user_dir, NAME)
    shutil.copyfile(source, path)
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    return path


def start_as_nobody(node, argv0, executable, name="ghost"):
    """A process of nobody running `executable` with argv[0] `argv0`."""
    pid_file = os.path.join(node.user_dir, name + ".pid")
    p = subprocess.Popen([argv0, "-name", name, "-pidfile", pid_file],
                         executable=executable, user=NOBODY, group=NOBODY,
                         extra_groups=[], stdin=subprocess.DEVNULL, cwd="/")
    node.procs.append(p)
    wait_for_pidfile(pid_file, p.pid)
    return p


def check(node, tmp_path, **settings):
    services = run_agent("ganeti_kvm_binary", tmp_path, node.config(**settings))
    assert list(services) == [SERVICE]
    return services[SERVICE]


def argv0_target(node, kind):
    """A path a hostile argv[0] names: /proc/kmsg, a FIFO, a root-only log,
    a device."""
    if kind.startswith("/"):
        return kind
    path = os.path.join(node.root, kind)
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        with open(path, "wb") as f:
            f.write(b"secret log line\n" * 1000)
        os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("kind", ["/proc/kmsg", "fifo", "log", "/dev/zero"])
def test_argv0_of_another_users_process_is_never_opened(shared, doubles, monkeypatch,
                                                        kind):
    """The file argv[0] names is neither stat'ed nor opened by the probe,
    even once the process's binary is deleted (then argv[0] was taken for
    the path to look for the installed version: a TypeError from /proc/kmsg,
    a root-only log read every minute)."""
    target = argv0_target(shared, kind)
    binary = users_copy(shared, doubles["old"])
    ghost = start_as_nobody(shared, target, binary)
    os.unlink(binary)
    touched = []

    def spy(function):
        def wrapped(path, *args, **kwargs):
            if isinstance(path, (str, bytes)) and os.fsdecode(path) == target:
                touched.append(function.__name__)
                raise PermissionError(errno.EACCES, "touched by the probe", path)
            return function(path, *args, **kwargs)
        return wrapped
    for name in ("open", "stat", "lstat"):
        monkeypatch.setattr(os, name, spy(getattr(os, name)))
    found = kvm_binary.probe("/proc", shared.run_dir, None,
                             procfs.names_matcher([NAMES]), VersionCache(None))
    monkeypatch.undo()
    assert touched == []
    result = kvm_binary.evaluate(found, 0, 86400, time.time())
    assert result.state == OK, result.summary
    assert result.summary == "no qemu processes running"
    assert result.details == ["not started by Ganeti: pid %d ghost, %s"
                              % (ghost.pid, NOT_INSPECTED)]
    assert [m.value for m in result.metrics] == [0, 0]


@pytest.mark.parametrize("kind", ["own path", "/proc/kmsg", "fifo"])
def test_users_deleted_qemu_copy_is_listed_not_judged(shared, doubles, tmp_path, kind):
    """A user's own qemu-named copy, started and deleted, next to a real
    instance: the instance decides, the user's process is only listed."""
    install(doubles["old"], shared.binary())
    shared.start("web1")
    binary = users_copy(shared, doubles["old"])
    ghost = start_as_nobody(shared, binary if kind == "own path"
                            else argv0_target(shared, kind), binary)
    os.unlink(binary)
    out = check(shared, tmp_path)
    assert out["state"] == "0", out
    assert out["summary"] == ("all 1 instance runs the installed KVM binary "
                              "(QEMU 7.2.15, Debian 1:7.2+dfsg-7+deb12u12)")
    assert out["details"][1:] == ["not started by Ganeti: pid %d ghost, %s"
                                  % (ghost.pid, NOT_INSPECTED)]
    assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 1}


def test_bind_mount_in_a_users_namespace_is_not_a_replaced_binary(shared, doubles,
                                                                  tmp_path):
    """In a user and mount namespace of its own, a user bind-mounts an old
    root-owned file over the path of the binary it runs: seen from the
    host through /proc/PID/root, "its" binary was replaced long ago (this
    gave CRIT "since 1532 d").  Not inspected: OK."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is needed")
    binary = users_copy(shared, doubles["old"])
    pid_file = os.path.join(shared.user_dir, "ns.pid")
    ready = os.path.join(shared.user_dir, "ns.ready")
    old_root_file = os.path.realpath("/bin/true")
    script = ('"$1" -name nsghost -pidfile "$2" & '
              'while [ ! -s "$2" ]; do sleep 0.01; done; '
              'mount --bind "$3" "$1" && touch "$4"; wait')
    p = subprocess.Popen(
        ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
         "unshare", "--user", "--map-root-user", "--mount",
         "sh", "-c", script, "sh", binary, pid_file, old_root_file, ready],
        stdin=subprocess.DEVNULL, cwd="/")
    shared.procs.append(p)
    try:
        wait_until(lambda: os.path.exists(ready) or p.poll() is not None,
                   "the bind mount in the user's namespace")
    finally:
        if os.path.exists(pid_file):
            with open(pid_file) as f:
                shared.extra_pids.append(int(f.read()))
    if not os.path.exists(ready):
        pytest.skip("unprivileged user namespaces are not available here")
    ghost = shared.extra_pids[0]
    # The trap is real: from the host, that process's path holds another file.
    assert os.stat("/proc/%d/root%s" % (ghost, binary)).st_ino == os.stat(old_root_file).st_ino
    out = check(shared, tmp_path, warn_after="0", crit_after="1s")
    assert out["state"] == "0", out
    assert out["details"] == ["not started by Ganeti: pid %d nsghost, %s"
                              % (ghost, NOT_INSPECTED)]


def test_pid_file_naming_another_users_process_is_not_the_instance(shared, doubles,
                                                                  tmp_path):
    """A stale pid file of web1 whose pid now belongs to a user's process
    with -name web1: not the instance (whose binary would look replaced)."""
    binary = users_copy(shared, doubles["old"])
    ghost = start_as_nobody(shared, binary, binary, name="web1")
    stale_pid_file(shared.pid_file("web1"), ghost.pid)
    with open(os.path.join(shared.kvm_dir, "conf", "web1.runtime"), "w") as f:
        json.dump([[binary], [], {"kvm_path": binary}, []], f)
    os.unlink(binary)
    out = check(shared, tmp_path)
    assert out["state"] == "0", out
    assert out["details"] == [
        "not started by Ganeti: pid %d web1, %s" % (ghost.pid, NOT_INSPECTED),
        "web1: the pid file names pid %d, a process of uid 65534, which is neither root "
        "nor the user Ganeti runs the instance as: not taken for the instance" % ghost.pid]
    assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 0}


@pytest.mark.parametrize("model", ["user", "pool"])
def test_instance_run_as_its_runas_user_is_checked(shared, doubles, tmp_path, model):
    """Ganeti's -runas (security_model user or pool): the instance's
    process belongs to that user and is judged like root's."""
    install(doubles["old"], shared.binary())
    ghost = start_as_nobody(shared, shared.binary(), shared.binary(), name="web1")
    with open(shared.pid_file("web1"), "w") as f:
        f.write("%d\n" % ghost.pid)
    hvparams = {"kvm_path": shared.binary(), "security_model": model,
                "security_domain": "nobody" if model == "user" else ""}
    with open(os.path.join(shared.kvm_dir, "conf", "web1.runtime"), "w") as f:
        json.dump([[shared.binary()], [], hvparams, []], f)
    if model == "pool":
        os.mkdir(os.path.join(shared.kvm_dir, "uid"))
        with open(os.path.join(shared.kvm_dir, "uid", "web1"), "w") as f:
            f.write("%d" % NOBODY)
    install(doubles["new"], shared.binary())
    out = check(shared, tmp_path)
    assert out["state"] == str(int(WARN)), out
    assert out["summary"].startswith("1 of 1 instance runs a replaced KVM binary: web1 ")


def stale_pid_file(path, pid):
    """A pid file left behind an hour ago whose pid a process got since."""
    with open(path, "w") as f:
        f.write("%d\n" % pid)
    past = time.time() - 3600
    os.utime(path, (past, past))


def test_a_process_older_than_its_pid_file_is_the_instance_whoever_it_runs_as(
        shared, doubles):
    """After a security_model change and a soft reboot qemu runs as a user
    the runtime file does not name; the pid file root wrote after it
    started still makes it the instance (a stale one would be older)."""
    from ganeti_cmk import ganeti
    binary = users_copy(shared, doubles["old"])
    ghost = start_as_nobody(shared, binary, binary, name="web1")
    with open(shared.pid_file("web1"), "w") as f:
        f.write("%d\n" % ghost.pid)
    assert ganeti.running_instances("/proc", shared.run_dir) == {"web1": ghost.pid}
    stale_pid_file(shared.pid_file("web1"), ghost.pid)
    assert ganeti.running_instances("/proc", shared.run_dir) == {}


def test_running_instances_never_counts_another_users_process(shared, doubles):
    """The same rule for every check that asks which instances run (DRBD)."""
    from ganeti_cmk import ganeti
    binary = users_copy(shared, doubles["old"])
    ghost = start_as_nobody(shared, binary, binary, name="web1")
    stale_pid_file(shared.pid_file("web1"), ghost.pid)
    assert ganeti.running_instances("/proc", shared.run_dir) == {}
    hvparams = {"security_model": "user", "security_domain": "nobody"}
    with open(os.path.join(shared.kvm_dir, "conf", "web1.runtime"), "w") as f:
        json.dump([[binary], [], hvparams, []], f)
    assert ganeti.running_instances("/proc", shared.run_dir) == {"web1": ghost.pid}
