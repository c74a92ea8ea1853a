"""The "Ganeti capacity" check: hcheck's machine-readable output, recorded
and live.

tests/data/hcheck/*.txt are three- and two-group clusters in htools' text
format (built for these tests: an N+1 failure, an exclusion-tag conflict,
an offline node with a primary instance); *.out/.err/.rc are what the real
hcheck 3.0.2 printed for them (`hcheck -t FILE --machine-readable`, with
`--no-simulation`, `--no-capacity-checks`), for the single-node
integration cluster (`hcheck -L`) and for a master daemon that is not there.
The live tests run the real hcheck on the text clusters through a wrapper
that stands in for `-L`.
"""

import json
import os
import time

import pytest

from localcheck_grammar import parse_output
from support import ROOT, run_script
from ganeti_cmk.checks import capacity

SERVICE = "Ganeti capacity"
DATA = os.path.join(ROOT, "tests", "data", "hcheck")
MASTER = "node1.ganeti.test"
# Debian: ganeti's /usr/bin/hcheck links to ganeti-htools-3.0's binary
HCHECK = next((p for p in ("/usr/bin/hcheck", "/usr/lib/ganeti/3.0/usr/bin/hcheck")
               if os.access(p, os.X_OK)), "/usr/bin/hcheck")
GROUPS = "uuid-rack-a rack-a\nuuid-rack-b rack-b\nuuid-rack-c rack-c\n" \
         "uuid-default default\nuuid-spare spare\n08ef7d79-59d0-481e-8f59-07bd39e2b569 default"
needs_hcheck = pytest.mark.skipif(not os.access(HCHECK, os.X_OK),
                                  reason="no %s (package ganeti-htools-3.0)" % HCHECK)


def recorded(case):
    with open(os.path.join(DATA, case + ".out"), "rb") as f:
        out = f.read()
    with open(os.path.join(DATA, case + ".err"), "rb") as f:
        err = f.read()
    with open(os.path.join(DATA, case + ".rc")) as f:
        rc = int(f.read())
    return rc, out, err


class Master:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.data = tmp_path / "lib"
        self.data.mkdir()
        self.state = tmp_path / "state"
        for key, value in (("master_node", MASTER), ("cluster_name", "c1"),
                           ("node_list", MASTER), ("nodegroups", GROUPS)):
            (self.data / ("ssconf_" + key)).write_text(value + "\n")
        self.hcheck = tmp_path / "hcheck"

    def fake(self, case=None, script=None):
        """hcheck prints a recorded case (or runs `script`)."""
        if script is None:
            script = 'cat "%s/%s.out"; cat "%s/%s.err" >&2; exit $(cat "%s/%s.rc")' % (
                DATA, case, DATA, case, DATA, case)
        self.hcheck.write_text("#!/bin/sh\n" + script + "\n")
        self.hcheck.chmod(0o755)

    def config(self, node=MASTER, **keys):
        keys.setdefault("hcheck", str(self.hcheck))
        return ("[paths]\nganeti_data_dir = %s\nstate_dir = %s\nsystemd_system_dir = %s\n"
                "[ganeti]\nnode_name = %s\n[capacity]\n%s" % (
                    self.data, self.state, self.tmp / "no-systemd", node,
                    "".join("%s = %s\n" % kv for kv in keys.items())))

    def run(self, *args, node=MASTER, **keys):
        proc = run_script("ganeti_capacity", *args, config_text=self.config(node, **keys),
                          tmp_path=self.tmp)
        assert proc.returncode == 0, proc.stderr
        return parse_output(proc.stdout)[None].get(SERVICE), proc

    def refresh(self, **keys):
        """--refresh: run hcheck now; the agent-mode result after it."""
        proc = run_script("ganeti_capacity", "--refresh", "--human",
                          config_text=self.config(**keys), tmp_path=self.tmp)
        assert proc.returncode == 0, proc.stderr
        return self.run(**keys)[0]


@pytest.fixture
def master(tmp_path):
    return Master(tmp_path)


# --- parsing -------------------------------------------------------------------

