"""The background engine on its own, in process: a task whose command is a
small shell script, the cache, the lock, timeouts, stale and future
results. (The verify check's end-to-end tests drive it through gnt-cluster
fakes.)"""

import fcntl
import os
import re
import subprocess
import sys
import time

import pytest

from ganeti_cmk import background, statefile
from ganeti_cmk.localcheck import CRIT, OK, WARN

SH = "/bin/sh"
FAKE_GNT_JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_gnt_job")


def parse(returncode, stdout, stderr):
    return {"said": stdout.decode(), "complained": stderr.decode(), "rc": returncode}


def task(tmp_path, script="echo hello", timeout=10, max_age=60, **kwargs):
    state_dir = str(tmp_path / "state")
    statefile.make_dir(state_dir)
    return background.Task("demo", "kvm_device", [SH, "-c", script], parse,
                           state_dir, timeout, max_age,
                           str(tmp_path / "none.cfg"), **kwargs)


def gone(pid, patience=5.0):
    """Whether `pid` has exited (a zombie counts) within `patience` s."""
    end = time.monotonic() + patience
    while time.monotonic() < end:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(") ", 1)[1].startswith(("Z", "X")):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_run_is_recorded_with_what_the_parser_made_of_it(tmp_path):
    t = task(tmp_path, "echo hello; echo oops >&2; exit 3")
    record = background.refresh(t, True, print)
    assert record["said"] == "hello\n" and record["complained"] == "oops\n"
    assert record["rc"] == 3 and not record["timed_out"] and record["error"] is None
    assert record["started"] <= record["finished"] <= time.time()
    assert background.read_cache(t) == record
    assert background.fresh(t, record, time.time())


def test_a_timeout_kills_the_whole_group_and_says_so(tmp_path):
    pidfile = tmp_path / "child.pid"
    t = task(tmp_path, "sleep 60 & echo $! > %s; wait" % pidfile, timeout=1)
    began = time.monotonic()
    record = background.run_task(t)
    assert time.monotonic() - began < 1 + background.KILL_GRACE
    assert record["timed_out"] and record["rc"] is None
    assert gone(int(pidfile.read_text())), "the group's sleep survived"


def test_jobs_of_a_timed_out_run_are_cancelled(tmp_path):
    log = tmp_path / "gnt-job.log"
    t = task(tmp_path, "sleep 30", timeout=0.5, cancel_jobs=lambda r: [17, 18],
             gnt_job=FAKE_GNT_JOB)
    os.environ["FAKE_GNT_JOB_LOG"] = str(log)
    try:
        record = background.run_task(t)
    finally:
        del os.environ["FAKE_GNT_JOB_LOG"]
    assert record["cancel"]["command"] == [FAKE_GNT_JOB, "cancel", "17", "18"]


def test_output_beyond_the_limits_is_marked_truncated(tmp_path):
    t = task(tmp_path, "head -c 5000 /dev/zero", limits=(1000, 100))
    record = background.run_task(t)
    assert record["truncated"] == {"stdout": 5000} and len(record["said"]) == 1000


def test_a_command_that_cannot_start_is_an_error_not_a_crash(tmp_path):
    t = task(tmp_path)
    t.command = [str(tmp_path / "missing")]
    record = background.run_task(t)
    assert record["error"].startswith("cannot run %s" % t.command[0])


def test_the_grace_covers_everything_a_refresh_does_after_the_timeout():
    """After verify's timeout a refresh kills it (KILL_GRACE), runs gnt-job
    list (twice, JOBS_TIMEOUT; the second may be killed) and gnt-job cancel
    (CANCEL_TIMEOUT, may be killed), then writes the cache.  Its own
    deadline is `timeout` + DEADLINE_GRACE: a grace of 60 s (5 + 10 + 15 +
    35 = 65 s of waiting) let that deadline kill the refresher in gnt-job
    cancel, losing which job verify waited for."""
    worst = (background.KILL_GRACE + background.JOBS_TIMEOUT
             + background.JOBS_TIMEOUT + background.KILL_GRACE
             + background.CANCEL_TIMEOUT + background.KILL_GRACE)
    assert background.DEADLINE_GRACE >= worst + 10  # start-up, cache write


