"""DRBD: does every DRBD disk replicate, named by instance, on both its nodes?

Probe: /proc/drbd (read again once if it changed while being read), the
owner of each configured minor from Ganeti's bdev-cache (both nodes) or
instance-disks links (primary), and, where a device is Secondary, which
instances' qemu runs here (pid file + -name).  Conditions that are only
bad when they last (not connected, Primary/Primary) are timed across runs
in a small state file.  Evaluate: one service per device, `DRBD <instance>
<disk>` (or `DRBD minor N`), plus the node's `DRBD` service; or everything
in `DRBD` with `services = summary`.
"""

import errno
import os
import time

from .. import drbd, ganeti, sysfs
from ..jsonc import loads
from ..localcheck import (CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable,
                          Problem, Result, worst)
from ..runner import Check, SharedSettings
from ..safefile import describe, read_file
from ..statefile import read, write_atomically
from ..words import fit, format_bytes, format_duration, plural, some

SERVICE = "DRBD"
SECTION = "drbd"
DEFAULTS = {
    "proc_drbd": "/proc/drbd",
    "services": "per-device",
    "resync_state": "warn",
    "standalone_grace": "30s",
    "disconnected_grace": "15m",
    "dual_primary_grace": "1h",
    "require_module": "auto",
}
PROC_DRBD_MAX = 16 << 20  # 5000 minors resyncing are about 2 MiB
STATE_FILE = "drbd.json"
STATE_MAX = 4 << 20
MAX_SERVICE_NAME = 100  # localcheck.MAX_SERVICE: longer names would be cut
MAX_NAMES = 10

# Connection states by what they mean for a Ganeti disk.
RESYNC = frozenset(("SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT",
                    "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT",
                    "WFSyncUUID"))
SYNCING = frozenset(("SyncSource", "SyncTarget"))  # moving data
PAUSED = frozenset(("PausedSyncS", "PausedSyncT"))
VERIFY = frozenset(("VerifyS", "VerifyT"))
CONGESTED = frozenset(("Ahead", "Behind"))
WAITING = frozenset(("WFConnection", "WFReportParams", "Unconnected", "Timeout",
                     "BrokenPipe", "NetworkFailure", "ProtocolError",
                     "TearDown", "Disconnecting"))
STANDALONE = "StandAlone"
LINKED = frozenset(("Connected",)) | RESYNC | VERIFY  # the peer's disk state counts

# timed conditions
SPLIT, DISCONNECTED, DUAL_PRIMARY = "standalone", "disconnected", "dual_primary"


class Settings(SharedSettings):
    def __init__(self, config):
        SharedSettings.__init__(self, config, "data_dir",
                                "proc", "run_dir", "state_dir", "sys")
        self.proc_drbd = config.get_path(SECTION, "proc_drbd")
        self.summary = config.get_choice(SECTION, "services",
                                         ("per-device", "summary")) == "summary"
        self.resync_ok = config.get_choice(SECTION, "resync_state",
                                           ("warn", "ok")) == "ok"
        self.standalone_grace = config.get_duration(SECTION, "standalone_grace")
        self.disconnected_grace = config.get_duration(SECTION, "disconnected_grace")
        self.dual_primary_grace = config.get_duration(SECTION, "dual_primary_grace")
        self.require_module = config.get_choice(SECTION, "require_module",
                                                ("auto", "yes", "no"))


# --- probe ----------------------------------------------------------------

class Probe:
    """What this node showed."""

    __slots__ = ("proc_drbd", "drbd", "owners", "stale_cache", "running",
                 "problems", "notes", "since")

    def __init__(self, proc_drbd="/proc/drbd", parsed=None):
        self.proc_drbd = proc_drbd
        self.drbd = parsed        # drbd.ProcDrbd
        self.owners = {}          # minor -> ganeti.DiskOwner
        self.stale_cache = []     # bdev-cache minors that are not configured
        self.running = {}         # instance -> qemu pid, on this node
        self.problems = []        # node-level Problems
        self.notes = []           # node-level details
        self.since = {}           # "minor:condition" -> when first seen


