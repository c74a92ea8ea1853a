"""The "Ganeti cluster" check against real file trees as Ganeti 3.0 writes them.

The watcher state file below is the one the real watcher wrote on the
integration cluster (`watcher.<group uuid>.data`), with restart counts
added as `_CheckInstances` records them; the pause file holds the Unix
time `gnt-cluster watcher pause` wrote; the drain flag is an empty file.
"""

import json
import os
import time

import pytest

from support import needs_root, run_script
from localcheck_grammar import parse_output
from ganeti_cmk.checks import cluster_state

SERVICE = "Ganeti cluster"
MASTER = "node1.ganeti.test"
GROUP = "08ef7d79-59d0-481e-8f59-07bd39e2b569"
GROUP2 = "5d1c9a3e-0b6f-4f5e-9a5e-2f4b1c7d8e90"
# As the real watcher wrote it on the integration cluster (Ganeti 3.0.2).
REAL_STATE = ('{"instance": {}, "node": {"node1.ganeti.test": '
              '{"bootid": "4bd83e60-9ad5-4061-be09-a9ddd8449377"}}}')


class Master:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.data = tmp_path / "lib"
        (self.data / "queue").mkdir(parents=True)
        for key, value in (("master_node", MASTER), ("cluster_name", "cluster1.ganeti.test"),
                           ("node_list", MASTER), ("nodegroups", "%s default" % GROUP)):
            (self.data / ("ssconf_" + key)).write_text(value + "\n")
        self.state(GROUP, REAL_STATE)

    def state(self, uuid, text, age=60):
        path = self.data / ("watcher.%s.data" % uuid)
        path.write_text(text)
        t = time.time() - age
        os.utime(str(path), (t, t))

    def restarts(self, uuid=GROUP, age=60, **counts):
        data = json.loads(REAL_STATE)
        data["instance"] = {name.replace("_", "."): {"restart_count": n, "restart_when": 1.0}
                            for name, n in counts.items()}
        self.state(uuid, json.dumps(data), age)

    def run(self, node=MASTER, args=(), **keys):
        config = ("[paths]\nganeti_data_dir = %s\n[ganeti]\nnode_name = %s\n"
                  "[cluster_state]\n%s" % (self.data, node, "".join(
                      "%s = %s\n" % kv for kv in keys.items())))
        proc = run_script("ganeti_cluster_state", *args, config_text=config,
                          tmp_path=self.tmp)
        assert proc.returncode == 0, proc.stderr
        if args:
            return proc
        return parse_output(proc.stdout)[None].get(SERVICE), proc


@pytest.fixture
def master(tmp_path):
    return Master(tmp_path)


def test_all_well(master):
    out, _ = master.run()
    assert out["state"] == "0", out
    assert out["summary"] == "watcher ran 1.0 min ago, not paused; job queue not drained"
    assert out["metrics"] == {"ganeti_watcher_age": 60, "ganeti_watcher_gave_up": 0,
                              "ganeti_queue_drained": 0}


def test_only_on_the_master(master):
    out, proc = master.run(node="node2.ganeti.test")
    assert out is None and proc.stdout == ""
    assert "on the master node1.ganeti.test" in proc.stderr


def test_paused_for_an_hour_is_warn(master):
    end = int(time.time()) + 3600
    (master.data / "watcher.pause").write_text("%d\n" % end)
    out, _ = master.run()
    assert out["state"] == "1", out
    assert out["summary"].startswith("watcher paused until %s (for 60 min from "
                                     % cluster_state.when(end))
    assert out["summary"].endswith("; resume it: gnt-cluster watcher continue")


def test_paused_longer_than_pause_crit_is_crit(master):
    end = int(time.time()) + 3 * 86400
    (master.data / "watcher.pause").write_text("%d" % end)
    out, _ = master.run()
    assert out["state"] == "2"
    assert ", longer than 1 d); resume it" in out["summary"]
    out, _ = master.run(pause_crit="1w")
    assert out["state"] == "1"


