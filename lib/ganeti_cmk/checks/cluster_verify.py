"""Ganeti verify: what `gnt-cluster verify` finds, on the master, never blocking.

Verify runs as `<gnt_cluster> verify --error-codes <extra_args>` through
the background engine (background.py: the cache `cluster_verify.json`,
the lock, the detached refresh, the timeout that kills it and cancels its
jobs); the agent gets the cached result at once.  Evaluate: ERROR -> CRIT,
WARNING -> WARN, NOTICE -> details, with per-code severity overrides and
ignores by code and by item; failures to run have their own states
(master daemon down CRIT, queue drained WARN, timeout CRIT, ...).
"""

import os
import time

from .. import background, ganeti, verify
from ..localcheck import (CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable,
                          Result, State, sanitize, valid_host, worst)
from ..runner import Check
from ..words import format_duration, plural

SERVICE = "Ganeti verify"
SECTION = "cluster_verify"
CACHE_VERSION = 1
SHOWN = 3             # findings named in the summary
SHORT_MESSAGE = 60    # characters of a message in the summary
SUMMARY_TEXT = 200    # characters of a text from stderr in the summary
SUMMARY_HEAD = 700    # characters before "- verify ran ...": room for the
#                       age and the runner's config problems within 1000
REFRESH_UNIT = "ganeti-cmk-verify-refresh"  # the refresher's systemd unit
MIB = 1 << 20
OUTPUT_LIMITS = (16 * MIB, 1 * MIB)  # bytes of verify's stdout, stderr read

# Could-not-run reasons from verify's stderr: state and what to say.
FAILURES = {
    verify.NO_DAEMON: (CRIT, "cannot reach the master daemon (is ganeti "
                       "running on this master?)"),
    verify.QUEUE_DRAINED: (WARN, "the job queue is drained, verify cannot run "
                           "(upgrade in progress?)"),
    verify.QUEUE_FULL: (CRIT, "the job queue is full, verify cannot run "
                        "(archive old jobs: gnt-job archive)"),
    verify.CORRUPT_CONFIG: (CRIT, "the cluster configuration is corrupt"),
    verify.NOT_MASTER: (UNKNOWN, "gnt-cluster says this is not the master, "
                        "although ssconf says it is (master failover?)"),
    verify.NOT_IN_CLUSTER: (UNKNOWN, "gnt-cluster says this node is not in "
                            "a cluster, although ssconf says it is the master"),
    verify.NO_PERMISSION: (UNKNOWN, "not allowed to talk to the master daemon: "
                           "run the check as root"),
    verify.USAGE: (UNKNOWN, "gnt-cluster rejected the arguments: check "
                   "[cluster_verify] extra_args"),
    verify.CRASHED: (WARN, "gnt-cluster verify crashed"),
}


DEFAULTS = {
    "max_age": "10m",
    "stale_after": "30m",
    "timeout": "10m",
    "extra_args": "",
    "severity": "",
    "ignore_codes": "",
    "ignore_items": "",
    "piggyback": "no",
}


class Settings:
    """`[cluster_verify]` and the paths as typed values; bad entries become
    config problems."""

    def __init__(self, config):
        self.data_dir = config.get_path("paths", "ganeti_data_dir")
        self.gnt_cluster = config.get_path("paths", "gnt_cluster")
        self.state_dir = config.get_path("paths", "state_dir")
        self.gnt_job = config.get_path("paths", "gnt_job")
        self.node_name = config.get_str("ganeti", "node_name")
        self.systemd_run = config.get_path("paths", "systemd_run")
        self.systemd_system_dir = config.get_path("paths", "systemd_system_dir")
        self.config_path = config.path
        self.max_age = config.get_duration(SECTION, "max_age")
        self.stale_after = config.get_duration(SECTION, "stale_after", minimum=1)
        self.timeout = config.get_duration(SECTION, "timeout", minimum=1)
        if self.stale_after <= self.max_age + self.timeout:
            _problem(config, "stale_after: %s is not more than max_age + "
                     "timeout (%s): a result would turn stale while its "
                     "refresh may still run" % (
                         format_duration(self.stale_after),
                         format_duration(self.max_age + self.timeout)))
        self.extra_args = _split_args(config)
        self.piggyback = config.get_bool(SECTION, "piggyback")
        self.severity = {}
        for entry in config.get_list(SECTION, "severity"):
            code, _, word = entry.partition(":")
            try:
                state = State.from_name(word)
            except ValueError:
                state = None
            if not code or state in (None, UNKNOWN):
                _problem(config, "severity: %r is not CODE:ok, CODE:warn or "
                         "CODE:crit, ignored" % entry)
                continue
            self.severity[_code(code, "severity", config)] = state
        self.ignore_codes = {_code(c, "ignore_codes", config)
                             for c in config.get_list(SECTION, "ignore_codes")}
        self.ignore_items = []
        items = config.get_str(SECTION, "ignore_items").split()
        if items:
            import re
            for pattern in items:
                try:
                    self.ignore_items.append(re.compile(pattern).fullmatch)
                except re.error as e:
                    _problem(config, "ignore_items: %r is not a regular "
                             "expression (%s), ignored" % (pattern, e))

    def judge(self, finding):
        """The state of one Finding, or None when the config ignores it."""
        if finding.code in self.ignore_codes:
            return None
        if finding.item is not None and any(
                match(finding.item) for match in self.ignore_items):
            return None
        if finding.code in self.severity:
            return self.severity[finding.code]
        return CRIT if finding.severity == verify.ERROR else WARN


