"""The "KVM binary versions" check against real processes.

Instances are compiled qemu stand-ins (kvm_doubles) started with Ganeti's
argv and pid files in a temp run dir; binaries are replaced as dpkg does.
process_names in the test config matches only the stand-ins, so qemu
processes elsewhere on the machine do not disturb the results.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from support import (SYSTEM_PYTHON, as_nobody, assert_valid_output, check_command, needs_root, run_agent,
                     run_script)
from ganeti_cmk import procfs
from ganeti_cmk.checks import kvm_binary
from ganeti_cmk.localcheck import CRIT, MAX_TEXT, OK, UNKNOWN, WARN
from ganeti_cmk.qemu_version import Version, VersionCache
from kvm_doubles import (NAME, NAMES, NEW, OLD, Node, compile_library, install,
                         install_symlink, wait_until)

SERVICE = "KVM binary versions"
PROC = "/proc"


def check(node, tmp_path, **settings):
    """Run the check as the agent does; the fields of our service."""
    services = run_agent("ganeti_kvm_binary", tmp_path, node.config(**settings))
    assert list(services) == [SERVICE]
    return services[SERVICE]


def probe(node, **kwargs):
    """The probe in this process, with the test's process names."""
    cache = VersionCache(node.state_dir)
    return kvm_binary.probe(PROC, node.run_dir, kwargs.pop("kvm_path", None),
                            procfs.names_matcher([NAMES]), cache, **kwargs)


def test_no_qemu_processes(node, tmp_path):
    out = check(node, tmp_path, kvm_path="/nonexistent/kvm")
    assert out["state"] == "0"
    assert out["summary"] == "no qemu processes running"
    assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 0}


def test_no_processes_names_the_installed_version(node, doubles, tmp_path):
    install(doubles["new"], node.binary())
    out = check(node, tmp_path, kvm_path=node.binary())
    assert out["summary"] == ("no qemu processes running; installed at %s: QEMU %s, %s"
                              % ((node.binary(),) + NEW))


def test_all_instances_current(node, doubles, tmp_path):
    install(doubles["new"], node.binary())
    for name in ("web1", "db3"):
        node.start(name)
    out = check(node, tmp_path)
    assert out["state"] == "0"
    assert out["summary"] == ("all 2 instances run the installed KVM binary "
                              "(QEMU 7.2.18, Debian 1:7.2+dfsg-7+deb12u15)")
    assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 2}
    assert len(out["details"]) == 2 and out["details"][0].startswith("db3: pid ")


def test_replaced_binary_names_the_instances(node, doubles, tmp_path):
    install(doubles["old"], node.binary())
    procs = {name: node.start(name) for name in ("web1", "db3")}
    install(doubles["new"], node.binary())
    node.start("app1")  # started after the upgrade: current
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert out["summary"].startswith(
        "2 of 3 instances run a replaced KVM binary: db3, web1 (running 7.2.15, "
        "installed 7.2.18 since ")
    assert out["summary"].endswith("): live-migrate or restart them")
    assert out["metrics"] == {"kvm_outdated": 2, "kvm_processes": 3}
    web1 = [d for d in out["details"] if d.startswith("web1:")][0]
    assert web1.startswith("web1: pid %d, %s (deleted), running 7.2.15 (%s), "
                           "installed 7.2.18 (%s) since " % (
                               procs["web1"].pid, node.binary(), OLD[1], NEW[1]))
    assert out["details"][-1] == ("levels: WARN at once, CRIT 7 d after the new "
                                  "binary was installed")


def test_levels(node, doubles, tmp_path):
    install(doubles["old"], node.binary())
    node.start("web1")
    install(doubles["new"], node.binary())
    out = check(node, tmp_path, crit_after="0")
    assert out["state"] == "2"
    out = check(node, tmp_path, warn_after="1h", crit_after="2h")
    assert out["state"] == "0"
    assert out["summary"].endswith("live-migrate or restart it (WARN after 1 h)")
    assert out["metrics"]["kvm_outdated"] == 1


def test_age_counts_from_the_first_replacement(node, doubles):
    """An instance left on u12 through the u15 and u18 upgrades has been
    outdated since u15: not since u18, not since a later chmod, and not
    since the build time dpkg keeps as mtime."""
    built = time.time() - 30 * 86400
    install(doubles["old"], node.binary(), mtime=built)
    p = node.start("web1")
    install(doubles["new"], node.binary(), mtime=built)  # u15
    first = os.stat("/proc/%d/exe" % p.pid).st_ctime  # the rename unlinked it
    wait_until(lambda: time.time() > first + 0.1, "the clock to move on")
    install(doubles["new"], node.binary(), mtime=built + 86400)  # u18
    os.chmod(node.binary(), 0o755)  # dpkg-statoverride, Puppet
    assert os.stat(node.binary()).st_ctime > first
    [web1] = probe(node).processes
    assert web1.replaced and web1.since == first


