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

from .. import background, ganeti, safefile, verify
from ..localcheck import (CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable,
                          Problem, Result, State, sanitize, valid_host, worst)
from ..runner import Check, SharedSettings
from ..words import SUMMARY_MAX, fit, format_duration, plural

SERVICE = "Ganeti verify"
SECTION = "cluster_verify"
CACHE_VERSION = 2  # 2: findings name their section by index; complete, last_complete
SHOWN = 3             # findings named in the summary
SHORT_MESSAGE = 60    # characters of a message in the summary
ITEM_TEXT = 60        # characters of an item (node, instance) in the summary
SUMMARY_TEXT = 200    # characters of a text from stderr in the summary
HOST_MAX = 240        # characters of a piggyback host name Checkmk keeps
# Codes named first among findings of one state: a node whose RPC fails
# explains the ENODESSH, ENODEFILECHECK, ... about it.
FIRST_CODES = ("ENODERPC",)
REFRESH_UNIT = "ganeti-cmk-verify-refresh"  # the refresher's systemd unit
MIB = 1 << 20
OUTPUT_LIMITS = (16 * MIB, 1 * MIB)  # bytes of verify's stdout, stderr read
# bytes of ssconf_node_list and ssconf_instance_list read for piggyback:
# beyond Ganeti's own 128 KiB limit for ssconf files (4,000 instances)
HOSTS_LIMIT = 16 * MIB

