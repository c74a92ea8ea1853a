"""Ganeti verify against the real master, compared with gnt-cluster verify itself.

Whatever this machine makes verify report (on these Firecracker guests: ENODESETUP,
the kernel has no /proc/sysrq-trigger) is read from `gnt-cluster verify --error-codes`
in the same test, never hard-coded; the check must report exactly that.
"""

import re
import shutil
import time

import pytest

from realcluster import in_ns
from ganeti_cmk import background, ganeti

pytestmark = pytest.mark.integration

SERVICE = "Ganeti verify"
# "<ctime>   - ERROR:ENODESETUP:node:node1.ganeti.test:message" (time.ctime() stamp)
FINDING = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} +- "
                     r"(ERROR|WARNING):([A-Z0-9_]+):([a-z]+):([^:]*):(.*)$")
STATE_WORD = {"ERROR": "CRIT", "WARNING": "WARN"}


class Verify:
    """One real `gnt-cluster verify --error-codes` run, parsed on its own."""

    def __init__(self, *extra):
        proc = in_ns("gnt-cluster", "verify", "--error-codes", *extra,
                     timeout=300, check=False)
        self.exit_code = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.findings = [m.groups() for m in map(FINDING.match, proc.stdout.splitlines()) if m]
        assert "Submitted jobs" in proc.stdout, self.output

    def count(self, severity):
        return sum(1 for f in self.findings if f[0] == severity)

    def expected_state(self):
        return "2" if self.count("ERROR") else "1" if self.count("WARNING") else "0"


def assert_reports(result, real):
    """The check's service says what the real verify run said."""
    context = "check: %r\nverify:\n%s" % (result, real.output)
    assert result["metrics"]["ganeti_verify_errors"] == real.count("ERROR"), context
    assert result["metrics"]["ganeti_verify_warnings"] == real.count("WARNING"), context
    assert result["state"] == real.expected_state(), context
    for severity, code, item_type, item, message in real.findings:
        # Messages may carry a literal "\\n" (ssh's output): compare up to the first.
        line = "%s %s %s: %s" % (STATE_WORD[severity], code, item,
                                 message.split("\\n")[0].strip())
        assert any(d.startswith(line) for d in result["details"]), (line, context)
    if real.findings:
        severity, code, _, item, _ = real.findings[0]
        assert "%s %s" % (code, item) in result["summary"], context
    else:
        assert result["summary"].startswith("no errors or warnings"), context
    assert any("exit code %d:" % real.exit_code in d for d in result["details"]), context


@pytest.fixture(scope="module")
def baseline(cluster):
    """What verify finds on this machine, with no options."""
    return Verify()


def test_verify_refresh_reports_what_gnt_cluster_verify_finds(cluster, check, baseline):
    real = baseline
    services = check("ganeti_cluster_verify", "--refresh")
    assert list(services) == [SERVICE]
    assert_reports(services[SERVICE], real)
    for _, _, item_type, item, _ in real.findings:
        if item_type == "node":
            assert item == cluster.node, real.output


def test_ignored_error_code_follows_gnt_cluster_verify(cluster, check, baseline):
    errors = [f for f in baseline.findings if f[0] == "ERROR"]
    if not errors:
        pytest.skip("verify reports no ERROR on this machine: nothing to ignore")
    code = errors[0][1]
    real = Verify("-I", code)
    assert all(f[1] != code or f[0] == "WARNING" for f in real.findings), real.output
    services = check("ganeti_cluster_verify", "--refresh",
                     sections={"cluster_verify": {"extra_args": "-I %s" % code}})
    assert_reports(services[SERVICE], real)
    if real.count("ERROR") == 0:
        assert real.exit_code == 0, real.output


def ssconf(cluster, key):
    with open("%s/ssconf_%s" % (cluster.data_dir, key)) as f:
        return f.read().strip()


@pytest.fixture
def master_ip_removed(cluster):
    """The master IP taken off its interface behind Ganeti's back, and put back."""
    address = "%s/%s" % (ssconf(cluster, "master_ip"), ssconf(cluster, "master_netmask"))
    in_ns("ip", "addr", "del", address, "dev", ssconf(cluster, "master_netdev"))
    yield
    in_ns("gnt-cluster", "activate-master-ip")
    assert address in in_ns("ip", "-4", "addr", "show").stdout


