"""KVM instance parameters: which instances run with parameters changed since
they started?

Probe: the instances whose qemu runs on this node (pid files validated
against the process's -name), what each was started with (its runtime
file: the filled hypervisor parameters, and -m/-smp of the command), and
what the configuration says now, filled as Ganeti fills it (cluster ->
OS -> instance): from config.data on the master and the master
candidates, else from ganeti-confd.  Evaluate: the parameters that shape
the running qemu and differ, per instance, with the level the new value
comes from; WARN/CRIT by count and age; UNKNOWN per instance that cannot
be judged, or for all when the configuration cannot be read.
"""

import os
import time

from .. import ganeti
from ..localcheck import (CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable,
                          Result, worst)
from ..runner import Check, SharedSettings, duration_levels, time_left
from ..safefile import describe
from ..words import fit, format_duration, plural, some

SERVICE = "KVM instance parameters"
SECTION = "kvm_parameters"
MAX_NAMES = 10   # instances named in the summary; the details list all
MAX_CHANGES = 3  # changed parameters named per instance in the summary
MAX_VALUE = 40   # characters of a value in the summary

# Hypervisor parameters Ganeti reads from the *current* configuration when
# it uses them, never from the runtime file (Ganeti 2.16-3.1,
# lib/hypervisor/hv_kvm): a difference is no pending restart.
USE_TIME = {
    # _ExecuteKVMRuntime takes these from conf_hvp on every start, soft
    # reboot and incoming migration ("-runas", "-k", the VNC and SPICE
    # passwords set through the monitor).
    "security_model": "taken from the configuration at each qemu start",
    "security_domain": "taken from the configuration at each qemu start",
    "keymap": "taken from the configuration at each qemu start",
    "vnc_password_file": "read at each qemu start",
    "spice_password_file": "read at each qemu start",
    # Read by Ganeti (not qemu) when it migrates, or by ganeti-kvmd.
    "migration_port": "read when migrating",
    "migration_bandwidth": "read when migrating",
    "migration_downtime": "read when migrating",
    "migration_mode": "read when migrating",
    "migration_caps": "read when migrating",
    "user_shutdown": "read by Ganeti and ganeti-kvmd, not qemu",
}

# Hypervisor parameters Ganeti added after the oldest runtime files it
# still runs (2.6), with their defaults (constants.HVC_DEFAULTS, Ganeti
# 3.0).  A runtime file written before a key existed lacks it; its qemu
# runs as with the default, which Ganeti chooses so that it "won't affect
# the inside of the instance" (_ExecuteKVMRuntime).  A soft reboot or a
# migration re-executes the saved command, so a configured value other
# than the default (cpu_type = host after an upgrade) is pending until a
# hard restart.  Keys not listed here that a runtime lacks are left alone.
ADDED_DEFAULTS = {
    "cpu_type": "",
    "disk_discard": "default",
    "kvm_pci_reservations": 12,
    "migration_caps": "",
    "use_guest_agent": False,
    "user_shutdown": False,
    "virtio_net_queues": 1,
    "vnet_hdr": True,
}

# Backend parameters that need a restart, and where the runtime's command
# line holds the value the qemu was started with.
BACKEND = {"maxmem": "-m", "vcpus": "-smp"}

REMEDY = ("restart %s with `gnt-instance reboot --type=hard` (or shutdown "
          "and startup); a live migration or a soft reboot keeps the old "
          "parameters")

SOURCE_CONFIG = "config.data"
SOURCE_CONFD = "ganeti-confd"


class Change:
    """One parameter that differs: running value, configured value, level."""

    __slots__ = ("key", "old", "new", "level", "backend", "unrecorded")

    def __init__(self, key, old, new, level, backend=False, unrecorded=False):
        self.key = key
        self.old = old
        self.new = new
        self.level = level
        self.backend = backend
        self.unrecorded = unrecorded  # old: the default of a key the runtime lacks

    def __repr__(self):
        return "Change(%r, %r -> %r, %s)" % (self.key, self.old, self.new,
                                             self.level)


class Instance:
    """One running instance: what it runs with, what it should, and the
    verdict (changes, or an error text when it cannot be judged)."""

    __slots__ = ("name", "pid", "runtime", "config", "error", "changes",
                 "since", "ignored")

    def __init__(self, name, pid):
        self.name = name
        self.pid = pid
        self.runtime = None  # ganeti.KvmRuntime
        self.config = None   # ganeti.InstanceConfig
        self.error = None    # why it cannot be judged
        self.changes = []
        self.since = None    # when the changes became pending (None: unknown)
        self.ignored = []    # use-time keys that differ (for the details)


