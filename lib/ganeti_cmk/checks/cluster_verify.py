"""Ganeti verify: what `gnt-cluster verify` finds, on the master, never blocking.

The agent never waits for verify: in agent mode the check prints the result
cached in `<state_dir>/cluster_verify.json` and, when that is older than
`[cluster_verify] max_age`, starts one detached background refresh (this check
again, with the hidden --refresh-cache, in its own session, stdio on
/dev/null, no other fd; under systemd as a transient unit of its own).  A
lock on `cluster_verify.lock`, held by the refresher and inherited by
gnt-cluster itself, lets at most one verify run at a time, also across a
crashed refresher.  `--refresh` runs verify in the foreground.

Verify runs as `<gnt_cluster> verify --error-codes <extra_args>` in a new
session under a hard timeout that kills its whole process group (and then
cancels its jobs), its output bounded and in files, not pipes.  Evaluate:
ERROR -> CRIT, WARNING -> WARN, NOTICE -> details, with per-code severity
overrides and ignores by code and by item; failures to run have their own
states (master daemon down CRIT, queue drained WARN, timeout CRIT, ...).
"""

import os
import sys
import time

from .. import ganeti, verify
from ..localcheck import (CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable,
                          Result, State, sanitize, valid_host, worst)
from ..runner import Check, extend_deadline
from ..command import KILL_GRACE, run_bounded
from ..statefile import write_atomically
from ..words import format_duration, plural

SERVICE = "Ganeti verify"
SECTION = "cluster_verify"
CACHE_FILE = "cluster_verify.json"
LOCK_FILE = "cluster_verify.lock"
CACHE_VERSION = 1
DEADLINE_GRACE = 60   # s a refresh may take beyond the verify timeout
SHOWN = 3             # findings named in the summary
SHORT_MESSAGE = 60    # characters of a message in the summary
SUMMARY_TEXT = 200    # characters of a text from stderr in the summary
SUMMARY_HEAD = 700    # characters before "- verify ran ...": room for the
#                       age and the runner's config problems within 1000
REFRESH_UNIT = "ganeti-cmk-verify-refresh"  # the refresher's systemd unit
SYSTEMD_RUN_TIMEOUT = 10  # s systemd-run --no-block may take
CANCEL_TIMEOUT = 30   # s gnt-job cancel may take after a timed-out verify
CLOCK_SLACK = 60      # s a result may seem to come from the future
MIB = 1 << 20
OUTPUT_LIMITS = (16 * MIB, 1 * MIB)  # bytes of verify's stdout, stderr read
CANCEL_OUTPUT = 64 * 1024            # bytes of gnt-job cancel's output read
MAX_CACHE = 32 * MIB  # a bigger cache file is not one this check wrote

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


# ---------------------------------------------------------------- the cache

def read_cache(path):
    """The cached run as a dict, None when there is none.

    ValueError when the file is not a cache this version wrote (or one too
    big to be one: every agent run reads it).
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_CACHE:
                raise ValueError("%s, more than a result can take" % _mib(size))
            data = f.read(MAX_CACHE + 1)
    except FileNotFoundError:
        return None
    import json
    cache = json.loads(data.decode("utf-8", "replace"))
    if not (isinstance(cache, dict) and cache.get("version") == CACHE_VERSION
            and isinstance(cache.get("report"), dict)
            and isinstance(cache.get("finished"), (int, float))
            and isinstance(cache.get("started"), (int, float))):
        raise ValueError("not a verify cache of version %d" % CACHE_VERSION)
    return cache


def write_cache(path, cache):
    """Write atomically: a reader sees the old file or the new, never half.

    An empty directory in its place is removed (OSError for another one).
    """
    import json
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    write_atomically(path, json.dumps(cache))


class Lock:
    """flock on the lock file: released by the kernel when its holders die."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.waited = False  # someone else held it when we asked

    def acquire(self, wait=0.0, record=True):
        """Take the lock, waiting up to `wait` seconds; False if held.

        With `record`, the file then tells who holds it since when.
        """
        import fcntl
        fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT)
        end = time.time() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                self.waited = True
                if time.time() >= end:
                    os.close(fd)
                    return False
                time.sleep(0.2)
        self.fd = fd
        if record:
            os.ftruncate(fd, 0)
            os.write(fd, ("%d %d\n" % (os.getpid(), time.time())).encode())
        return True

    def release(self):
        """Unlock, also for a process verify left behind with the fd."""
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self):
        """(pid, since) of the last holder that recorded itself, or None."""
        try:
            fd = _open_regular(self.path, os.O_RDONLY, replace_link=False)
            try:
                pid, since = os.read(fd, 64).split()
            finally:
                os.close(fd)
            return int(pid), float(since)
        except (OSError, ValueError):
            return None


