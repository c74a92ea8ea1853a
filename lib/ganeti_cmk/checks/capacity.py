"""Ganeti capacity: what does htools' hcheck say about the cluster's health?

Master only.  `<hcheck> -L --machine-readable` runs through the shared
background engine (background.py: cache `capacity.json`, one run at a
time, detached refresh, timeout): on a big cluster it loads every node and
instance and simulates a rebalance.  Its `HCHECK_*` keys give per node
group: nodes that are not N+1 redundant, nodes whose primaries share an
exclusion tag (`htools:iextags:`), instances on offline nodes, nodes that
cannot be evacuated, the group's score, and the same after a simulated
rebalance.  Evaluate: a state per finding (configurable), the groups named
(hcheck names groups, never instances), whether a rebalance would help.
"""

import os
import time

from .. import background, ganeti
from ..localcheck import OK, UNKNOWN, Metric, Result, State, sanitize, worst
from ..runner import Check, SharedSettings
from ..words import fit, format_duration, plural, some

SERVICE = "Ganeti capacity"
SECTION = "capacity"
CACHE_VERSION = 1
OUTPUT_LIMITS = (4 << 20, 1 << 20)
STDERR_LINES = 20
PACKAGE = "ganeti-htools-3.0"  # Debian 12's package with hcheck

DEFAULTS = {
    "hcheck": "/usr/bin/hcheck",
    "timeout": "5m",
    "max_age": "10m",
    "stale_after": "30m",
    "simulation": "yes",
    "capacity_checks": "yes",
    "n1_fail": "crit",
    "conflict_tags": "warn",
    "offline_pri": "crit",
    "offline_sec": "warn",
    "gn1_fail": "warn",
}

# hcheck's per-group counts, in its order, with what the summary calls them.
# OFFLINE_SEC is documented as "instances having a secondary node offline"
# but hcheck counts the offline nodes (one per node, Hcheck.hs).
FINDINGS = (
    ("N1_FAIL", "n1_fail", "node not N+1 redundant", "nodes not N+1 redundant"),
    ("CONFLICT_TAGS", "conflict_tags", "node with primaries sharing an exclusion tag",
     "nodes with primaries sharing an exclusion tag"),
    ("OFFLINE_PRI", "offline_pri", "instance with an offline primary node",
     "instances with an offline primary node"),
    ("OFFLINE_SEC", "offline_sec", "offline node", "offline nodes"),
    ("GN1_FAIL", "gn1_fail", "node not directly evacuable", "nodes not directly evacuable"),
)
REMEDY = {
    "N1_FAIL": "free memory or add nodes",
    "CONFLICT_TAGS": "move them apart (hbal -L -G <group>)",
    "OFFLINE_PRI": "fail them over (gnt-instance failover)",
    "OFFLINE_SEC": "bring it back or evacuate it (gnt-node evacuate)",
    "GN1_FAIL": "their instances cannot all move elsewhere",
}