def read_proc_drbd(path):
    """The parsed file, read a second time when the first read looks torn."""
    for _ in range(2):
        parsed = drbd.parse(read_file(path, PROC_DRBD_MAX).decode("utf-8", "replace"))
        if not parsed.torn:
            break
    return parsed


def not_loaded(s, log):
    """No /proc/drbd: the CRIT Result when this node needs DRBD, else
    NotApplicable with the reason."""
    if "drbd" in sysfs.modules(s.sys):
        return Result(UNKNOWN, SERVICE, "the drbd module is loaded but %s is "
                      "missing: check [drbd] proc_drbd" % s.proc_drbd)
    evidence, unsure = [], None
    if s.require_module == "yes":
        evidence.append("[drbd] require_module = yes")
    elif s.require_module == "auto":
        try:
            minors = ganeti.bdev_cache_minors(s.run_dir)
        except OSError as e:
            minors, unsure = [], "cannot list Ganeti's bdev-cache: %s" % describe(e)
        if minors:
            evidence.append("Ganeti's bdev-cache lists DRBD %s %s" % (
                "minor" if len(minors) == 1 else "minors", some(map(str, minors), 10)))
        try:
            templates = ganeti.enabled_disk_templates(s.data_dir)
        except PermissionError as e:
            return Result(UNKNOWN, SERVICE, "no %s, and whether this node needs "
                          "DRBD is unknown: cannot read the cluster configuration "
                          "(%s): run the check as root" % (s.proc_drbd, describe(e)))
        except (OSError, ValueError) as e:
            templates = None
            unsure = "cannot read the cluster configuration: %s" % (
                describe(e) if isinstance(e, OSError) else e)
        log("enabled disk templates: %s" % templates)
        if templates and "drbd" in templates:
            evidence.append("the cluster enables the drbd disk template")
        elif templates is None and unsure is None:
            unsure = ("this node keeps no copy of the cluster configuration "
                      "(only master candidates do)")
    if evidence:
        return Result(CRIT, SERVICE, "drbd module not loaded: modprobe drbd "
                      "(%s)" % "; ".join(evidence),
                      ["%s is missing and so is %s" % (
                          s.proc_drbd, os.path.join(s.sys, "module", "drbd"))]
                      + evidence)
    why = "no %s (drbd module not loaded)" % s.proc_drbd
    if s.require_module == "no":
        raise NotApplicable(why + " and [drbd] require_module = no")
    if unsure:
        raise NotApplicable("%s, no DRBD device in Ganeti's bdev-cache, and "
                            "whether the cluster enables drbd is unknown: %s; "
                            "set [drbd] require_module = yes to require the "
                            "module here" % (why, unsure))
    raise NotApplicable("%s, no DRBD device in Ganeti's bdev-cache, and the "
                        "cluster does not enable the drbd disk template" % why)


def find_owners(run_dir, devices, p):
    """Fill p.owners (minor -> DiskOwner) and p.stale_cache."""
    configured = {d.minor for d in devices}
    try:
        cached = ganeti.bdev_cache_minors(run_dir)
    except OSError as e:
        cached = []
        p.problems.append(Problem(UNKNOWN, "cannot read Ganeti's bdev-cache "
                                  "(%s): devices are named by minor; run the "
                                  "check as root" % describe(e)))
    p.stale_cache = [m for m in cached if m not in configured]
    cached = set(cached)  # looked up once per configured minor
    links = None
    for minor in sorted(configured):
        owner = ganeti.read_bdev_cache(run_dir, minor) if minor in cached else None
        if owner is None or owner.problem:
            if links is None:
                try:
                    links = ganeti.instance_disk_links(run_dir)
                except OSError as e:
                    links = {}
                    p.notes.append("cannot read Ganeti's instance-disks links: %s"
                                   % describe(e))
            owner = links.get(minor, owner)
        if owner is not None:
            p.owners[minor] = owner
    # The same instance disk on two minors: which is which is unknown.
    claims = {}
    for minor, owner in p.owners.items():
        if owner.problem is None:
            claims.setdefault((owner.instance, owner.disk), []).append(minor)
    for (instance, disk), minors in claims.items():
        if len(minors) > 1:
            for minor in minors:
                p.owners[minor] = ganeti.DiskOwner(
                    source=p.owners[minor].source,
                    problem="%s %s is claimed by minors %s" % (
                        instance, disk, ", ".join(map(str, sorted(minors)))))


