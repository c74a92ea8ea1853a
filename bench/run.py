#!/usr/bin/env python3
"""make bench: what each check costs, how it grows, against the interpreter's
floor and against needrestart; writes docs/benchmarks.md.

    bench/run.py [--quick] [--runs N] [--checks DIR] [--python PATH]
                 [--output FILE] [--workdir DIR]

Every check of the registry (ganeti_cmk.checks.NAMES) is measured, built, as
the agent runs it: a check without a hook here runs as it is with the
bench's config (its own section at the defaults, [paths] pointing into the
bench's tree); a hook (HOOKS) gives a check its own cases, and a growth hook
(GROWTH) its own scaling load.  A check whose output is empty did not
apply.

Every number is a median of runs interleaved round by round (A B C, B C A,
...) with `python3 -c pass` and `python3 -I -S -c pass` on the same
interpreter, after warm-up rounds, so machine noise hits all commands alike
and the ratios hold on a busy machine.  A built check is executed through
its shebang with only PATH, MK_CONFDIR and MK_VARDIR set, stdin /dev/null,
cwd its directory; wall time from fork to wait4, CPU time (user + sys) and
peak RSS from wait4's rusage (bench/measure.c).  Every run's output is
validated.

Loads are real processes: `sleep`s in a process group of their own, and
qemu stand-ins (tests/kvm_doubles.py) with Ganeti's pid and runtime files,
every tenth started on a binary that is then replaced the dpkg way.  All of
them are killed on exit, on Ctrl-C and on SIGTERM.  needrestart is never
installed: its Debian package is downloaded (apt-get download) and
unpacked into the work dir, so no apt or dpkg hook of it is ever on the
machine, whatever happens to this run.

Runs under the test virtualenv (tests/kvm_doubles.py imports pytest); needs
gcc, and needrestart's Perl libraries for the comparison (make bench
installs both).
"""

