"""Ganeti cluster: is the watcher working, and does the job queue run jobs?

Master only (the watcher's per-group work and the job queue live there).
Probe, from Ganeti's files alone (no job, no daemon asked): the watcher's
pause file (`watcher.pause`, the Unix time the pause ends), each node
group's watcher state file (`watcher.<group uuid>.data`: its age says when
the watcher last ran for the group, its JSON the restart attempts per
instance) and the job queue's drain flag (`queue/drain`, its mtime since
when).  Evaluate: WARN/CRIT for a pause, a watcher that stopped running, a
drained queue; CRIT naming the instances the watcher gave up restarting.
"""

import os
import time

from .. import ganeti
from ..jsonc import loads
from ..localcheck import CRIT, OK, UNKNOWN, WARN, Metric, Result, worst
from ..runner import Check, SharedSettings
from ..safefile import describe, read_file
from ..words import ago, fit, format_duration, plural, some

SERVICE = "Ganeti cluster"
SECTION = "cluster_state"

DEFAULTS = {
    "pause_crit": "1d",
    "watcher_interval": "5m",
    "watcher_margin": "10m",
    "watcher_crit": "1h",
    "max_tries": "5",
    "drain_crit": "1h",
}

PAUSE_FILE = "watcher.pause"
PAUSE_MAX = 64
STATE_MAX = 16 << 20  # ~100 bytes per instance
DRAIN_FILE = os.path.join("queue", "drain")
PAUSE_REMOVED_AFTER = 3600  # the watcher deletes a pause file an hour after its end


class Settings(SharedSettings):
    """`[cluster_state]` and the paths, typed."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "data_dir",
                                "node_name", "state_dir")
        self.pause_crit = config.get_duration(SECTION, "pause_crit")
        interval = config.get_duration(SECTION, "watcher_interval", minimum=1)
        self.watcher_warn = interval + config.get_duration(SECTION, "watcher_margin")
        self.watcher_crit = config.get_duration(SECTION, "watcher_crit")
        if self.watcher_crit < self.watcher_warn:
            config.problem("[%s] watcher_crit: %s is less than watcher_interval + "
                           "watcher_margin (%s), using %s" % (
                               SECTION, format_duration(self.watcher_crit),
                               format_duration(self.watcher_warn),
                               format_duration(self.watcher_warn)))
            self.watcher_crit = self.watcher_warn
        self.max_tries = config.get_number(SECTION, "max_tries", minimum=1, integer=True)
        self.drain_crit = config.get_duration(SECTION, "drain_crit")


class Group:
    """One node group's watcher state."""

    __slots__ = ("uuid", "name", "mtime", "gave_up", "error")

    def __init__(self, uuid, name, mtime=None, gave_up=(), error=None):
        self.uuid = uuid
        self.name = name
        self.mtime = mtime            # the state file's mtime; None: no file
        self.gave_up = list(gave_up)  # [(instance, restart count)]
        self.error = error            # why the state file could not be read


class Probe:
    __slots__ = ("pause_end", "pause_set", "pause_error", "groups", "drained_since",
                 "errors")

    def __init__(self):
        self.pause_end = None     # the pause file's end time (None: no file)
        self.pause_set = None     # the pause file's mtime: when it was paused
        self.pause_error = None   # the pause file holds no valid end time
        self.groups = []          # Group
        self.drained_since = None  # the drain flag's mtime (None: not drained)
        self.errors = []


# --- probe -------------------------------------------------------------------

def read_pause(data_dir, found):
    path = os.path.join(data_dir, PAUSE_FILE)
    try:
        data = read_file(path, PAUSE_MAX, owners=ganeti.owners())
        found.pause_set = os.stat(path).st_mtime
    except FileNotFoundError:
        return
    except OSError as e:
        found.pause_error = describe(e)
        return
    text = data.decode("ascii", "replace").strip()
    try:  # Ganeti's ReadWatcherPauseFile: int() of the whole text
        found.pause_end = int(text)
    except ValueError:
        found.pause_error = "%s holds %r, not an end time" % (path, text[:20])


