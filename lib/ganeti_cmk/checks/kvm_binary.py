"""KVM binary versions: which instances still run a KVM binary replaced on disk?

Probe: the instances from Ganeti's pid files (each validated against the
process's -name, so a reused pid is never blamed), then every other qemu
process by executable name.  Each process's running executable
(/proc/PID/exe: inode, ' (deleted)') is compared with the file now at the
same path; versions come from the binaries' embedded version strings
(cached), never from running anything.  Evaluate: OK, or WARN/CRIT by how
long the new binary has been installed, naming the instances, both versions
and the remedy; UNKNOWN where only root may look.
"""

import os
import time

from .. import ganeti, procfs
from ..localcheck import CRIT, OK, UNKNOWN, WARN, Metric, Result, worst
from ..qemu_version import VersionCache
from ..runner import Check, SharedSettings, duration_levels
from ..safefile import trusted_owners
from ..words import fit, format_duration, plural, some

SERVICE = "KVM binary versions"
SECTION = "kvm_binary"
MAX_NAMES = 10  # instance names (or pids) listed in the summary; details list all
MAX_LIBRARIES = 3  # library names listed in the summary per group


class Process:
    """One qemu process: who it is and what it runs."""

    __slots__ = ("pid", "name", "managed", "kvm_path", "exe", "replaced",
                 "running", "installed", "installed_path", "since",
                 "libraries", "denied")

    def __init__(self, pid, name, managed, kvm_path=None):
        self.pid = pid
        self.name = name            # instance name, or -name (None if absent)
        self.managed = managed      # found through Ganeti's pid file
        self.kvm_path = kvm_path    # what it was started as
        self.exe = None             # procfs.Exe
        self.replaced = False       # its executable is no longer the file on disk
        self.running = None         # qemu_version.Version of the running binary
        self.installed = None       # ... of the file on disk now (None: unknown)
        self.installed_path = None  # that file, None when gone from disk
        self.since = None           # when the replacement was installed (ctime)
        self.libraries = []         # replaced shared libraries it maps
        self.denied = False         # /proc/PID/exe not readable: not root

    @property
    def outdated(self):
        return self.replaced or bool(self.libraries)

    def label(self):
        if self.managed:
            return self.name
        return "pid %d %s" % (self.pid, self.name if self.name else "(no -name)")

    def __repr__(self):
        return "Process(%d, %r, replaced=%r)" % (self.pid, self.name, self.replaced)


class Probe:
    """What one scan found."""

    __slots__ = ("processes", "foreign", "stale", "errors", "kvm_path",
                 "installed", "euid")

    def __init__(self):
        self.processes = []   # Process, Ganeti's instances first
        self.foreign = []     # (Process, uid): other users' qemu processes
        self.stale = []       # texts: pid files that name no running instance
        self.errors = []      # texts: what could not be read, and why
        self.kvm_path = None  # the cluster's kvm_path ...
        self.installed = None  # ... and its version, for "nothing running"
        self.euid = 0         # who looked


def find_instances(proc, run_dir, found, hidden=False):
    """Ganeti's running instances from their pid files, into `found`.

    A process counts only as ganeti.instance_process_problem allows: alive,
    its -name the instance, run by root or the instance's -runas user.
    `hidden`: /proc hides other users' processes, so a pid that seems not
    to run may just be invisible: not called stale.
    """
    for instance, pid in ganeti.kvm_pid_files(run_dir):
        if pid is None:
            found.stale.append("%s: the pid file holds no process id" % instance)
            continue
        p = Process(pid, instance, True)
        try:
            why = ganeti.instance_process_problem(proc, pid, instance, run_dir)
        except PermissionError:
            why, p.denied = None, True
        if why is None:
            found.processes.append(p)
        elif not (hidden and why == ganeti.NOT_RUNNING):
            found.stale.append("%s: the pid file names pid %d, %s"
                               % (instance, pid, why))