def _open_regular(path, flags, replace_link=True):
    """os.open a regular file, never through a symbolic link.

    A link found there is removed and the file opened again (once);
    OSError when it is something else than a regular file.
    """
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        if not (replace_link and os.path.islink(path)):
            raise
        os.unlink(path)
        fd = os.open(path, flags, 0o644)
    import stat
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        import errno
        raise OSError(errno.EINVAL, "not a regular file (remove it)", path)
    return fd


class Paths:
    """Where the check keeps its state, and gnt-job for cancelling."""

    __slots__ = ("state_dir", "cache", "lock", "gnt_job")

    def __init__(self, state_dir, gnt_job):
        self.state_dir = state_dir
        self.cache = os.path.join(state_dir, CACHE_FILE)
        self.lock = os.path.join(state_dir, LOCK_FILE)
        self.gnt_job = gnt_job


# ------------------------------------------------------------ running verify

def run_verify(command, timeout, paths, keep_fds=()):
    """Run verify under `timeout` (run_bounded) and parse what it said.

    Returns the cache record: times, exit code, timeout, the parsed report,
    `truncated` {stream: size} when it printed more than we read, or `error`
    when the command could not be started.  `keep_fds` (the lock) stay open
    in verify, so the lock is held as long as verify runs.  After a timeout
    its jobs are cancelled with `paths.gnt_job` (`cancel` in the record):
    left in the queue, they would wait behind the job holding the locks,
    and every refresh would add more.
    """
    record = {"version": CACHE_VERSION, "command": command,
              "started": time.time(), "timeout": timeout, "timed_out": False,
              "error": None}
    returncode, outputs = None, [(b"", 0), (b"", 0)]
    try:
        returncode, record["timed_out"], outputs = run_bounded(
            command, timeout, paths.state_dir, OUTPUT_LIMITS, keep_fds)
    except OSError as e:  # the command, or the output files in state_dir
        record["error"] = "cannot run %s: %s%s" % (
            command[0], "%s: " % e.filename
            if e.filename not in (None, command[0]) else "", e.strerror or e)
    record["finished"] = time.time()
    truncated = {name: size for name, (_, size), limit
                 in zip(("stdout", "stderr"), outputs, OUTPUT_LIMITS)
                 if size > limit}
    if truncated:
        record["truncated"] = truncated
    report = verify.parse(outputs[0][0].decode("utf-8", "replace"),
                          outputs[1][0].decode("utf-8", "replace"),
                          None if record["timed_out"] else returncode)
    record["report"] = report.to_data()
    if record["timed_out"] and report.jobs:
        record["cancel"] = cancel_jobs(paths, report.jobs)
    return record


def cancel_jobs(paths, jobs):
    """`<gnt_job> cancel <jobs>`: what it said, or why it could not run."""
    command = [paths.gnt_job, "cancel"] + [str(job) for job in jobs]
    result = {"command": command, "exit_code": None, "output": "",
              "error": None}
    try:
        returncode, timed_out, outputs = run_bounded(
            command, CANCEL_TIMEOUT, paths.state_dir, (CANCEL_OUTPUT,) * 2)
    except OSError as e:
        result["error"] = "cannot run %s (%s)" % (paths.gnt_job,
                                                  e.strerror or e)
        return result
    if timed_out:
        result["error"] = "gnt-job cancel did not finish within %d s" % (
            CANCEL_TIMEOUT)
    result["exit_code"] = returncode
    result["output"] = b"\n".join(data for data, _ in outputs).decode(
        "utf-8", "replace").strip()
    return result