def _split_args(config):
    """extra_args split at blanks; with quotes or backslashes as a shell
    would split them (shlex, imported only then: it imports re)."""
    text = config.get_str(SECTION, "extra_args")
    if any(c in text for c in "'\"\\"):
        import shlex
        try:
            return shlex.split(text)
        except ValueError as e:
            _problem(config, "extra_args: %r is not a command line (%s), "
                     "split at blanks" % (text, e))
    return text.split()


def _problem(config, text):
    config.problem("[%s] %s" % (SECTION, text))


def _code(code, key, config):
    code = code.strip().upper()
    if code not in verify.CODES:
        _problem(config, "%s: %s is not a verify error code (typo?)"
                 % (key, code))
    return code


# ------------------------------------------------------ running verify

def parse_output(returncode, stdout, stderr):
    """The verify record's own field: the parsed Report (background.Task)."""
    report = verify.parse(stdout.decode("utf-8", "replace"),
                          stderr.decode("utf-8", "replace"), returncode)
    return {"report": report.to_data()}


def _jobs(record):
    return record["report"].get("jobs") or ()


def make_task(settings, command):
    """The background Task that runs `command` (gnt-cluster verify ...)."""
    return background.Task(
        "cluster_verify", "cluster_verify", command, parse_output,
        settings.state_dir, settings.timeout, settings.max_age,
        settings.config_path, version=CACHE_VERSION, limits=OUTPUT_LIMITS,
        valid=lambda record: isinstance(record.get("report"), dict),
        cancel_jobs=_jobs, gnt_job=settings.gnt_job,
        systemd_run=background.systemd_run(settings.systemd_run,
                                           settings.systemd_system_dir),
        unit=REFRESH_UNIT, description="Ganeti verify refresh (ganeti-cmk)")


# ---------------------------------------------------------------- evaluation

def _label(finding):
    return finding.code or finding.severity


def _line(state, finding):
    where = finding.item or (finding.item_type if finding.code is None else None)
    where = " " + where if where else ""
    label = "ignored" if state is None else state.name
    return "%s %s%s: %s" % (label, _label(finding), where, finding.message)


def _findings_text(judged, items=True, unstored=(0, 0)):
    """'2 errors, 1 warning: CODE item (message), ...' for judged findings
    (and `unstored` errors and warnings, only counted)."""
    bad = [(s, i, f) for i, (f, s) in enumerate(judged) if s in (CRIT, WARN)]
    errors = sum(1 for s, _, _ in bad if s == CRIT) + unstored[0]
    warnings = len(bad) + sum(unstored) - errors
    if not bad:
        return None
    bad.sort(key=lambda x: (-x[0].rank, x[1]))
    named = ["%s%s (%s)" % (_label(f), " " + f.item if f.item and items else "",
                            sanitize(f.message, SHORT_MESSAGE))
             for _, _, f in bad[:SHOWN]]
    if errors + warnings > SHOWN:
        named.append("+%d more" % (errors + warnings - SHOWN))
    counts = ", ".join(c for c in (plural(errors, "error") if errors else "",
                                   plural(warnings, "warning") if warnings else "")
                       if c)
    return "%s: %s" % (counts, ", ".join(named))


def _detail_lines(judged):
    """Every finding, one per line, grouped by code, worst groups first."""
    worst_of = {}
    for f, s in judged:
        rank = -1 if s is None else s.rank
        worst_of[_label(f)] = max(worst_of.get(_label(f), -1), rank)
    order = sorted(range(len(judged)), key=lambda i: (
        -worst_of[_label(judged[i][0])], _label(judged[i][0]), i))
    return [_line(judged[i][1], judged[i][0]) for i in order]


def _unstored(report, settings):
    """{state: count} of the findings counted but not stored (verify.Report)."""
    states = {}
    for tally, number in report.more.items():
        severity, _, code = tally.partition(":")
        state = settings.judge(verify.Finding(severity, code or None, None,
                                              None, ""))
        states[state] = states.get(state, 0) + number
    return states