class Settings(SharedSettings):
    """`[capacity]` and the paths, typed."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "data_dir",
                                "node_name", "state_dir")
        self.systemd_run = config.get_path("paths", "systemd_run")
        self.systemd_system_dir = config.get_path("paths", "systemd_system_dir")
        self.hcheck = config.get_path(SECTION, "hcheck")
        self.timeout = config.get_duration(SECTION, "timeout", minimum=1)
        self.max_age = config.get_duration(SECTION, "max_age")
        self.stale_after = config.get_duration(SECTION, "stale_after", minimum=1)
        if self.stale_after <= self.max_age + self.timeout:
            config.problem("[%s] stale_after: %s is not more than max_age + timeout "
                           "(%s), using %s" % (
                               SECTION, format_duration(self.stale_after),
                               format_duration(self.max_age + self.timeout),
                               format_duration(2 * (self.max_age + self.timeout))))
            self.stale_after = 2 * (self.max_age + self.timeout)
        self.simulation = config.get_bool(SECTION, "simulation")
        self.capacity_checks = config.get_bool(SECTION, "capacity_checks")
        self.severity = {key: State.from_name(config.get_choice(
            SECTION, key, ("ok", "warn", "crit"))) for _, key, _, _ in FINDINGS}

    def command(self):
        command = [self.hcheck, "-L", "--machine-readable"]
        if not self.simulation:
            command.append("--no-simulation")
        if not self.capacity_checks:
            command.append("--no-capacity-checks")
        return command


# --- parsing hcheck's output ---------------------------------------------------

def _value(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text


def parse_hcheck(text):
    """hcheck --machine-readable output as {"groups": {idx: {"uuid", "init",
    "final"}}, "cluster": {"init", "final"}, "complete": HCHECK_OK seen,
    "other": lines that are no HCHECK key}."""
    groups, cluster = {}, {"init": {}, "final": {}}
    complete, other = False, []
    for line in text.splitlines():
        line = line.strip()
        key, sep, raw = line.partition("=")
        if not (sep and key.startswith("HCHECK_")):
            if line:
                other.append(line)
            continue
        key, value = key[7:], _value(raw)
        if key == "OK":
            complete = value == 1
        elif key.startswith("GROUP_UUID_"):
            groups.setdefault(key[11:], {"init": {}, "final": {}})["uuid"] = str(value)
        elif key.startswith(("INIT_", "FINAL_")):
            phase, _, rest = key.partition("_")
            phase = phase.lower()
            if rest.startswith("CLUSTER_"):
                cluster[phase][rest[8:]] = value
            elif rest.startswith("GROUP_"):
                idx, _, what = rest[6:].partition("_")
                groups.setdefault(idx, {"init": {}, "final": {}})[phase][what] = value
            else:
                other.append(line)
        else:
            other.append(line)
    return {"groups": groups, "cluster": cluster, "complete": complete,
            "other": other[:STDERR_LINES]}


def parse_output(returncode, stdout, stderr):
    """The record's own fields (background.Task parse)."""
    found = parse_hcheck(stdout.decode("utf-8", "replace"))
    found["exit_code"] = returncode
    lines = [l.strip() for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    found["stderr"] = lines[:STDERR_LINES]
    return {"hcheck": found}


def make_task(s):
    return background.Task(
        "capacity", "capacity", s.command(), parse_output, s.state_dir, s.timeout,
        s.max_age, s.config_path, version=CACHE_VERSION, limits=OUTPUT_LIMITS,
        valid=lambda record: isinstance(record.get("hcheck"), dict),
        systemd_run=background.systemd_run(s.systemd_run, s.systemd_system_dir),
        description="Ganeti capacity refresh (ganeti-cmk)")


# --- evaluate --------------------------------------------------------------------

def _count(values, key):
    value = values.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _groups(hcheck, names):
    """[(name, group)] in hcheck's order; names from ssconf by uuid."""
    found = []
    for idx in sorted(hcheck["groups"], key=lambda i: (len(i), i)):
        group = hcheck["groups"][idx]
        uuid = group.get("uuid") or "group %s" % idx
        found.append((names.get(uuid, uuid), group))
    return found


def failure(record, s):
    """Why a record holds no verdict, or None."""
    hcheck = record["hcheck"]
    if record.get("error"):
        return record["error"]
    if record.get("timed_out"):
        return "hcheck did not finish within %s ([%s] timeout) and was killed" % (
            format_duration(s.timeout), SECTION)
    if not hcheck.get("complete") or hcheck.get("exit_code") not in (0, 1):
        said = [l for l in hcheck.get("stderr", []) if not l.startswith("- ")]
        return "hcheck failed (exit code %s): %s" % (
            hcheck.get("exit_code"), sanitize(said[-1] if said else
                                              "its output ends before HCHECK_OK", 300))
    return None


def evaluate(record, s, now, note=None, names=None):
    """The Result for a cached hcheck run (None: none yet)."""
    if record is None:
        state, text = note or (UNKNOWN, "no refresh started")
        return Result(UNKNOWN, SERVICE, "%s: %s" % (
            "first hcheck run in progress" if state == OK else "no hcheck result yet", text))
    hcheck = record["hcheck"]
    ran = background.when(now - record["finished"])
    details = ["hcheck: %s" % l for l in hcheck.get("stderr", [])]
    details += ["unrecognised output: %s" % l for l in hcheck.get("other", [])]
    details.append("command: %s" % " ".join(record["command"]))
    why = failure(record, s)
    problems = background.age_problems(record, s.stale_after, now,
                                       "[%s] stale_after" % SECTION)
    if note and note.state != OK:
        problems.append(note)
    if why:
        state = worst([UNKNOWN] + [p.state for p in problems])
        text = "; ".join([why] + [p.text for p in problems])
        return Result(state, SERVICE, "%s - hcheck %s" % (text, ran), details)
    groups = _groups(hcheck, names or {})
    found = []  # (state, key, [(group name, count)])
    for key, setting, _, _ in FINDINGS:
        where = [(name, _count(g["init"], key)) for name, g in groups
                 if _count(g["init"], key) > 0]
        if where:
            found.append((s.severity[setting], key, where))
    advised = []
    for name, g in groups:
        better = ["%s %d -> %d" % (key, _count(g["init"], key), _count(g["final"], key))
                  for key, _, _, _ in FINDINGS
                  if key in g["final"] and _count(g["final"], key) < _count(g["init"], key)]
        if better:
            advised.append((name, better))
    for name, g in groups:
        details.append("group %s: %s; score %s%s" % (name, ", ".join(
            "%s %s" % (key, g["init"].get(key, "-")) for key, _, _, _ in FINDINGS
            if key in g["init"]), g["init"].get("SCORE", "-"),
            ", after a simulated rebalance %s" % g["final"].get("SCORE")
            if "SCORE" in g["final"] else ""))
    for name, better in advised:
        details.append("a rebalance of group %s would change %s (hbal -L -G %s)"
                       % (name, ", ".join(better), name))
    labels = {key: (one, many) for key, _, one, many in FINDINGS}

    def build(n):
        parts = []
        for state, key, where in sorted(found, key=lambda f: -f[0].rank):
            total = sum(count for _, count in where)
            one, many = labels[key]
            groups_text = where[0][0] if len(where) == 1 else some(
                ("%s (%d)" % w for w in where), n)
            parts.append("%s in %s: %s" % (plural(total, one, many), groups_text,
                                            REMEDY[key]))
        if advised:
            parts.append("a rebalance would help in %s (hbal -L -G <group>)"
                         % some((name for name, _ in advised), n))
        parts += [p.text for p in problems]
        if not parts:
            parts.append("no N+1 failures, exclusion-tag conflicts or offline nodes "
                         "in %s" % plural(len(groups), "node group"))
        return "%s - hcheck %s" % ("; ".join(parts), ran)

    state = worst([f[0] for f in found] + [p.state for p in problems])
    cluster = hcheck["cluster"]["init"]
    metrics = [Metric("ganeti_capacity_%s" % key.lower(), _count(cluster, key), min=0)
               for key, _, _, _ in FINDINGS if key in cluster]
    scores = [g["init"]["SCORE"] for _, g in groups
              if isinstance(g["init"].get("SCORE"), (int, float))]
    if scores:
        metrics.append(Metric("ganeti_capacity_score", max(scores), min=0))
    metrics.append(Metric("ganeti_capacity_age", round(max(0.0, now - record["finished"])),
                          None, s.stale_after, 0))
    return Result(state, SERVICE, fit(build), details, metrics)


def group_names(data_dir):
    names = {}
    for line in ganeti.read_ssconf_list(data_dir, "nodegroups"):
        uuid, _, name = line.partition(" ")
        names[uuid.strip()] = name.strip() or uuid.strip()
    return names


def run(ctx):
    s = ctx.settings
    ganeti.require_master(s.data_dir, s.node,
                          "hcheck runs")
    if not os.access(s.hcheck, os.X_OK):
        return [Result(UNKNOWN, SERVICE, "hcheck is not installed (no executable %s, "
                       "[%s] hcheck): install the package %s" % (s.hcheck, SECTION, PACKAGE))]
    task = make_task(s)
    args = ctx.args
    if getattr(args, "refresh_cache", False):
        background.refresh_in_background(task, ctx.log)
        return []
    note = None
    if getattr(args, "refresh", False):
        try:
            record = background.refresh(task, True, ctx.log)
        except OSError as e:
            return [Result(UNKNOWN, SERVICE, "cannot refresh: %s" % background.os_problem(e))]
    else:
        record, note = background.latest(task, time.time(), ctx.log)
    return [evaluate(record, s, time.time(), note, group_names(s.data_dir))]


def add_arguments(parser):
    background.add_arguments(parser, "hcheck")


CHECK = Check(
    "capacity", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    add_arguments=add_arguments,
    description="Checkmk local check (master only): what does htools' hcheck "
    "find: N+1 failures, exclusion-tag conflicts, instances on offline nodes, "
    "nodes that cannot be evacuated, per node group; runs in the background.",
    epilog="States per finding ([capacity] n1_fail, conflict_tags, offline_pri, "
    "offline_sec, gn1_fail);\nUNKNOWN before the first result, when hcheck "
    "fails or is not installed; WARN when the result is stale.")
