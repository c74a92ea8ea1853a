"""The "Ganeti cluster" check on the real cluster: the real watcher's state
files, `gnt-cluster watcher pause`/`continue`, `gnt-cluster queue
drain`/`undrain`, and an instance the real watcher gives up restarting.

Every test puts the cluster back: watcher continued, queue undrained, the
instance running with its own parameters.
"""

import glob
import json
import os
import signal

import pytest

from realcluster import DATA_DIR, RUN_DIR, in_ns

pytestmark = pytest.mark.integration

SERVICE = "Ganeti cluster"


def watcher():
    """One real watcher run, waiting for its per-group children."""
    in_ns("ganeti-watcher", "--wait-children", timeout=300)


def restore():
    """Watcher continued, queue undrained; each only when needed: Ganeti
    3.0.2's luxid never answers `queue undrain` of a queue not drained."""
    if os.path.exists(os.path.join(DATA_DIR, "watcher.pause")):
        in_ns("gnt-cluster", "watcher", "continue")
    if os.path.exists(os.path.join(DATA_DIR, "queue", "drain")):
        in_ns("gnt-cluster", "queue", "undrain")


@pytest.fixture
def state(cluster):
    restore()
    watcher()
    yield
    restore()


def test_watcher_ran_and_nothing_is_wrong(state, check):
    out = check("ganeti_cluster_state")[SERVICE]
    assert out["state"] == "0", out
    assert out["summary"].startswith("watcher ran ")
    assert out["summary"].endswith(" ago, not paused; job queue not drained")
    assert len(glob.glob(os.path.join(DATA_DIR, "watcher.*.data"))) == 1


def test_pause_for_an_hour_then_two_days_then_continue(state, check):
    in_ns("gnt-cluster", "watcher", "pause", "1h")
    out = check("ganeti_cluster_state")[SERVICE]
    assert out["state"] == "1", out
    assert out["summary"].startswith("watcher paused until ")
    assert "(for 60 min from " in out["summary"]
    in_ns("gnt-cluster", "watcher", "pause", "2d")
    out = check("ganeti_cluster_state")[SERVICE]
    assert out["state"] == "2", out
    assert ", longer than 1 d); resume it: gnt-cluster watcher continue" in out["summary"]
    in_ns("gnt-cluster", "watcher", "continue")
    assert check("ganeti_cluster_state")[SERVICE]["state"] == "0"


def test_drained_queue(state, check):
    in_ns("gnt-cluster", "queue", "drain")
    out = check("ganeti_cluster_state")[SERVICE]
    assert out["state"] == "1", out
    assert out["summary"].startswith("job queue drained since ")
    assert out["summary"].endswith("no job runs; undrain it: gnt-cluster queue undrain")
    out = check("ganeti_cluster_state", sections={"cluster_state": {"drain_crit": "0s"}})
    assert out[SERVICE]["state"] == "2"
    in_ns("gnt-cluster", "queue", "undrain")
    assert check("ganeti_cluster_state")[SERVICE]["state"] == "0"


def kill_instance(cluster):
    with open(os.path.join(RUN_DIR, "kvm-hypervisor", "pid", cluster.instance)) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)


def restart_counts():
    counts = {}
    for path in glob.glob(os.path.join(DATA_DIR, "watcher.*.data")):
        with open(path) as f:
            for name, info in json.load(f)["instance"].items():
                counts[name] = info.get("restart_count")
    return counts


def test_instance_the_real_watcher_gives_up_on(state, check, cluster):
    # qemu refuses an unknown option: every restart the watcher tries fails
    in_ns("gnt-instance", "modify", "-H", "kvm_extra=-no-such-option", cluster.instance)
    try:
        kill_instance(cluster)
        for attempt in range(1, 8):
            watcher()
            out = check("ganeti_cluster_state")[SERVICE]
            if restart_counts().get(cluster.instance, 0) > 5:
                break
            assert out["state"] == "0", (attempt, out)  # still trying
        assert restart_counts() == {cluster.instance: 6}
        assert out["state"] == "2", out
        assert out["summary"] == (
            "1 instance the watcher gave up restarting: %s; start it (gnt-instance "
            "startup) and look at /var/log/ganeti/watcher.log" % cluster.instance)
        assert "%s: the watcher gave up restarting it after 5 attempts (group default)" \
            % cluster.instance in out["details"]
    finally:
        in_ns("gnt-instance", "modify", "-H", "kvm_extra=default", cluster.instance)
        if cluster.instance_status() != "running":
            in_ns("gnt-instance", "startup", cluster.instance)
    watcher()  # it forgets an instance that runs again
    assert restart_counts() == {}
    assert check("ganeti_cluster_state")[SERVICE]["state"] == "0"