def started_as(run_dir, p, default_kvm_path):
    """The kvm_path an instance was started with (read only for outdated
    ones: JSON parsing of every runtime file would cost every run)."""
    try:
        return ganeti.kvm_runtime_path(run_dir, p.name) or default_kvm_path
    except PermissionError:
        return default_kvm_path


def find_others(proc, matches, found):
    """qemu processes Ganeti does not know, by their executable's name.

    One readlink per process (a node has ~1000); comm only where that is
    not permitted (not root: found, to be reported), cmdline and owner
    only for the few that match.  The executable's name is the real
    file's: a qemu started as /usr/bin/kvm on Debian 12 is
    qemu-system-x86_64.  Other users' processes go to `found.foreign`:
    listed, never inspected: their argv, mount namespace and the files
    they name are that user's choice.
    """
    known = {p.pid for p in found.processes}
    trusted = trusted_owners()
    for pid in procfs.pids(proc):
        if pid in known:
            continue
        try:
            try:
                name = procfs.exe_name(proc, pid)
            except PermissionError:
                name = procfs.comm(proc, pid)
            if name is None or not matches(name):
                continue
            argv = procfs.cmdline(proc, pid)
            uid = procfs.foreign_uid(proc, pid, trusted) if argv else None
        except PermissionError:
            continue  # /proc hides it (hidepid): probe() says so once
        if not argv:
            continue  # exited, a zombie, or a kernel thread
        if uid is not None:
            found.foreign.append((Process(pid, ganeti.qemu_name(argv), False), uid))
            continue
        kvm_path = argv[0] if argv[0].startswith("/") else None
        found.processes.append(Process(pid, ganeti.qemu_name(argv), False,
                                       kvm_path))


def _version(cache, path, st):
    try:
        return cache.get(path, st)
    except OSError:
        return None  # exited or replaced while we read: no version, no error


def inspect(proc, p, cache, check_libraries, kvm_path_of, scan_began):
    """Fill in what `p` runs and what is on disk; False if it has exited
    (or its pid was reused) since the scan began (procfs.boot_time()).

    `kvm_path_of(p)` gives a managed instance's kvm_path, asked for only
    when it is outdated (for the details, and for the installed version
    when its binary is gone from disk).
    """
    try:
        exe = procfs.exe(proc, p.pid)
        if exe is None:
            return False
        disk_path = procfs.disk_path(proc, p.pid, exe.path)
        disk = procfs.disk_stat(proc, p.pid, exe.path)
    except PermissionError:
        p.denied = True
        return True
    p.exe = exe
    p.running = _version(cache, "%s/%d/exe" % (proc, p.pid), exe.stat)
    if disk is not None and procfs.same_file(disk, exe.stat) and not exe.deleted:
        p.installed, p.installed_path = p.running, exe.path
    elif disk is not None:
        p.replaced = True
        p.installed, p.installed_path = _version(cache, disk_path, disk), exe.path
        # Since the running file was unlinked (its ctime: no path names it
        # any more, so nothing moves it later).  Not the new file's mtime
        # (dpkg keeps the build time) nor its ctime (every later upgrade,
        # chmod or chown moves it).
        p.since = exe.stat.st_ctime if exe.deleted else disk.st_ctime
    elif exe.deleted:
        # Gone from disk (package removed, or moved); kvm_path may show
        # what comes next.
        p.replaced = True
        p.since = exe.stat.st_ctime
        p.kvm_path = p.kvm_path or kvm_path_of(p)
        p.installed = _installed_at(proc, p, cache)
    else:
        # Not deleted, yet invisible at its path from here (a chroot in
        # another mount namespace): nothing says it was replaced.
        p.installed = p.running
    if check_libraries and not p.replaced:
        _check_libraries(proc, p)
    if p.outdated and p.kvm_path is None:
        p.kvm_path = kvm_path_of(p)
    # A process that exited meanwhile has no files to look at any more,
    # and its binary was not "removed from disk"; one that got its pid
    # since we began is another.  Checked where it matters, to keep the
    # steady state at no extra read per process.
    if p.outdated:
        started = procfs.start_time(proc, p.pid)
        if started is None or started > scan_began:
            return False
    return True


