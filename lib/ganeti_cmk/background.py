"""Slow commands for any check, without ever making the agent wait.

A Task is a command that may take minutes (gnt-cluster verify, hcheck) and
a `parse` callback that turns its output into the check's data.  In agent
mode a check calls `latest(task)`: it gets the record cached in
`<state_dir>/<name>.json` at once and, when that is older than `max_age`
(or missing, unreadable, from other arguments, from the future), one
detached refresh starts: the same check again with the hidden
`--refresh-cache`, in a session of its own, stdin/stdout/stderr on
/dev/null and no other fd (the agent's fd 9 is the client's connection),
isolated (`python3 -I`, cwd /), under systemd as a transient unit of its
own (systemd stops what is left in the agent's unit when it exits).  With
`--refresh` the check runs the command in the foreground (or waits for the
running one) and shows the fresh result.

A flock on `<name>.lock`, held by the refresher and inherited by the
command itself, lets at most one run happen at a time, also across a
crashed refresher.  The command runs under a hard timeout that kills its
whole process group (command.run_bounded); `cancel_jobs(record)` may name
Ganeti jobs to cancel with gnt-job after a timeout (left queued, they would
wait behind the job holding the locks, and every refresh would add more).

A record is a dict: version, command, started, finished, timeout,
timed_out, error (could not run), truncated ({stream: size} beyond the
limits), disk_full (bytes free in state_dir's file system after a run
that may have lost output to it), plus what `parse` returns, and
`complete`: parse's own verdict (default True) unless the run timed out,
could not run, was killed by a signal, or its output was cut.  A record
that is not complete carries the last complete one as `last_complete`
(`complete_record()`), so an incomplete run never replaces a verdict.
`age_problems` says when a record is stale or from the future; a check's
evaluation does the rest.

Bounds: the cache file is at most MAX_CACHE (the reader refuses more; a
record that would not fit is stored without its output: `error` says
so); a corrupt cache of any shape reads as "unreadable" and the next
refresh replaces it.  A refresh ends within `timeout` + DEADLINE_GRACE
(the command's kill, gnt-job list and gnt-job cancel fit in it).  The
lock and cache are 0600 files in a 0700 `state_dir`; a lock held longer
than a refresh can take (`timeout` + DEADLINE_GRACE) is reported with
the pid and command of what holds it (`lock_problem`).
"""

import math
import os
import sys
import time

from . import procfs
from .command import KILL_GRACE, run_bounded
from .jsonc import loads
from .localcheck import CRIT, OK, WARN, Problem, sanitize, worst
from .runner import extend_deadline
from . import statefile
from .words import format_duration

MIB = 1 << 20
SYSTEMD_RUN_TIMEOUT = 10  # s systemd-run --no-block may take
JOBS_TIMEOUT = 10         # s gnt-job list may take after a timeout
CANCEL_TIMEOUT = 30       # s gnt-job cancel may take after a timeout
# s a refresh may take beyond the task's timeout: the kill of the command,
# gnt-job list twice (the second maybe killed), gnt-job cancel (maybe
# killed), and 25 s for the rest (start-up, writing the cache): 90 s
DEADLINE_GRACE = (KILL_GRACE + JOBS_TIMEOUT + (JOBS_TIMEOUT + KILL_GRACE)
                  + (CANCEL_TIMEOUT + KILL_GRACE) + 25)
CANCEL_OUTPUT = 64 * 1024  # bytes of gnt-job cancel's output read
JOBS_OUTPUT = 256 * 1024  # bytes of gnt-job list's output read
JOBS_KEPT = 20            # running jobs kept in a record
CLOCK_SLACK = 60          # s a result may seem to come from the future
MAX_CACHE = 8 * MIB       # a bigger cache file is not one a check wrote
DISK_MARGIN = MIB         # bytes state_dir's file system must keep free
NOTE_TEXT = 200           # characters of a command's complaint in a note