# Could-not-run reasons from verify's stderr: state and what to say.
FAILURES = {
    verify.NO_DAEMON: (CRIT, "the master daemon (ganeti-luxid) does not "
                       "answer, verify did not run (is it running?)"),
    verify.QUEUE_DRAINED: (WARN, "the job queue is drained, verify did not run "
                           "(upgrade in progress? gnt-cluster queue undrain)"),
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


class Settings(SharedSettings):
    """`[cluster_verify]` and the paths as typed values; bad entries become
    config problems."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "data_dir",
                                "state_dir", "node_name", "proc")
        self.gnt_cluster = config.get_path("paths", "gnt_cluster")
        self.gnt_job = config.get_path("paths", "gnt_job")
        self.systemd_run = config.get_path("paths", "systemd_run")
        self.systemd_system_dir = config.get_path("paths", "systemd_system_dir")
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
    """The verify record's own fields: the parsed Report, and whether it is
    a complete run (background.Task)."""
    report = verify.parse(stdout.decode("utf-8", "replace"),
                          stderr.decode("utf-8", "replace"), returncode)
    return {"report": report.to_data(), "complete": _complete(report)}


def _complete(report):
    """A run whose findings can be the verdict: it ended by itself, nothing
    kept it from verifying, it verified something (submitted a job, began
    a section or found something: `--help` in extra_args exits 0 having
    checked nothing), and a failing exit code is explained by an ERROR it
    reported."""
    rc = report.exit_code
    return (rc is not None and rc >= 0 and not report.failure
            and not report.failed_jobs and not report.job_errors
            and bool(report.jobs or report.sections or report.findings)
            and (rc == 0 or any(f.severity == verify.ERROR
                                for f in report.findings)))


def _jobs(record):
    return record["report"].get("jobs") or ()


def _valid(record):
    verify.Report.from_data(record.get("report"))  # ValueError when not
    return True


def make_task(settings, command):
    """The background Task that runs `command` (gnt-cluster verify ...)."""
    return background.Task(
        "cluster_verify", "cluster_verify", command, parse_output,
        settings.state_dir, settings.timeout, settings.max_age,
        settings.config_path, version=CACHE_VERSION, limits=OUTPUT_LIMITS,
        valid=_valid, cancel_jobs=_jobs, gnt_job=settings.gnt_job,
        systemd_run=background.systemd_run(settings.systemd_run,
                                           settings.systemd_system_dir),
        unit=REFRESH_UNIT, description="Ganeti verify refresh (ganeti-cmk)",
        proc=settings.proc)


# ---------------------------------------------------------------- evaluation

def _label(finding):
    return finding.code or finding.severity


def _line(state, finding):
    where = finding.item or (finding.item_type if finding.code is None else None)
    where = " " + where if where else ""
    label = "ignored" if state is None else state.name
    return "%s %s%s: %s" % (label, _label(finding), where, finding.message)


def _causes(judged):
    """'ganeti-noded on X does not answer' for each node whose RPC failed
    to connect: the cause of the ENODESSH, ENODEFILECHECK, ... after it."""
    causes = []
    for f, s in judged:
        if (s in (CRIT, WARN) and f.code == "ENODERPC" and f.item
                and _no_noded(f.message)):
            text = "ganeti-noded on %s does not answer" % sanitize(f.item, ITEM_TEXT)
            if text not in causes:
                causes.append(text)
    return causes


def _no_noded(message):
    return any(text in message for text in (
        "port 1811", "Failed to connect", "Connection refused",
        "Couldn't connect", "Connection timed out"))


def _findings_text(judged, shown=SHOWN, items=True, unstored=(0, 0)):
    """'2 errors, 1 warning: CODE item (message), ...' for judged findings
    (and `unstored` errors and warnings, only counted), naming at most
    `shown`: the worst first, and of those the causes (FIRST_CODES)."""
    bad = [(s, i, f) for i, (f, s) in enumerate(judged) if s in (CRIT, WARN)]
    errors = sum(1 for s, _, _ in bad if s == CRIT) + unstored[0]
    warnings = len(bad) + sum(unstored) - errors
    if not bad and not sum(unstored):
        return None
    bad.sort(key=lambda x: (-x[0].rank, x[2].code not in FIRST_CODES, x[1]))
    named = ["%s%s (%s)" % (_label(f), " " + sanitize(f.item, ITEM_TEXT)
                            if f.item and items else "",
                            sanitize(f.message, SHORT_MESSAGE))
             for _, _, f in bad[:shown]]
    if errors + warnings > len(named):
        named.append("+%d more" % (errors + warnings - len(named)))
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
    if cache.get("disk_full") is not None:
        problems.append((WARN, "the file system of %s was full while verify ran "
                         "(%s free after it): its output may be cut" % (
                             settings.state_dir,
                             background._mib(cache["disk_full"]))))
    if cache.get("timed_out"):
        text = ("verify did not finish within %s ([cluster_verify] timeout) "
                "and was killed" % format_duration(cache.get("timeout") or
                                                   settings.timeout))
        text += _waited_for(cache, report)
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
        if kind == verify.NO_DAEMON and "Error:" in said:
            said = said.rsplit("Error:", 1)[1].strip() or said
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
    if rc == 0 and not problems and not (report.jobs or report.sections
                                         or report.findings):
        said = report.unrecognised or report.stderr
        problems.append((WARN, "gnt-cluster verify exited with 0 but verified "
                         "nothing (no job submitted, no section): %s" % (
                             sanitize(said[0], SUMMARY_TEXT) if said
                             else "it printed nothing")))
    if not cache.get("complete", True) and not any(
            state != OK for state, _ in problems):
        problems.append((WARN, "verify did not complete"))
    return problems


def _waited_for(cache, report):
    """'; it was waiting for locks held by job 59 (TEST_DELAY, running for
    3 min)', from what gnt-job list said after the timeout (or stderr)."""
    state = cache.get("jobs_state") or {}
    waiting = [row for row in state.get("ours", ()) if row[1] == "waiting"]
    queued = [row for row in state.get("ours", ()) if row[1] == "queued"]
    running = state.get("running") or []
    if waiting or (report.waited_for_locks and running):
        if not running:
            return "; it was waiting for locks (gnt-job list shows no other running job)"
        finished = cache["finished"]
        held = ["job %d (%s%s)" % (job, summary, ", running for %s" % format_duration(
            max(0, finished - started)) if started else "")
            for job, _, summary, started in running[:SHOWN]]
        more = len(running) - SHOWN
        return "; it was waiting for locks held by %s%s" % (
            " or ".join(held), " or %d more jobs" % more if more > 0 else "")
    if report.waited_for_locks:
        return "; it was waiting for locks held by another job"
    if queued:
        return "; its jobs were still queued (the job queue was busy)"
    if state.get("error"):
        return "; %s" % sanitize(state["error"], SUMMARY_TEXT)
    return ""


def _cancel_failure(cancel):
    if cancel.get("error"):
        return cancel["error"]
    output = (cancel.get("output") or "").splitlines()
    return "gnt-job cancel failed (exit code %s: %s)" % (
        cancel.get("exit_code"),
        sanitize(output[-1] if output else "no reason given", SUMMARY_TEXT))


