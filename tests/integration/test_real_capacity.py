"""The "Ganeti capacity" check on the real cluster: the real hcheck -L,
in the foreground (--refresh) and through the background refresh."""

import time

import pytest

pytestmark = pytest.mark.integration

SERVICE = "Ganeti capacity"


def run_refresh(check, sections=None):
    """`ganeti_capacity --refresh --nagios`: hcheck in the foreground."""
    import subprocess
    from realcluster import IN_NS
    from support import ROOT, SYSTEM_PYTHON, check_command
    proc = subprocess.run([IN_NS] + check_command("ganeti_capacity", SYSTEM_PYTHON)
                          + ["--config", check.config(sections), "--refresh", "--nagios"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=check.env(), cwd=ROOT, timeout=300)
    assert proc.stdout.startswith(("OK - ", "WARNING - ")), (proc.stdout, proc.stderr)
    return proc.stdout


def test_real_hcheck_on_the_single_node_cluster(check, cluster):
    run_refresh(check)
    out = check("ganeti_capacity")[SERVICE]
    # one node: it cannot be evacuated anywhere (hcheck's capacity checks)
    assert out["state"] == "1", out
    assert out["summary"].startswith("1 node not directly evacuable in default: their "
                                     "instances cannot all move elsewhere - hcheck ran ")
    assert out["metrics"]["ganeti_capacity_n1_fail"] == 0
    assert out["metrics"]["ganeti_capacity_gn1_fail"] == 1
    run_refresh(check, {"capacity": {"capacity_checks": "no"}})
    out = check("ganeti_capacity", sections={"capacity": {"capacity_checks": "no"}})[SERVICE]
    assert out["state"] == "0", out
    assert out["summary"].startswith("no N+1 failures, exclusion-tag conflicts or offline "
                                     "nodes in 1 node group - hcheck ran ")


def test_agent_mode_starts_the_refresh_and_never_waits(check, cluster):
    out = check("ganeti_capacity")[SERVICE]
    assert out["state"] == "3", out
    assert out["summary"].startswith("first hcheck run in progress: refresh started in "
                                     "the background (pid ")
    cache = check.tmp / "state" / "capacity.json"
    for _ in range(1200):
        if cache.exists():
            break
        time.sleep(0.05)
    assert check("ganeti_capacity")[SERVICE]["state"] == "1"