class Probe:
    """What the probe found: the instances and where the config came from."""

    __slots__ = ("instances", "source", "source_error", "notes", "stale",
                 "cluster_hv", "denied")

    def __init__(self):
        self.instances = []
        self.source = None        # SOURCE_CONFIG or SOURCE_CONFD, None: none
        self.source_error = None  # why no source could be read
        self.notes = []           # e.g. why config.data was not used
        self.stale = []           # pid files that name no running instance
        self.cluster_hv = None    # ssconf_hvparams_kvm when nothing better
        self.denied = None        # the pid files could not be read


# --- comparing ------------------------------------------------------------

def normalise(value):
    """A value as compared: booleans, numbers and text alike however they
    were written ("True", true, 1.0 and 1 are not all the same kind, but
    the config's true and the runtime's true are equal)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if value is None:
        return ("text", "")
    if isinstance(value, str):
        word = value.strip()
        if word.lower() in ("true", "false"):
            return ("bool", word.lower() == "true")
        try:
            number = float(word)
        except ValueError:
            return ("text", value)
        if number == number and number not in (float("inf"), float("-inf")):
            return ("number", number)
        return ("text", value)
    import json
    return ("json", json.dumps(value, sort_keys=True))


def _same(key, old, new):
    if key == "disk_discard":
        # "default" (no discard option: qemu ignores discards) became
        # "ignore" in Ganeti 3.1, which upgrades old runtimes so.
        old = "ignore" if old == "default" else old
        new = "ignore" if new == "default" else new
    return normalise(old) == normalise(new)


def _integer(text):
    """The leading whole number of '-m'/'-smp' values ('2,cores=2'), or None."""
    if text is None:
        return None
    head = text.split(",", 1)[0].strip()
    if head.upper().endswith("M"):
        head = head[:-1]
    return int(head) if head.isdigit() else None


def compare(runtime, config):
    """(changes, ignored keys): what differs between what the instance was
    started with and its current configuration.

    A key missing from an old runtime (added by a later Ganeti) runs as
    its default (ADDED_DEFAULTS); one whose default is not known, and keys
    the configuration does not have (removed in a newer Ganeti), cannot
    be judged and are left alone.
    """
    changes, ignored = [], []
    for key in sorted(config.hv):
        new, level = config.hv[key]
        unrecorded = key not in runtime.hvparams
        if unrecorded and key not in ADDED_DEFAULTS:
            continue
        old = ADDED_DEFAULTS[key] if unrecorded else runtime.hvparams[key]
        if _same(key, old, new):
            continue
        if key in USE_TIME:
            ignored.append(key)
        else:
            changes.append(Change(key, old, new, level, unrecorded=unrecorded))
    for key, option in sorted(BACKEND.items()):
        if key not in config.be:
            continue
        new, level = config.be[key]
        old = _integer(runtime.option(option))
        if old is not None and not _same(key, old, new):
            changes.append(Change(key, old, new, level, backend=True))
    return changes, ignored


def judge(instance):
    """Fill in instance.changes and .since from its runtime and config."""
    instance.changes, instance.ignored = compare(instance.runtime, instance.config)
    if not instance.changes:
        return
    # Pending since the newest change of the levels the new values come
    # from (an object's mtime moves with every change, so this is never
    # earlier than the change we report), and never before the runtime
    # file was written (a start with one-off parameters).
    times = [instance.config.since(c.level) for c in instance.changes]
    times.append(instance.runtime.mtime)
    instance.since = None if None in times else max(times)


# --- probing --------------------------------------------------------------

def find_instances(proc, run_dir, found):
    """The running instances from Ganeti's pid files, validated against
    the process's -name; their runtime files read."""
    try:
        pid_files = ganeti.kvm_pid_files(run_dir)
    except PermissionError as e:
        found.denied = "cannot read Ganeti's pid files (%s)" % describe(e)
        return
    for name, pid in pid_files:
        if pid is None:
            found.stale.append("%s: the pid file holds no process id" % name)
            continue
        try:
            why = ganeti.instance_process_problem(proc, pid, name, run_dir)
        except PermissionError as e:
            found.denied = "cannot read /proc/%d (%s)" % (pid, describe(e))
            continue
        if why is not None:
            found.stale.append("%s: the pid file names pid %d, %s" % (name, pid, why))
            continue
        instance = Instance(name, pid)
        try:
            instance.runtime = ganeti.read_kvm_runtime(run_dir, name)
        except FileNotFoundError:
            instance.error = "it has no runtime file"
        except ValueError as e:
            instance.error = "its runtime file is unusable: %s" % (
                str(e).rsplit(": ", 1)[-1])
        except OSError as e:
            instance.error = "its runtime file is refused: %s" % (
                e.strerror or e)
        found.instances.append(instance)