class _Run:
    """One cached run, judged: its report, findings and counts."""

    def __init__(self, record, settings):
        self.record = record
        self.report = verify.Report.from_data(record["report"])
        self.judged = [(f, settings.judge(f)) for f in self.report.findings]
        unstored = _unstored(self.report, settings)
        self.unstored = (unstored.get(CRIT, 0), unstored.get(WARN, 0))
        self.states = ([s for _, s in self.judged if s is not None]
                       + [s for s in unstored if s is not None])
        self.errors = sum(1 for _, s in self.judged if s == CRIT) + self.unstored[0]
        self.warnings = (sum(1 for _, s in self.judged if s == WARN)
                         + self.unstored[1])
        self.finished = record["finished"]
        self.duration = max(0.0, self.finished - record["started"])

    def verdict(self, shown):
        """The cause and the findings, or that there are none."""
        found = _findings_text(self.judged, shown, unstored=self.unstored)
        parts = ([t for t in _causes(self.judged)[:max(shown, 1)]]
                 + [found or "no errors or warnings%s" % (
                     " (%s)" % plural(len(self.report.notes), "notice")
                     if self.report.notes else "")])
        return "; ".join(parts)

    def details(self, title=None):
        report = self.report
        lines = [title] if title else []
        if report.more:
            lines.append("%d more findings not stored (only the first %d are "
                         "kept)" % (sum(report.more.values()),
                                    len(report.findings)))
        lines += ["%d more %s lines not stored" % (number, name)
                  for name, number in sorted(report.dropped.items())]
        lines += _detail_lines(self.judged)
        lines += report.notes
        lines += ["stderr: %s" % line
                  for line in report.job_errors + report.stderr]
        lines += ["unrecognised output: %s" % line for line in report.unrecognised]
        cache = self.record
        cancel = cache.get("cancel")
        if cancel and cancel.get("output"):
            lines.append("%s: %s" % (" ".join(cancel["command"]),
                                     cancel["output"]))
        jobs = cache.get("jobs_state") or {}
        lines += ["gnt-job list after the timeout: job %d %s %s" % tuple(row[:3])
                  for row in jobs.get("ours", []) + jobs.get("running", [])]
        started = time.strftime("%Y-%m-%d %H:%M:%S",
                                time.localtime(cache["started"]))
        command = " ".join(cache.get("command") or ())
        if cache.get("error"):
            lines.append("verify could not run at %s: %s" % (started, command))
        else:
            lines.append("verify ran %s for %s, exit code %s: %s" % (
                started, format_duration(self.duration),
                "none (killed)" if report.exit_code is None else report.exit_code,
                command))
        return lines


def evaluate(cache, settings, now, refresh_note=None, node=None, hosts=(),
             hosts_problem=None):
    """The Results for a cached run (None: no result yet).

    `refresh_note` is a Problem about the background refresh; `hosts`
    are the node and instance names that get a piggyback service when
    `[cluster_verify] piggyback` is on (`node`, this host, never does);
    `hosts_problem` says why they could not be read.  A run that did not
    complete never gives the verdict: the last complete one does, with
    its age, and the summary says why the newest does not count.
    """
    if cache is None:
        state, text = refresh_note or (UNKNOWN, "no refresh started")
        if state == OK:
            return [Result(UNKNOWN, SERVICE, "first verify run in progress: %s"
                           % text)]
        return [Result(UNKNOWN, SERVICE, "no verify result yet: %s" % text)]
    newest = _Run(cache, settings)
    last = background.complete_record(cache)
    counted = newest if last is cache else (
        _Run(last, settings) if last is not None else None)
    problems = _run_problems(cache, newest.report, settings)
    aged = background.age_problems(
        (counted or newest).record, settings.stale_after, now,
        "[cluster_verify] stale_after")
    problems += aged
    if refresh_note and refresh_note.state != OK:
        problems.append(refresh_note)
    if hosts_problem:
        problems.append((WARN, hosts_problem))
    problems.sort(key=lambda p: -p[0].rank)
    states = [s for s, _ in problems] + (counted.states if counted else [])
    if counted is not newest:
        states += newest.states  # what an incomplete run found is real too
    state = worst(states)
    ran = background.when(now - cache["finished"])

    def build(shown):
        head = "; ".join(text for _, text in problems)
        if counted is newest:
            return "%s - verify %s" % (
                "; ".join(([head] if head else []) + [newest.verdict(shown)]), ran)
        partial = _findings_text(newest.judged, shown, unstored=newest.unstored)
        head += "; the incomplete run found %s" % partial if partial else ""
        if counted is None:
            return "%s - verify %s; no complete result yet" % (head, ran)
        return "%s - verify %s, so the last complete result counts (verify %s): %s" % (
            head, ran, background.when(now - counted.finished),
            counted.verdict(shown))

    summary = fit(build, (SHOWN, 1, 0), SUMMARY_MAX)
    details = newest.details()
    if counted is not None and counted is not newest:
        details += counted.details("the last complete result:")
    if refresh_note:
        details.append(refresh_note.text)
    shown = counted or newest
    metrics = [Metric("ganeti_verify_errors", shown.errors, min=0),
               Metric("ganeti_verify_warnings", shown.warnings, min=0),
               Metric("ganeti_verify_duration", round(shown.duration, 1), min=0),
               Metric("ganeti_verify_age", int(max(0.0, now - shown.finished)),
                      min=0)]
    piggy = []
    if settings.piggyback:
        why = None if counted is newest else "; ".join(  # each ages itself
            text for state, text in problems if state != OK
            and (state, text) not in aged) or "it did not complete"
        piggy, skipped = _piggyback(counted, hosts, node, now, settings, why, ran,
                                    None if counted is newest else newest)
        if skipped:
            details.append("no piggyback service for %s: %s" % (
                plural(len(skipped), "host"), ", ".join(
                    sanitize(h, ITEM_TEXT) for h in skipped[:SHOWN])
                + (" and more" if len(skipped) > SHOWN else "")
                + " (not a host name Checkmk accepts: longer than %d characters "
                "or other characters than letters, digits, '.', '-' and '_')"
                % HOST_MAX))
    return [Result(state, SERVICE, summary, details, metrics)] + piggy


