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
limits), plus what `parse` returns.  `age_problems` says when a record is
stale or from the future; a check's evaluation does the rest.
"""

import os
import sys
import time

from .command import KILL_GRACE, run_bounded
from .jsonload import loads
from .localcheck import OK, WARN, Problem, sanitize, worst
from .runner import extend_deadline
from .statefile import write_atomically
from .words import format_duration

MIB = 1 << 20
DEADLINE_GRACE = 60       # s a refresh may take beyond the task's timeout
SYSTEMD_RUN_TIMEOUT = 10  # s systemd-run --no-block may take
CANCEL_TIMEOUT = 30       # s gnt-job cancel may take after a timeout
CANCEL_OUTPUT = 64 * 1024  # bytes of gnt-job cancel's output read
CLOCK_SLACK = 60          # s a result may seem to come from the future
MAX_CACHE = 32 * MIB      # a bigger cache file is not one a check wrote
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
                 unit=None, description=None):
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


def systemd_run(path, system_dir):
    """`path` (systemd-run) when systemd runs this machine, else None."""
    if os.path.isdir(system_dir) and os.access(path, os.X_OK):
        return path
    return None


# ---------------------------------------------------------------- the cache

def read_cache(task):
    """The cached record of `task` as a dict, None when there is none.

    ValueError when the file is not a record this version wrote (or one
    too big to be one: every agent run reads it).
    """
    try:
        with open(task.cache, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_CACHE:
                raise ValueError("%s, more than a result can take" % _mib(size))
            data = f.read(MAX_CACHE + 1)
    except FileNotFoundError:
        return None
    record = loads(data.decode("utf-8", "replace"))
    if not (isinstance(record, dict) and record.get("version") == task.version
            and isinstance(record.get("finished"), (int, float))
            and isinstance(record.get("started"), (int, float))
            and task.valid(record)):
        raise ValueError("not a %s cache of version %d" % (task.name, task.version))
    return record


def write_cache(task, record):
    """Write atomically: a reader sees the old file or the new, never half.

    An empty directory in its place is removed (OSError for another one).
    """
    import json
    if os.path.isdir(task.cache) and not os.path.islink(task.cache):
        os.rmdir(task.cache)
    write_atomically(task.cache, json.dumps(record))


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
    record.update(task.parse(None if record["timed_out"] else returncode,
                             outputs[0][0], outputs[1][0]))
    jobs = task.cancel_jobs(record) if task.cancel_jobs else ()
    if record["timed_out"] and jobs:
        record["cancel"] = cancel_jobs(task, jobs)
    return record


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
    make_state_dir(task.state_dir)
    asked = time.time()
    lock = Lock(task.lock)
    patience = task.timeout + KILL_GRACE + 10 if wait else 0
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
        record = run_task(task, keep_fds=(lock.fd,))
        write_cache(task, record)
        return record
    finally:
        lock.release()


def refresh_in_background(task, log):
    """--refresh-cache: refresh; a failure is cached, so the service shows it."""
    try:
        refresh(task, False, log)
    except Exception as e:
        now = time.time()
        record = {"version": task.version, "command": task.command,
                  "started": now, "finished": now, "timeout": task.timeout,
                  "timed_out": False,
                  "error": "the background refresh failed: %s: %s"
                           % (type(e).__name__, e)}
        record.update(task.parse(None, b"", b""))
        try:
            write_cache(task, record)
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
    if isinstance(e, PermissionError):
        text += " (run the check as root)"
    return text


def make_state_dir(state_dir):
    try:
        os.makedirs(state_dir, exist_ok=True)
    except FileExistsError:  # a file
        import errno
        raise OSError(errno.ENOTDIR, "not a directory ([paths] state_dir)",
                      state_dir)


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
    that setting in the message)."""
    age = now - record["finished"]
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
    lock = Lock(task.lock)
    try:
        make_state_dir(task.state_dir)
        free = lock.acquire(record=False)
        lock.release()
        if free:
            problem = spawn_refresh(task)
            log(problem.text)
        else:
            holder = lock.holder()
            text = "refresh running"
            if holder:
                text += " for %s (pid %d)" % (
                    format_duration(max(0, now - holder[1])), holder[0])
            problem = Problem(OK, text)
    except OSError as e:
        problem = Problem(WARN, "cannot start a background refresh: %s"
                          % os_problem(e))
    if note:
        state = problem.state
        if record is None:  # not "first run in progress"
            state = worst([state, WARN])
        problem = Problem(state, "%s; %s" % (note, problem.text))
    return record, problem


def add_arguments(parser, what):
    """--refresh (foreground, `what` says what it runs) and the hidden
    --refresh-cache of the background refresher."""
    import argparse
    parser.add_argument("--refresh", action="store_true",
                        help="run %s now in the foreground (or wait for the "
                        "one running), cache and show the fresh result" % what)
    parser.add_argument("--refresh-cache", action="store_true",
                        help=argparse.SUPPRESS)