def from_config_data(s, found):
    """Current parameters from config.data; False when it cannot be used."""
    try:
        config = ganeti.read_config_data(s.data_dir, s.config_max)
    except (OSError, ValueError) as e:
        text = describe(e) if isinstance(e, OSError) else str(e)
        found.notes.append("config.data not used: %s" % text)
        return False
    if config is None:
        found.notes.append("config.data not used: %s: no such file" % os.path.join(
            s.data_dir, ganeti.CONFIG_DATA))
        return False
    by_name = ganeti.config_instances(config)
    for instance in found.instances:
        entry = by_name.get(instance.name)
        if isinstance(entry, ganeti.InstanceConfig):
            instance.config = entry
        elif instance.error is None:
            instance.error = "it is not in the cluster configuration"
    found.source = SOURCE_CONFIG
    return True


def from_confd(s, found):
    """Current parameters from ganeti-confd; False when it cannot be used.

    confd's config query takes a JSON pointer; instances are keyed by UUID,
    which Ganeti passes to qemu as -uuid (in the runtime's command).
    """
    from .. import confd  # only where it is needed: its imports cost start-up
    try:
        key = ganeti.read_hmac_key(s.data_dir)
        peers = ganeti.confd_peers(s.data_dir)
    except OSError as e:
        found.notes.append("confd not asked: cannot read %s" % describe(e))
        return False
    cluster_paths = {name: confd.pointer("cluster", name)
                     for name in ("hvparams", "os_hvp", "beparams", "mtime")}
    uuids = {}
    for instance in found.instances:
        if instance.runtime is not None:
            uuid = instance.runtime.option("-uuid")
            if uuid:
                uuids[instance.name] = confd.pointer("instances", uuid)
            elif instance.error is None:
                instance.error = ("its runtime command has no -uuid, which "
                                  "confd needs to find it")
    paths = list(cluster_paths.values()) + sorted(set(uuids.values()))
    # Never wait past the check's deadline: leave a second to say why.
    wait = max(0.1, min(s.confd_timeout, time_left(s.confd_timeout + 1) - 1))
    try:
        values, _ = confd.config_values(key, peers, paths, s.confd_port, wait)
    except confd.ConfdError as e:
        found.notes.append("confd: %s" % e)
        return False
    cluster = {name: values.get(path) for name, path in cluster_paths.items()}
    if not isinstance(cluster["hvparams"], dict):
        found.notes.append("confd: the answer has no cluster hvparams")
        return False
    for instance in found.instances:
        if instance.name not in uuids:
            continue
        obj = values.get(uuids[instance.name])
        try:
            config = ganeti.instance_config(cluster, instance.runtime.option("-uuid"), obj)
        except ValueError:
            config = None
        if config is None or config.name != instance.name:
            instance.error = instance.error or (
                "confd knows no instance of its -uuid %s"
                % instance.runtime.option("-uuid"))
        else:
            instance.config = config
    found.source = SOURCE_CONFD
    return True


def probe(s):
    found = Probe()
    find_instances(s.proc, s.run_dir, found)
    if not any(i.error is None for i in found.instances):
        return found  # nothing to compare: no config needed
    role = None
    if s.source == "auto":
        role = ganeti.node_role(s.data_dir, s.node)
        if role.role in (ganeti.MASTER, ganeti.CANDIDATE):
            ok = from_config_data(s, found) or from_confd(s, found)
        else:
            ok = from_confd(s, found)
    elif s.source == "config":
        ok = from_config_data(s, found)
    else:
        ok = from_confd(s, found)
    if not ok:
        what = {"auto": "neither config.data (only on the master and master "
                "candidates%s) nor ganeti-confd could be read" % (
                    ": this node is %s" % role.role if role is not None
                    and role.role not in (ganeti.MASTER, ganeti.CANDIDATE)
                    else ""),
                "config": "config.data could not be read ([kvm_parameters] "
                "source = config)",
                "confd": "ganeti-confd did not answer ([kvm_parameters] "
                "source = confd)"}[s.source]
        found.source_error = what
        try:
            found.cluster_hv = ganeti.cluster_hvparams(s.data_dir) or None
        except OSError:
            found.cluster_hv = None
        return found
    for instance in found.instances:
        if instance.error is None and instance.config is not None:
            if instance.config.hypervisor != "kvm":
                instance.error = ("the configuration says hypervisor %s"
                                  % instance.config.hypervisor)
            else:
                judge(instance)
    return found