import argparse
import configparser
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "lib"), os.path.join(ROOT, "tests"),
              os.path.join(ROOT, "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import kvm_doubles  # noqa: E402
import verify_output  # noqa: E402
from ganeti_cmk.ganeti import node_name  # noqa: E402
from localcheck_grammar import assert_valid_output  # noqa: E402

from ganeti_cmk.checks import NAMES  # noqa: E402

CHECKS = tuple("ganeti_" + name for name in NAMES)
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FAKE_GNT = os.path.join(ROOT, "tests", "fake_gnt_cluster")
TRIED = os.path.join(ROOT, "bench", "tried.md")
SLEEP_SECONDS = "3600"  # a backstop: the sleeps end even if cleanup never runs
REPLACED_EVERY = 10     # instance 0, 10, 20, ... runs a replaced binary
OTHER_MASTER = "master.example.com"
MEASURE = []            # bench/measure.c, compiled (build_measure)
BASE = "python3 -c pass"
FLOOR = "python3 -I -S -c pass"
NEEDRESTART = "needrestart -p"

FULL = {"runs": 30, "warmup": 3, "sleeps": (100, 1000, 5000),
        "instances": (1, 10, 100, 500), "fixed_instances": 10,
        "reference": (1000, 100), "verify_cached": (10, 1000),
        "parser": (10, 1000, 100000), "import_runs": 5, "growth_runs": 15,
        "drbd_devices": 20}
QUICK = {"runs": 2, "warmup": 1, "sleeps": (20, 50), "instances": (1, 3),
         "fixed_instances": 2, "reference": (50, 3), "verify_cached": (10, 100),
         "parser": (10, 100, 1000), "import_runs": 1, "growth_runs": 2,
         "drbd_devices": 5}
# x python3 -c pass (wall): a check that works, one that only prints a
# cached result or does not apply; needrestart's time / KVM binary's;
# growth in ms CPU (half of what the zipapp build measured); MB.
TARGETS = {"check": 1.5, "cached": 1.3, "not_applicable": 1.3,
           "needrestart": 25.0, "per_1000_processes_ms": 3.33,
           "per_100_instances_ms": 2.5, "parser_seconds": 1.0, "rss_mb": 20.0}

class BenchError(Exception):
    """A command misbehaved: the numbers would not mean what they say."""


def log(text):
    sys.stderr.write("bench: %s\n" % text)
    sys.stderr.flush()


# ---------------------------------------------------------------- measuring

class Run:
    __slots__ = ("wall", "cpu", "rss_kb", "code", "stdout", "stderr")

    def __init__(self, wall, cpu, rss_kb, code, stdout, stderr):
        self.wall, self.cpu, self.rss_kb = wall, cpu, rss_kb
        self.code, self.stdout, self.stderr = code, stdout, stderr


def run_once(argv, env, scratch):
    """Run argv once under bench/measure.c (stdin /dev/null, output to
    files); a Run."""
    out_path, err_path, result = (scratch + ext for ext in (".out", ".err", ".result"))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                   (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        pid = os.posix_spawn(MEASURE[0], MEASURE + [result] + argv, env,
                             file_actions=actions)
        try:
            _, status, _ = os.wait4(pid, 0)
        except BaseException:  # interrupted: leave no measurement behind
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            raise
    if status != 0:
        raise BenchError("measure %s: wait status %d" % (argv[0], status))
    with open(result) as f:
        wall_ns, user_us, sys_us, rss_kb, child = (int(n) for n in f.read().split())
    with open(out_path, encoding="utf-8", errors="replace") as f:
        stdout = f.read()
    with open(err_path, encoding="utf-8", errors="replace") as f:
        stderr = f.read()
    return Run(wall_ns / 1e9, (user_us + sys_us) / 1e6, rss_kb,
               os.waitstatus_to_exitcode(child), stdout, stderr)


def build_measure(workdir):
    """Compile bench/measure.c; later runs go through it."""
    path = os.path.join(workdir, "measure")
    subprocess.run(["gcc", "-O2", "-o", path, os.path.join(ROOT, "bench", "measure.c")],
                   check=True, timeout=60)
    MEASURE[:] = [path]


class Command:
    """One measured command; `expect(run)` raises BenchError on bad output."""

    def __init__(self, label, argv, env, expect, check=None, cached=False):
        self.label = label
        self.argv = argv
        self.env = env
        self.expect = expect
        self.check = check    # the module name of the check it runs, if any
        self.cached = cached  # it only prints a cached result
        self.runs = []       # the measured Runs, warm-up excluded
        self.output = None   # stdout of the first run

    def median(self, field):
        return statistics.median(getattr(r, field) for r in self.runs)

    def rss_max_mb(self):
        return max(r.rss_kb for r in self.runs) / 1024.0


def measure(commands, runs, warmup, scratch):
    """Interleave the commands round by round, rotating the order."""
    for cmd in commands:
        cmd.runs = []
    for n in range(warmup + runs):
        shift = n % len(commands)
        for cmd in commands[shift:] + commands[:shift]:
            run = run_once(cmd.argv, cmd.env, scratch)
            try:
                cmd.expect(run)
            except AssertionError as e:  # from the local-check validator
                raise BenchError("%s: invalid output (%s):\n%s"
                                 % (cmd.label, e, run.stdout[:2000]))
            if cmd.output is None:
                cmd.output = run.stdout
            if n >= warmup:
                cmd.runs.append(run)


def exited_0(run):
    if run.code != 0:
        raise BenchError("exit code %d: %s" % (run.code, run.stderr[-2000:]))


def agent_output(service=None, **metrics):
    """expect(): exit 0 and valid local-check lines (stderr, which the agent
    discards, may say why a check does not apply); with `service`, that
    service with these metric values; else no output."""
    def expect(run):
        exited_0(run)
        services = assert_valid_output(run.stdout)[None]
        if service is None:
            if run.stdout:
                raise BenchError("expected no output, got %r" % run.stdout[:500])
            return
        if service not in services:
            raise BenchError("no %r service in %r" % (service, run.stdout[:500]))
        found = services[service]["metrics"]
        for name, value in metrics.items():
            if found.get(name) != value:
                raise BenchError("%s: %s is %s, expected %s (%s)" % (
                    service, name, found.get(name), value, run.stdout[:300]))
    return expect


def valid_agent_output(run):
    """expect() of a check run as it is: exit 0, valid local-check lines
    or none (it does not apply here)."""
    exited_0(run)
    assert_valid_output(run.stdout)


def anything(run):
    pass


# ------------------------------------------------------------------ the load

class held_signals:
    """Hold off Ctrl-C, SIGTERM and SIGHUP (they arrive afterwards), so
    that no sleep is started without being recorded for close().  Children
    inherit the mask: give them an empty one."""

    SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

    def __enter__(self):
        self.previous = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.previous)


class Load:
    """`sleep` processes and qemu stand-in instances; close() kills them."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.sleep = shutil.which("sleep") or "/bin/sleep"
        self.sleepers = []   # pids; one process group, led by the first
        self.named_pids = []  # `sleep`s under another name (named())
        self.instances = {}  # index -> (name, Popen, replaced)
        self.node = kvm_doubles.Node(os.path.join(workdir, "node"))
        doubles = os.path.join(workdir, "doubles")
        os.makedirs(doubles)
        self.old = kvm_doubles.compile_double(doubles, kvm_doubles.OLD, "old")
        self.new = kvm_doubles.compile_double(doubles, kvm_doubles.NEW, "new")
        kvm_doubles.install(self.new, self.node.binary())
        self.upgraded = os.path.join(self.node.root, "upgraded", kvm_doubles.NAME)
        os.makedirs(os.path.dirname(self.upgraded))

    def set_sleepers(self, count):
        with held_signals():
            self._set_sleepers(count)

    def _set_sleepers(self, count):
        while len(self.sleepers) > count:
            pid = self.sleepers.pop()
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        # argv[0] names the work dir, so a leftover would be easy to find
        argv = [os.path.join(self.workdir, "sleep"), SLEEP_SECONDS]
        while len(self.sleepers) < count:
            group = self.sleepers[0] if self.sleepers else 0
            self.sleepers.append(os.posix_spawn(
                self.sleep, argv, {}, file_actions=actions, setpgroup=group,
                setsigmask=()))  # not the held signals

    def set_instances(self, count):
        """Instances 0..count-1; every REPLACED_EVERY-th runs a binary
        replaced after it started (old version, deleted inode).  Node.start
        records each process at once, for Node.stop_all()."""
        node = self.node
        for index in sorted(self.instances, reverse=True)[:max(0, len(self.instances) - count)]:
            name, proc, _ = self.instances.pop(index)
            proc.kill()
            proc.wait(timeout=20)
            os.unlink(node.pid_file(name))
            os.unlink(os.path.join(node.kvm_dir, "conf", name + ".runtime"))
        new = [i for i in range(count) if i not in self.instances]
        replaced = [i for i in new if i % REPLACED_EVERY == 0]
        if replaced:
            kvm_doubles.install(self.old, self.upgraded)
            for i in replaced:
                self._start(i, self.upgraded, True)
            kvm_doubles.install(self.new, self.upgraded)
        for i in new:
            if i not in replaced:
                self._start(i, node.binary(), False)

    def _start(self, index, kvm_path, replaced):
        name = "inst%04d.example.com" % index
        self.instances[index] = (name, self.node.start(name, kvm_path), replaced)

    def replaced(self):
        return sum(1 for _, _, r in self.instances.values() if r)

    def named(self, name):
        """A `sleep` whose process name (comm) is `name`: run through a
        symbolic link of that name (a daemon's stand-in); its pid."""
        link = os.path.join(self.workdir, "named", name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(self.sleep, link)
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        with held_signals():
            self.named_pids.append(os.posix_spawn(link, [link, SLEEP_SECONDS], {},
                                                  file_actions=actions, setsigmask=()))
        return self.named_pids[-1]

    def close(self):
        """Kill everything, Ctrl-C and SIGTERM held off until it is done."""
        with held_signals():
            if self.sleepers:
                os.killpg(self.sleepers[0], signal.SIGKILL)  # our unreaped child
                for pid in self.sleepers:
                    os.waitpid(pid, 0)
                self.sleepers = []
            for pid in self.named_pids:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            self.named_pids = []
            self.node.stop_all()


def process_count():
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


# ----------------------------------------------------------------- the setup

def shebang(path):
    """The argv prefix a script's `#!` line gives (interpreter, options)."""
    with open(path, "rb") as f:
        line = f.readline().decode("utf-8", "replace")
    if not line.startswith("#!"):
        raise BenchError("%s has no #! line" % path)
    return line[2:].split()


def write_config(confdir, node, **sections):
    """ganeti_cmk.cfg: the bench node's [kvm_binary] and [paths] (from
    Node.config()), these sections' keys on top; verify results never go
    stale during the run (the measured path is the same)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(node.config())
    # never a real transient unit for a refresh, even on a systemd machine
    parser["paths"]["systemd_system_dir"] = os.path.join(confdir, "no-systemd")
    parser["cluster_verify"] = {"max_age": "1d"}
    for section, keys in sections.items():
        if not parser.has_section(section):
            parser.add_section(section)
        parser[section].update(keys)
    os.makedirs(confdir)
    with open(os.path.join(confdir, "ganeti_cmk.cfg"), "w") as f:
        parser.write(f)


def write_ssconf(data_dir, master, nodes):
    os.makedirs(data_dir, exist_ok=True)
    for key, value in (("master_node", master), ("cluster_name", "bench.example.com"),
                       ("node_list", "\n".join(nodes)),
                       ("nodegroups", "uuid-default default")):
        with open(os.path.join(data_dir, "ssconf_" + key), "w") as f:
            f.write(value + "\n")


def needrestart_copy(workdir):
    """(argv, version) of needrestart unpacked from its Debian package into
    workdir, or None (said why).  Never installed: no apt or dpkg hook of
    it is put on the machine.  Its config, hooks and helpers are the
    copy's: the package's own needrestart.conf with /etc/needrestart and
    /usr/lib/needrestart pointing into the copy."""
    dest = os.path.join(workdir, "needrestart")
    root = os.path.join(dest, "root")
    os.makedirs(root)
    try:
        subprocess.run(["apt-get", "download", "needrestart"], cwd=dest, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        deb = glob.glob(os.path.join(dest, "needrestart_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True, timeout=60)
        version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True,
                                 stdout=subprocess.PIPE, universal_newlines=True,
                                 timeout=60).stdout.strip()
    except (OSError, IndexError, subprocess.SubprocessError) as e:
        log("cannot download and unpack needrestart (%s): no comparison" % e)
        return None
    moved = (("/etc/needrestart", root + "/etc/needrestart"),
             ("/usr/lib/needrestart", root + "/usr/lib/needrestart"))
    perl5 = os.path.join(root, "usr", "share", "perl5")
    for path in glob.glob(os.path.join(perl5, "NeedRestart", "**", "*.pm"),
                          recursive=True):
        with open(path) as f:
            text = f.read()
        for old, new in moved:
            text = text.replace(old, new)
        with open(path, "w") as f:
            f.write(text)
    conf = os.path.join(root, "etc", "needrestart", "needrestart.conf")
    with open(conf) as f:
        text = f.read()
    for old, new in moved:
        text = text.replace(old, new)
    text += "".join("\n$nrconf{%s} = '%s/etc/needrestart/%s';" % (key, root, sub)
                    for key, sub in (("hook_d", "hook.d"), ("notify_d", "notify.d"),
                                     ("restart_d", "restart.d")))
    with open(conf, "w") as f:
        f.write(text + "\n1;\n")
    argv = ["/usr/bin/perl", "-I", perl5, os.path.join(root, "usr", "sbin", "needrestart"),
            "-c", conf, "-p"]
    run = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    if run.returncode not in (0, 1, 2, 3) or not run.stdout.strip():  # Nagios codes
        log("needrestart does not run (exit %d: %s); make bench installs its "
            "Perl libraries: no comparison" % (run.returncode, run.stderr.strip()[-300:]))
        return None
    return argv, version


class Setup:
    """Configs, ssconf trees and verify caches for the agent-mode runs."""

    def __init__(self, args, load):
        self.args = args
        self.load = load
        work = args.workdir
        node = load.node
        self.node = node
        self.vardir = os.path.join(work, "var")
        os.makedirs(self.vardir)
        self.fqdn = node_name("", self.vardir)  # what the checks compare, unset
        write_ssconf(node.data_dir, self.fqdn, [self.fqdn, "node2.example.com"])
        self.confdir = self.config("etc", paths={"gnt_cluster": FAKE_GNT})
        self.bare_confdir = os.path.join(work, "etc-none")  # no config file
        os.makedirs(self.bare_confdir)
        self.refresh_logs = {}  # case -> log of the fake command behind a cache

    def config(self, name, **sections):
        """A new config dir `name` in the work dir with these sections."""
        confdir = os.path.join(self.args.workdir, name)
        write_config(confdir, self.node, **sections)
        return confdir

    def check(self, name):
        return os.path.join(self.args.checks, name)

    def env(self, confdir=None, **extra):
        env = {"PATH": AGENT_PATH, "MK_CONFDIR": confdir or self.confdir,
               "MK_VARDIR": self.vardir}
        env.update(extra)
        return env

    def agent(self, module, case="", confdir=None, expect=None, cached=False,
              **extra_env):
        """The built check `module` in agent mode; `case` says how it differs."""
        name = "ganeti_" + module
        label = "%s (%s)" % (name, case) if case else name
        return Command(label, [self.check(name)], self.env(confdir, **extra_env),
                       expect or valid_agent_output, check=module, cached=cached)

    def baselines(self):
        python = self.args.python
        return [Command(BASE, [python, "-c", "pass"], self.env(), exited_0),
                Command(FLOOR, [python, "-I", "-S", "-c", "pass"], self.env(), exited_0)]

    def commands(self):
        """Every check's cases (HOOKS, else as it is), in registry order."""
        cmds = []
        for module in NAMES:
            hook = HOOKS.get(module)
            cmds += hook(self, module) if hook else [self.agent(module)]
        return cmds


def import_times(argv, env, runs, scratch):
    """{module: self import time in s}, the minimum over `runs` runs of
    argv (a python3 command line) with -X importtime."""
    best = {}
    argv = argv[:1] + ["-X", "importtime"] + argv[1:]
    for _ in range(runs):
        run = run_once(argv, env, scratch)
        for line in run.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            fields = line[len("import time:"):].split("|")
            try:
                self_us = int(fields[0])
            except ValueError:
                continue  # the header
            module = fields[2].strip()
            best[module] = min(best.get(module, self_us), self_us)
    return {m: us / 1e6 for m, us in best.items()}


# ---------------------------------------------------------------- the hooks
#
# HOOKS[module](setup, module) -> [Command]: the cases of one check on the
# reference load.  GROWTH[module] = (unit, per, sizes, quick sizes,
# make(setup, size) -> Command): the check at each size of its own load,
# measured against python3 -c pass in the same rounds, reported as ms CPU
# per `per` units.  A check with neither runs as it is; a hook can be
# added when its check lands, nothing else in the bench changes.

def kvm_device_cases(setup, module):
    return [setup.agent(module, expect=agent_output("KVM device")),
            setup.agent(module, "no config file", setup.bare_confdir,
                        agent_output("KVM device"))]


def kvm_binary_cases(setup, module):
    return [kvm_binary_command(setup)]


def kvm_binary_command(setup):
    load = setup.load
    return setup.agent("kvm_binary", expect=agent_output(
        "KVM binary versions", kvm_processes=float(len(load.instances)),
        kvm_outdated=float(load.replaced())))


def cluster_verify_cases(setup, module):
    """Cached results on this machine as the master (its own --refresh ran
    once through the fake gnt-cluster, whose log proves no refresh while
    measuring); another node, with and without [ganeti] node_name."""
    args, work = setup.args, setup.args.workdir
    fake = {"gnt_cluster": FAKE_GNT}
    cmds = []
    for findings in args.sizes["verify_cached"]:
        confdir = setup.config("etc-verify-%d" % findings, paths=dict(
            fake, state_dir=os.path.join(work, "state-%d" % findings)))
        case = os.path.join(work, "verify-%d" % findings)
        with open(case + ".out", "w") as f:
            f.write(verify_output.generate(findings))
        with open(case + ".rc", "w") as f:
            f.write("1\n")
        gnt_log = case + ".log"
        setup.refresh_logs["cluster_verify, %s findings" % "{:,}".format(findings)] = gnt_log
        run = run_once([setup.check("ganeti_cluster_verify"), "--refresh"],
                       setup.env(confdir, FAKE_GNT_CASE=case, FAKE_GNT_LOG=gnt_log),
                       os.path.join(work, "refresh"))
        services = assert_valid_output(run.stdout)[None]
        metrics = services.get("Ganeti verify", {}).get("metrics", {})
        if (run.code != 0 or metrics.get("ganeti_verify_errors", 0)
                + metrics.get("ganeti_verify_warnings", 0) != findings):
            raise BenchError("verify --refresh did not cache %d findings: %s %s"
                             % (findings, run.stdout[:500], run.stderr[-500:]))
        cmds.append(setup.agent(module, "master, cached, %s findings" % "{:,}".format(
            findings), confdir, agent_output("Ganeti verify"), cached=True,
            FAKE_GNT_LOG=gnt_log))
    other = os.path.join(work, "other-ganeti")
    write_ssconf(other, OTHER_MASTER, [OTHER_MASTER, setup.fqdn])
    cmds.append(setup.agent(module, "other node", setup.config(
        "etc-other", paths=dict(fake, ganeti_data_dir=other)), agent_output()))
    cmds.append(setup.agent(module, "other node, [ganeti] node_name set", setup.config(
        "etc-other-named", paths=dict(fake, ganeti_data_dir=other),
        ganeti={"node_name": setup.fqdn}), agent_output()))
    return cmds


def refresh_runs(setup):
    """How often each fake command behind a cached result ran."""
    counts = {}
    for case, log_path in setup.refresh_logs.items():
        with open(log_path) as f:
            counts[case] = len(f.read().splitlines())
    return counts


def drbd_fixture(setup, devices):
    """A config dir for the DRBD check on `devices` connected, up-to-date
    devices: a /proc/drbd (DRBD 8.4) and Ganeti's bdev-cache naming each
    by instance and disk, half of them primary here (made once per size)."""
    confdir = os.path.join(setup.args.workdir, "etc-drbd-%d" % devices)
    if os.path.isdir(confdir):
        return confdir
    root = os.path.join(setup.args.workdir, "drbd-%d" % devices)
    cache = os.path.join(root, "run", "bdev-cache")
    os.makedirs(cache)
    lines = ["version: 8.4.11 (api:1/proto:86-101)",
             "srcversion: 0C2B8B9E5E3F6A1D4C7E2F1"]
    for minor in range(devices):
        primary = minor % 2 == 0
        lines += [" %d: cs:Connected ro:%s ds:UpToDate/UpToDate C r-----" % (
                      minor, "Primary/Secondary" if primary else "Secondary/Primary"),
                  "    ns:2097152 nr:0 dw:2101248 dr:52224 al:31 bm:0 lo:0 pe:0 "
                  "ua:0 ap:0 ep:1 wo:f oos:0"]
        with open(os.path.join(cache, "bdev_drbd%d" % minor), "w") as f:
            f.write("inst%04d.example.com %s disk/%d\n" % (
                minor // 2, "primary" if primary else "secondary", minor % 2))
    proc_drbd = os.path.join(root, "proc_drbd")
    with open(proc_drbd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return setup.config(os.path.basename(confdir), drbd={"proc_drbd": proc_drbd},
                        paths={"ganeti_run_dir": os.path.join(root, "run"),
                               "state_dir": os.path.join(root, "state")})


def drbd_devices(devices):
    """expect(): one OK service per device and the node's, all OK."""
    def expect(run):
        exited_0(run)
        services = assert_valid_output(run.stdout)[None]
        named = [s for s in services if s.startswith("DRBD inst")]
        bad = [s for s, fields in services.items() if fields["state"] != "0"]
        if len(named) != devices or bad:
            raise BenchError("DRBD: %d device services (expected %d), not OK: %s"
                             % (len(named), devices, ", ".join(bad[:5])))
    return expect


def drbd_command(setup, devices):
    return setup.agent("drbd", "%s devices" % "{:,}".format(devices),
                       drbd_fixture(setup, devices), drbd_devices(devices))


def drbd_cases(setup, module):
    """As it is on this machine, and on a node's share of a cluster's DRBD
    disks (20 devices: 10 instances with two disks); how it grows up to
    500 devices is GROWTH's."""
    return [setup.agent(module), drbd_command(setup, setup.args.sizes["drbd_devices"])]


def kvm_parameters_cases(setup, module):
    """The reference load's instances (runtime files: -m 128 -smp 1, the
    kvm_path they started with) against a config.data (Ganeti 3.0's
    shape) in a data dir of its own that has them all on this node:
    every instance compared; those on a replaced binary (every tenth)
    started from another kvm_path, so they have a change pending."""
    node, load = setup.node, setup.load
    data_dir = os.path.join(setup.args.workdir, "kvm-parameters-ganeti")
    write_ssconf(data_dir, setup.fqdn, [setup.fqdn, "node2.example.com"])
    config = {
        "version": 3000000,
        "cluster": {"cluster_name": "bench.example.com", "serial_no": 1,
                    "mtime": time.time() - 7200, "ctime": time.time() - 86400,
                    "hvparams": {"kvm": {"kvm_path": node.binary()}},
                    "os_hvp": {}, "enabled_hypervisors": ["kvm"],
                    "beparams": {"default": {"maxmem": 128, "minmem": 128,
                                             "vcpus": 1, "auto_balance": True,
                                             "always_failover": False,
                                             "spindle_use": 1}}},
        "nodes": {"n-1": {"name": setup.fqdn, "uuid": "n-1",
                          "primary_ip": "192.0.2.1", "master_candidate": True}},
        "disks": {},
        "instances": {"u-%s" % name: {
            "name": name, "uuid": "u-%s" % name, "os": "noop+default",
            "hypervisor": "kvm", "hvparams": {}, "beparams": {},
            "mtime": time.time() - 3600, "admin_state": "up", "primary_node": "n-1",
            "disks": [], "nics": [], "serial_no": 1}
            for name, _, _ in load.instances.values()},
    }
    with open(os.path.join(data_dir, "config.data"), "w") as f:
        json.dump(config, f)
    confdir = setup.config("etc-kvm-parameters", paths={"ganeti_data_dir": data_dir},
                           kvm_parameters={"source": "config"})
    return [setup.agent(module, "%d instances, config.data" % len(load.instances),
                        confdir, agent_output("KVM instance parameters",
                                              kvm_params_instances=float(len(load.instances)),
                                              kvm_params_pending=float(load.replaced())))]


HCHECK_CASE = os.path.join(ROOT, "tests", "data", "hcheck", "two-groups-clean")


def capacity_cases(setup, module):
    """A result cached by the check's own --refresh, through a fake hcheck
    that prints a recorded run (two groups, all clean) and logs each call,
    on this machine as the master: what the agent gets every minute."""
    work = setup.args.workdir
    fake, gnt_log = os.path.join(work, "hcheck"), os.path.join(work, "hcheck.log")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho run >> %s\ncat %s.out\ncat %s.err >&2\nexit $(cat %s.rc)\n"
                % (gnt_log, HCHECK_CASE, HCHECK_CASE, HCHECK_CASE))
    os.chmod(fake, 0o755)
    confdir = setup.config("etc-capacity", capacity={"hcheck": fake, "max_age": "1d"},
                           paths={"state_dir": os.path.join(work, "state-capacity")})
    run = run_once([setup.check("ganeti_" + module), "--refresh"], setup.env(confdir),
                   os.path.join(work, "refresh"))
    if run.code != 0 or "Ganeti capacity" not in assert_valid_output(run.stdout)[None]:
        raise BenchError("capacity --refresh did not cache a result: %s %s"
                         % (run.stdout[:500], run.stderr[-500:]))
    setup.refresh_logs["capacity"] = gnt_log
    return [setup.agent(module, "master, cached", confdir, agent_output("Ganeti capacity"),
                        cached=True)]


MASTER_DAEMONS = ("ganeti-noded", "ganeti-confd", "ganeti-wconfd", "ganeti-rapi",
                  "ganeti-luxid")


def daemons_cases(setup, module):
    """This machine as the master with Ganeti's master daemons running
    (stand-ins named like them, with their pid files; no systemd, no
    ganeti-mond, no ganeti-kvmd): everything the role needs is there."""
    run_dir = os.path.join(setup.args.workdir, "daemons-run")
    os.makedirs(run_dir)
    for name in MASTER_DAEMONS:
        with open(os.path.join(run_dir, name + ".pid"), "w") as f:
            f.write("%d\n" % setup.load.named(name))
    confdir = setup.config("etc-daemons", paths={"ganeti_run_dir": run_dir},
                           daemons={"mond": "no"})
    return [setup.agent(module, "master, its daemons running", confdir,
                        agent_output("Ganeti daemons"))]


HOOKS = {"kvm_device": kvm_device_cases, "daemons": daemons_cases,
         "capacity": capacity_cases, "kvm_binary": kvm_binary_cases,
         "cluster_verify": cluster_verify_cases, "drbd": drbd_cases,
         "kvm_parameters": kvm_parameters_cases}
GROWTH = {"drbd": ("devices", 100, (10, 100, 500), (1, 3), drbd_command)}


# ---------------------------------------------------------------- the report

def ms(seconds):
    return "%.1f" % (seconds * 1000)


def ratio(a, b):
    return a / b if b else float("inf")


def paired(a, b):
    """Median wall-time difference of two commands, round by round (the
    rounds interleave them, so a slow stretch of the machine cancels)."""
    return statistics.median(x.wall - y.wall for x, y in zip(a.runs, b.runs))


def machine(python, needrestart_version):
    """(label, value) rows describing this machine and this run."""
    def first(path, key, sep=":"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(sep, 1)[1].strip().strip('"')
        except OSError:
            pass
        return "unknown"

    def output(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, universal_newlines=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = output(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"]) or "unknown"
    if output(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no",
               "--", "lib", "bench", "tools"]):
        commit += " (with uncommitted changes in lib, bench or tools)"
    memory = first("/proc/meminfo", "MemTotal").split()[0]
    return [
        ("CPU", "%s, %d cores" % (first("/proc/cpuinfo", "model name"),
                                  os.cpu_count() or 0)),
        ("memory", "%.1f GiB" % (int(memory) / 1048576.0) if memory.isdigit() else memory),
        ("OS, kernel", "%s, Linux %s" % (first("/etc/os-release", "PRETTY_NAME", "="),
                                         platform.release())),
        ("python3 of the checks", "%s (%s)" % (python, output([
            python, "-c", "import sys; print(sys.version.split()[0])"]))),
        ("needrestart", "%s (unpacked from its Debian package, not installed)"
         % needrestart_version if needrestart_version else "not available"),
        ("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
        ("git commit", commit),
    ]


def first_line(text, width=150):
    line = (text.splitlines() or ["(no output)"])[0]
    return line if len(line) <= width else line[:width - 3] + "..."


def kind(cmd):
    """Which target a check's command is held to."""
    if cmd.cached:
        return "cached"
    return "not_applicable" if not cmd.output else "check"


KIND_TEXT = {"check": "", "cached": ", prints a cached result",
             "not_applicable": ", does not apply"}


def above_floor(cmd, cmds, imports):
    """What a check costs above `python3 -c pass`, and of what."""
    base, floor = cmds[BASE], cmds[FLOOR]
    extra = {m: t for m, t in imports[cmd.label].items() if m not in imports[FLOOR]}
    top = sorted(extra.items(), key=lambda mt: -mt[1])[:4]
    above = cmd.median("wall") - base.median("wall")
    own = sum(extra.values())
    rest = cmd.median("wall") - floor.median("wall") - own
    return ("%s ms above `python3 -c pass`, %s ms above the interpreter's floor "
            "(`%s`): its imports %s ms (%s), %s" % (
                ms(above), ms(cmd.median("wall") - floor.median("wall")), FLOOR,
                ms(own), ", ".join("%s %s" % (m, ms(t)) for m, t in top) or "none",
                "the rest (its work, reading its files) about %s ms" % ms(rest)
                if rest >= 0.0005 else "which leaves nothing measurable for its "
                "work"))


def targets(r):
    """[(target, measured, met, why not)] of the run."""
    cmds = r["reference"]["commands"]
    base = cmds[BASE]
    rows = []
    for cmd in cmds.values():
        if cmd.check is None:
            continue
        k = kind(cmd)
        limit = TARGETS[k]
        q = ratio(cmd.median("wall"), base.median("wall"))
        why = "" if q <= limit else above_floor(cmd, cmds, r["imports"])
        if why and cmd.label == "ganeti_kvm_binary":
            ref = r["reference"]
            why += ("; by the growth rates below, about %s ms CPU of it for looking "
                    "at %s processes and %s ms for %d instances" % (
                        ms(r["per_1000_processes"] * ref["processes"] / 1000),
                        "{:,}".format(ref["processes"]),
                        ms(r["per_instance"] * ref["instances"]), ref["instances"]))
        rows.append(("`%s`%s: at most %.1fx `%s` (wall)" % (
            cmd.label, KIND_TEXT[k], limit, BASE),
            "%.2fx (CPU %.2fx; %.2fx `%s`)" % (
                q, ratio(cmd.median("cpu"), base.median("cpu")),
                ratio(cmd.median("wall"), cmds[FLOOR].median("wall")), FLOOR),
            q <= limit, why))
    kb = cmds["ganeti_kvm_binary"]
    nr = cmds.get(NEEDRESTART)
    goal = TARGETS["needrestart"]
    if nr is not None:
        q = ratio(nr.median("wall"), kb.median("wall"))
        why = "" if q >= goal else (
            "`ganeti_kvm_binary` would have to finish within %s ms (needrestart's "
            "time / %.0f); it takes %s ms, %s ms of it the interpreter's floor "
            "(`%s`), and its scan grows by %.2f ms CPU per 1,000 processes "
            "(see the scaling)" % (ms(nr.median("wall") / goal), goal,
                                   ms(kb.median("wall")), ms(cmds[FLOOR].median("wall")),
                                   FLOOR, r["per_1000_processes"] * 1000))
        rows.append(("`ganeti_kvm_binary` at least %.0fx faster than `%s` (wall)"
                     % (goal, NEEDRESTART),
                     "%.1fx (CPU %.1fx)" % (q, ratio(nr.median("cpu"), kb.median("cpu"))),
                     q >= goal, why))
    else:
        rows.append(("`ganeti_kvm_binary` at least %.0fx faster than `%s`"
                     % (goal, NEEDRESTART), "not measured: needrestart not available",
                     False, "needrestart could not be downloaded or run (see the "
                     "bench's log)"))
    for key, value, unit, why in (
            ("per_1000_processes_ms", r["per_1000_processes"] * 1000,
             "1,000 unrelated processes", "one `readlink` of `/proc/PID/exe` per "
             "process, most of it the kernel's path walk (see What was tried): "
             "halving it needs not looking at every process"),
            ("per_100_instances_ms", r["per_instance"] * 1e5, "100 instances",
             "per instance its pid file, `cmdline`, owner (`/proc/PID/status`), "
             "`exe`, mount namespace and the file on disk are read, each part of "
             "a verdict; `status` and `cmdline` alone cost the kernel tens of "
             "microseconds (see What was tried)")):
        rows.append(("`ganeti_kvm_binary` grows by at most %.2f ms CPU per %s"
                     % (TARGETS[key], unit), "%.2f ms" % value, value <= TARGETS[key],
                     "" if value <= TARGETS[key] else why))
    biggest = r["parser"]["sizes"][-1]
    rows.append(("parser: %s findings in under %.0f s" % (
        "{:,}".format(biggest["findings"]), TARGETS["parser_seconds"]),
        "%.3f s" % biggest["median"], biggest["median"] < TARGETS["parser_seconds"], ""))
    rss = r["rss_max"]
    worst_rss = max(rss.values())
    rows.append(("peak RSS under %.0f MB per check" % TARGETS["rss_mb"],
                 "%.1f MB at most (%s)" % (worst_rss, max(rss, key=rss.get)),
                 worst_rss < TARGETS["rss_mb"], ""))
    return rows


def render(r):
    """docs/benchmarks.md from the results dict."""
    sizes = r["sizes"]
    ref = r["reference"]
    cmds = ref["commands"]
    base, floor = cmds[BASE], cmds[FLOOR]
    out = ["# Benchmarks", "",
           "Generated by `make bench` (`bench/run.py`); do not edit by hand. "
           "The run took %.0f s." % r["duration"], ""]
    if r["quick"]:
        out += ["**Quick mode (a smoke test of the benchmark): 2 runs, tiny "
                "loads; these numbers mean nothing.**", ""]
    out += ["## Machine", "", "| | |", "| --- | --- |"]
    out += ["| %s | %s |" % row for row in r["machine"]]
    out += ["| load average (1 min) at start, end | %.2f, %.2f |" % r["loadavg"], ""]
    out += ["## Method", "",
            "Each command runs %d times after %d warm-up rounds, interleaved "
            "round by round with `%s` and `%s` (A B C, B C A, ...), so noise "
            "from other processes hits all alike; the tables show medians and "
            "ratios to `%s` from the same rounds, and differences between two "
            "commands are medians of their differences round by round. The "
            "built checks (`make build`, bytecode of the same Python) are "
            "executed through their `#!` line as the agent does: only PATH, "
            "MK_CONFDIR and MK_VARDIR in the environment, stdin /dev/null, cwd "
            "their directory. Each runs as the child of a small C program "
            "(`bench/measure.c`): wall time from `fork` to `wait4`, CPU time "
            "(user + sys) and peak RSS from `wait4`'s rusage (forked from "
            "the Python harness itself, a child's peak RSS would count the "
            "harness's pages). Every run's output is validated (local-check "
            "grammar, expected service and metrics)." % (
                r["runs"], r["warmup"], BASE, FLOOR, BASE), "",
            "Every check of the registry is measured: as it is, with a config "
            "that points `[paths]` into the bench's tree (a check that finds "
            "nothing to do there prints nothing and is held to the target of "
            "a check that does not apply), or with the cases its hook in "
            "`bench/run.py` sets up. Loads are real processes: `sleep`s, and "
            "qemu stand-ins (`tests/kvm_doubles.py`, a small C program with a "
            "Ganeti-style argv) with Ganeti's pid and runtime files; every "
            "tenth instance runs a binary replaced after it started, the dpkg "
            "way. `Ganeti verify` prints a result cached by its own "
            "`--refresh` (through `tests/fake_gnt_cluster`) on a fake master "
            "whose `ssconf_master_node` is this machine's FQDN, as the check "
            "determines it; the fake's log proves that no refresh ran while "
            "measuring. \"Processes\" counts every pid in /proc, other "
            "users' included. needrestart runs from its Debian package "
            "unpacked into the bench's work dir (`apt-get download`, "
            "`dpkg-deb -x`, its config and helpers pointed into the copy): it "
            "is never installed, so none of its apt or dpkg hooks is left "
            "behind.", ""]

    rows = targets(r)
    out += ["## Targets", "",
            "On the reference load: %s processes (%s `sleep`s), %d stand-in "
            "instances, %d of them on a replaced binary. A check at most "
            "%.1fx `%s`; one that prints a cached result or does not apply on "
            "the node at most %.1fx." % (
                "{:,}".format(ref["processes"]), "{:,}".format(sizes["reference"][0]),
                ref["instances"], ref["replaced"], TARGETS["check"], BASE,
                TARGETS["cached"]), "",
            "| target | measured | |", "| --- | --- | --- |"]
    out += ["| %s | %s | %s |" % (t, m, "met" if ok else "**not met**")
            for t, m, ok, _ in rows]
    limits = [(t, why) for t, _, ok, why in rows if not ok and why]
    if limits:
        out += ["", "What limits the targets not met (imports attributed with "
                "`-X importtime`, the minimum over %d run(s); its own overhead "
                "makes import times slightly high). `%s` costs %.2fx `%s`." % (
                    r["import_runs"], FLOOR, ratio(floor.median("wall"),
                                                   base.median("wall")), BASE), ""]
        out += ["- %s: %s." % (t, why) for t, why in limits]
    out.append("")

    out += ["## Each check in agent mode", "",
            "Reference load as above. Every check reads one config file (it "
            "points them at the load), except the row that says otherwise: "
            "a node with the defaults has none.", "",
            "| command | wall ms | x pass | x -I -S pass | CPU ms | x pass | "
            "RSS MB (max) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, cmd in cmds.items():
        out.append("| %s | %s | %.2f | %.2f | %s | %.2f | %.1f (%.1f) |" % (
            label, ms(cmd.median("wall")), ratio(cmd.median("wall"), base.median("wall")),
            ratio(cmd.median("wall"), floor.median("wall")),
            ms(cmd.median("cpu")), ratio(cmd.median("cpu"), base.median("cpu")),
            cmd.median("rss_kb") / 1024.0, cmd.rss_max_mb()))
    out += ["", "What each printed (first line):", ""]
    out += ["- %s: `%s`" % (label, first_line(cmd.output).replace("`", "'"))
            for label, cmd in cmds.items() if cmd.check is not None
            or label == NEEDRESTART]
    if r["refresh_runs"]:
        out += ["", "The fake commands behind the cached results ran once each "
                "(the `--refresh` that made the result), not while measuring: %s." % (
                    ", ".join("%s: %d" % kv for kv in sorted(r["refresh_runs"].items())))]
    out.append("")

    out += ["## Imports in agent mode", "",
            "What each check imports beyond `%s` (which imports %d modules "
            "itself), from `-X importtime` (self times, the minimum over %d "
            "run(s)): the library's modules first, then the standard library's." % (
                FLOOR, len(r["imports"][FLOOR]), r["import_runs"]), "",
            "| command | ms | modules |", "| --- | ---: | --- |"]
    for label, cmd in cmds.items():
        if cmd.check is None:
            continue
        extra = [m for m in r["imports"][label] if m not in r["imports"][FLOOR]]
        extra.sort(key=lambda m: (not m.startswith("ganeti_cmk"), m))
        out.append("| %s | %s | %s |" % (
            label, ms(sum(r["imports"][label][m] for m in extra)),
            ", ".join(extra) or "none"))
    out.append("")

    out += ["## KVM binary versions: scaling", "",
            "`ganeti_kvm_binary` against `%s` in the same rounds." % BASE, "",
            "| sleeps | processes | instances | replaced | wall ms | CPU ms | "
            "x pass (wall) | RSS MB (max) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in r["scaling"]:
        out.append("| %s | %s | %d | %d | %s | %s | %.2f | %.1f |" % (
            "{:,}".format(p["sleeps"]), "{:,}".format(p["processes"]), p["instances"],
            p["replaced"], ms(p["wall"]), ms(p["cpu"]), p["ratio"], p["rss_mb"]))
    out += ["", "- " + r["growth"]["processes"], "- " + r["growth"]["instances"], ""]

    for module, g in sorted(r["other_growth"].items()):
        out += ["## %s: growth" % g["service"], "",
                "`ganeti_%s` against `%s` in the same rounds, on its own load "
                "(%s)." % (module, BASE, g["unit"]), "",
                "| %s | wall ms | CPU ms | x pass (wall) | RSS MB (max) |" % g["unit"],
                "| ---: | ---: | ---: | ---: | ---: |"]
        for p in g["points"]:
            out.append("| %s | %s | %s | %.2f | %.1f |" % (
                "{:,}".format(p["size"]), ms(p["wall"]), ms(p["cpu"]), p["ratio"],
                p["rss_mb"]))
        out += ["", "- about %.2f ms CPU per %s %s." % (
            g["per_unit"] * g["per"] * 1000, "{:,}".format(g["per"]), g["unit"]), ""]

    parser = r["parser"]
    out += ["## Ganeti verify: parser throughput", "",
            "`ganeti_cmk.verify.parse()` timed in-process under %s on generated "
            "`gnt-cluster verify --error-codes` output (`bench/verify_output.py`: "
            "sections, timestamps, seven codes, one finding in seven with a "
            "SafeEncode escape); median of the runs shown. The first parse in a "
            "process also compiles the regular expressions: %s ms for 10 "
            "findings. Peak RSS of that process: %.1f MB." % (
                r["python"], ms(parser["first_parse"]), parser["rss_mb"]), "",
            "| findings | lines | MB | runs | median ms | findings/s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in parser["sizes"]:
        out.append("| %s | %s | %.2f | %d | %s | %s |" % (
            "{:,}".format(s["findings"]), "{:,}".format(s["lines"]),
            s["bytes"] / 1e6, s["runs"], "%.3f" % (s["median"] * 1000),
            "{:,.0f}".format(s["findings"] / s["median"])))
    out.append("")

    out += ["## Against needrestart", ""]
    nr, kb = cmds.get(NEEDRESTART), cmds["ganeti_kvm_binary"]
    if nr is None:
        out += ["needrestart was not available (`apt-get download needrestart` or "
                "its Perl libraries missing; `make bench` installs those).", ""]
    else:
        out += ["`needrestart -p` (Nagios mode, what a monitoring system would "
                "run every minute) on the reference load, interleaved with the "
                "checks above: %s ms wall, %s ms CPU, %.1f MB RSS; "
                "`ganeti_kvm_binary` %s ms wall, %s ms CPU: **%.1fx** faster "
                "(wall), %.1fx less CPU. needrestart %s the instances that run "
                "a replaced binary; it printed `%s`." % (
                    ms(nr.median("wall")), ms(nr.median("cpu")), nr.rss_max_mb(),
                    ms(kb.median("wall")), ms(kb.median("cpu")),
                    ratio(nr.median("wall"), kb.median("wall")),
                    ratio(nr.median("cpu"), kb.median("cpu")),
                    "names" if "inst0000" in nr.output else "names none of",
                    first_line(nr.output).replace("`", "'")), ""]

    out += ["## Memory", "", "Peak RSS of each check over every measured run "
            "(all loads), against %.1f MB for `%s`:" % (base.rss_max_mb(), BASE), "",
            "| check | peak RSS MB |", "| --- | ---: |"]
    out += ["| %s | %.1f |" % (label, mb) for label, mb in sorted(r["rss_max"].items())]
    out.append("")
    with open(TRIED) as f:
        out.append(f.read().rstrip("\n"))
    out.append("")
    return "\n".join(out)


def slope(points, key):
    """CPU seconds per unit of `key`, from the first point to the last."""
    a, b = points[0], points[-1]
    return (b["cpu"] - a["cpu"]) / (b[key] - a[key]) if b[key] != a[key] else 0.0


def growth(points, key, what):
    """One line: how time grows from the first point to the last."""
    a, b = points[0], points[-1]
    per = slope(points, key)
    unit, scale = (("1,000 processes", 1000) if key == "processes"
                   else ("100 instances", 100))
    return ("%s: from %s to %s %s, %s ms to %s ms wall (%s to %s ms CPU), "
            "about %.2f ms CPU per %s." % (
                what, "{:,}".format(a[key]), "{:,}".format(b[key]), key,
                ms(a["wall"]), ms(b["wall"]), ms(a["cpu"]), ms(b["cpu"]),
                per * scale * 1000, unit))


# ------------------------------------------------------------------ the run

def scaling_point(setup, load, args, scratch):
    base, check = setup.baselines()[0], kvm_binary_command(setup)
    measure([base, check], args.runs, args.warmup, scratch)
    return {"sleeps": len(load.sleepers), "processes": process_count(),
            "instances": len(load.instances), "replaced": load.replaced(),
            "wall": check.median("wall"), "cpu": check.median("cpu"),
            "ratio": ratio(check.median("wall"), base.median("wall")),
            "rss_mb": check.rss_max_mb()}


def other_growth(setup, args, scratch):
    """GROWTH: each hooked check at each size of its own load."""
    results = {}
    for module in NAMES:
        if module not in GROWTH:
            continue
        unit, per, sizes, quick, make = GROWTH[module]
        log("%s: growth with %s" % (module, unit))
        points = []
        for size in (quick if args.quick else sizes):
            base, check = setup.baselines()[0], make(setup, size)
            measure([base, check], args.sizes["growth_runs"], args.warmup, scratch)
            points.append({"size": size, "wall": check.median("wall"),
                           "cpu": check.median("cpu"),
                           "ratio": ratio(check.median("wall"), base.median("wall")),
                           "rss_mb": check.rss_max_mb()})
        first, last = points[0], points[-1]
        results[module] = {
            "service": load_service(module), "unit": unit, "per": per, "points": points,
            "per_unit": (last["cpu"] - first["cpu"]) / (last["size"] - first["size"])
            if last["size"] != first["size"] else 0.0}
    return results


def load_service(module):
    from ganeti_cmk.checks import load
    return load(module).service


def bench(args):
    sizes = args.sizes
    started = time.time()
    loadavg = os.getloadavg()[0]
    scratch = os.path.join(args.workdir, "run")
    build_measure(args.workdir)
    needrestart = needrestart_copy(args.workdir)
    load = Load(args.workdir)
    try:
        setup = Setup(args, load)
        rss = {}
        scaling = []
        ref_sleeps, ref_instances = sizes["reference"]
        log("KVM binary versions with %d instances, %s sleeps" % (
            sizes["fixed_instances"], " / ".join(map(str, sizes["sleeps"]))))
        load.set_instances(sizes["fixed_instances"])
        for count in sizes["sleeps"]:
            load.set_sleepers(count)
            scaling.append(scaling_point(setup, load, args, scratch))
        load.set_sleepers(ref_sleeps)
        log("KVM binary versions with %d sleeps, %s instances" % (
            ref_sleeps, " / ".join(map(str, sizes["instances"]))))
        reference = None
        for count in sizes["instances"]:
            load.set_instances(count)
            scaling.append(scaling_point(setup, load, args, scratch))
            if count == ref_instances:
                reference = reference_run(setup, load, args, scratch, needrestart)
        rss["ganeti_kvm_binary"] = max(p["rss_mb"] for p in scaling)
        grown = other_growth(setup, args, scratch)
    finally:
        load.close()
    for cmd in reference["commands"].values():
        if cmd.check is not None:
            name = "ganeti_" + cmd.check
            rss[name] = max(rss.get(name, 0.0), cmd.rss_max_mb())
    for module, g in grown.items():
        name = "ganeti_" + module
        rss[name] = max([rss.get(name, 0.0)] + [p["rss_mb"] for p in g["points"]])
    log("verify parser: %s findings" % " / ".join(map(str, sizes["parser"])))
    run = run_once([args.python, os.path.join(ROOT, "bench", "verify_output.py")]
                   + [str(n) for n in sizes["parser"]], os.environ.copy(), scratch)
    exited_0(run)
    parser = json.loads(run.stdout)
    parser["rss_mb"] = run.rss_kb / 1024.0
    by_processes = scaling[:len(sizes["sleeps"])]
    by_instances = scaling[len(sizes["sleeps"]):]
    return {"quick": args.quick, "sizes": sizes, "runs": args.runs,
            "warmup": args.warmup, "python": args.python,
            "machine": machine(args.python, needrestart and needrestart[1]),
            "reference": reference,
            "imports": reference.pop("imports"), "import_runs": sizes["import_runs"],
            "refresh_runs": reference.pop("refresh_runs"), "scaling": scaling,
            "growth": {"processes": growth(by_processes, "processes",
                                           "Unrelated processes (%d instances)"
                                           % sizes["fixed_instances"]),
                       "instances": growth(by_instances, "instances",
                                           "Instances (%s sleeps)"
                                           % "{:,}".format(ref_sleeps))},
            "other_growth": grown, "parser": parser, "rss_max": rss,
            "per_1000_processes": slope(by_processes, "processes") * 1000,
            "per_instance": slope(by_instances, "instances"),
            "loadavg": (loadavg, os.getloadavg()[0]),
            "duration": time.time() - started}


def reference_run(setup, load, args, scratch, needrestart):
    """Every check, the floors and needrestart on the reference load."""
    log("every check on the reference load (%d sleeps, %d instances)"
        % (len(load.sleepers), len(load.instances)))
    cmds = setup.baselines() + setup.commands()
    if needrestart:
        cmds.append(Command(NEEDRESTART, needrestart[0], setup.env(), anything))
    measure(cmds, args.runs, args.warmup, scratch)
    processes = process_count()
    runs = refresh_runs(setup)
    if any(n != 1 for n in runs.values()):
        raise BenchError("a cached result was refreshed while measuring: %r" % runs)
    imports = {FLOOR: import_times(cmds[1].argv, cmds[1].env,
                                   args.sizes["import_runs"], scratch)}
    for cmd in cmds:
        if cmd.check is not None:
            interpreter = shebang(cmd.argv[0])
            if os.path.basename(interpreter[0]) == "env":  # #!/usr/bin/env python3
                interpreter = [args.python] + interpreter[2:]
            imports[cmd.label] = import_times(interpreter + cmd.argv, cmd.env,
                                              args.sizes["import_runs"], scratch)
    return {"commands": {c.label: c for c in cmds}, "processes": processes,
            "instances": len(load.instances), "replaced": load.replaced(),
            "imports": imports, "refresh_runs": runs}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="2 runs, tiny loads: a smoke test of this script")
    p.add_argument("--runs", type=int, help="measured runs per command "
                   "(default %d, quick %d)" % (FULL["runs"], QUICK["runs"]))
    p.add_argument("--checks", default=os.path.join(ROOT, "build", "agent", "local"),
                   help="the built checks (make build)")
    p.add_argument("--python", default="/usr/bin/python3",
                   help="the nodes' python3, which runs the checks")
    p.add_argument("--output", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    p.add_argument("--workdir", help="for the loads (default: a new temp dir, "
                   "removed afterwards)")
    args = p.parse_args(argv)
    args.sizes = dict(QUICK if args.quick else FULL)
    args.runs = args.runs or args.sizes["runs"]
    args.warmup = args.sizes["warmup"]
    args.checks = os.path.abspath(args.checks)
    args.output = os.path.abspath(args.output)
    missing = [c for c in CHECKS if not os.access(os.path.join(args.checks, c), os.X_OK)]
    if missing:
        p.error("no built %s in %s (make build)" % (", ".join(missing), args.checks))
    interpreter = shebang(os.path.join(args.checks, CHECKS[0]))
    if interpreter[0] != args.python and interpreter[-1] != "python3":
        p.error("the built checks run %s, not %s" % (interpreter[0], args.python))
    if not shutil.which("gcc"):
        p.error("gcc is needed for the qemu stand-ins (apt-get install gcc)")
    return args


def _interrupted(signum, frame):
    raise KeyboardInterrupt()


def main(argv):
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    own_workdir = args.workdir is None
    args.workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="ganeti-cmk-bench-"))
    os.makedirs(args.workdir, exist_ok=True)
    os.chdir(args.checks)  # the agent runs local checks from their directory
    try:
        results = bench(args)
    except KeyboardInterrupt:
        log("interrupted; every process it started is gone")
        return 130
    except BenchError as e:
        log("failed: %s" % e)
        return 1
    finally:
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
    text = render(results)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        f.write(text)
    os.replace(args.output + ".tmp", args.output)
    log("wrote %s in %.0f s" % (args.output, results["duration"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
