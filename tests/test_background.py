"""The background engine on its own, in process: a task whose command is a
small shell script, the cache, the lock, timeouts, stale and future
results. (The verify check's end-to-end tests drive it through gnt-cluster
fakes.)"""

import fcntl
import os
import sys
import time


from ganeti_cmk import background
from ganeti_cmk.localcheck import OK, WARN

SH = "/bin/sh"
FAKE_GNT_JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_gnt_job")


def parse(returncode, stdout, stderr):
    return {"said": stdout.decode(), "complained": stderr.decode(), "rc": returncode}


def task(tmp_path, script="echo hello", timeout=10, max_age=60, **kwargs):
    state_dir = str(tmp_path / "state")
    background.make_state_dir(state_dir)
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


def test_a_held_lock_means_no_second_run(tmp_path):
    t = task(tmp_path, "echo ran >> %s" % (tmp_path / "runs"))
    background.make_state_dir(t.state_dir)
    with open(t.lock, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("%d %d\n" % (os.getpid(), time.time() - 90))
        holder.flush()
        assert background.refresh(t, False, print) is None
        record, note = background.latest(t, time.time(), print)
        assert record is None and note.state == OK
        assert note.text.startswith("refresh running for 1.5 min (pid %d)" % os.getpid())
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
    background.make_state_dir(t.state_dir)
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