def test_a_pause_beyond_the_calendar_is_crit(master):
    """Ganeti pauses until any integer time; one the C library cannot
    turn into a date is still a pause (CRIT), not a failed check."""
    (master.data / "watcher.pause").write_text("%d\n" % 10 ** 17)
    out, _ = master.run()
    assert out["state"] == "2", out
    assert out["summary"].startswith("watcher paused until the Unix time %d (for " % 10 ** 17)


def test_a_pause_that_ended_is_not_a_pause(master):
    (master.data / "watcher.pause").write_text("%d" % (time.time() - 600))
    out, _ = master.run()
    assert out["state"] == "0"
    assert any(d.startswith("a pause file that ended 10 min ago") for d in out["details"])


@pytest.mark.parametrize("text", ["", "tomorrow", "1e10", "\x00\x01"])
def test_a_pause_file_without_an_end_is_warn(master, text):
    (master.data / "watcher.pause").write_text(text)
    out, _ = master.run()
    assert out["state"] == "1"
    assert out["summary"].startswith("watcher pause file invalid: %s/watcher.pause holds "
                                     % master.data)


def test_watcher_not_run_warn_then_crit(master):
    master.state(GROUP, REAL_STATE, age=20 * 60)
    out, _ = master.run()
    assert out["state"] == "1"
    assert out["summary"] == (
        "the watcher has not run for group default for 20 min (warn/crit at 15 min/1 h); "
        "is its cron job running (/etc/cron.d/ganeti, /var/log/ganeti/watcher.log)?")
    master.state(GROUP, REAL_STATE, age=2 * 3600)
    out, _ = master.run()
    assert out["state"] == "2"
    out, _ = master.run(watcher_interval="30m", watcher_margin="2h", watcher_crit="3h")
    assert out["state"] == "0"


def test_watcher_never_ran_for_a_group(master):
    (master.data / "ssconf_nodegroups").write_text("%s default\n%s rack-b\n" % (GROUP, GROUP2))
    out, _ = master.run()
    assert out["state"] == "1"
    assert out["summary"] == ("the watcher has never run for group rack-b (no watcher.%s.data); "
                              "is its cron job installed (/etc/cron.d/ganeti)?" % GROUP2)


def test_a_paused_watcher_is_not_also_stale(master):
    master.state(GROUP, REAL_STATE, age=3 * 3600)
    (master.data / "watcher.pause").write_text("%d" % (time.time() + 600))
    out, _ = master.run()
    assert out["state"] == "1" and out["summary"].startswith("watcher paused until")


def test_a_watcher_idle_through_a_pause_is_not_stale_right_after_it(master):
    """The watcher did not run while paused; it gets its interval and
    margin after the pause ends before it counts as not running."""
    master.state(GROUP, REAL_STATE, age=3 * 3600)
    (master.data / "watcher.pause").write_text("%d" % (time.time() - 120))
    out, _ = master.run()
    assert out["state"] == "0", out
    assert "watcher ran for group default 3.0 h ago" in out["details"]
    (master.data / "watcher.pause").write_text("%d" % (time.time() - 20 * 60))
    out, _ = master.run()
    assert out["state"] == "1", out
    assert out["summary"].startswith("the watcher has not run for group default for 3.0 h "
                                     "(20 min since its pause ended; warn/crit at 15 min/1 h)")


def test_given_up_instances_are_crit_and_named(master):
    master.restarts(web1_example_com=6, db1_example_com=3, app_example_com=7)
    out, _ = master.run()
    assert out["state"] == "2"
    assert out["summary"] == (
        "2 instances the watcher gave up restarting: app.example.com, web1.example.com; "
        "start them (gnt-instance startup) and look at /var/log/ganeti/watcher.log")
    assert "web1.example.com: the watcher gave up restarting it after 5 attempts " \
        "(group default)" in out["details"]
    assert out["metrics"]["ganeti_watcher_gave_up"] == 2
    # still trying (5 attempts at most) is not giving up
    master.restarts(web1_example_com=5)
    assert master.run()[0]["state"] == "0"