def gave_up(data, max_tries):
    """[(instance, restart count)] the watcher gave up restarting: it tries
    `max_tries` times (Ganeti's MAXTRIES, 5), then records one more attempt
    and logs "giving up"; only a later successful start resets it."""
    instances = data.get("instance") if isinstance(data, dict) else None
    if not isinstance(instances, dict):
        raise ValueError("no 'instance' map")
    found = []
    for name, info in instances.items():
        count = info.get("restart_count") if isinstance(info, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count > max_tries:
            found.append((str(name), count))
    return sorted(found)


def read_group(data_dir, uuid, name, max_tries):
    """A Group from `watcher.<uuid>.data`."""
    path = os.path.join(data_dir, "watcher.%s.data" % uuid)
    group = Group(uuid, name)
    try:
        data = read_file(path, STATE_MAX, owners=ganeti.owners())
        group.mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return group
    except OSError as e:
        group.error = describe(e)
        return group
    try:
        group.gave_up = gave_up(loads(data.decode("utf-8", "replace")), max_tries)
    except (ValueError, RecursionError) as e:
        import json  # to tell its errors from the others
        group.error = "%s is not a watcher state file (%s)" % (
            path, "truncated or not JSON" if isinstance(e, json.JSONDecodeError)
            else str(e) or "nested too deep")
    return group


def node_groups(data_dir):
    """[(uuid, name)] from ssconf_nodegroups."""
    groups = []
    for line in ganeti.read_ssconf_list(data_dir, "nodegroups"):
        uuid, _, name = line.partition(" ")
        groups.append((uuid.strip(), name.strip() or uuid.strip()))
    return groups


def probe(s):
    found = Probe()
    read_pause(s.data_dir, found)
    found.groups = [read_group(s.data_dir, uuid, name, s.max_tries)
                    for uuid, name in node_groups(s.data_dir)
                    if uuid and "/" not in uuid]
    try:
        st = os.lstat(os.path.join(s.data_dir, DRAIN_FILE))
        found.drained_since = st.st_mtime
    except FileNotFoundError:
        pass
    except OSError as e:
        found.errors.append("cannot tell whether the job queue is drained: %s "
                            "(run the check as root)" % describe(e))
    return found


# --- evaluate ----------------------------------------------------------------

def when(t):
    try:
        return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(t))
    except (OverflowError, OSError, ValueError):  # past what time_t holds
        return "the Unix time %d" % t


