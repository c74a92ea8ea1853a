"""The built checks (`make build`) run as the Checkmk agent runs them, on the master.

No config file, the agent's MK_* variables, cwd the local directory, stdin
/dev/null, no arguments, the node's own python3 found through PATH: the node name
comes from the (namespaced) hostname, as on a real node.
"""

import os
import subprocess
import time

import pytest

from realcluster import ROOT, SYSTEM_PYTHON

pytestmark = pytest.mark.integration

from ganeti_cmk.checks import load_all  # noqa: E402

SERVICES = {check.name: check.service for check in load_all()}
PATIENCE = 300  # s for the background verify refresh; it takes a few


@pytest.fixture
def built(tmp_path):
    """`make build` into MK_LIBDIR (local/ and the library), with the nodes'
    python3; MK_LIBDIR/local."""
    local = tmp_path / "local"
    proc = subprocess.run(["make", "--no-print-directory", "build", "BUILDDIR=%s" % tmp_path,
                           "PYTHON=%s" % SYSTEM_PYTHON], cwd=ROOT, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    return local


def refreshers(lib):
    """Pids of background verify refreshes started from the built checks in `lib`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--refresh-cache" in argv and any(a.startswith(str(lib)) for a in argv):
            pids.append(int(pid))
    return pids


def test_built_checks_run_as_the_agent_runs_them(cluster, check, built):
    names = sorted(os.listdir(str(built)))
    assert names == sorted(SERVICES)

    def agent(name):
        return check.run_path([str(built / name)], cwd=str(built))

    seen = {}
    for name in names:  # each prints valid lines, or nothing where it does not apply
        seen.update(agent(name))
    assert {"KVM device", "KVM binary versions", "Ganeti verify"} <= set(seen), seen
    assert seen["KVM device"]["state"] == "0", seen["KVM device"]
    assert seen["KVM binary versions"]["state"] == "0", seen["KVM binary versions"]
    assert seen["KVM binary versions"]["metrics"]["kvm_processes"] == 1
    # The agent never waits for verify: the first call starts a background refresh.
    first = seen["Ganeti verify"]
    assert first["state"] == "3" and "in progress" in first["summary"], first

    give_up = time.monotonic() + PATIENCE
    while True:
        result = agent("ganeti_cluster_verify")["Ganeti verify"]
        if "verify ran" in result["summary"]:
            break
        assert time.monotonic() < give_up, result
        time.sleep(1)
    assert result["state"] in ("0", "1", "2"), result
    assert {"ganeti_verify_errors", "ganeti_verify_warnings"} <= set(result["metrics"])
    assert any("/usr/sbin/gnt-cluster verify --error-codes" in d
               for d in result["details"]), result
    # The refresh that wrote the result is gone, not left behind in the namespace.
    while refreshers(built):
        assert time.monotonic() < give_up, refreshers(built)
        time.sleep(0.5)