def test_evaluate_ages_by_the_install_time():
    p = kvm_binary.Process(10, "web1", True, "/usr/bin/kvm")
    p.exe = procfs.Exe("/usr/bin/qemu-system-x86_64", True, None)
    p.replaced, p.running, p.installed = True, Version(*OLD), Version(*NEW)
    p.installed_path, p.since = p.exe.path, 1000.0
    found = kvm_binary.Probe()
    found.processes = [p]
    day = 86400
    assert kvm_binary.evaluate(found, 0, 7 * day, 1000 + 2 * 3600).state == WARN
    assert kvm_binary.evaluate(found, 3 * 3600, 7 * day, 1000 + 2 * 3600).state == OK
    result = kvm_binary.evaluate(found, 0, 7 * day, 1000 + 8 * day)
    assert result.state == CRIT
    assert result.summary == ("1 of 1 instance runs a replaced KVM binary: web1 "
                              "(running 7.2.15, installed 7.2.18 since 8 d): "
                              "live-migrate or restart it")


def outdated(pid, name, running, managed=True, since=1000.0):
    p = kvm_binary.Process(pid, name, managed, "/usr/bin/kvm")
    p.exe = procfs.Exe("/usr/bin/qemu-system-x86_64", True, None)
    p.replaced, p.running, p.installed = True, Version(running), Version("7.2.18")
    p.installed_path, p.since = p.exe.path, since
    return p


def evaluate(processes, now=1000 + 3600):
    found = kvm_binary.Probe()
    found.processes = processes
    return kvm_binary.evaluate(found, 0, 7 * 86400, now)


def test_long_summary_keeps_the_count_and_the_remedy():
    """36 instances on 3 old versions and 3 qemu processes of others: the
    summary names some, says how many and what to do; details list all."""
    procs = [outdated(1000 + 100 * g + i, "vm%02d-g%d.prod.example.com" % (i, g), run)
             for g, run in enumerate(["7.2.11", "7.2.13", "7.2.15"]) for i in range(12)]
    assert len(evaluate(procs).summary) <= MAX_TEXT  # 10 names fit
    procs += [outdated(9000 + i, "x" * 150, "7.2.15", managed=False) for i in range(3)]
    result = evaluate(procs)
    assert len(result.summary) <= MAX_TEXT  # 3 names each fit
    binary, others = result.summary.split("; 3 qemu processes not started by Ganeti run a "
                                          "replaced binary: ")
    assert binary.startswith("36 of 36 instances run a replaced KVM binary: "
                             "vm00-g0.prod.example.com, vm01-g0.prod.example.com, "
                             "vm02-g0.prod.example.com, 9 more (running 7.2.11, installed "
                             "7.2.18 since 1 h); 12 more (running 7.2.13, ")
    assert binary.endswith(": live-migrate or restart them")
    assert others.endswith(": restart them")
    assert len(result.details) == 36 + 3 + 1


def test_summary_too_long_even_with_a_few_names():
    procs = [outdated(10 + i, "%d-%s" % (i, "n" * 400), "7.2.%d" % i) for i in range(3)]
    result = evaluate(procs)
    assert result.summary == ("3 of 3 instances run a replaced KVM binary: "
                              "live-migrate or restart them")
    assert sum(d.startswith("%d-nnn" % i) for d in result.details for i in range(3)) == 3


def test_many_denied_processes_are_counted_not_all_listed():
    procs = [kvm_binary.Process(100 + i, None, False) for i in range(50)]
    for p in procs:
        p.denied = True
    found = kvm_binary.Probe()
    found.processes, found.euid = procs, 65534
    result = kvm_binary.evaluate(found, 0, 1, time.time())
    assert result.summary == ("cannot inspect 50 qemu processes (pid 100, 101, 102, 103, "
                              "104, 105, 106, 107, 108, 109, 40 more): permission denied: "
                              "run the check as root")


def test_remedy_for_processes_ganeti_did_not_start_is_restart():
    """Ganeti cannot live-migrate what it did not start."""
    assert evaluate([outdated(42, "ghost", "7.2.15", managed=False)]).summary == (
        "1 qemu process not started by Ganeti runs a replaced binary: pid 42 ghost "
        "(running 7.2.15, installed 7.2.18 since 1 h): restart it")
    assert evaluate([outdated(42, "ghost", "7.2.15", managed=False),
                     outdated(43, "web1", "7.2.15")]).summary == (
        "1 of 1 instance runs a replaced KVM binary: web1 (running 7.2.15, installed "
        "7.2.18 since 1 h): live-migrate or restart it; 1 qemu process not started by "
        "Ganeti runs a replaced binary: pid 42 ghost (running 7.2.15, installed 7.2.18 "
        "since 1 h): restart it")