def _installed_at(proc, p, cache):
    """The version of what `p.kvm_path` resolves to now, or None."""
    if not p.kvm_path:
        return None
    try:
        st = procfs.disk_stat(proc, p.pid, p.kvm_path)
    except PermissionError:
        return None
    if st is None:
        return None
    version = _version(cache, procfs.disk_path(proc, p.pid, p.kvm_path), st)
    if version is not None:
        p.installed_path = p.kvm_path
    return version


def _check_libraries(proc, p):
    """Replaced shared libraries `p` maps, and since when: like the binary,
    the mapped file's ctime, set when the upgrade unlinked it."""
    since = {}
    try:
        for lib, addresses in (procfs.deleted_mappings(proc, p.pid) or {}).items():
            st = procfs.mapped_stat(proc, p.pid, addresses) if lib != p.exe.path else None
            if st is not None:  # None: unmapped meanwhile
                since[lib] = st.st_ctime
    except PermissionError:
        p.denied = True
        return
    p.libraries = sorted(since)
    if since:
        p.since = min(since.values())


def probe(proc, run_dir, kvm_path, matches, cache, check_libraries=False):
    """Find and inspect every qemu process; a Probe."""
    scan_began = procfs.boot_time()
    found = Probe()
    found.kvm_path = kvm_path
    found.euid = os.geteuid()
    pid_dir = os.path.join(run_dir, ganeti.KVM_RUN_SUBDIR, "pid")
    hidden = found.euid != 0 and procfs.others_hidden(proc)
    try:
        find_instances(proc, run_dir, found, hidden)
    except PermissionError as e:
        found.errors.append("cannot read Ganeti's pid files in %s (%s)"
                            % (pid_dir, e.strerror))
    if hidden:
        found.errors.append("cannot see other users' processes (%s is mounted "
                            "with hidepid)" % proc)
    find_others(proc, matches, found)

    def kvm_path_of(p):
        return started_as(run_dir, p, kvm_path) if p.managed else None

    for p in list(found.processes):
        if not inspect(proc, p, cache, check_libraries, kvm_path_of, scan_began):
            found.processes.remove(p)
            if p.managed:
                found.stale.append("%s: pid %d exited during the scan"
                                   % (p.name, p.pid))
    if not found.processes and kvm_path:
        try:
            st = os.stat(kvm_path)
        except (OSError, ValueError):  # ValueError: a NUL byte in ssconf
            st = None
        found.installed = st and _version(cache, kvm_path, st)
    return found


# --- evaluate ---------------------------------------------------------------

def _versions_text(p):
    """'running 7.2.15, installed 7.2.18' with just enough detail."""
    run, inst = p.running, p.installed
    if p.libraries and not p.replaced:
        return some((os.path.basename(lib) for lib in p.libraries), MAX_LIBRARIES)
    if p.installed_path is None:
        return "running %s, binary removed from disk" % (
            run.number if run else "version unknown")
    if run is None or inst is None:
        return "running %s, installed %s" % (run.number if run else "version unknown",
                                             inst.number if inst else "version unknown")
    if run == inst:
        return "%s reinstalled" % run.number
    if run.number == inst.number:
        return "running %s, installed %s" % (run.full(), inst.full())
    return "running %s, installed %s" % (run.number, inst.number)


def _groups(processes, now, limit):
    """': web1, db3 (running 7.2.15, installed 7.2.18 since 2 h); app1 (...)'.

    At most `limit` names in all (the details list every one); with
    `limit` None just '' (the count before it and the details say enough).
    """
    if limit is None:
        return ""
    groups = {}
    for p in processes:
        groups.setdefault(_versions_text(p), []).append(p)
    parts = []
    for text, members in groups.items():
        shown = min(limit, len(members))
        limit -= shown
        oldest = min(m.since for m in members)
        parts.append("%s (%s since %s)" % (
            some((m.label() for m in members), shown), text,
            format_duration(max(0, now - oldest))))
    return ": " + "; ".join(parts)