class Task:
    """One slow command of one check, and where its results live.

    `name` names the cache (`<name>.json`) and lock (`<name>.lock`) in
    `state_dir`; `module` is the check to start again as the refresher;
    `parse(returncode, stdout, stderr)` (bytes; returncode None when killed)
    returns the record's own fields; `valid(record)` says whether a cached
    record has them in the right shape; `cancel_jobs(record)` the job ids
    to cancel after a timeout.  `version` changes when the record's shape
    does: an older cache is refreshed, never misread.
    """

    def __init__(self, name, module, command, parse, state_dir, timeout,
                 max_age, config_path, version=1, limits=(16 * MIB, MIB),
                 valid=None, cancel_jobs=None, gnt_job=None, systemd_run=None,
                 unit=None, description=None, proc="/proc"):
        self.name = name
        self.module = module
        self.command = command
        self.parse = parse
        self.state_dir = state_dir
        self.cache = os.path.join(state_dir, name + ".json")
        self.lock = os.path.join(state_dir, name + ".lock")
        self.timeout = timeout
        self.max_age = max_age
        self.config_path = config_path
        self.version = version
        self.limits = limits
        self.valid = valid or (lambda record: True)
        self.cancel_jobs = cancel_jobs
        self.gnt_job = gnt_job
        self.systemd_run = systemd_run
        self.unit = unit or "ganeti-cmk-%s-refresh" % name.replace("_", "-")
        self.description = description or "%s refresh (ganeti-cmk)" % name
        self.proc = proc


def systemd_run(path, system_dir):
    """`path` (systemd-run) when systemd runs this machine, else None."""
    if os.path.isdir(system_dir) and os.access(path, os.X_OK):
        return path
    return None


# ---------------------------------------------------------------- the cache