def test_version_texts_say_just_enough():
    def text(running, installed):
        p = kvm_binary.Process(1, "x", True)
        p.replaced, p.running, p.installed, p.installed_path = True, running, installed, "/k"
        return kvm_binary._versions_text(p)
    u18 = Version("7.2.22", "Debian 1:7.2+dfsg-7+deb12u18")
    b3 = Version("7.2.22", "Debian 1:7.2+dfsg-7+deb12u18+b3")
    assert text(u18, b3) == "running %s, installed %s" % (u18.full(), b3.full())
    assert text(b3, b3) == "7.2.22 reinstalled"
    assert text(None, b3) == "running version unknown, installed 7.2.22"


def test_symlinked_kvm_path(node, doubles, tmp_path):
    """/usr/bin/kvm -> qemu-system-x86_64: comm kvm, exe the real binary;
    the upgrade replaces the symlink too."""
    kvm = node.binary("kvm")
    install(doubles["old"], node.binary())
    install_symlink(NAME, kvm)
    p = node.start("web1", kvm_path=kvm)
    assert procfs.comm(PROC, p.pid) == "kvm"
    assert check(node, tmp_path)["state"] == "0"
    install(doubles["new"], node.binary())
    install_symlink(NAME, kvm)
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert out["summary"].startswith("1 of 1 instance runs a replaced KVM binary: web1 "
                                     "(running 7.2.15, installed 7.2.18")
    assert out["details"][0].endswith(", started as %s" % kvm)