def test_a_held_lock_means_no_second_run(tmp_path):
    t = task(tmp_path, "echo ran >> %s" % (tmp_path / "runs"))
    statefile.make_dir(t.state_dir)
    with open(t.lock, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("%d %d\n" % (os.getpid(), time.time() - 50))
        holder.flush()
        assert background.refresh(t, False, print) is None
        record, note = background.latest(t, time.time(), print)
        assert record is None and note.state == OK
        assert note.text.startswith("refresh running for ")
        assert note.text.endswith(" s (pid %d)" % os.getpid())
    assert not (tmp_path / "runs").exists()
    background.refresh(t, False, print)
    assert (tmp_path / "runs").read_text() == "ran\n"


def test_latest_starts_a_refresh_only_when_due(tmp_path, monkeypatch):
    t = task(tmp_path, max_age=60)
    started = []
    monkeypatch.setattr(background, "spawn_refresh",
                        lambda task: started.append(task) or background.Problem(OK, "started"))
    record, note = background.latest(t, time.time(), print)
    assert record is None and note.text == "started" and len(started) == 1
    record = background.refresh(t, True, print)
    now = record["finished"]
    assert background.latest(t, now + 30, print) == (record, None)
    assert len(started) == 1
    again, note = background.latest(t, now + 61, print)   # older than max_age
    assert again == record and note.text == "started" and len(started) == 2
    t.command = [SH, "-c", "echo other"]                   # other arguments
    assert background.latest(t, now + 1, print)[1].text == "started"


def test_a_result_from_the_future_is_due_and_said_to_be(tmp_path, monkeypatch):
    t = task(tmp_path)
    monkeypatch.setattr(background, "spawn_refresh",
                        lambda task: background.Problem(OK, "started"))
    record = background.refresh(t, True, print)
    _, note = background.latest(t, record["finished"] - 3600, print)
    assert note.text == "result from 1 h in the future; started"
    assert background.when(-3600).startswith("finished 1 h in the future")


def test_stale_results_warn(tmp_path):
    record = {"finished": 1000.0}
    assert background.age_problems(record, 600, 1500, "[x] stale_after") == []
    (problem,) = background.age_problems(record, 600, 2000, "[x] stale_after")
    assert problem.state == WARN
    assert problem.text == "result is 17 min old, older than 10 min ([x] stale_after)"


def test_an_unreadable_cache_is_replaced_by_the_next_refresh(tmp_path, monkeypatch):
    t = task(tmp_path)
    monkeypatch.setattr(background, "spawn_refresh",
                        lambda task: background.Problem(OK, "started"))
    statefile.make_dir(t.state_dir)
    with open(t.cache, "w") as f:
        f.write("{not json")
    record, note = background.latest(t, time.time(), print)
    assert record is None and note.state == WARN and "unreadable" in note.text
    assert background.refresh(t, False, print)["said"] == "hello\n"


def test_the_refresher_runs_the_registered_check_isolated(tmp_path):
    """spawn_refresh starts the check again as `python3 -I` from /, with
    PYTHON* variables gone: here the verify check, whose gnt-cluster
    stand-in records its refresher's command line and its environment."""
    seen = tmp_path / "seen"
    fake = tmp_path / "gnt-cluster"
    fake.write_text("#!/bin/sh\ntr '\\0' ' ' < /proc/$PPID/cmdline > %s.tmp\n"
                    "echo >> %s.tmp; env >> %s.tmp; pwd >> %s.tmp; mv %s.tmp %s\n"
                    % ((seen,) * 6))
    fake.chmod(0o755)
    data = tmp_path / "ganeti"
    data.mkdir()
    (data / "ssconf_master_node").write_text("node1.example.com\n")
    config = tmp_path / "ganeti_cmk.cfg"
    config.write_text("[ganeti]\nnode_name = node1.example.com\n[paths]\n"
                      "ganeti_data_dir = %s\ngnt_cluster = %s\nstate_dir = %s\n"
                      % (data, fake, tmp_path / "state"))
    t = task(tmp_path)
    t.module, t.config_path = "cluster_verify", str(config)
    os.environ["PYTHONPATH"] = "/nonexistent"
    try:
        problem = background.spawn_refresh(t)
    finally:
        del os.environ["PYTHONPATH"]
    assert problem.state == OK and problem.text.startswith("refresh started in the background (pid ")
    end = time.monotonic() + 30
    while not seen.exists() and time.monotonic() < end:
        time.sleep(0.05)
    argv, rest = seen.read_text().split("\n", 1)
    assert argv.split()[:2] == [sys.executable, "-I"]
    assert "--refresh-cache" in argv.split()
    assert "PYTHONPATH" not in rest and rest.rstrip().endswith("\n/")


# ------------------------------------------------- who may hold the lock

def test_lock_and_cache_are_root_only_files(tmp_path):
    old = os.umask(0)
    try:
        t = task(tmp_path)
        background.refresh(t, True, print)
    finally:
        os.umask(old)
    assert os.stat(t.lock).st_mode & 0o777 == 0o600
    assert os.stat(t.cache).st_mode & 0o777 == 0o600
    assert os.stat(t.state_dir).st_mode & 0o777 == 0o700
    # a lock file left readable by an older version is made 0600 again
    os.chmod(t.lock, 0o644)
    background.refresh(t, True, print)
    assert os.stat(t.lock).st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_another_user_cannot_take_the_lock(tmp_path):
    t = task(tmp_path)
    background.refresh(t, True, print)
    os.chmod(str(tmp_path), 0o755)
    os.chmod(t.state_dir, 0o755)   # even where the directory lets them in
    code = ("import fcntl, sys; f = open(sys.argv[1]); "
            "fcntl.flock(f, fcntl.LOCK_EX)")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                           "--clear-groups", "/usr/bin/python3", "-c", code, t.lock],
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode != 0 and "PermissionError" in proc.stderr