def test_parse_three_groups():
    rc, out, err = recorded("three-groups")
    found = capacity.parse_output(rc, out, err)["hcheck"]
    assert found["complete"] and found["exit_code"] == 1 and found["other"] == []
    assert sorted(found["groups"]) == ["0", "1", "2"]
    assert found["groups"]["1"]["uuid"] == "uuid-rack-b"
    assert found["groups"]["0"]["init"] == {"N1_FAIL": 2, "CONFLICT_TAGS": 0,
                                            "OFFLINE_PRI": 0, "OFFLINE_SEC": 0,
                                            "GN1_FAIL": 2, "SCORE": 8.03125}
    assert found["groups"]["1"]["final"]["CONFLICT_TAGS"] == 0
    assert found["cluster"]["init"]["NEED_REBALANCE"] == 1
    assert found["stderr"][0] == "Warning: cluster has inconsistent data:"


def test_parse_the_real_single_node_cluster():
    found = capacity.parse_output(*recorded("real-single-node"))["hcheck"]
    assert found["complete"]
    assert found["groups"]["0"]["uuid"] == "08ef7d79-59d0-481e-8f59-07bd39e2b569"
    assert found["cluster"]["init"]["GN1_FAIL"] == 1


def test_parse_without_capacity_checks_has_no_gn1():
    found = capacity.parse_output(*recorded("three-groups-nocap"))["hcheck"]
    assert "GN1_FAIL" not in found["groups"]["0"]["init"]


def test_parse_garbage_and_truncation():
    found = capacity.parse_hcheck("HCHECK_INIT_GROUP_0_N1_FAIL=x\nhello\nHCHECK_WHAT=1\n"
                                  "HCHECK_INIT_GROUP_0_SCORE=nan\n")
    assert not found["complete"]
    assert found["groups"]["0"]["init"] == {"N1_FAIL": "x", "SCORE": "nan"}
    assert found["other"] == ["hello", "HCHECK_WHAT=1"]


# --- end to end with recorded outputs --------------------------------------------

def test_three_groups_names_each_finding_and_group(master):
    master.fake("three-groups")
    out = master.refresh()
    assert out["state"] == "2", out
    assert out["summary"].startswith(
        "2 nodes not N+1 redundant in rack-a: free memory or add nodes; 1 instance with "
        "an offline primary node in rack-c: fail them over (gnt-instance failover); 1 node "
        "with primaries sharing an exclusion tag in rack-b: move them apart (hbal -L -G "
        "<group>); 1 offline node in rack-c: bring it back or evacuate it (gnt-node "
        "evacuate); 2 nodes not directly evacuable in rack-a: their instances cannot all "
        "move elsewhere; a rebalance would help in rack-b, rack-c (hbal -L -G <group>) - "
        "hcheck ran ")
    assert out["metrics"] == {
        "ganeti_capacity_n1_fail": 2, "ganeti_capacity_conflict_tags": 1,
        "ganeti_capacity_offline_pri": 1, "ganeti_capacity_offline_sec": 1,
        "ganeti_capacity_gn1_fail": 2, "ganeti_capacity_score": 20.03125,
        "ganeti_capacity_age": out["metrics"]["ganeti_capacity_age"]}
    assert "a rebalance of group rack-b would change CONFLICT_TAGS 1 -> 0 " \
        "(hbal -L -G rack-b)" in out["details"]


def test_severities_follow_the_config(master):
    master.fake("three-groups")
    out = master.refresh(n1_fail="warn", offline_pri="warn")
    assert out["state"] == "1"
    out = master.refresh(n1_fail="ok", offline_pri="ok", conflict_tags="ok",
                         offline_sec="ok", gn1_fail="ok")
    assert out["state"] == "0"
    assert out["summary"].startswith("2 nodes not N+1 redundant in rack-a")


def test_clean_two_groups_is_ok(master):
    master.fake("two-groups-clean")
    out = master.refresh()
    assert out["state"] == "0", out
    assert out["summary"].startswith("no N+1 failures, exclusion-tag conflicts or offline "
                                     "nodes in 2 node groups - hcheck ran ")


def test_no_simulation_gives_no_rebalance_advice(master):
    master.fake("three-groups-nosim")
    out = master.refresh(simulation="no")
    assert "rebalance" not in out["summary"]
    assert "command: %s -L --machine-readable --no-simulation" % master.hcheck \
        in out["details"]


def test_the_real_single_node_cluster_is_warn_for_evacuation(master):
    master.fake("real-single-node")
    out = master.refresh()
    assert out["state"] == "1"
    assert out["summary"].startswith("1 node not directly evacuable in default: their "
                                     "instances cannot all move elsewhere - hcheck ran ")