def read_cache(task):
    """The cached record of `task` as a dict, None when there is none.

    Read with statefile.read (no link, no FIFO, ours, private, at most
    MAX_CACHE).  ValueError when the file is not a record this version
    wrote, in any way (nesting, types, NaN): the next refresh replaces it.
    """
    try:
        data = statefile.read(task.cache, MAX_CACHE)
    except FileNotFoundError:
        return None
    try:
        record = loads(data.decode("utf-8", "replace"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply")
    _check_record(task, record)
    if record.get("last_complete") is not None:
        _check_record(task, record["last_complete"])
        if record["last_complete"].get("last_complete") is not None:
            raise ValueError("a last complete record inside one")
    return record


def _no_constant(name):
    raise ValueError("%s is not a number a check writes" % name)


def _check_record(task, record):
    """ValueError unless `record` has the engine's fields and the task's."""
    def number(value):
        return type(value) in (int, float) and math.isfinite(value)
    if not (isinstance(record, dict) and record.get("version") == task.version
            and number(record.get("finished")) and number(record.get("started"))
            and number(record.get("timeout", 0))
            and isinstance(record.get("command"), list)
            and all(isinstance(arg, str) for arg in record["command"])
            and isinstance(record.get("timed_out"), bool)
            and isinstance(record.get("complete", True), bool)
            and isinstance(record.get("error"), (str, type(None)))
            and isinstance(record.get("truncated", {}), dict)
            and all(type(v) is int for v in record.get("truncated", {}).values())
            and type(record.get("disk_full", 0)) is int
            and _valid_jobs_state(record.get("jobs_state"))
            and _valid_cancel(record.get("cancel"))
            and _valid(task, record)):
        raise ValueError("not a %s cache of version %d" % (task.name, task.version))


def _valid_jobs_state(state):
    def row(r):
        return (isinstance(r, list) and len(r) == 4 and type(r[0]) is int
                and isinstance(r[1], str) and isinstance(r[2], str)
                and (r[3] is None or type(r[3]) is int))
    return state is None or (
        isinstance(state, dict) and isinstance(state.get("error"), (str, type(None)))
        and all(isinstance(state.get(key), list) and all(map(row, state[key]))
                for key in ("ours", "running")))


def _valid_cancel(cancel):
    return cancel is None or (
        isinstance(cancel, dict) and isinstance(cancel.get("command"), list)
        and all(isinstance(arg, str) for arg in cancel["command"])
        and (cancel.get("exit_code") is None or type(cancel["exit_code"]) is int)
        and isinstance(cancel.get("output"), str)
        and isinstance(cancel.get("error"), (str, type(None))))


def _valid(task, record):
    try:
        return task.valid(record)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False


def write_cache(task, record):
    """Write atomically: a reader sees the old file or the new, never half.

    Never more than the reader accepts (MAX_CACHE): without the last
    complete record first, then without what the command said.  Every
    write and the final size are checked (statefile; OSError).  An empty
    directory in its place is removed (OSError for another one).
    """
    import json
    text = json.dumps(record, allow_nan=False)
    if len(text) > MAX_CACHE and record.get("last_complete"):
        record = dict(record, last_complete=None)
        text = json.dumps(record, allow_nan=False)
    if len(text) > MAX_CACHE:
        size = len(text)
        record = dict(_failed(task, record["started"], record["finished"],
                              "the result (%s) is too big to store" % _mib(size)),
                      last_complete=record.get("last_complete"))
        text = json.dumps(record, allow_nan=False)
    if os.path.isdir(task.cache) and not os.path.islink(task.cache):
        os.rmdir(task.cache)
    statefile.write_atomically(task.cache, text)


def complete_record(record):
    """The newest complete record: `record` itself, or the one it kept."""
    if record is None or record.get("complete", True):
        return record
    return record.get("last_complete")


def _failed(task, started, finished, error):
    """A record of a run that produced nothing."""
    record = {"version": task.version, "command": task.command,
              "started": started, "finished": finished, "timeout": task.timeout,
              "timed_out": False, "error": error}
    record.update(task.parse(None, b"", b""))
    record["complete"] = False
    return record


def _mib(size):
    return "%g MiB" % round(size / MIB, 1)


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
        """Unlock, also for a process the command left behind with the fd."""
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self):
        """(pid, since) of the last refresher that recorded itself, or None."""
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
    """os.open a regular file of ours, never through a symbolic link, mode
    0600 (another user who could open it could hold the lock).

    A link found there is removed and the file opened again (once);
    OSError when it is something else than a regular file or not ours.
    """
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        if not (replace_link and os.path.islink(path)):
            raise
        os.unlink(path)
        fd = os.open(path, flags, 0o600)
    import errno
    import stat
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (remove it)", path)
        if st.st_uid not in (0, os.geteuid()):
            raise OSError(errno.EPERM, "owned by uid %d (remove it)"
                          % st.st_uid, path)
        if st.st_mode & 0o077 and flags & os.O_RDWR:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holders(task):
    """[(pid, started, argv)] of the processes with the lock file open
    (its holders and waiters), oldest first; `started` in time.time().

    An open file is known by its link's text (readlink), never by a
    stat() of it: that goes to the file, and a file of any process on a
    hung NFS mount would block the check past its deadline."""
    try:
        os.lstat(task.lock)
        names_of_lock = {task.lock, os.path.realpath(task.lock)}
        pids = procfs.pids(task.proc)
        boot = time.time() - procfs.boot_time()  # when this machine booted
    except OSError:
        return []
    found = []
    for pid in pids:
        fds = "%s/%d/fd" % (task.proc, pid)
        try:
            names = os.listdir(fds)
        except OSError:
            continue
        for name in names:
            try:
                link = os.readlink("%s/%s" % (fds, name))
            except OSError:
                continue
            if link in names_of_lock:
                started = procfs.start_time(task.proc, pid)
                argv = procfs.cmdline(task.proc, pid)
                if started is not None:
                    found.append((pid, boot + started, argv or []))
                break
    return sorted(found, key=lambda h: h[1])


def lock_problem(task, now):
    """A Problem about the lock another process holds: OK while a refresh
    may still be running, WARN once it is held longer than a refresh can
    take (`timeout` + DEADLINE_GRACE), CRIT beyond twice that; then the
    holder's pid and command are named (its argv is untrusted text)."""
    recorded = Lock(task.lock).holder()
    bound = task.timeout + DEADLINE_GRACE
    if recorded and -CLOCK_SLACK <= now - recorded[1] <= bound:
        return Problem(OK, "refresh running for %s (pid %d)" % (
            format_duration(max(0, now - recorded[1])), recorded[0]))
    holders = _holders(task)
    if recorded and any(pid == recorded[0] for pid, _, _ in holders):
        since = recorded[1]
    elif holders:
        since = max(holders[0][1], recorded[1] if recorded else 0)
    elif recorded:
        since = recorded[1]
    else:
        return Problem(OK, "refresh running")
    held = now - since
    if held <= bound:
        return Problem(OK, "refresh running for %s" % format_duration(max(0, held)))
    state = CRIT if held > 2 * bound else WARN
    who = ", ".join("pid %d (%s)" % (pid, sanitize(" ".join(argv) or "?",
                                                   NOTE_TEXT))
                    for pid, _, argv in holders[:3]) or "a process not seen here"
    return Problem(state, "%s is held for %s, longer than a refresh takes (%s), "
                   "by %s: no refresh can run; end that process" % (
                       task.lock, format_duration(held), format_duration(bound),
                       who))


# ------------------------------------------------------------ running it

def run_task(task, keep_fds=()):
    """Run the task's command under its timeout and parse what it said.

    Returns the record.  `keep_fds` (the lock) stay open in the command,
    so the lock is held as long as it runs.
    """
    command = task.command
    record = {"version": task.version, "command": command,
              "started": time.time(), "timeout": task.timeout,
              "timed_out": False, "error": None}
    returncode, outputs = None, [(b"", 0), (b"", 0)]
    try:
        returncode, record["timed_out"], outputs = run_bounded(
            command, task.timeout, task.state_dir, task.limits, keep_fds)
    except OSError as e:  # the command, or the output files in state_dir
        record["error"] = "cannot run %s: %s%s" % (
            command[0], "%s: " % e.filename
            if e.filename not in (None, command[0]) else "", e.strerror or e)
    record["finished"] = time.time()
    truncated = {name: size for name, (_, size), limit
                 in zip(("stdout", "stderr"), outputs, task.limits)
                 if size > limit}
    if truncated:
        record["truncated"] = truncated
    free = _free_after(task, sum(size for _, size in outputs))
    if free is not None:
        record["disk_full"] = free
    record.update(task.parse(None if record["timed_out"] else returncode,
                             outputs[0][0], outputs[1][0]))
    record["complete"] = bool(
        record.get("complete", True) and not record["timed_out"]
        and record["error"] is None and not truncated and free is None
        and returncode is not None and returncode >= 0)
    jobs = task.cancel_jobs(record) if task.cancel_jobs else ()
    if record["timed_out"] and jobs:
        record["jobs_state"] = jobs_state(task, jobs)
        record["cancel"] = cancel_jobs(task, jobs)
    return record


def _free_after(task, written):
    """Bytes free in state_dir's file system when that is so little that
    the command's output (`written` bytes, freed since) may have filled
    it (its writes then failed, its output is cut); else None."""
    try:
        st = os.statvfs(task.state_dir)
    except OSError:
        return None
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    return free if free < written + DISK_MARGIN else None


def jobs_state(task, jobs):
    """What Ganeti says about `jobs` and the jobs running now (whose locks
    they may wait for): {"ours": rows, "running": rows, "error": text},
    a row [id, status, summary, started (time.time() or None)]."""
    result = {"ours": [], "running": [], "error": None}
    for key, selection in (("ours", [str(job) for job in jobs]),
                           ("running", ["--running"])):
        command = [task.gnt_job, "list", "--no-headers", "--separator=|",
                   "-o", "id,status,summary,start_ts"] + selection
        try:
            returncode, timed_out, outputs = run_bounded(
                command, JOBS_TIMEOUT, task.state_dir, (JOBS_OUTPUT, 0))
        except OSError as e:
            result["error"] = "cannot run %s (%s)" % (task.gnt_job,
                                                      e.strerror or e)
            break
        if timed_out or returncode != 0:
            result["error"] = "gnt-job list %s" % (
                "did not finish within %d s" % JOBS_TIMEOUT if timed_out
                else "exited with %s" % returncode)
            break
        rows = [_job_row(line) for line in outputs[0][0].decode(
            "utf-8", "replace").splitlines()]
        rows = [row for row in rows if row]
        if key == "running":
            rows = [row for row in rows if row[0] not in jobs][:JOBS_KEPT]
        result[key] = rows
    return result


def _job_row(line):
    """[id, status, summary, started] of one `gnt-job list` line, or None.
    start_ts reads "[seconds, microseconds]" (None before the job ran)."""
    fields = line.split("|")
    if len(fields) < 4 or not fields[0].strip().isdigit():
        return None
    started = fields[-1].strip("[] ").split(",")[0].strip()
    return [int(fields[0]), sanitize(fields[1], 20),
            sanitize("|".join(fields[2:-1]), NOTE_TEXT),
            int(started) if started.isdigit() else None]


def cancel_jobs(task, jobs):
    """`<gnt_job> cancel <jobs>`: what it said, or why it could not run."""
    command = [task.gnt_job, "cancel"] + [str(job) for job in jobs]
    result = {"command": command, "exit_code": None, "output": "",
              "error": None}
    try:
        returncode, timed_out, outputs = run_bounded(
            command, CANCEL_TIMEOUT, task.state_dir, (CANCEL_OUTPUT,) * 2)
    except OSError as e:
        result["error"] = "cannot run %s (%s)" % (task.gnt_job,
                                                  e.strerror or e)
        return result
    if timed_out:
        result["error"] = "gnt-job cancel did not finish within %d s" % (
            CANCEL_TIMEOUT)
    result["exit_code"] = returncode
    result["output"] = b"\n".join(data for data, _ in outputs).decode(
        "utf-8", "replace").strip()
    return result


def refresh(task, wait, log):
    """Run the task under the lock and cache its record; return the record.

    wait=False (background): give up at once when the lock is held, and do
    nothing when the cache became fresh meanwhile; returns None then.
    wait=True (--refresh): wait for a running refresh and use its record
    when it finished after we asked; else run our own.
    """
    statefile.make_dir(task.state_dir)
    asked = time.time()
    lock = Lock(task.lock)
    patience = task.timeout + DEADLINE_GRACE + KILL_GRACE if wait else 0
    extend_deadline(patience + task.timeout + DEADLINE_GRACE)
    if not lock.acquire(wait=patience):
        if not wait:
            log("another refresh holds %s" % task.lock)
            return None
        holder = lock.holder()
        raise RuntimeError("another refresh still holds %s after %s%s" % (
            task.lock, format_duration(patience),
            " (pid %d)" % holder[0] if holder else ""))
    try:
        try:
            record = read_cache(task)
        except (OSError, ValueError):  # replaced below
            record = None
        if record is not None and record.get("command") == task.command:
            now = time.time()
            if wait and lock.waited and asked <= record["finished"] <= now:
                log("a run that ended meanwhile finished after we asked")
                return record
            if not wait and fresh(task, record, now):
                log("the cache was refreshed meanwhile")
                return None
        log("running %s (timeout %s)" % (" ".join(task.command),
                                         format_duration(task.timeout)))
        previous = record
        record = run_task(task, keep_fds=(lock.fd,))
        write_cache(task, keep_complete(record, previous))
        return record
    finally:
        lock.release()


def keep_complete(record, previous):
    """`record`, carrying the last complete record when it is not one."""
    if not record.get("complete", True):
        last = complete_record(previous)
        if last is not None and last.get("command") == record.get("command"):
            record["last_complete"] = dict(last, last_complete=None)
    return record


def refresh_in_background(task, log):
    """--refresh-cache: refresh; a failure is cached, so the service shows it."""
    try:
        refresh(task, False, log)
    except Exception as e:
        now = time.time()
        try:
            previous = read_cache(task)
        except (OSError, ValueError):
            previous = None
        record = _failed(task, now, now, "the background refresh failed: "
                         "%s: %s" % (type(e).__name__, e))
        try:
            write_cache(task, keep_complete(record, previous))
        except OSError:
            pass
        raise


def spawn_refresh(task):
    """Start the check with --refresh-cache, detached: a Problem (OK when
    it started) that says what happened.

    Own session, stdin/stdout/stderr on /dev/null, every other fd closed,
    nobody waits for it; isolated as the built checks run (-I: no PYTHON*
    variables, nothing from the current directory; -S: no site; -B: no
    bytecode written) from "/".  It imports the library from where this
    module came from, so it works from a checkout, an installed package
    and a built check alike.
    """
    import subprocess
    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from ganeti_cmk.runner import main; "
            "from ganeti_cmk.checks import load; "
            "sys.exit(main(load(sys.argv.pop(1))))")
    argv = [sys.executable, "-I", "-S", "-B", "-c", code, lib, task.module,
            "--refresh-cache", "--config", task.config_path]
    if task.systemd_run is None:
        pid = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, close_fds=True,
                               start_new_session=True, cwd="/").pid
        return Problem(OK, "refresh started in the background (pid %d)" % pid)
    unit = "systemd unit %s.service" % task.unit
    command = [task.systemd_run, "--no-block", "--collect", "--quiet",
               "--unit=" + task.unit, "--description=" + task.description]
    command += ["--setenv=%s=%s" % (name, os.environ[name])
                for name in ("MK_CONFDIR", "MK_VARDIR") if name in os.environ]
    try:
        proc = subprocess.run(command + ["--"] + argv,
                              stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              close_fds=True, timeout=SYSTEMD_RUN_TIMEOUT, cwd="/")
    except subprocess.TimeoutExpired:
        return Problem(WARN, "cannot start a background refresh: %s did not "
                       "return within %d s" % (task.systemd_run,
                                               SYSTEMD_RUN_TIMEOUT))
    said = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        return Problem(OK, "refresh started in the background (%s)" % unit)
    if "already exists" in said:
        return Problem(OK, "refresh running (%s exists)" % unit)
    return Problem(WARN, "cannot start a background refresh: systemd-run "
                   "exited with %d: %s" % (proc.returncode, sanitize(
                       said.splitlines()[-1] if said else "no reason given",
                       NOTE_TEXT)))