def _run_problems(cache, report, settings):
    """(state, text) for everything about the run that is not a finding."""
    problems = []
    if cache.get("error"):
        problems.append((UNKNOWN, sanitize(cache["error"], SUMMARY_TEXT)))
    truncated = cache.get("truncated")
    if truncated:
        problems.append((WARN, "output truncated: only %s were read" % " and ".join(
            "the first %s of %s on %s" % (background._mib(limit), background._mib(truncated[name]), name)
            for name, limit in zip(("stdout", "stderr"), OUTPUT_LIMITS)
            if name in truncated)))
    if cache.get("timed_out"):
        text = ("verify did not finish within %s ([cluster_verify] timeout) "
                "and was killed" % format_duration(cache.get("timeout") or
                                                   settings.timeout))
        if report.waited_for_locks:
            text += "; it was waiting for locks held by another job"
        if report.jobs:
            text += "; its jobs %s" % ", ".join(str(j) for j in report.jobs)
            cancel = cache.get("cancel")
            if cancel and cancel.get("exit_code") == 0:
                text += " were cancelled (gnt-job cancel)"
            elif cancel:
                text += ": %s; they may still be queued (gnt-job list)" % (
                    _cancel_failure(cancel))
            else:
                text += " may still be queued (gnt-job list)"
        problems.append((CRIT, text))
    if report.failure:
        kind, said = report.failure
        state, text = FAILURES.get(kind, (WARN, kind))
        problems.append((state, "%s: %s" % (text, sanitize(said,
                                                           SUMMARY_TEXT))))
    if report.failed_jobs or report.job_errors:
        number = report.failed_jobs or len(report.job_errors)
        text = "%s failed" % plural(number, "verify job")
        if report.job_errors:
            text += ": %s" % sanitize(report.job_errors[0], SUMMARY_TEXT)
        problems.append((WARN, text))
    rc = report.exit_code
    if (rc not in (0, None) and not problems
            and not any(f.severity == verify.ERROR for f in report.findings)):
        reason = sanitize(report.stderr[-1], SUMMARY_TEXT) if report.stderr \
            else "no reason given"
        if rc < 0:
            problems.append((WARN, "gnt-cluster was killed by signal %d" % -rc))
        else:
            problems.append((WARN, "gnt-cluster verify exited with %d but "
                             "reported no ERROR: %s" % (rc, reason)))
    return problems


def _cancel_failure(cancel):
    if cancel.get("error"):
        return cancel["error"]
    output = (cancel.get("output") or "").splitlines()
    return "gnt-job cancel failed (exit code %s: %s)" % (
        cancel.get("exit_code"),
        sanitize(output[-1] if output else "no reason given", SUMMARY_TEXT))