def refresh(paths, command, settings, wait, log):
    """Run verify under the lock and cache its result; return the record.

    wait=False (background): give up at once when the lock is held, and do
    nothing when the cache became fresh meanwhile; returns None then.
    wait=True (--refresh): wait for a running verify and use its result when
    it finished after we asked; else run our own.
    """
    _make_state_dir(paths.state_dir)
    asked = time.time()
    lock = Lock(paths.lock)
    patience = settings.timeout + KILL_GRACE + 10 if wait else 0
    extend_deadline(patience + settings.timeout + DEADLINE_GRACE)
    if not lock.acquire(wait=patience):
        if not wait:
            log("another refresh holds %s" % paths.lock)
            return None
        holder = lock.holder()
        raise RuntimeError("another verify still holds %s after %s%s" % (
            paths.lock, format_duration(patience),
            " (pid %d)" % holder[0] if holder else ""))
    try:
        try:
            cache = read_cache(paths.cache)
        except (OSError, ValueError):  # replaced below
            cache = None
        if cache is not None and cache.get("command") == command:
            now = time.time()
            if wait and lock.waited and asked <= cache["finished"] <= now:
                log("a verify that ran meanwhile finished after we asked")
                return cache
            if not wait and _fresh(cache, settings, now):
                log("the cache was refreshed meanwhile")
                return None
        log("running %s (timeout %s)" % (" ".join(command),
                                         format_duration(settings.timeout)))
        cache = run_verify(command, settings.timeout, paths,
                           keep_fds=(lock.fd,))
        write_cache(paths.cache, cache)
        return cache
    finally:
        lock.release()