def find_running(proc, run_dir, devices, owners, p):
    """Fill p.running where it matters: for Secondary devices of known
    instances.  Read after /proc/drbd, so that a migration's order (qemu
    stopped, then the disk made Secondary) can never look like a
    Secondary disk under a running qemu."""
    if not any(d.role == "Secondary" and d.minor in owners
               and owners[d.minor].problem is None for d in devices):
        return
    try:
        p.running = ganeti.running_instances(proc, run_dir)
    except OSError as e:
        p.problems.append(Problem(UNKNOWN, "cannot tell which instances run "
                                  "here (%s): run the check as root" % describe(e)))


# --- timers across runs -----------------------------------------------------

def timed_conditions(devices):
    """{"minor:condition"} that count only when they last."""
    keys = set()
    for d in devices:
        if d.problem:  # torn: its timers are kept, not judged
            continue
        if d.cs == STANDALONE:
            keys.add("%d:%s" % (d.minor, SPLIT))
        if d.cs in WAITING:
            keys.add("%d:%s" % (d.minor, DISCONNECTED))
        if d.role == "Primary" and d.peer_role == "Primary":
            keys.add("%d:%s" % (d.minor, DUAL_PRIMARY))
    return keys


def update_timers(saved, conditions, now, unsure=()):
    """The new state: {"last": now, "since": {key: first seen}}.

    `saved` is the last run's state ({} when none), `conditions` the keys
    that hold now, `unsure` the minors this run could not read (their
    timers are kept).  A clock that went back since the last run moves
    every "since" back as far, so a grace never gets longer; a "since"
    in the future becomes now.
    """
    last = saved.get("last")
    shift = last - now if last is not None and now < last else 0.0
    since = {}
    for key, then in saved.get("since", {}).items():
        if key in conditions or key.split(":")[0] in unsure:
            since[key] = min(then - shift, now)
    for key in conditions:
        since.setdefault(key, now)
    return {"last": now, "since": since}


def _valid_state(data):
    return (isinstance(data, dict) and isinstance(data.get("since"), dict)
            and isinstance(data.get("last"), (int, float))
            and all(isinstance(k, str) and isinstance(v, (int, float))
                    and v == v and abs(v) < 1e12 for k, v in data["since"].items())
            and data["last"] == data["last"] and abs(data["last"]) < 1e12)