def os_problem(e):
    """An OSError about the state files: which file, what is wrong."""
    text = "%s: %s" % (e.filename, e.strerror) if e.filename else str(e)
    import errno
    if e.errno == errno.EACCES:
        text += " (run the check as root)"
    return text


def fresh(task, record, now):
    """Younger than max_age, and not from the future (the clock jumped)."""
    return -CLOCK_SLACK <= now - record["finished"] < task.max_age


def when(age, verb="ran"):
    """'ran 5 min ago', or where a clock that jumped back puts it."""
    if age < -CLOCK_SLACK:
        return ("finished %s in the future (did the clock jump back?)"
                % format_duration(-age))
    return "%s %s ago" % (verb, format_duration(max(0.0, age)))


def age_problems(record, stale_after, now, key):
    """[Problem] when `record` is older than `stale_after` (`key` names
    that setting in the message), or from the future: after the clock
    jumped back its age is unknown, and it must not count as young until
    the clock catches up (every newer run may be incomplete)."""
    age = now - record["finished"]
    if age < -CLOCK_SLACK:
        return [Problem(WARN, "result is from %s in the future: its age is "
                        "unknown (did the clock jump back?)"
                        % format_duration(-age))]
    if age > stale_after:
        return [Problem(WARN, "result is %s old, older than %s (%s)" % (
            format_duration(age), format_duration(stale_after), key))]
    return []