def test_gave_up_follows_max_tries():
    data = {"instance": {"a": {"restart_count": 4}, "b": {"restart_count": True},
                         "c": {"restart_count": "9"}, "d": "x", "e": {"restart_count": 11}}}
    assert cluster_state.gave_up(data, 3) == [("a", 4), ("e", 11)]
    with pytest.raises(ValueError):
        cluster_state.gave_up({"instances": {}}, 5)
    with pytest.raises(ValueError):
        cluster_state.gave_up([1], 5)


def test_many_hostile_instance_names_fit(master):
    names = {"i%03d_x\n1 \"Fake\" - OK\\n" % i: 6 for i in range(300)}
    master.restarts(**names)
    out, proc = master.run()
    assert out["state"] == "2"
    assert out["summary"].startswith("300 instances the watcher gave up restarting: ")
    assert out["summary"].endswith("start them (gnt-instance startup) and look at "
                                   "/var/log/ganeti/watcher.log")
    assert len(proc.stdout.splitlines()) == 1


def test_truncated_state_file_is_unknown(master):
    master.state(GROUP, REAL_STATE[:40])
    out, _ = master.run()
    assert out["state"] == "3"
    assert out["summary"] == (
        "cannot read the watcher state of group default: %s/watcher.%s.data is not a "
        "watcher state file (truncated or not JSON); the watcher rewrites it on its next "
        "run" % (master.data, GROUP))


@needs_root
def test_state_file_of_a_stranger_is_refused(master):
    os.chown(str(master.data / ("watcher.%s.data" % GROUP)), 12345, 12345)
    out, _ = master.run()
    assert out["state"] == "3" and "owned by uid 12345" in out["summary"]


def test_a_drained_queue_is_not_blamed_on_the_watchers_cron_job(master):
    """While the queue is drained the group watcher's disk check cannot
    submit its job, so it never saves its state file: only the drain
    (with its own drain_crit) is reported, not a watcher that stopped."""
    master.state(GROUP, REAL_STATE, age=3 * 3600 + 120)
    drain = master.data / "queue" / "drain"
    drain.write_text("")
    t = time.time() - 3 * 3600
    os.utime(str(drain), (t, t))
    out, _ = master.run(drain_crit="1d")
    assert out["state"] == "1", out
    assert out["summary"].startswith("job queue drained since ")
    assert ("the watcher cannot finish for group default while the job queue is "
            "drained (it verifies disks with a job)") in out["details"]
    master.state(GROUP, REAL_STATE, age=3 * 3600 + 20 * 60)  # stopped before the drain
    out, _ = master.run(drain_crit="1d")
    assert out["state"] == "1", out
    assert out["summary"].startswith(
        "the watcher has not run for group default for 3.3 h (20 min before the job "
        "queue was drained; warn/crit at 15 min/1 h)")


def test_drained_queue_warn_then_crit(master):
    drain = master.data / "queue" / "drain"
    drain.write_text("")
    t = time.time() - 600
    os.utime(str(drain), (t, t))
    out, _ = master.run()
    assert out["state"] == "1"
    assert out["summary"] == (
        "job queue drained since %s (10 min ago; crit at 1 h), no job runs; undrain it: "
        "gnt-cluster queue undrain" % cluster_state.when(t))
    assert out["metrics"]["ganeti_queue_drained"] == 1
    out, _ = master.run(drain_crit="5m")
    assert out["state"] == "2"


def test_everything_at_once_keeps_every_remedy(master):
    master.restarts(web1_example_com=6)
    (master.data / "watcher.pause").write_text("%d" % (time.time() + 60))
    (master.data / "queue" / "drain").write_text("")
    out, _ = master.run()
    assert out["state"] == "2"
    for remedy in ("gnt-instance startup", "gnt-cluster watcher continue",
                   "gnt-cluster queue undrain"):
        assert remedy in out["summary"]


def test_bad_levels_are_a_config_problem(master):
    out, _ = master.run(watcher_crit="1m", max_tries="zero")
    assert out["state"] == "1"
    assert "[cluster_state] watcher_crit: 1 min is less than watcher_interval + " \
        "watcher_margin (15 min), using 15 min" in out["summary"] + " ".join(out["details"])