def _is_uuid(text):
    return (len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-"
            and all(c in "0123456789abcdefABCDEF-" for c in text))


def _piggyback(counted, hosts, node, now, settings, why, ran, incomplete=None):
    """(One `Ganeti verify` service per node and instance host, the host
    names skipped).  They show the complete run that counts, age like the
    master's service, and say why a newer run does not count; what that
    `incomplete` run found about a host is real too, and is added."""
    about = {name.lower(): [] for name in hosts}
    seen = set()
    for run in (counted, incomplete) if counted else ():
        for f, s in run.judged if run else ():
            if (s is not None and f.item and f.item_type in ("node", "instance")
                    and not _is_uuid(f.item)
                    and (f.code, f.item, f.message) not in seen):
                seen.add((f.code, f.item, f.message))
                about.setdefault(f.item.lower(), []).append((f, s))
    results, skipped = [], []
    for host in sorted(about):
        if host == node:
            continue
        if len(host) > HOST_MAX or not valid_host(host):
            skipped.append(host)
            continue
        if counted is None:
            results.append(Result(UNKNOWN, SERVICE, "no complete verify result "
                                  "on the master: %s (verify %s)" % (
                                      sanitize(why, SUMMARY_TEXT), ran),
                                  host=host))
            continue
        found = about[host]
        age = now - counted.finished
        notes = background.age_problems(counted.record, settings.stale_after,
                                        now, "[cluster_verify] stale_after")
        if why:
            notes.append(Problem(OK, "the newest verify (%s) does not count: %s"
                                 % (ran, sanitize(why, SUMMARY_TEXT))))

        def build(shown, found=found, notes=notes, age=age):
            summary = (_findings_text(found, shown, items=False)
                       or "no errors or warnings")
            return "%s - gnt-cluster verify on the master %s ago%s" % (
                summary, format_duration(max(0.0, age)),
                "".join("; " + t for _, t in notes))
        results.append(Result(
            worst([s for _, s in found] + [s for s, _ in notes]), SERVICE,
            fit(build, (SHOWN, 1, 0), SUMMARY_MAX),
            [_line(s, f) for f, s in found], host=host))
    return results, skipped


# ------------------------------------------------------------------ the check

def run(ctx):
    settings = ctx.settings
    data_dir = settings.data_dir
    gnt_cluster = settings.gnt_cluster
    role = ganeti.require_master(
        data_dir, settings.node,
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
    hosts, hosts_problem = (), None
    if settings.piggyback:
        try:
            hosts = [name for key in ("node_list", "instance_list")
                     for name in ganeti.read_ssconf_list(data_dir, key,
                                                         HOSTS_LIMIT)]
        except OSError as e:
            hosts_problem = "no piggyback services: %s" % safefile.describe(e)
    return evaluate(cache, settings, time.time(), note, role.node, hosts,
                    hosts_problem)


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