def test_wrapper_script_execing_kvm_real(node, doubles, tmp_path):
    wrapper, real = node.binary("kvm-wrapper"), node.binary("kvm.real")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nexec %s "$@"\n' % real)
    os.chmod(wrapper, 0o755)
    install(doubles["old"], real)
    node.start("web1", kvm_path=wrapper)
    out = check(node, tmp_path)
    assert out["state"] == "0" and "QEMU 7.2.15" in out["summary"]
    install(doubles["new"], real)
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (running 7.2.15, installed 7.2.18" in out["summary"]
    assert "%s (deleted)" % real in out["details"][0]
    assert out["details"][0].endswith("started as %s" % wrapper)


def test_per_instance_kvm_path(node, doubles, tmp_path):
    a, b = node.binary("a-" + NAME), node.binary("b-" + NAME)
    install(doubles["old"], a)
    install(doubles["old"], b)
    node.start("on-a", kvm_path=a)
    node.start("on-b", kvm_path=b)
    install(doubles["new"], a)
    out = check(node, tmp_path)
    assert out["summary"].startswith("1 of 2 instances runs a replaced KVM binary: on-a ")
    assert out["metrics"] == {"kvm_outdated": 1, "kvm_processes": 2}


def test_reused_pid_is_never_blamed(node, doubles, tmp_path):
    """web9's pid file names a process that is something else now."""
    install(doubles["old"], node.binary())
    other = node.start("other", runtime=False, pid_file=str(tmp_path / "other.pid"))
    with open(node.pid_file("web9"), "w") as f:
        f.write("%d\n" % other.pid)
    install(doubles["new"], node.binary())
    out = check(node, tmp_path)
    assert "web9" not in out["summary"]
    assert out["summary"].startswith(
        "1 qemu process not started by Ganeti runs a replaced binary: pid %d other "
        "(running 7.2.15, installed 7.2.18" % other.pid)
    assert ("web9: the pid file names pid %d, another process (-name other): the pid "
            "was reused" % other.pid) in out["details"]


def test_stale_pid_files(node, doubles, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, content in (("gone", "%d\n" % dead.pid), ("junk", "x\n")):
        with open(node.pid_file(name), "w") as f:
            f.write(content)
    out = check(node, tmp_path)
    assert out["state"] == "0" and out["summary"] == "no qemu processes running"
    assert out["details"] == [
        "gone: the pid file names pid %d, which is not running (stale pid file)" % dead.pid,
        "junk: the pid file holds no process id"]


def test_zombie_is_not_an_instance(node, doubles, tmp_path):
    install(doubles["old"], node.binary())
    p = node.start("web1")
    install(doubles["new"], node.binary())
    os.kill(p.pid, signal.SIGKILL)  # not reaped: a zombie named like qemu
    wait_until(lambda: procfs.state(PROC, p.pid) == "Z")
    out = check(node, tmp_path)
    assert out["state"] == "0"
    assert out["metrics"]["kvm_processes"] == 0
    assert out["details"] == ["web1: the pid file names pid %d, a zombie (the "
                              "instance has exited)" % p.pid]


def test_process_exiting_during_the_scan(node, doubles, monkeypatch):
    """Instances and other qemu processes that exit after they were listed
    are skipped, not reported and not an error."""
    install(doubles["old"], node.binary())
    web1, web2 = node.start("web1"), node.start("web2")
    loner = node.start("loner", runtime=False, pid_file=node.root + "/loner.pid")
    install(doubles["new"], node.binary())

    def kill(p):
        p.kill()
        p.wait()

    real_pids, real_exe = procfs.pids, procfs.exe

    def pids_then_kill(proc):
        found = real_pids(proc)
        kill(loner)
        return found

    def exe_then_kill(proc, pid):
        if pid == web2.pid and web2.poll() is None:
            kill(web2)
        return real_exe(proc, pid)

    monkeypatch.setattr(procfs, "pids", pids_then_kill)
    monkeypatch.setattr(procfs, "exe", exe_then_kill)
    found = probe(node)
    assert [p.name for p in found.processes] == ["web1"]
    assert found.stale == ["web2: pid %d exited during the scan" % web2.pid]
    result = kvm_binary.evaluate(found, 0, 86400, time.time())
    assert result.state == WARN and "web1 (running 7.2.15" in result.summary


def test_undecodable_path_is_not_shown_as_started_as_itself(node, doubles, tmp_path):
    """argv[0] decodes with U+FFFD, the exe link with a surrogate: the same
    path, so no ', started as <the same path>'."""
    odd = os.fsdecode(os.fsencode(node.bin) + b"/we\xffird")
    os.mkdir(odd)
    binary = os.path.join(odd, NAME)
    install(doubles["old"], binary)
    ghost = node.spawn([binary, "-name", "ghost", "-pidfile", node.root + "/g.pid"],
                       node.root + "/g.pid")
    install(doubles["new"], binary)
    out = check(node, tmp_path)
    assert out["summary"].startswith("1 qemu process not started by Ganeti runs a replaced "
                                     "binary: pid %d ghost (running 7.2.15" % ghost.pid)
    assert "started as" not in out["details"][0], out["details"][0]


@pytest.mark.parametrize("reaped", [True, False])
def test_process_exiting_while_its_disk_file_is_looked_up(node, doubles, monkeypatch,
                                                          reaped):
    """web1 exits (and is reaped, or stays a zombie) after its executable
    was read, while the file on disk is looked up from its mount namespace:
    it exited, its binary was not 'removed from disk'."""
    install(doubles["old"], node.binary())
    web1, web2 = node.start("web1"), node.start("web2")
    install(doubles["new"], node.binary())
    real_mount_ns, killed = procfs._mount_ns, []

    def mount_ns_then_exit(proc, pid):
        if pid == web1.pid and not killed:
            killed.append(web1.kill())
            if reaped:
                web1.wait()
            else:
                wait_until(lambda: procfs.state(PROC, web1.pid) == "Z")
        return real_mount_ns(proc, pid)

    monkeypatch.setattr(procfs, "_mount_ns", mount_ns_then_exit)
    found = probe(node)
    assert killed
    assert [p.name for p in found.processes] == ["web2"]
    assert found.stale == ["web1: pid %d exited during the scan" % web1.pid]


def test_process_younger_than_the_scan_is_not_judged(node, doubles, monkeypatch):
    """A pid reused during the scan belongs to a process that started
    after the scan began: not the one found (simulated by a scan that
    began before web1 started)."""
    install(doubles["old"], node.binary())
    before = procfs.boot_time()
    wait_until(lambda: procfs.boot_time() > before + 0.05, "a clock tick or more")
    web1 = node.start("web1")
    install(doubles["new"], node.binary())
    monkeypatch.setattr(procfs, "boot_time", lambda: before)
    found = probe(node)
    assert found.processes == []
    assert found.stale == ["web1: pid %d exited during the scan" % web1.pid]


def test_unknown_qemu_processes_are_reported_separately(node, doubles, tmp_path):
    install(doubles["new"], node.binary())
    node.start("web1")
    ghost = node.start("ghost", runtime=False, pid_file=node.root + "/ghost.pid")
    bare = node.spawn([node.binary(), "-pidfile", node.root + "/bare.pid"],
                      node.root + "/bare.pid")
    out = check(node, tmp_path)
    assert out["state"] == "0"
    assert out["summary"] == (
        "all 1 instance runs the installed KVM binary (QEMU 7.2.18, Debian "
        "1:7.2+dfsg-7+deb12u15); 2 qemu processes not started by Ganeti: "
        "pid %d ghost, pid %d (no -name)" % tuple(sorted([ghost.pid, bare.pid])))
    assert out["metrics"]["kvm_processes"] == 3


def test_started_through_a_symlink_is_found_by_the_real_name(node, doubles, tmp_path):
    """Like /usr/bin/kvm -> qemu-system-x86_64: comm is the link's name,
    the executable the real file, and that is what process_names match."""
    link = node.binary("cmkvm")
    install(doubles["old"], node.binary())
    install_symlink(NAME, link)
    p = node.spawn([link, "-name", "vm1", "-pidfile", node.root + "/vm1.pid"],
                   node.root + "/vm1.pid")
    assert procfs.comm(PROC, p.pid) == "cmkvm"
    out = check(node, tmp_path)
    assert out["summary"].endswith("not started by Ganeti: pid %d vm1" % p.pid)
    out = check(node, tmp_path, process_names="cmkvm")
    assert out["summary"] == "no qemu processes running; installed at %s: QEMU %s, %s" % (
        (node.binary(),) + OLD)


def test_default_process_names():
    matches = procfs.names_matcher(kvm_binary.DEFAULTS["process_names"].split())
    assert all(matches(n) for n in ("qemu-system-x86_64", "qemu-system-x86", "kvm",
                                    "qemu-kvm", "qemu-system-aarch64"))
    assert not any(matches(n) for n in ("kvm-pit/1234", "kvm.real", "qemu-img",
                                        "kvm-nx-lpage-re", "sleep"))
    assert not procfs.names_matcher([])("kvm")


def test_other_shell_patterns():
    matches = procfs.names_matcher(["qemu-system-x86_6?", "[kq]vm", "*-kvm-*"])
    assert all(matches(n) for n in ("qemu-system-x86_64", "kvm", "qvm", "my-kvm-1"))
    assert not any(matches(n) for n in ("qemu-system-x86_640", "xvm", "kvm-1"))


def test_denied_although_root():
    """Root can be refused too (here: pid 1 in another user namespace)."""
    p = kvm_binary.Process(1, None, False)
    p.denied = True
    found = kvm_binary.Probe()
    found.processes, found.euid = [p], 0
    result = kvm_binary.evaluate(found, 0, 1, time.time())
    assert result.state == UNKNOWN
    assert result.summary == ("cannot inspect 1 qemu process (pid 1): permission denied "
                              "although the check runs as root (a security module, or "
                              "another user namespace?)")
    found.euid = 65534
    assert kvm_binary.evaluate(found, 0, 1, time.time()).summary.endswith(
        "permission denied: run the check as root")


def test_hostile_names_stay_in_one_line(node, doubles, tmp_path):
    evil = 'evil\n0 "Fake" - ok'
    install(doubles["old"], node.binary())
    node.start(evil)
    node.start("x", runtime=False, pid_file=node.root + "/x.pid",
               extra=["-name", "also\r\n2 Fake2 - crit\\n|x=1"])
    install(doubles["new"], node.binary())
    proc = run_script("ganeti_kvm_binary", tmp_path=tmp_path,
                      config_text=node.config())
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 1
    services = assert_valid_output(proc.stdout)[None]
    assert list(services) == [SERVICE]
    assert services[SERVICE]["state"] == "1"
    summary = services[SERVICE]["summary"]
    assert 'evil 0 "Fake" - ok' in summary
    assert "also 2 Fake2 - crit/n|x=1" in summary
    assert services[SERVICE]["metrics"] == {"kvm_outdated": 2, "kvm_processes": 2}


@needs_root
def test_not_root_is_unknown_run_as_root(node, doubles, public_dir):
    """As nobody, /proc/PID/exe of root's processes is unreadable."""
    shared = Node(public_dir)
    install(doubles["old"], shared.binary())
    shared.start("web1")
    shared.start("ghost", runtime=False, pid_file=public_dir + "/ghost.pid")
    try:
        install(doubles["new"], shared.binary())
        for d, _, _ in os.walk(public_dir):
            os.chmod(d, 0o755)
        out = check_as_nobody(shared, public_dir)
        assert out["state"] == "3"
        assert "cannot inspect 2 qemu processes" in out["summary"]
        assert out["summary"].endswith("permission denied: run the check as root")
        assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 2}
        os.chmod(os.path.join(shared.kvm_dir, "pid"), 0o700)
        out = check_as_nobody(shared, public_dir)
        assert out["state"] == "3"
        assert out["summary"].startswith("cannot inspect 2 qemu processes")
        assert "cannot read Ganeti's pid files in %s" % os.path.join(
            shared.kvm_dir, "pid") in out["summary"]
    finally:
        shared.stop_all()


@needs_root
def test_hidden_processes_are_unknown_not_ok(public_dir):
    """/proc with hidepid shows a non-root user only its own processes."""
    proc = os.path.join(public_dir, "proc")
    os.makedirs(os.path.join(proc, "self"))

    def look():
        found = kvm_binary.probe(proc, os.path.join(public_dir, "run"), None,
                                 procfs.names_matcher([NAMES]), VersionCache(None))
        result = kvm_binary.evaluate(found, 0, 1, time.time())
        assert result.state == UNKNOWN
        assert result.summary == ("cannot see other users' processes (%s is mounted "
                                  "with hidepid): run the check as root" % proc)
    assert as_nobody(look) is None


def check_as_nobody_with_hidepid(node, directory, hidepid):
    """The check as nobody, with /proc mounted with hidepid=N (in a private
    mount namespace, at `<directory>/proc`); the fields of our service."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is needed")
    proc = os.path.join(directory, "proc%d" % hidepid)
    os.mkdir(proc)
    etc = tempfile.mkdtemp(dir=directory)
    os.chmod(etc, 0o755)
    with open(os.path.join(etc, "ganeti_cmk.cfg"), "w") as f:
        f.write(node.config().replace("[paths]\n", "[paths]\nproc = %s\n" % proc))
    script = ('mount -t proc -o hidepid=%d proc "$1" || exit 77; shift; exec "$@"' % hidepid)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", proc,
         "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        + check_command("ganeti_kvm_binary", SYSTEM_PYTHON, public=True),
        env={"PATH": "/usr/bin:/bin", "MK_CONFDIR": etc, "MK_VARDIR": etc},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
        universal_newlines=True, timeout=60)
    if result.returncode == 77:
        pytest.skip("cannot mount proc here: %s" % result.stderr.strip())
    assert result.returncode == 0, result.stderr
    services = assert_valid_output(result.stdout)[None]
    assert list(services) == [SERVICE]
    return services[SERVICE], proc


@needs_root
@pytest.mark.parametrize("hidepid", [1, 2])
def test_hidepid_is_unknown_run_as_root(doubles, public_dir, hidepid):
    """hidepid=1: other users' /proc/PID can be listed, not read; 2: not
    even listed.  Either way: run as root, and no instance is called stale."""
    shared = Node(public_dir)
    install(doubles["old"], shared.binary())
    web1 = shared.start("web1")
    try:
        install(doubles["new"], shared.binary())
        for d, _, _ in os.walk(public_dir):
            os.chmod(d, 0o755)
        out, proc = check_as_nobody_with_hidepid(shared, public_dir, hidepid)
        hidden = ("cannot see other users' processes (%s is mounted with hidepid): "
                  "run the check as root" % proc)
        assert out["state"] == "3", out
        if hidepid == 1:
            assert out["summary"] == ("cannot inspect 1 qemu process (pid %d): permission "
                                      "denied; %s" % (web1.pid, hidden))
            assert out["details"] == ["web1: pid %d: not inspected (permission denied)"
                                      % web1.pid]
            assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 1}
        else:
            assert out["summary"] == hidden
            assert out["details"] == []
            assert out["metrics"] == {"kvm_outdated": 0, "kvm_processes": 0}
    finally:
        shared.stop_all()


def check_as_nobody(node, directory):
    tmp = tempfile.mkdtemp(dir=directory)
    os.chmod(tmp, 0o755)
    from pathlib import Path
    services = run_agent("ganeti_kvm_binary", Path(tmp), node.config(), user=65534)
    return services[SERVICE]


@needs_root
def test_chrooted_instance(node, doubles, tmp_path):
    """-chroot: compared with the file at the host path (qemu chroots after
    it started), never reported as missing from the empty chroot."""
    jail = tmp_path / "jail"
    jail.mkdir()
    install(doubles["old"], node.binary())
    node.start("web1", extra=["-chroot", str(jail)])
    out = check(node, tmp_path)
    assert out["state"] == "0" and "QEMU 7.2.15" in out["summary"]
    install(doubles["new"], node.binary())
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (running 7.2.15, installed 7.2.18" in out["summary"]


@needs_root
def test_other_mount_namespace(node, doubles, tmp_path):
    """An instance in its own mount namespace whose binary path shows a
    different file than ours: judged by what it sees (/proc/PID/root)."""
    install(doubles["old"], node.binary())
    p = node.spawn_in_own_mount_namespace("ns1", doubles["new"])
    out = check(node, tmp_path)
    assert out["state"] == "0" and "QEMU 7.2.18" in out["summary"]
    # upgrade inside its namespace, through /proc/PID/root
    install(doubles["old"], "/proc/%d/root%s" % (p.pid, node.binary()))
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "ns1 (running 7.2.18, installed 7.2.15" in out["summary"]


def test_binary_removed_from_disk(node, doubles, tmp_path):
    install(doubles["old"], node.binary("qemu-old"))
    node.start("web1", kvm_path=node.binary("qemu-old"))
    os.unlink(node.binary("qemu-old"))
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (running 7.2.15, binary removed from disk since" in out["summary"]


def test_binary_path_now_a_symlink_loop(node, doubles, tmp_path):
    """Whatever is at the path now, the instance is reported, not the check
    failed (ELOOP)."""
    install(doubles["old"], node.binary())
    node.start("web1")
    install_symlink(node.binary(), node.binary())
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (running 7.2.15, binary removed from disk since" in out["summary"]


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "fifo", "deep JSON"])
def test_runtime_file_in_the_way(node, doubles, tmp_path, kind):
    """The instance is still reported, started as the cluster's kvm_path."""
    from test_ganeti_kvm import planted_runtime
    install(doubles["old"], node.binary())
    node.start("x")
    os.unlink(os.path.join(node.kvm_dir, "conf", "x.runtime"))
    planted_runtime(Path(node.run_dir), tmp_path, kind)
    install(doubles["new"], node.binary())
    out = check(node, tmp_path, kvm_path=node.binary("kvm"))
    assert out["state"] == "1", out
    assert out["summary"].startswith("1 of 1 instance runs a replaced KVM binary: x (running "
                                     "7.2.15, installed 7.2.18 since ")
    assert out["details"][0].endswith(", started as %s" % node.binary("kvm"))


@pytest.mark.parametrize("kvm_path", ["/usr/bin/k\u0000vm", "loop"])
def test_binary_removed_and_its_kvm_path_is_no_file(node, doubles, tmp_path, kvm_path):
    """A runtime kvm_path with a NUL byte or a symlink loop: the installed
    version is unknown, not the check failed (ValueError, ELOOP)."""
    if kvm_path == "loop":
        kvm_path = node.binary("loop")
        os.symlink(kvm_path, kvm_path)
    install(doubles["old"], node.binary("qemu-old"))
    node.start("web1", exe=node.binary("qemu-old"))
    with open(os.path.join(node.kvm_dir, "conf", "web1.runtime"), "w") as f:
        json.dump([["x"], [], {"kvm_path": kvm_path}, []], f)
    os.unlink(node.binary("qemu-old"))
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (running 7.2.15, binary removed from disk since" in out["summary"]


def test_cluster_kvm_path_with_a_nul_byte(node, tmp_path):
    with open(os.path.join(node.data_dir, "ssconf_hvparams_kvm"), "w") as f:
        f.write("kvm_path=/usr/bin/k\0vm\n")
    out = check(node, tmp_path)
    assert out["state"] == "0" and out["summary"] == "no qemu processes running"


def test_binary_removed_and_kvm_path_shows_the_new_one(node, doubles, tmp_path):
    """The upgrade removed the versioned binary the instance runs and moved
    its kvm_path (a symlink) on to the new one: installed is what the
    instance's kvm_path gives now."""
    kvm, old, new = node.binary("kvm"), node.binary("qemu-7.2.15"), node.binary("qemu-7.2.18")
    install(doubles["old"], old)
    install_symlink(os.path.basename(old), kvm)
    web1 = node.start("web1", kvm_path=kvm)
    install(doubles["new"], new)
    install_symlink(os.path.basename(new), kvm)
    os.unlink(old)
    out = check(node, tmp_path, kvm_path=node.binary("not-this-one"))
    assert out["state"] == "1"
    assert out["summary"].startswith("1 of 1 instance runs a replaced KVM binary: web1 "
                                     "(running 7.2.15, installed 7.2.18 since ")
    assert out["details"][0].startswith(
        "web1: pid %d, %s (deleted), running %s (%s), installed %s (%s) since "
        % ((web1.pid, old) + OLD + NEW))
    assert out["details"][0].endswith(", started as %s" % kvm)


def test_libraries_of_a_replaced_binary_do_not_change_its_age(node, doubles, public_dir):
    """Its binary was replaced first: it is outdated since then, whatever
    libraries are replaced later (they are not even looked at)."""
    lib = compile_library(public_dir)
    install(doubles["old"], node.binary())
    p = node.start("web1", env=dict(os.environ, LD_PRELOAD=lib))
    install(doubles["new"], node.binary())
    first = os.stat("/proc/%d/exe" % p.pid).st_ctime
    wait_until(lambda: time.time() > first + 0.1, "the clock to move on")
    install(lib, lib)
    [web1] = probe(node, check_libraries=True).processes
    assert web1.replaced and web1.libraries == [] and web1.since == first


def test_version_unknown_is_not_an_error(node, doubles, tmp_path):
    install(doubles["none"], node.binary())
    node.start("web1")
    install(doubles["new"], node.binary())
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (running version unknown, installed 7.2.18" in out["summary"]


@needs_root
def test_binary_of_another_owner_is_not_read(node, doubles, tmp_path):
    """Any user may run a 'qemu-system-evil' of 500 MB, changed every
    minute: versions are read only from root's files (or the checking
    user's)."""
    install(doubles["old"], node.binary())
    os.chown(node.binary(), 65534, 65534)
    web1 = node.start("web1")
    out = check(node, tmp_path)
    assert out["state"] == "0"
    assert out["details"] == ["web1: pid %d, %s, QEMU version not read (owned by uid 65534)"
                              % (web1.pid, node.binary())]
    install(doubles["new"], node.binary())  # root's again
    out = check(node, tmp_path)
    assert out["summary"].startswith(
        "1 of 1 instance runs a replaced KVM binary: web1 (running version not read (owned "
        "by uid 65534), installed 7.2.18 since ")
    assert "installed 7.2.18 (%s)" % NEW[1] in out["details"][0]


def test_same_version_reinstalled_is_flagged(node, doubles, tmp_path):
    install(doubles["new"], node.binary())
    node.start("web1")
    install(doubles["new"], node.binary())  # apt-get install --reinstall
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert "web1 (7.2.18 reinstalled since" in out["summary"]


def test_one_version_read_per_binary(node, doubles):
    install(doubles["old"], node.binary())
    for i in range(5):
        node.start("inst%d" % i)
    install(doubles["new"], node.binary())
    cache = VersionCache(node.state_dir)
    found = kvm_binary.probe(PROC, node.run_dir, None, procfs.names_matcher([NAMES]),
                             cache)
    assert [p.replaced for p in found.processes] == [True] * 5
    assert cache.reads == 2  # the running old binary and the installed new one
    cache.save()
    cache = VersionCache(node.state_dir)
    kvm_binary.probe(PROC, node.run_dir, None, procfs.names_matcher([NAMES]), cache)
    assert cache.reads == 0


def test_replaced_libraries(node, doubles, public_dir, tmp_path):
    lib = compile_library(public_dir)
    install(doubles["new"], node.binary())
    node.start("web1", env=dict(os.environ, LD_PRELOAD=lib))
    install(lib, lib)
    assert check(node, tmp_path)["state"] == "0"  # check_libraries = no
    out = check(node, tmp_path, check_libraries="yes")
    assert out["state"] == "1"
    assert out["summary"].startswith("1 instance maps replaced libraries: web1 "
                                     "(libcmktest.so.1 since ")
    assert "replaced libraries: %s since " % lib in out["details"][0]
    assert out["summary"].endswith("live-migrate or restart it")
    assert out["details"][-1] == ("levels: WARN at once, CRIT 7 d after the new library "
                                  "was installed")
    assert out["metrics"]["kvm_outdated"] == 1


def test_library_age_counts_from_its_first_replacement(node, doubles, public_dir):
    """Upgraded twice, then removed (a soname bump): outdated since the
    first upgrade, in every run; not 'since now' (no file at the path),
    not since the later upgrade."""
    lib = compile_library(public_dir)
    install(doubles["new"], node.binary())
    node.start("web1", env=dict(os.environ, LD_PRELOAD=lib))
    mapped = os.open(lib, os.O_RDONLY)  # the inode the process maps
    try:
        install(lib, lib)
        first = os.fstat(mapped).st_ctime  # set as the rename unlinked it
    finally:
        os.close(mapped)
    wait_until(lambda: time.time() > first + 0.1, "the clock to move on")
    install(lib, lib)
    assert os.stat(lib).st_ctime > first
    [web1] = probe(node, check_libraries=True).processes
    assert web1.libraries == [lib] and web1.since == first
    os.unlink(lib)
    for _ in range(2):
        [web1] = probe(node, check_libraries=True).processes
        assert web1.libraries == [lib] and web1.since == first


def test_warn_after_longer_than_crit_after_is_a_config_problem(node, doubles, tmp_path):
    install(doubles["old"], node.binary())
    node.start("web1")
    install(doubles["new"], node.binary())
    out = check(node, tmp_path, warn_after="2d", crit_after="1h")
    assert out["state"] == "1"
    assert out["summary"].endswith(
        ": live-migrate or restart it (WARN after 1 h) (config problem: [kvm_binary] "
        "warn_after: 2 d is longer than crit_after (1 h), using 1 h)")
    assert out["details"][-1] == "levels: WARN 1 h, CRIT 1 h after the new binary was installed"


def test_config_problem_is_shown(node, tmp_path):
    out = check(node, tmp_path, crit_after="soon")
    assert out["state"] == "1"
    assert "[kvm_binary] crit_after: 'soon' is not a duration" in out["summary"]


QEMU = "/usr/bin/qemu-system-x86_64"


@pytest.mark.skipif(not os.path.exists(QEMU), reason="qemu-system-x86 is not "
                    "installed (apt-get install qemu-system-x86)")
def test_real_qemu(node, tmp_path):
    """A real qemu from a private copy of the binary, upgraded as dpkg would:
    the new file carries another version, so both versions are checked."""
    binary = node.binary("qemu-system-x86_64")
    shutil.copyfile(QEMU, binary)
    os.chmod(binary, 0o755)
    firmware = []
    for d in ("/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"):
        if os.path.isdir(d):
            firmware += ["-L", d]
    node.start("real1", kvm_path=binary, extra=firmware + [
        "-display", "none", "-S", "-nodefaults", "-machine", "accel=kvm:tcg"])
    with open(QEMU, "rb") as f:
        from ganeti_cmk.qemu_version import scan
        installed = scan(f)
    out = check(node, tmp_path)
    assert out["state"] == "0", out
    assert "QEMU %s" % installed.number in out["summary"]
    with open(binary, "rb") as f:
        data = f.read()
    marker = b"QEMU emulator version "
    patched = data.replace(marker + installed.number.encode(), marker + b"99.9.9", 1)
    assert patched != data
    new = binary + ".dpkg-new"
    with open(new, "wb") as f:
        f.write(patched)
    os.rename(new, binary)
    out = check(node, tmp_path)
    assert out["state"] == "1"
    assert out["summary"].startswith("1 of 1 instance runs a replaced KVM binary: real1 "
                                     "(running %s, installed 99.9.9" % installed.number)