def test_a_failing_hcheck_is_unknown_with_its_reason(master):
    master.fake("no-master")
    out = master.refresh()
    assert out["state"] == "3"
    assert out["summary"].startswith(
        "hcheck failed (exit code 1): Error: failed to load data, aborting: "
        "Network.Socket.connect: <socket: 3>: does not exist (No such file or directory)"
        " - hcheck ran ")


def test_output_cut_before_hcheck_ok_is_unknown(master):
    master.fake(script='head -n 5 "%s/three-groups.out"' % DATA)
    out = master.refresh()
    assert out["state"] == "3"
    assert out["summary"].startswith("hcheck failed (exit code 0): its output ends "
                                     "before HCHECK_OK")


def test_a_hanging_hcheck_is_killed(master):
    master.fake(script="exec sleep 60")
    out = master.refresh(timeout="1s", stale_after="2h")
    assert out["state"] == "3"
    assert out["summary"].startswith("hcheck did not finish within 1 s ([capacity] "
                                     "timeout) and was killed")


def test_not_installed_names_the_package(master):
    out, _ = master.run(hcheck=str(master.tmp / "missing" / "hcheck"))
    assert out["state"] == "3"
    assert out["summary"] == ("hcheck is not installed (no executable %s/missing/hcheck, "
                              "[capacity] hcheck): install the package ganeti-htools-3.0"
                              % master.tmp)


def test_only_on_the_master(master):
    master.fake("two-groups-clean")
    out, proc = master.run(node="node2.ganeti.test")
    assert out is None and proc.stdout == ""


def test_agent_mode_never_waits_and_then_shows_the_result(master):
    master.fake("two-groups-clean")
    out, _ = master.run()
    assert out["state"] == "3"
    assert out["summary"].startswith("first hcheck run in progress: refresh started in "
                                     "the background (pid ")
    cache = master.state / "capacity.json"
    for _ in range(600):
        if cache.exists():
            break
        time.sleep(0.05)
    out, _ = master.run()
    assert out["state"] == "0", out


def test_a_stale_result_is_warn(master):
    master.fake("two-groups-clean")
    master.refresh()
    cache = master.state / "capacity.json"
    record = json.loads(cache.read_text())
    record["finished"] -= 7200
    cache.write_text(json.dumps(record))
    master.fake(script="exec sleep 60")  # the refresh this starts stays busy
    out, _ = master.run(timeout="10m", max_age="1h", stale_after="90m")
    assert out["state"] == "1"
    assert "result is 2.0 h old, older than 1.5 h ([capacity] stale_after)" in out["summary"]


def test_hostile_group_names(master):
    (master.data / "ssconf_nodegroups").write_text(
        'uuid-rack-a ev"il\\n0 X - OK\r\nuuid-rack-b b\n')
    master.fake("three-groups")
    out = master.refresh()
    assert out["summary"].startswith('2 nodes not N+1 redundant in ev"il/n0 X - OK:')


# --- the real hcheck on text clusters --------------------------------------------

def real(master, name):
    """[capacity] hcheck = the real hcheck on a text cluster instead of -L."""
    master.fake(script='for a; do shift; [ "$a" = -L ] || set -- "$@" "$a"; done\n'
                'exec %s -t "%s/%s.txt" "$@"' % (HCHECK, DATA, name))


@needs_hcheck
def test_real_hcheck_on_three_groups(master):
    real(master, "three-groups")
    out = master.refresh()
    assert out["state"] == "2", out
    assert out["metrics"]["ganeti_capacity_n1_fail"] == 2
    assert out["metrics"]["ganeti_capacity_conflict_tags"] == 1
    assert "a rebalance would help in rack-b, rack-c" in out["summary"]


@needs_hcheck
def test_real_hcheck_on_a_clean_cluster_without_capacity_checks(master):
    real(master, "two-groups-clean")
    out = master.refresh(capacity_checks="no")
    assert out["state"] == "0", out
    assert "ganeti_capacity_gn1_fail" not in out["metrics"]


@needs_hcheck
@pytest.mark.parametrize("case,args", [
    ("three-groups", ["--machine-readable"]),
    ("three-groups-nosim", ["--machine-readable", "--no-simulation"]),
    ("three-groups-nocap", ["--machine-readable", "--no-capacity-checks"]),
    ("two-groups-clean", ["--machine-readable"]),
])
def test_recordings_are_what_this_hcheck_prints(case, args):
    import subprocess
    name = case.split("-no")[0]
    proc = subprocess.run([HCHECK, "-t", os.path.join(DATA, name + ".txt")] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert (proc.returncode, proc.stdout) == recorded(case)[:2]