def _qemu(v):
    """'QEMU 7.2.22, Debian 1:7.2+dfsg-7+deb12u18+b3' or 'version unknown'."""
    if v is None:
        return "version unknown"
    return "QEMU %s, %s" % (v.number, v.package) if v.package else "QEMU %s" % v.number


def _installed_text(processes):
    """_qemu() of each installed version seen, once."""
    texts = []
    for p in processes:
        if _qemu(p.installed) not in texts:
            texts.append(_qemu(p.installed))
    return "; ".join(texts)


def _full(version):
    return version.full() if version else "version unknown"


def _when(timestamp):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _detail(p, now):
    who = ("%s: pid %d" % (p.name, p.pid) if p.managed
           else "not started by Ganeti: %s" % p.label())
    if p.denied:
        return "%s: not inspected (permission denied)" % who
    text = "%s, %s%s" % (who, p.exe.path, procfs.DELETED if p.exe.deleted else "")
    if p.outdated:
        if not p.replaced:
            what = "replaced libraries: %s" % ", ".join(p.libraries)
        elif p.installed_path is not None:
            what = "running %s, installed %s" % (_full(p.running), _full(p.installed))
        else:
            what = _versions_text(p)
        text += ", %s since %s (%s ago)" % (what, _when(p.since),
                                            format_duration(max(0, now - p.since)))
    else:
        text += ", QEMU %s" % _full(p.running)
    if p.kvm_path and procfs.printable(p.kvm_path) != procfs.printable(p.exe.path):
        text += ", started as %s" % p.kvm_path
    return text


def evaluate(found, warn_after, crit_after, now, cache_problem=None):
    """The one Result for a Probe.

    `cache_problem`: why the version cache could not be used (an unsafe
    state_dir): WARN, the verdict itself still holds.
    """
    procs = found.processes
    outdated = [p for p in procs if p.outdated]
    problems = _problems(found)
    states = [OK] + [_age_state(now - p.since, warn_after, crit_after) for p in outdated]
    state = worst(states + ([UNKNOWN] if problems else [])
                  + ([WARN] if cache_problem else []))
    cache_note = ["version cache not used: " + cache_problem] if cache_problem else []
    # Fewer names until it fits: the counts and the remedy must not be cut.
    def build(limit):
        summary = "; ".join((_outdated_clauses(found, outdated, now, limit) + problems
                             or [_all_current(found)]) + cache_note)
        if outdated and state == OK:
            summary += " (WARN after %s)" % format_duration(warn_after)
        return summary
    summary = fit(build, (MAX_NAMES, 3, None))

    details = [_detail(p, now) for p in sorted(
        procs, key=lambda p: (not p.outdated, not p.managed, p.name or "", p.pid))]
    details += ["not started by Ganeti: %s, run by uid %d: not inspected (only "
                "root's qemu processes and Ganeti's instances are)" % (p.label(), uid)
                for p, uid in sorted(found.foreign, key=lambda f: f[0].pid)]
    details += found.stale
    if outdated:
        replaced = sorted({"binary" if p.replaced else "library" for p in outdated})
        details.append("levels: WARN %s, CRIT %s after the new %s was installed" % (
            _after(warn_after), _after(crit_after), " or ".join(replaced)))
    return Result(state, SERVICE, summary, details, [
        Metric("kvm_outdated", len(outdated)),
        Metric("kvm_processes", len(procs))])


def _age_state(age, warn_after, crit_after):
    return CRIT if age >= crit_after else WARN if age >= warn_after else OK