def evaluate(found, s, now):
    problems, details, given_up = [], [], []
    paused = found.pause_end is not None and found.pause_end > now
    if paused:
        length = found.pause_end - min(found.pause_set or now, now)
        state = CRIT if length > s.pause_crit else WARN
        problems.append((state, "watcher paused until %s (for %s%s%s); resume it: "
                         "gnt-cluster watcher continue" % (
                             when(found.pause_end), format_duration(length),
                             " from %s" % when(found.pause_set) if found.pause_set else "",
                             ", longer than %s" % format_duration(s.pause_crit)
                             if state == CRIT else "")))
    elif found.pause_end is not None:
        details.append("a pause file that ended %s (the watcher ignores it and "
                       "removes it %s after its end)" % (
                           ago(now - found.pause_end), format_duration(PAUSE_REMOVED_AFTER)))
    if found.pause_error:
        problems.append((WARN, "watcher pause file invalid: %s (the watcher does not "
                         "pause for it and removes it on its next run)" % found.pause_error))

    ages = []
    for g in found.groups:
        label = "group %s" % g.name
        if g.error:
            problems.append((UNKNOWN, "cannot read the watcher state of %s: %s; the "
                             "watcher rewrites it on its next run" % (label, g.error)))
            continue
        if g.mtime is None:
            ages.append(None)
            if not paused:
                problems.append((WARN, "the watcher has never run for %s (no %s); is its "
                                 "cron job installed (/etc/cron.d/ganeti)?" % (
                                     label, "watcher.%s.data" % g.uuid)))
            continue
        age = now - g.mtime
        ages.append(age)
        details.append("watcher ran for %s %s" % (label, ago(age)))
        # it did not run while paused: its time counts from the pause's end
        idle, why = age, ""
        if found.pause_end is not None and now - found.pause_end < idle:
            idle = now - found.pause_end
            why = "%s since its pause ended; " % format_duration(idle)
        # nor can it finish while the queue is drained (its disk check
        # submits a job): only the time before the drain counts
        if found.drained_since is not None and g.mtime <= found.drained_since:
            details.append("the watcher cannot finish for %s while the job queue is "
                           "drained (it verifies disks with a job)" % label)
            if found.drained_since - g.mtime < idle:
                idle = found.drained_since - g.mtime
                why = "%s before the job queue was drained; " % format_duration(idle)
        if idle >= s.watcher_warn and not paused:
            state = CRIT if idle >= s.watcher_crit else WARN
            problems.append((state, "the watcher has not run for %s for %s (%swarn/crit "
                             "at %s/%s); is its cron job running (/etc/cron.d/ganeti, "
                             "/var/log/ganeti/watcher.log)?" % (
                                 label, format_duration(age), why,
                                 format_duration(s.watcher_warn),
                                 format_duration(s.watcher_crit))))
        given_up += [name for name, _ in g.gave_up]
        details += ["%s: the watcher gave up restarting it after %d attempts (%s)"
                    % (name, count - 1, label) for name, count in g.gave_up]
    if not found.groups:
        problems.append((UNKNOWN, "no node groups in %s" % os.path.join(
            s.data_dir, "ssconf_nodegroups")))

    if found.drained_since is not None:
        age = now - found.drained_since
        state = CRIT if age >= s.drain_crit else WARN
        problems.append((state, "job queue drained since %s (%s; %s), no job runs; "
                         "undrain it: gnt-cluster queue undrain" % (
                             when(found.drained_since), ago(age),
                             "crit at %s" % format_duration(s.drain_crit))))
    for error in found.errors:
        problems.append((UNKNOWN, error))

    if given_up:
        problems.insert(0, (CRIT, None))  # worded by build(), names fitted

    def build(n):
        parts = []
        if given_up:
            parts.append("%s the watcher gave up restarting: %s; start %s (gnt-instance "
                         "startup) and look at /var/log/ganeti/watcher.log" % (
                             plural(len(given_up), "instance"), some(given_up, n),
                             "it" if len(given_up) == 1 else "them"))
        parts += [text for _, text in problems if text is not None]
        if parts:
            return "; ".join(parts)
        newest = [a for a in ages if a is not None]
        return "watcher ran %s%s, not paused; job queue not drained" % (
            ago(max(newest)) if newest else "?",
            " (%s)" % plural(len(ages), "node group") if len(ages) > 1 else "")

    state = worst((st for st, _ in problems), default=OK)
    known = [a for a in ages if a is not None]
    metrics = [Metric("ganeti_watcher_age", round(max(known)) if known else 0,
                      s.watcher_warn, s.watcher_crit, 0),
               Metric("ganeti_watcher_gave_up", len(given_up), None, 1, 0),
               Metric("ganeti_queue_drained", int(found.drained_since is not None), min=0,
                      max=1)]
    return Result(state, SERVICE, fit(build), details, metrics)


def run(ctx):
    s = ctx.settings
    ganeti.require_master(s.data_dir, s.node,
                          "the watcher and the job queue are looked at")
    found = probe(s)
    return [evaluate(found, s, time.time())]


CHECK = Check(
    "cluster_state", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check (master only): is the Ganeti watcher "
    "running and not paused, which instances did it give up restarting, and "
    "is the job queue drained? Reads Ganeti's files; runs no job.",
    epilog="States: OK watcher ran recently, not paused, queue not drained; "
    "WARN/CRIT paused ([cluster_state]\npause_crit), watcher not run "
    "(watcher_interval + watcher_margin, watcher_crit), queue drained\n"
    "(drain_crit); CRIT instances the watcher gave up restarting.")