def evaluate(cache, settings, now, refresh_note=None, node=None, hosts=()):
    """The Results for a cached run (None: no result yet).

    `refresh_note` is a Problem about the background refresh; `hosts`
    are the node and instance names that get a piggyback service when
    `[cluster_verify] piggyback` is on (`node`, this host, never does).
    """
    if cache is None:
        state, text = refresh_note or (UNKNOWN, "no refresh started")
        if state == OK:
            return [Result(UNKNOWN, SERVICE, "first verify run in progress: %s"
                           % text)]
        return [Result(UNKNOWN, SERVICE, "no verify result yet: %s" % text)]
    report = verify.Report.from_data(cache["report"])
    age = max(0.0, now - cache["finished"])
    duration = max(0.0, cache["finished"] - cache["started"])
    judged = [(f, settings.judge(f)) for f in report.findings]
    unstored = _unstored(report, settings)
    errors = sum(1 for _, s in judged if s == CRIT) + unstored.get(CRIT, 0)
    warnings = sum(1 for _, s in judged if s == WARN) + unstored.get(WARN, 0)
    problems = _run_problems(cache, report, settings)
    problems += background.age_problems(cache, settings.stale_after, now,
                                        "[cluster_verify] stale_after")
    if refresh_note and refresh_note.state != OK:
        problems.append(refresh_note)
    problems.sort(key=lambda p: -p[0].rank)
    state = worst([s for _, s in judged if s is not None] +
                  [s for s in unstored if s is not None] +
                  [s for s, _ in problems])
    found = _findings_text(judged, unstored=(unstored.get(CRIT, 0),
                                             unstored.get(WARN, 0)))
    completed = not (cache.get("error") or cache.get("timed_out")
                     or report.failure or report.failed_jobs
                     or report.job_errors)
    if found is None and completed:
        found = "no errors or warnings"
        if report.notes:
            found += " (%s)" % plural(len(report.notes), "notice")
    parts = [text for _, text in problems] + ([found] if found else [])
    summary = "%s - verify %s" % (sanitize("; ".join(parts), SUMMARY_HEAD),
                                  background.when(now - cache["finished"]))
    details = []
    if report.more:
        details.append("%d more findings not stored (only the first %d are "
                       "kept)" % (sum(report.more.values()), verify.MAX_FINDINGS))
    details += ["%d more %s lines not stored" % (number, name)
                for name, number in sorted(report.dropped.items())]
    details += _detail_lines(judged)
    details += report.notes
    details += ["stderr: %s" % line for line in report.job_errors + report.stderr]
    details += ["unrecognised output: %s" % line for line in report.unrecognised]
    cancel = cache.get("cancel")
    if cancel and cancel.get("output"):
        details.append("%s: %s" % (" ".join(cancel["command"]),
                                   cancel["output"]))
    started = time.strftime("%Y-%m-%d %H:%M:%S",
                            time.localtime(cache["started"]))
    command = " ".join(cache.get("command") or ())
    if cache.get("error"):
        details.append("verify could not run at %s: %s" % (started, command))
    else:
        details.append("verify ran %s for %s, exit code %s: %s" % (
            started, format_duration(duration),
            "none (killed)" if report.exit_code is None else report.exit_code,
            command))
    if refresh_note:
        details.append(refresh_note.text)
    metrics = [Metric("ganeti_verify_errors", errors, min=0),
               Metric("ganeti_verify_warnings", warnings, min=0),
               Metric("ganeti_verify_duration", round(duration, 1), min=0),
               Metric("ganeti_verify_age", int(age), min=0)]
    results = [Result(state, SERVICE, summary, details, metrics)]
    if settings.piggyback and completed:
        results += _piggyback(judged, hosts, node, age)
    return results


def _is_uuid(text):
    return (len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-"
            and all(c in "0123456789abcdefABCDEF-" for c in text))


def _piggyback(judged, hosts, node, age):
    """One `Ganeti verify` service per node and instance host."""
    about = {name.lower(): [] for name in hosts}
    for f, s in judged:
        if (s is not None and f.item and f.item_type in ("node", "instance")
                and not _is_uuid(f.item)):
            about.setdefault(f.item.lower(), []).append((f, s))
    results = []
    for host in sorted(about):
        if host == node or not valid_host(host):
            continue
        found = about[host]
        summary = _findings_text(found, items=False) or "no errors or warnings"
        results.append(Result(
            worst(s for _, s in found), SERVICE,
            "%s - gnt-cluster verify on the master %s ago" % (
                summary, format_duration(age)),
            [_line(s, f) for f, s in found], host=host))
    return results


# ------------------------------------------------------------------ the check

def run(ctx):
    settings = ctx.settings
    data_dir = settings.data_dir
    gnt_cluster = settings.gnt_cluster
    role = ganeti.require_master(
        data_dir, lambda: ganeti.node_name(settings.node_name, settings.state_dir),
        "verify runs")
    if not os.access(gnt_cluster, os.X_OK):
        raise NotApplicable("no executable %s ([paths] gnt_cluster)"
                            % gnt_cluster)
    command = [gnt_cluster, "verify", "--error-codes"] + settings.extra_args
    task = make_task(settings, command)
    args = ctx.args
    if getattr(args, "refresh_cache", False):
        background.refresh_in_background(task, ctx.log)
        return []
    if getattr(args, "refresh", False):
        try:
            cache = background.refresh(task, True, ctx.log)
        except OSError as e:
            return [Result(UNKNOWN, SERVICE, "cannot refresh: %s"
                           % background.os_problem(e))]
        note = None
    else:
        cache, note = background.latest(task, time.time(), ctx.log)
    hosts = ()
    if settings.piggyback:
        hosts = (ganeti.read_ssconf_list(data_dir, "node_list")
                 + ganeti.read_ssconf_list(data_dir, "instance_list"))
    return evaluate(cache, settings, time.time(), note, role.node, hosts)


def add_arguments(parser):
    background.add_arguments(parser, "gnt-cluster verify")


CHECK = Check(
    "cluster_verify", SERVICE,
    "Checkmk local check: what does gnt-cluster verify find? Runs on the "
    "master only; the agent gets the cached result at once while a refresh "
    "runs in the background.",
    run, settings=Settings, defaults=DEFAULTS, add_arguments=add_arguments,
    epilog="In agent mode the result cached in <state_dir>/cluster_verify.json "
    "is printed at once; when it is older than [cluster_verify] max_age, one "
    "background refresh starts. --refresh runs verify now and waits for it.")