def _outdated_clauses(found, outdated, now, limit):
    """What runs replaced files, and what to do: Ganeti can live-migrate
    its instances, anything else must be restarted."""
    clauses = []
    ours = [p for p in outdated if p.managed]
    binary = [p for p in ours if p.replaced]
    libs = [p for p in ours if not p.replaced]
    if binary:
        clauses.append("%s of %s %s a replaced KVM binary%s" % (
            len(binary), plural(sum(p.managed for p in found.processes), "instance",
                                 "instances"),
            "runs" if len(binary) == 1 else "run", _groups(binary, now, limit)))
    if libs:
        clauses.append("%s replaced libraries%s" % (
            plural(len(libs), "instance maps", "instances map"),
            _groups(libs, now, limit)))
    if ours:
        clauses[-1] += ": live-migrate or restart %s" % _them(ours)
    others = [p for p in outdated if not p.managed]
    if others:
        clauses.append("%s not started by Ganeti %s a replaced binary%s: restart %s" % (
            plural(len(others), "qemu process", "qemu processes"),
            "runs" if len(others) == 1 else "run", _groups(others, now, limit),
            _them(others)))
    return clauses


def _them(processes):
    return "it" if len(processes) == 1 else "them"


def _problems(found):
    """[] or one clause: what could not be inspected, and what to do."""
    problems = list(found.errors)  # all of them are permission problems
    denied = sorted(p.pid for p in found.processes if p.denied)
    if denied:
        problems.insert(0, "cannot inspect %s (pid %s): permission denied" % (
            plural(len(denied), "qemu process", "qemu processes"),
            some((str(pid) for pid in denied), MAX_NAMES)))
    if not problems:
        return []
    return ["; ".join(problems) + (
        ": run the check as root" if found.euid != 0 else
        " although the check runs as root (a security module, or another "
        "user namespace?)")]


def _after(seconds):
    return "at once" if seconds <= 0 else format_duration(seconds)


def _all_current(found):
    """The summary when nothing runs a replaced binary."""
    instances = [p for p in found.processes if p.managed]
    others = sorted((p for p in found.processes if not p.managed),
                    key=lambda p: p.pid)
    if not found.processes:
        text = "no qemu processes running"
        if found.installed:
            text += "; installed at %s: %s" % (found.kvm_path, _qemu(found.installed))
        return text
    if instances:
        text = "all %s the installed KVM binary (%s)" % (
            plural(len(instances), "instance runs", "instances run"),
            _installed_text(instances))
    else:
        text = "no Ganeti instances running"
    if others:
        text += "; %s not started by Ganeti: %s" % (
            plural(len(others), "qemu process", "qemu processes"),
            some((p.label() for p in others), MAX_NAMES))
    return text


DEFAULTS = {
    "warn_after": "0",
    "crit_after": "7d",
    "process_names": "qemu-system-* kvm qemu-kvm",
    "kvm_path": "/usr/bin/kvm",
    "check_libraries": "no",
}


class Settings(SharedSettings):
    """`[kvm_binary]` and the paths, typed; warn_after <= crit_after."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "proc",
                                "run_dir", "state_dir", "data_dir")
        self.warn_after, self.crit_after = duration_levels(config, SECTION)
        self.matches = procfs.names_matcher(config.get_list(SECTION, "process_names"))
        self.check_libraries = config.get_bool(SECTION, "check_libraries")
        self.kvm_path = config.get_path(SECTION, "kvm_path")


def run(ctx):
    s = ctx.settings
    try:
        kvm_path = ganeti.cluster_kvm_path(s.data_dir)
    except OSError:
        kvm_path = None
    kvm_path = kvm_path or s.kvm_path
    cache = VersionCache(s.state_dir, ctx.log)
    found = probe(s.proc, s.run_dir, kvm_path, s.matches, cache, s.check_libraries)
    cache.save()
    ctx.log("%d qemu processes, %d version reads, stale pid files: %d"
            % (len(found.processes), cache.reads, len(found.stale)))
    return [evaluate(found, s.warn_after, s.crit_after, time.time(), cache.problem)]


CHECK = Check(
    "kvm_binary", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: which KVM instances still run a qemu "
    "binary that has since been replaced on disk (by a package upgrade), "
    "and so need a live migration or a restart?",
    epilog="States: OK all instances run the installed binary; WARN/CRIT when "
    "some run a replaced one, by how long\nthe new binary has been installed "
    "([kvm_binary] warn_after, crit_after); UNKNOWN when not run as root.")