def hold_lock(t, since):
    """A process of its own that holds the lock, recorded since `since`."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); "
            "os.write(fd, ('%d %d\\n' % (os.getpid(), float(sys.argv[2]))).encode()); "
            "print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, t.lock, str(since)],
                            stdout=subprocess.PIPE, universal_newlines=True)
    assert proc.stdout.readline() == "held\n"
    return proc


@pytest.mark.parametrize("held, state", [(30, OK), (150, WARN), (250, CRIT)])
def test_a_lock_held_longer_than_a_refresh_takes_is_named(tmp_path, held, state):
    t = task(tmp_path, timeout=10)       # a refresh takes at most 100 s
    lock = background.Lock(t.lock)       # creates it (0600)
    lock.acquire()
    lock.release()
    holder = hold_lock(t, time.time() - held)
    try:
        record, note = background.latest(t, time.time(), print)
    finally:
        holder.kill()
        holder.wait()
    assert record is None and note.state == state, note
    if state == OK:
        assert note.text in ["refresh running for %d s (pid %d)" % (
            seconds, holder.pid) for seconds in (30, 31, 32)], note.text
    else:
        assert re.match(
            r"%s is held for %s min, longer than a refresh takes \(1.7 min\), "
            r"by pid %d \(%s -c import fcntl, os, sys, time; " % (
                re.escape(t.lock), r"2\.[56]" if held == 150 else r"4\.[23]",
                holder.pid, re.escape(sys.executable)), note.text), note.text
        assert note.text.endswith(": no refresh can run; end that process")


def test_a_lock_held_by_a_process_that_never_recorded_itself(tmp_path, monkeypatch):
    """Someone else's flock: held since that process started.  Found
    without a stat() of any process's open files (/proc/PID/fd/N): that
    goes to the file itself, and one on a hung NFS mount (or a slow FUSE
    file) of any user would block the agent beyond the deadline (SIGALRM
    does not end that wait); only the link text is read (readlink)."""
    t = task(tmp_path, timeout=10)
    statefile.make_dir(t.state_dir)
    open(t.lock, "w").close()
    holder = subprocess.Popen(["flock", t.lock, "sleep", "600"])
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        assert not re.match(r"/proc/\d+/fd/", str(path)), "stat of %s" % path
        return real_stat(path, *args, **kwargs)
    try:
        for _ in range(100):     # until flock has it
            lock = background.Lock(t.lock)
            if not lock.acquire(record=False):
                break
            lock.release()
            time.sleep(0.05)
        monkeypatch.setattr(os, "stat", stat)
        # as if 150 s had passed since it started
        record, note = background.latest(t, time.time() + 150, print)
    finally:
        monkeypatch.undo()
        holder.kill()
        holder.wait()
    assert note.state == WARN and "by pid %d (flock %s sleep 600)" % (
        holder.pid, t.lock) in note.text, note