def spawn_refresh(config_path, systemd_run=None):
    """Start this check with --refresh-cache, detached: (state, what happened).

    Own session, stdin/stdout/stderr on /dev/null, every other fd closed
    (the agent's fd 9 is the client's connection under xinetd and systemd:
    inherited, it would make the server wait for verify), nobody waits for
    it.  With `systemd_run` it becomes a transient unit of its own, since
    systemd stops every process left in the agent's per-connection unit
    when the agent exits (a new session does not leave that cgroup); the
    fixed unit name also keeps a second refresher from starting.  It
    imports the library from where this module came from, so it works from
    a checkout, an installed package and a zipapp alike.
    """
    import subprocess
    lib = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from ganeti_cmk.runner import main; "
            "from ganeti_cmk.checks.cluster_verify import CHECK; "
            "sys.exit(main(CHECK))")
    argv = [sys.executable, "-c", code, lib, "--refresh-cache",
            "--config", config_path]
    if systemd_run is None:
        pid = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, close_fds=True,
                               start_new_session=True).pid
        return OK, "refresh started in the background (pid %d)" % pid
    unit = "systemd unit %s.service" % REFRESH_UNIT
    command = [systemd_run, "--no-block", "--collect", "--quiet",
               "--unit=" + REFRESH_UNIT,
               "--description=Ganeti verify refresh (ganeti-cmk)"]
    command += ["--setenv=%s=%s" % (name, os.environ[name])
                for name in ("MK_CONFDIR", "MK_VARDIR") if name in os.environ]
    try:
        proc = subprocess.run(command + ["--"] + argv,
                              stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              close_fds=True, timeout=SYSTEMD_RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return WARN, ("cannot start a background refresh: %s did not return "
                      "within %d s" % (systemd_run, SYSTEMD_RUN_TIMEOUT))
    said = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        return OK, "refresh started in the background (%s)" % unit
    if "already exists" in said:
        return OK, "refresh running (%s exists)" % unit
    return WARN, ("cannot start a background refresh: systemd-run exited "
                  "with %d: %s" % (proc.returncode, sanitize(
                      said.splitlines()[-1] if said else "no reason given",
                      SUMMARY_TEXT)))


def _systemd_run(settings):
    """`[paths] systemd_run` when systemd runs this machine, else None."""
    if (os.path.isdir(settings.systemd_system_dir)
            and os.access(settings.systemd_run, os.X_OK)):
        return settings.systemd_run
    return None


def _os_problem(e):
    """An OSError about the state files: which file, what is wrong."""
    text = "%s: %s" % (e.filename, e.strerror) if e.filename else str(e)
    if isinstance(e, PermissionError):
        text += " (run the check as root)"
    return text


def _make_state_dir(state_dir):
    try:
        os.makedirs(state_dir, exist_ok=True)
    except FileExistsError:  # a file
        import errno
        raise OSError(errno.ENOTDIR, "not a directory ([paths] state_dir)",
                      state_dir)


def _fresh(cache, settings, now):
    """Younger than max_age, and not from the future (the clock jumped)."""
    return -CLOCK_SLACK <= now - cache["finished"] < settings.max_age


def _when(age):
    """'ran 5 min ago', or where a clock that jumped back puts it."""
    if age < -CLOCK_SLACK:
        return ("finished %s in the future (did the clock jump back?)"
                % format_duration(-age))
    return "ran %s ago" % format_duration(max(0.0, age))


def cached_result(paths, command, settings, now, log):
    """Agent mode: (cache or None, (state, note) about the refresh or None).

    Starts a background refresh when the cache is missing, unreadable, older
    than max_age or from other arguments, unless one is running.
    """
    note = None
    try:
        cache = read_cache(paths.cache)
    except (OSError, ValueError) as e:
        cache = None
        note = "cache %s unreadable (%s)" % (
            paths.cache, _os_problem(e) if isinstance(e, OSError) else e)
    if cache is not None:
        log("cached result: verify %s" % _when(now - cache["finished"]))
        if _fresh(cache, settings, now) and cache.get("command") == command:
            return cache, None
        if now - cache["finished"] < -CLOCK_SLACK:
            note = "result from %s in the future" % format_duration(
                cache["finished"] - now)
    lock = Lock(paths.lock)
    try:
        _make_state_dir(paths.state_dir)
        free = lock.acquire(record=False)
        lock.release()
        if free:
            state, text = spawn_refresh(settings.config_path,
                                        _systemd_run(settings))
            log(text)
        else:
            holder = lock.holder()
            text = "refresh running"
            if holder:
                text += " for %s (pid %d)" % (
                    format_duration(max(0, now - holder[1])), holder[0])
            state = OK
    except OSError as e:
        state, text = WARN, "cannot start a background refresh: %s" % (
            _os_problem(e))
    if note:
        text = "%s; %s" % (note, text)
        if cache is None:  # not "first verify run in progress"
            state = worst([state, WARN])
    return cache, (state, text)


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


def _mib(size):
    return "%g MiB" % round(size / MIB, 1)


def _run_problems(cache, report, settings):
    """(state, text) for everything about the run that is not a finding."""
    problems = []
    if cache.get("error"):
        problems.append((UNKNOWN, sanitize(cache["error"], SUMMARY_TEXT)))
    truncated = cache.get("truncated")
    if truncated:
        problems.append((WARN, "output truncated: only %s were read" % " and ".join(
            "the first %s of %s on %s" % (_mib(limit), _mib(truncated[name]), name)
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

    `refresh_note` is (state, text) about the background refresh; `hosts`
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
    if age > settings.stale_after:
        problems.append((WARN, "result is %s old, older than %s "
                         "([cluster_verify] stale_after)" % (
                             format_duration(age),
                             format_duration(settings.stale_after))))
    if refresh_note and refresh_note[0] != OK:
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
                                  _when(now - cache["finished"]))
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
        details.append(refresh_note[1])
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
    paths = Paths(settings.state_dir, settings.gnt_job)
    args = ctx.args
    if getattr(args, "refresh_cache", False):
        _background(paths, command, settings, ctx.log)
        return []
    if getattr(args, "refresh", False):
        try:
            cache = refresh(paths, command, settings, True, ctx.log)
        except OSError as e:
            return [Result(UNKNOWN, SERVICE, "cannot refresh: %s"
                           % _os_problem(e))]
        note = None
    else:
        cache, note = cached_result(paths, command, settings, time.time(),
                                    ctx.log)
    hosts = ()
    if settings.piggyback:
        hosts = (ganeti.read_ssconf_list(data_dir, "node_list")
                 + ganeti.read_ssconf_list(data_dir, "instance_list"))
    return evaluate(cache, settings, time.time(), note, role.node, hosts)


def _background(paths, command, settings, log):
    """--refresh-cache: refresh; a failure is cached, so the service shows it."""
    try:
        refresh(paths, command, settings, False, log)
    except Exception as e:
        now = time.time()
        try:
            write_cache(paths.cache, {
                "version": CACHE_VERSION, "command": command, "started": now,
                "finished": now, "timeout": settings.timeout,
                "timed_out": False, "report": verify.Report().to_data(),
                "error": "the background refresh failed: %s: %s"
                         % (type(e).__name__, e)})
        except OSError:
            pass
        raise


def add_arguments(parser):
    import argparse
    parser.add_argument("--refresh", action="store_true",
                        help="run gnt-cluster verify now in the foreground "
                        "(or wait for the one running), cache and show the "
                        "fresh result")
    parser.add_argument("--refresh-cache", action="store_true",
                        help=argparse.SUPPRESS)


CHECK = Check(
    "cluster_verify", SERVICE,
    "Checkmk local check: what does gnt-cluster verify find? Runs on the "
    "master only; the agent gets the cached result at once while a refresh "
    "runs in the background.",
    run, settings=Settings, defaults=DEFAULTS, add_arguments=add_arguments,
    epilog="In agent mode the result cached in <state_dir>/cluster_verify.json "
    "is printed at once; when it is older than [cluster_verify] max_age, one "
    "background refresh starts. --refresh runs verify now and waits for it.")