def latest(task, now, log):
    """Agent mode: (record or None, Problem about the refresh or None).

    Starts a background refresh when the cache is missing, unreadable,
    older than max_age or from other arguments, unless one is running.
    """
    note = None
    try:
        record = read_cache(task)
    except (OSError, ValueError) as e:
        record = None
        note = "cache %s unreadable (%s)" % (
            task.cache, os_problem(e) if isinstance(e, OSError) else e)
    if record is not None:
        log("cached result: %s" % when(now - record["finished"]))
        if fresh(task, record, now) and record.get("command") == task.command:
            return record, None
        if now - record["finished"] < -CLOCK_SLACK:
            note = "result from %s in the future" % format_duration(
                record["finished"] - now)
    elif note is None:
        note = _no_result_note(task, now)
    lock = Lock(task.lock)
    try:
        statefile.make_dir(task.state_dir)
        free = lock.acquire(record=False)
        lock.release()
        if free:
            problem = spawn_refresh(task)
            log(problem.text)
            full = _free_after(task, 0)
            if full is not None:
                problem = Problem(WARN, "%s; the file system of %s has only %s "
                                  "free: results may not be stored" % (
                                      problem.text, task.state_dir,
                                      _mib(full)))
        else:
            problem = lock_problem(task, now)
    except OSError as e:
        problem = Problem(WARN, "cannot start a background refresh: %s"
                          % os_problem(e))
    if note:
        state = problem.state
        if record is None:  # not "first run in progress"
            state = worst([state, WARN])
        problem = Problem(state, "%s; %s" % (note, problem.text))
    return record, problem


def _no_result_note(task, now):
    """Without a cache: why, when refreshes have run (the lock file's time:
    its creation, or the last refresher that took it) longer ago than one
    takes, yet left no result (each died before writing it); else None."""
    try:
        age = now - os.lstat(task.lock).st_mtime
    except OSError:
        return None
    if age <= task.timeout + DEADLINE_GRACE:
        return None
    return ("no result %s after a refresh last started (the refreshes end "
            "without one: run ganeti_%s --refresh -v to see why)"
            % (format_duration(age), task.module))


def add_arguments(parser, what):
    """--refresh (foreground, `what` says what it runs) and the hidden
    --refresh-cache of the background refresher."""
    import argparse
    parser.add_argument("--refresh", action="store_true",
                        help="run %s now in the foreground (or wait for the "
                        "one running), cache and show the fresh result" % what)
    parser.add_argument("--refresh-cache", action="store_true",
                        help=argparse.SUPPRESS)
