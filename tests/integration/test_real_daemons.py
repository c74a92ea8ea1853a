"""The "Ganeti daemons" check on the real cluster: each daemon stopped and
started again with Ganeti's own daemon-util, mond frozen, host labels.

Every test leaves every daemon running (restore_daemons, as cluster-up.sh's
ensure_daemons does: a stale pid file is removed first, daemon-util refuses
to start over one).
"""

import os
import signal
import time

import pytest

from realcluster import HERE, RUN_DIR, in_ns

pytestmark = pytest.mark.integration

SERVICE = "Ganeti daemons"
DAEMON_UTIL = "/usr/lib/ganeti/daemon-util"
REAPER = os.path.join(HERE, "reaper.py")
# daemon-util's start order; kvmd runs: the harness's cluster enables user shutdown
DAEMONS = ["ganeti-noded", "ganeti-confd", "ganeti-wconfd", "ganeti-rapi",
           "ganeti-luxid", "ganeti-kvmd", "ganeti-mond"]


def pid_of(name):
    """The pid of a live (not zombie) daemon `name` from its pid file, or None."""
    try:
        with open(os.path.join(RUN_DIR, name + ".pid")) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()[0]
    return pid if comm == name and state not in ("Z", "X") else None


def daemon_util(action, name):
    in_ns("/usr/bin/python3", REAPER, "timeout", "60", DAEMON_UTIL, action, name, timeout=90)


def restore_daemons():
    for name in DAEMONS:
        if pid_of(name) is None:
            try:
                os.unlink(os.path.join(RUN_DIR, name + ".pid"))
            except FileNotFoundError:
                pass
            daemon_util("start", name)
    for _ in range(100):
        if all(pid_of(n) for n in DAEMONS):
            return
        time.sleep(0.1)
    pytest.fail("daemons not all running again: %s" % [n for n in DAEMONS if not pid_of(n)])


@pytest.fixture
def daemons(cluster):
    restore_daemons()
    yield
    restore_daemons()


def test_all_running_is_ok_with_labels(daemons, check, cluster):
    out = check("ganeti_daemons")[SERVICE]
    assert out["state"] == "0", out
    assert out["summary"].startswith(
        "master of cluster1.ganeti.test: ganeti-noded, ganeti-confd, ganeti-wconfd, "
        "ganeti-rapi, ganeti-luxid, ganeti-kvmd, ganeti-mond run")
    assert any(d.startswith("ganeti-mond answers on 127.0.0.1:1815 with HTTP 200")
               for d in out["details"])
    assert check.labels == {None: {"ganeti/cluster": "cluster1.ganeti.test",
                                   "ganeti/role": "master",
                                   "ganeti/nodegroup": "default"}}


@pytest.mark.parametrize("name", DAEMONS)
def test_each_stopped_daemon_is_crit_with_its_start_command(daemons, check, name):
    daemon_util("stop", name)
    out = check("ganeti_daemons")[SERVICE]
    assert out["state"] == "2", out
    stale = os.path.exists(os.path.join(RUN_DIR, name + ".pid"))
    first = "remove the stale pid file first (rm %s/%s.pid), then " % (RUN_DIR, name) \
        if stale else ""
    assert out["summary"] == ("%s not running, %sstart it: %s start %s (master of "
                              "cluster1.ganeti.test)" % (name, first, DAEMON_UTIL, name))
    assert out["metrics"]["ganeti_daemons_missing"] == 1
    # what the check says is what brings it back
    if stale:
        os.unlink(os.path.join(RUN_DIR, name + ".pid"))
    daemon_util("start", name)
    for _ in range(100):
        if pid_of(name):
            break
        time.sleep(0.1)
    out = check("ganeti_daemons")[SERVICE]
    assert out["state"] == "0", out


def test_frozen_mond_does_not_answer(daemons, check):
    pid = pid_of("ganeti-mond")
    os.kill(pid, signal.SIGSTOP)  # the kernel still accepts connections for it
    try:
        out = check("ganeti_daemons", sections={"daemons": {"mond_timeout": "1s"}})[SERVICE]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert out["state"] == "2", out
    assert out["summary"] == (
        "ganeti-mond runs but does not answer on port 1815, restart it: %s stop "
        "ganeti-mond, then %s start ganeti-mond (master of cluster1.ganeti.test)"
        % (DAEMON_UTIL, DAEMON_UTIL))
    assert "ganeti-mond: 127.0.0.1: no answer within 1 s; 192.0.2.1: no answer " \
        "within 1 s" in out["details"]


def test_a_name_not_in_the_node_list_is_an_orphan(daemons, check, cluster):
    out = check("ganeti_daemons", sections={"ganeti": {"node_name": "node9.ganeti.test"}})
    out = out[SERVICE]
    assert out["state"] == "1", out
    assert out["summary"].startswith(
        "orphan node: configured for cluster cluster1.ganeti.test but not a member "
        "(node9.ganeti.test is not in ssconf_node_list of the master node1.ganeti.test)")
    assert check.labels == {None: {"ganeti/cluster": "cluster1.ganeti.test",
                                   "ganeti/role": "orphan"}}