# --- evaluating -----------------------------------------------------------

def show(value, limit=None):
    """A value as the summary shows it: true/false, "" for empty."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None or value == "":
        text = '""'
    elif isinstance(value, float) and value == int(value):
        text = str(int(value))
    else:
        text = str(value)
    if limit and len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def _names(texts, limit):
    """': a, b, 3 more' naming at most `limit` (None: '')."""
    return "" if limit is None else ": " + some(texts, limit)


def _changes_text(instance):
    shown = instance.changes[:MAX_CHANGES]
    parts = ["%s %s -> %s" % (c.key, show(c.old, MAX_VALUE), show(c.new, MAX_VALUE))
             for c in shown]
    if len(instance.changes) > len(shown):
        parts.append("%d more" % (len(instance.changes) - len(shown)))
    return "%s (%s)" % (instance.name, "; ".join(parts))


def _detail_change(c):
    text = "%s: running %s, configured %s (%s level)" % (
        c.key, show(c.old), show(c.new), c.level)
    if c.backend:
        text += "; a backend parameter, applied only by a restart"
    if c.unrecorded:
        text += ("; not in its runtime file (started by a Ganeti without "
                 "this parameter), so it runs as with the default")
    return text


def _age_state(instance, now, s):
    if instance.since is None:
        return WARN  # pending for an unknown time: never OK, never CRIT
    age = now - instance.since
    return CRIT if age >= s.crit_after else WARN if age >= s.warn_after else OK


def _count_state(count, s):
    if s.crit_count and count >= s.crit_count:
        return CRIT
    if s.warn_count and count >= s.warn_count:
        return WARN
    return OK


def _since_text(instance, now):
    if instance.since is None:
        return "since an unknown time"
    return "since %s (%s ago)" % (
        time.strftime("%Y-%m-%d %H:%M", time.localtime(instance.since)),
        format_duration(max(0, now - instance.since)))


def evaluate(found, s, now):
    """The one Result for a Probe."""
    instances = found.instances
    judged = [i for i in instances if i.error is None and i.config is not None]
    pending = [i for i in judged if i.changes]
    broken = [i for i in instances if i.error is not None]
    details = []
    if found.source_error:  # no pending count: unknown is not zero
        return _no_source(found, [Metric("kvm_params_instances", len(instances))])
    metrics = [Metric("kvm_params_pending", len(pending)),
               Metric("kvm_params_instances", len(instances))]
    states = [OK, _count_state(len(pending), s)]
    states += [_age_state(i, now, s) for i in pending]
    if broken or found.denied:
        states.append(UNKNOWN)
    state = worst(states)

    def build(limit):
        clauses = []
        if pending:
            clauses.append("%d of %s %s with parameters changed since they "
                           "started%s: %s" % (
                               len(pending), plural(len(instances), "instance"),
                               "runs" if len(pending) == 1 else "run",
                               _names([_changes_text(i) for i in pending], limit),
                               REMEDY % ("it" if len(pending) == 1 else "them")))
            if state == OK:
                clauses[-1] += " (WARN after %s)" % format_duration(s.warn_after)
        if broken:
            clauses.append("cannot judge %s%s" % (
                plural(len(broken), "instance"),
                _names(["%s (%s)" % (i.name, i.error) for i in broken], limit)))
        if found.denied:
            clauses.append(found.denied + ": run the check as root")
        if clauses:
            return "; ".join(clauses)
        if not instances:
            return "no KVM instances running on this node"
        if len(instances) == 1:
            return "1 instance runs with its current parameters"
        return "all %d instances run with their current parameters" % len(instances)
    summary = fit(build, (MAX_NAMES, 3, 1, None))

    for i in sorted(instances, key=lambda i: (not i.changes, i.error is None, i.name)):
        if i.error is not None:
            details.append("%s: not judged: %s" % (i.name, i.error))
        elif i.changes:
            details.append("%s: %s, pending %s:" % (
                i.name, plural(len(i.changes), "parameter changed",
                               "parameters changed"), _since_text(i, now)))
            details += ["%s: %s" % (i.name, _detail_change(c)) for c in i.changes]
        else:
            details.append("%s: runs with its current parameters" % i.name)
        if i.ignored:
            details.append("%s: also differs, applied without a hard restart "
                           "(read from the configuration when used): %s"
                           % (i.name, ", ".join(i.ignored)))
    details += found.stale
    if found.source:
        details.append("current parameters from %s" % found.source)
    details += found.notes
    if pending:
        details.append("levels: WARN at %s, CRIT at %s pending; WARN %s, CRIT "
                       "%s after the change" % (
                           s.warn_count or "-", s.crit_count or "-",
                           _after(s.warn_after), _after(s.crit_after)))
    return Result(state, SERVICE, summary, details, metrics)


def _after(seconds):
    return "at once" if seconds <= 0 else format_duration(seconds)


def _no_source(found, metrics):
    """UNKNOWN: the current configuration could not be read at all."""
    instances = found.instances
    notes = found.notes

    def build(n):
        """The summary with the first n notes (why each source failed)."""
        text = "cannot tell whether %s with changed parameters: %s" % (
            plural(len(instances), "instance runs", "instances run"),
            "; ".join([found.source_error] + notes[:n]
                      + (["more in the details"] if n < len(notes) else [])))
        if found.cluster_hv is not None:
            text += ("; ssconf_hvparams_kvm has only the cluster defaults, "
                     "instance and OS overrides cannot be seen")
        return text
    summary = fit(build, sorted({len(notes), 1, 0}, reverse=True))
    details = [] if all(note in summary for note in notes) else list(notes)
    if found.cluster_hv is not None:
        for i in instances:
            if i.runtime is None:
                continue
            differs = sorted(k for k, v in found.cluster_hv.items()
                             if k in i.runtime.hvparams and k not in USE_TIME
                             and not _same(k, i.runtime.hvparams[k], v))
            if differs:
                details.append("%s differs from the cluster defaults in %s "
                               "(an instance or OS override may explain it)"
                               % (i.name, ", ".join(differs)))
    details += ["%s: not judged: %s" % (i.name, i.error)
                for i in instances if i.error is not None]
    details += found.stale
    return Result(UNKNOWN, SERVICE, summary, details, metrics)


DEFAULTS = {
    "source": "auto",
    "warn_count": "1",
    "crit_count": "0",
    "warn_after": "0",
    "crit_after": "7d",
    "confd_port": "1814",
    "confd_timeout": "2s",
    "config_max_size": "64",
}


class Settings(SharedSettings):
    """`[kvm_parameters]` and the paths, typed; warn <= crit."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "node_name",
                                "proc", "run_dir", "state_dir", "data_dir")
        self.source = config.get_choice(SECTION, "source", ("auto", "config", "confd"))
        self.warn_count = config.get_number(SECTION, "warn_count", 0, integer=True)
        self.crit_count = config.get_number(SECTION, "crit_count", 0, integer=True)
        if self.crit_count and self.warn_count > self.crit_count:
            config.problem("[%s] warn_count: %d is more than crit_count (%d), "
                           "using %d" % (SECTION, self.warn_count,
                                         self.crit_count, self.crit_count))
            self.warn_count = self.crit_count
        self.warn_after, self.crit_after = duration_levels(config, SECTION)
        self.confd_port = config.get_number(SECTION, "confd_port", 1, integer=True)
        if self.confd_port > 65535:
            config.problem("[%s] confd_port: %d is not a port, using 1814"
                           % (SECTION, self.confd_port))
            self.confd_port = 1814
        self.confd_timeout = config.get_duration(SECTION, "confd_timeout", 0.1)
        self.config_max = int(config.get_number(SECTION, "config_max_size", 1)
                              * (1 << 20))


def run(ctx):
    s = ctx.settings
    if ganeti.read_ssconf(s.data_dir, "master_node") is None:
        raise NotApplicable("this node is not in a Ganeti cluster (no %s)"
                            % os.path.join(s.data_dir, "ssconf_master_node"))
    found = probe(s)
    ctx.log("%d instances, source %s%s" % (
        len(found.instances), found.source, "; ".join([""] + found.notes)))
    return [evaluate(found, s, time.time())]


CHECK = Check(
    SECTION, SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: which KVM instances on this node run "
    "with hypervisor or backend parameters that were changed since they "
    "started, and so need a hard restart?",
    epilog="States: OK all instances run with their current parameters; "
    "WARN/CRIT when some do not, by their\nnumber ([kvm_parameters] "
    "warn_count, crit_count) and how long ago the change was made\n"
    "(warn_after, crit_after); UNKNOWN for instances that cannot be judged "
    "or when the configuration\ncannot be read (config.data, ganeti-confd).")