def test_a_broken_master_ip_is_reported_as_verify_reports_it(cluster, check,
                                                              master_ip_removed):
    real = Verify()
    assert any(f[1] == "ENODENET" and f[3] == cluster.node for f in real.findings), \
        real.output
    services = check("ganeti_cluster_verify", "--refresh")
    assert_reports(services[SERVICE], real)


def test_role_is_master_on_the_real_ssconf(cluster, check):
    role = ganeti.node_role(cluster.data_dir, cluster.node)
    assert role.role == ganeti.MASTER
    assert role.master == cluster.node


def ssconf_copy(cluster, target, master):
    target.mkdir()
    for name in ("master_node", "node_list", "master_candidates", "offline_nodes",
                 "cluster_name"):
        shutil.copy("%s/ssconf_%s" % (cluster.data_dir, name), str(target))
    (target / "ssconf_master_node").write_text(master + "\n")
    return str(target)


def test_check_is_silent_when_ssconf_names_another_master(cluster, check, tmp_path):
    same = ssconf_copy(cluster, tmp_path / "same", cluster.node)
    other = ssconf_copy(cluster, tmp_path / "other", "node2.ganeti.test")
    # The copy as it is: this node is the master, the service is there.
    services = check("ganeti_cluster_verify", "--refresh",
                     sections={"paths": {"ganeti_data_dir": same}})
    assert list(services) == [SERVICE]
    # Another master: this node is only a candidate, and the check prints nothing.
    assert ganeti.node_role(other, cluster.node).role == ganeti.CANDIDATE
    services = check("ganeti_cluster_verify", "--refresh",
                     sections={"paths": {"ganeti_data_dir": other}})
    assert services == {}


def test_a_drained_queue_says_verify_did_not_run(cluster, check):
    """Ganeti 3.0 says only "Unhandled Ganeti error: Queue drained" (exit 1)."""
    in_ns("gnt-cluster", "queue", "drain")
    try:
        services = check("ganeti_cluster_verify", "--refresh")
    finally:
        in_ns("gnt-cluster", "queue", "undrain")
    svc = services[SERVICE]
    print("drained:", svc["state"], svc["summary"])
    assert svc["state"] == "1", svc
    assert svc["summary"].startswith(
        "the job queue is drained, verify did not run (upgrade in progress? "
        "gnt-cluster queue undrain): Unhandled Ganeti error: Queue drained - "
        "verify ran "), svc


def submit_delay(seconds):
    """The id of a `gnt-debug delay` job holding the cluster's locks (an
    undrained queue may refuse jobs for a moment)."""
    end = time.monotonic() + 60
    while True:
        proc = in_ns("gnt-debug", "delay", "--submit", str(seconds), check=False)
        found = re.search(r"JobID: (\d+)", proc.stdout + proc.stderr)
        if found:
            return found.group(1)
        assert time.monotonic() < end, proc.stdout + proc.stderr
        time.sleep(1)


def test_verify_behind_another_jobs_locks_names_that_job(cluster, check):
    """Ganeti 3.0 prints nothing on stderr while verify waits for locks: the
    check asks gnt-job which job holds them, cancels verify's jobs, and the
    whole refresh ends within timeout + background.DEADLINE_GRACE."""
    timeout = 15
    delay = submit_delay(45)
    try:
        began = time.monotonic()
        services = check("ganeti_cluster_verify", "--refresh", sections={
            "cluster_verify": {"timeout": "%ds" % timeout}})
        took = time.monotonic() - began
    finally:
        in_ns("gnt-job", "watch", delay, timeout=120, check=False)
    svc = services[SERVICE]
    print("locks:", svc["state"], svc["summary"], "(refresh took %.1f s)" % took)
    assert svc["state"] == "2", svc
    assert re.match(
        r"verify did not finish within 15 s \(\[cluster_verify\] timeout\) and "
        r"was killed; it was waiting for locks held by job %s \(TEST_DELAY\(45\.0\), "
        r"running for \d+ s\); its jobs \d+, \d+ " % delay, svc["summary"]), svc
    assert took < timeout + background.DEADLINE_GRACE + 10, took
    # verify's own jobs do not stay queued behind the delay
    jobs = in_ns("gnt-job", "list", "--no-headers", "-o", "id,status").stdout
    assert not re.search(r"\b(queued|waiting)\b", jobs), jobs