def load_state(path, notes):
    """The saved timers; {} when none, unreadable or corrupt (it heals:
    the next save replaces it)."""
    try:
        data = loads(read(path, STATE_MAX).decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:
        notes.append("state file %s unreadable, timers start again: %s" % (
            path, describe(e) if isinstance(e, OSError) else "not JSON"))
        return {}
    if not _valid_state(data):
        notes.append("state file %s corrupt, timers start again" % path)
        return {}
    return data


def keep_time(state_dir, devices, now, p):
    """Time the conditions that need a grace across runs: p.since."""
    path = os.path.join(state_dir, STATE_FILE)
    conditions = timed_conditions(devices)
    unsure = {str(d.minor) for d in devices if d.problem}
    if not conditions and not unsure and not os.path.lexists(path):
        return
    state = update_timers(load_state(path, p.notes), conditions, now, unsure)
    p.since = state["since"]
    try:
        if state["since"]:
            import json  # writing only: reading needs jsonc alone
            write_atomically(path, json.dumps(state, sort_keys=True))
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError as e:
        p.problems.append(Problem(WARN, "cannot save %s (%s): grace times "
                                  "cannot run out, so a lasting problem stays "
                                  "WARN" % (path, describe(e))))


def probe(s, now, log=lambda message: None):
    """Everything the evaluation needs, or a Result/NotApplicable for a
    node without a usable /proc/drbd."""
    try:
        parsed = read_proc_drbd(s.proc_drbd)
    except FileNotFoundError:
        return not_loaded(s, log)
    except OSError as e:
        return Result(UNKNOWN, SERVICE, "cannot read %s: %s%s" % (
            s.proc_drbd, describe(e), ": run the check as root"
            if e.errno in (errno.EACCES, errno.EPERM) else ""))
    p = Probe(s.proc_drbd, parsed)
    if parsed.drbd9:
        return p
    devices = parsed.configured()
    log("%s: DRBD %s, %d configured minors" % (s.proc_drbd, parsed.version,
                                               len(devices)))
    find_owners(s.run_dir, devices, p)
    find_running(s.proc, s.run_dir, devices, p.owners, p)
    keep_time(s.state_dir, devices, now, p)
    return p


# --- evaluate ---------------------------------------------------------------

class Verdict:
    """One device, judged."""

    __slots__ = ("device", "owner", "label", "service", "state", "summary",
                 "details", "metrics")

    def __init__(self, device, owner):
        self.device = device
        self.owner = owner
        self.label = "minor %d" % device.minor
        self.service = "DRBD minor %d" % device.minor
        self.state = OK
        self.summary = ""
        self.details = []
        self.metrics = []


NO_INSTANCE = "no Ganeti instance known for it on this node"


def name_device(v):
    """The service name: by instance and disk where Ganeti says so,
    else by minor (with the reason in the details)."""
    owner = v.owner
    if owner is None:
        v.details.append("%s (no bdev-cache entry, no instance-disks link)"
                         % NO_INSTANCE)
        return
    if owner.problem:
        v.details.append("%s (%s %s)" % (NO_INSTANCE, owner.source, owner.problem))
        return
    service = "DRBD %s %s" % (owner.instance, owner.disk)
    if len(service) > MAX_SERVICE_NAME:
        v.label = "%s %s (minor %d)" % (owner.instance, owner.disk, v.device.minor)
        v.details.append("%s: named by minor, the name is too long for a "
                         "service name" % v.label)
        return
    v.service = service
    v.label = "%s %s" % (owner.instance, owner.disk)


def _status(d):
    return "%s, %s/%s, %s/%s" % (d.cs, d.role, d.peer_role, d.disk, d.peer_disk)


def _sync_text(d):
    sync, parts = d.sync, []
    if sync is None:
        return ""
    if sync.percent is not None:
        parts.append("%.1f%% done" % sync.percent)
    if sync.left is not None:
        parts.append("%s left" % format_bytes(sync.left))
    if sync.finish is not None and not sync.stalled:
        parts.append("finish in about %s (DRBD's estimate)"
                     % format_duration(sync.finish))
    if sync.stalled:
        parts.append("stalled")
    return ", ".join(parts)


def _for(since, key, now):
    """How long a timed condition has held (0 when first seen now)."""
    return max(0.0, now - since.get(key, now))


def judge(d, owner, s, p, now):
    """A Verdict for one configured device: its problems, worst first."""
    v = Verdict(d, owner)
    name_device(v)
    problems, info = [], []
    instance = owner.instance if owner is not None and owner.problem is None else None
    if d.problem:
        problems.append(Problem(UNKNOWN, "cannot read minor %d's status in "
                                "%s (%s): %s" % (d.minor, p.proc_drbd,
                                                 d.problem, d.raw)))
    else:  # a torn block's words may be from before or after: not judged
        if d.unknown:
            problems.append(Problem(UNKNOWN, "unknown DRBD state %s: %s" % (
                " ".join(d.unknown), d.raw)))
        problems += _connection(d, s, p, now, info)
        problems += _disks(d)
        problems += _roles(d, s, p, now, instance)
        if d.oos is not None:
            v.metrics.append(Metric("drbd_oos_bytes", d.oos, min=0))
        if d.sync is not None and d.sync.percent is not None and not d.sync.verify:
            v.metrics.append(Metric("drbd_sync_percent", d.sync.percent, min=0, max=100))
    problems.sort(key=lambda problem: problem.state.rank, reverse=True)
    v.state = worst(problem.state for problem in problems)
    status = "" if d.problem else " (drbd%d: %s)" % (d.minor, _status(d))
    if problems:
        v.summary = "; ".join(problem.text for problem in problems) + status
    else:
        v.summary = "replicating%s%s" % (status, "; " + "; ".join(info) if info else "")
    if v.service.startswith("DRBD minor"):
        v.summary += "; " + (NO_INSTANCE if v.label.startswith("minor")
                             else "it is " + v.label)
    v.details += ["device /dev/drbd%d, Ganeti's entry: %s" % (
        d.minor, owner.source if owner is not None else "none"),
        "/proc/drbd: %s" % d.raw]
    if d.oos is not None:
        v.details.append("out of sync: %s" % format_bytes(d.oos))
    if instance in p.running:
        v.details.append("%s's qemu runs here (pid %d)" % (instance, p.running[instance]))
    return v


def _connection(d, s, p, now, info):
    cs, found = d.cs, []
    if cs == STANDALONE:  # Ganeti's own disconnects last seconds
        held = _for(p.since, "%d:%s" % (d.minor, SPLIT), now)
        if held >= s.standalone_grace:
            found.append(Problem(CRIT, "StandAlone: not replicating; possible "
                                 "split brain: check the kernel log (dmesg)"))
        else:
            found.append(Problem(WARN, "StandAlone for %s: not replicating "
                                 "(Ganeti disconnects a disk for moments when "
                                 "it migrates or replaces disks; CRIT after %s)"
                                 % (format_duration(held),
                                    format_duration(s.standalone_grace))))
    elif cs in WAITING:
        held = _for(p.since, "%d:%s" % (d.minor, DISCONNECTED), now)
        if held >= s.disconnected_grace:
            found.append(Problem(CRIT, "not connected (%s) for %s: the peer "
                                 "node is down or unreachable: check it and "
                                 "the replication network" % (cs, format_duration(held))))
        else:
            found.append(Problem(WARN, "not connected (%s) for %s: the peer "
                                 "node is down or unreachable (CRIT after %s)"
                                 % (cs, format_duration(held),
                                    format_duration(s.disconnected_grace))))
    elif cs in RESYNC:
        moving = cs in SYNCING and not (d.sync is not None and d.sync.stalled)
        what = "resync paused" if cs in PAUSED else (
            "resyncing" if cs in SYNCING else "starting a resync")
        text = "%s (%s, this node %s)" % (what, cs, "sends" if cs.endswith(
            ("S", "Source")) else "receives")
        details = _sync_text(d)
        if details:
            text += ": " + details
        # resync_state = ok covers a resync that moves data, not one that
        # is paused, stalled or stuck in the handshake before it
        found.append(Problem(OK if moving and s.resync_ok else WARN, text))
    elif cs in CONGESTED:
        found.append(Problem(WARN, "replication suspended by congestion (%s)%s"
                             % (cs, ": %s out of sync" % format_bytes(d.oos)
                                if d.oos else "")))
    elif cs in VERIFY:
        info.append("online verify running (%s)%s" % (cs, ": " + _sync_text(d)
                                                       if d.sync else ""))
    if cs == "Connected" and d.oos and d.disk == d.peer_disk == "UpToDate":
        found.append(Problem(WARN, "%s out of sync although Connected and no "
                             "resync running (online verify found a "
                             "divergence): disconnect and reconnect the "
                             "device to resync it" % format_bytes(d.oos)))
    elif cs in VERIFY and d.oos:  # a verify runs for hours: say it now
        found.append(Problem(WARN, "%s out of sync found by the running online "
                             "verify (%s): when it ends, disconnect and "
                             "reconnect the device to resync it"
                             % (format_bytes(d.oos), cs)))
    return found


LOCAL_DISK = {
    "Diskless": (CRIT, "local disk Diskless: this node holds no copy of the data"),
    "Failed": (CRIT, "local disk Failed: I/O error on the backing storage "
               "(check the kernel log and LVM)"),
    "Attaching": (WARN, "local disk Attaching"),
    "Negotiating": (WARN, "local disk Negotiating"),
    "Consistent": (WARN, "local disk Consistent: not known to be up to date"),
    "DUnknown": (WARN, "local disk DUnknown"),
}
PEER_DISK = {
    "Diskless": (CRIT, "peer disk Diskless: the peer holds no copy of the data"),
    "Failed": (CRIT, "peer disk Failed: I/O error on the peer's backing storage"),
    "Attaching": (WARN, "peer disk Attaching"),
    "Negotiating": (WARN, "peer disk Negotiating"),
    "Consistent": (WARN, "peer disk Consistent: not known to be up to date"),
    "DUnknown": (WARN, "peer disk DUnknown although connected"),
}


def _disks(d):
    found = []
    # a stale copy that DRBD is about to resync (Behind: after the congestion)
    resync = d.cs in RESYNC or d.cs in CONGESTED
    if d.disk in LOCAL_DISK:
        found.append(Problem(*LOCAL_DISK[d.disk]))
    elif d.disk in ("Outdated", "Inconsistent") and not resync:
        found.append(Problem(CRIT, "local disk %s and no resync running: this "
                             "copy is %s" % (d.disk, "stale" if d.disk == "Outdated"
                                             else "unusable")))
    if d.cs in LINKED:
        if d.peer_disk in PEER_DISK:
            found.append(Problem(*PEER_DISK[d.peer_disk]))
        elif d.peer_disk in ("Outdated", "Inconsistent") and not resync:
            found.append(Problem(CRIT, "peer disk %s and no resync running: the "
                                 "peer's copy is %s" % (d.peer_disk, "stale"
                                 if d.peer_disk == "Outdated" else "unusable")))
    return found


def _roles(d, s, p, now, instance):
    found = []
    if d.role == "Primary" and d.peer_role == "Primary":
        held = _for(p.since, "%d:%s" % (d.minor, DUAL_PRIMARY), now)
        if held >= s.dual_primary_grace:
            found.append(Problem(CRIT, "Primary/Primary for %s: Ganeti uses "
                                 "dual primary only during a live migration: "
                                 "look for a hanging migration (gnt-job list)"
                                 % format_duration(held)))
        else:
            found.append(Problem(WARN, "Primary/Primary for %s (a live "
                                 "migration? CRIT after %s)" % (
                                     format_duration(held),
                                     format_duration(s.dual_primary_grace))))
    if d.role == "Secondary" and instance in p.running:
        found.append(Problem(CRIT, "Secondary here although %s's qemu runs on "
                             "this node (pid %d): the instance cannot write "
                             "this disk" % (instance, p.running[instance])))
    return found


def _counts(verdicts):
    by_state = {state: 0 for state in (OK, WARN, CRIT, UNKNOWN)}
    for v in verdicts:
        by_state[v.state] += 1
    resyncing = sum(1 for v in verdicts if v.device.cs in RESYNC)
    oos = sum(v.device.oos or 0 for v in verdicts)
    return [Metric("drbd_devices", len(verdicts), min=0),
            Metric("drbd_ok", by_state[OK], min=0),
            Metric("drbd_warn", by_state[WARN], min=0),
            Metric("drbd_crit", by_state[CRIT], min=0),
            Metric("drbd_unknown", by_state[UNKNOWN], min=0),
            Metric("drbd_resyncing", resyncing, min=0),
            Metric("drbd_oos_bytes", oos, min=0)]


def evaluate(p, s, now):
    """The Results for a Probe with a readable /proc/drbd."""
    parsed = p.drbd
    if parsed.drbd9:
        return [Result(UNKNOWN, SERVICE, "DRBD 9 is not supported by Ganeti "
                       "(%s says version %s): Ganeti needs the DRBD 8 kernel "
                       "module" % (p.proc_drbd, parsed.version))]
    problems = list(p.problems)
    if parsed.version is None and not parsed.devices:
        problems.append(Problem(UNKNOWN, "cannot read %s: %s" % (
            p.proc_drbd, "; ".join(parsed.problems) or "it is empty")))
    elif parsed.problems:
        problems.append(Problem(UNKNOWN, "%s: %s" % (
            p.proc_drbd, "; ".join(parsed.problems))))
    verdicts = [judge(d, p.owners.get(d.minor), s, p, now)
                for d in parsed.configured()]
    node = _node_result(p, s, verdicts, problems)
    if s.summary:
        return [node]
    return [node] + [Result(v.state, v.service, v.summary, v.details, v.metrics)
                     for v in verdicts]


def _node_result(p, s, verdicts, problems):
    parsed = p.drbd
    bad = sorted((v for v in verdicts if v.state != OK),
                 key=lambda v: (-v.state.rank, v.service.startswith("DRBD minor"),
                                "" if v.service.startswith("DRBD minor") else v.label,
                                v.device.minor))
    state = worst([problem.state for problem in problems]
                  + ([v.state for v in bad] if s.summary else []))
    version = "DRBD %s" % (parsed.version or "(version unknown)")
    primary = sum(1 for v in verdicts if v.device.role == "Primary")

    def build(n):
        lead = [problem.text for problem in sorted(
            problems, key=lambda problem: problem.state.rank, reverse=True)]
        if not verdicts:
            lead.append("no DRBD devices in use (%s)" % version)
        elif not bad:
            lead.append("%s replicating (%d Primary here, %d Secondary), %s" % (
                plural(len(verdicts), "DRBD device"), primary,
                len(verdicts) - primary, version))
        elif s.summary:
            lead.append("%d of %s not OK: %s" % (
                len(bad), plural(len(verdicts), "DRBD device"),
                some(("%s: %s" % (v.label, v.summary) for v in bad), n)))
        else:
            lead.append("%d of %s not OK, see their services: %s" % (
                len(bad), plural(len(verdicts), "DRBD device"),
                some(("%s (%s)" % (v.service, v.state.name) for v in bad), n)))
        return "; ".join(lead)

    details = [problem.text for problem in problems] + list(p.notes)
    details += ["%s %s: %s" % (v.state.name, v.label, v.summary)
                for v in bad + [v for v in verdicts if v.state == OK]]
    if p.stale_cache:
        details.append("Ganeti's bdev-cache still names minors that are not "
                       "configured: %s" % some(map(str, p.stale_cache), 20))
    return Result(state, SERVICE, fit(build, (MAX_NAMES, 3, 1, 0)), details,
                  _counts(verdicts))


def run(ctx):
    s = ctx.settings
    now = time.time()
    found = probe(s, now, ctx.log)
    if isinstance(found, Result):
        return [found]
    return evaluate(found, s, now)


CHECK = Check(
    "drbd", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: does every DRBD disk of this Ganeti "
    "node replicate?  One service per device, named by instance and disk.",
    epilog="States: OK Connected, UpToDate/UpToDate (either role order);\n"
    "WARN resync, out of sync, StandAlone, not connected or Primary/Primary\n"
    "(CRIT after [drbd] standalone_grace / disconnected_grace /\n"
    "dual_primary_grace);\n"
    "CRIT a local or peer disk without its data, Secondary under a running\n"
    "qemu, drbd module not loaded where the cluster needs it;\n"
    "UNKNOWN states DRBD 8 does not write (raw text shown), DRBD 9.")
