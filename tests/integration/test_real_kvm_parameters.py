"""KVM instance parameters on the real cluster: real changes, real restarts.

Each test changes a parameter of the running instance (or the cluster's),
runs the check with the configuration read from config.data and, forced,
from the real ganeti-confd, applies one restart action and checks which
one makes the instance run with the new value.  Every test restores what
it changed and leaves the instance running with the cluster's parameters.
"""

import pytest

from realcluster import in_ns

pytestmark = pytest.mark.integration

SERVICE = "KVM instance parameters"
SOURCES = {"config": "config.data", "confd": "ganeti-confd"}


def both_sources(check):
    """{source: fields} of one run per source."""
    results = {}
    for source in SOURCES:
        services = check("ganeti_kvm_parameters",
                         sections={"kvm_parameters": {"source": source}})
        assert list(services) == [SERVICE]
        results[source] = services[SERVICE]
        assert "current parameters from %s" % SOURCES[source] in results[source]["details"]
    return results


def assert_current(check, cluster):
    for out in both_sources(check).values():
        assert out["state"] == "0", out
        assert out["summary"] == "1 instance runs with its current parameters"
        assert out["metrics"] == {"kvm_params_pending": 0, "kvm_params_instances": 1}


def assert_pending(check, cluster, *changes):
    """Both sources name the instance and every (key, old, new, level)."""
    for out in both_sources(check).values():
        assert out["state"] == "1", out
        assert out["summary"].startswith(
            "1 of 1 instance runs with parameters changed since they started: %s ("
            % cluster.instance), out
        assert out["summary"].endswith("restart it with `gnt-instance reboot "
                                       "--type=hard` (or shutdown and startup); a "
                                       "live migration or a soft reboot keeps the "
                                       "old parameters")
        for key, old, new, level in changes:
            assert "%s %s -> %s" % (key, old, new) in out["summary"]
            assert any(d.startswith("%s: %s: running %s, configured %s (%s level)"
                                    % (cluster.instance, key, old, new, level))
                       for d in out["details"]), out["details"]
        assert out["metrics"] == {"kvm_params_pending": 1, "kvm_params_instances": 1}
    return out


def hard_reboot(cluster):
    in_ns("gnt-instance", "reboot", "--type=hard", "--shutdown-timeout=0",
          cluster.instance)
    assert cluster.instance_status() == "running"


def pid(cluster):
    with open("%s/kvm-hypervisor/pid/%s" % (cluster.run_dir, cluster.instance)) as f:
        return int(f.read())


def test_unchanged_instance_is_current(cluster, check):
    assert_current(check, cluster)


def test_instance_change_survives_a_soft_reboot_and_a_hard_one_applies_it(cluster, check):
    try:
        in_ns("gnt-instance", "modify", "-H", "kernel_args=cmk-test,cpu_type=qemu64",
              "-B", "vcpus=2", cluster.instance)
        assert_pending(check, cluster, ("cpu_type", '""', "qemu64", "instance"),
                       ("kernel_args", "ro", "cmk-test", "instance"),
                       ("vcpus", 1, 2, "instance"))
        before = pid(cluster)
        in_ns("gnt-instance", "reboot", "--type=soft", "--shutdown-timeout=0",
              cluster.instance)
        assert pid(cluster) != before  # a new qemu process ...
        assert_pending(check, cluster, ("cpu_type", '""', "qemu64", "instance"),
                       ("kernel_args", "ro", "cmk-test", "instance"),
                       ("vcpus", 1, 2, "instance"))  # ... from the old runtime
        hard_reboot(cluster)
        assert_current(check, cluster)
    finally:
        in_ns("gnt-instance", "modify", "-H", "kernel_args=default,cpu_type=default",
              "-B", "vcpus=default", cluster.instance)
        hard_reboot(cluster)
    assert_current(check, cluster)


def test_cluster_change_is_applied_by_shutdown_and_startup(cluster, check):
    try:
        in_ns("gnt-cluster", "modify", "-H", "kvm:cpu_type=qemu64")
        assert_pending(check, cluster, ("cpu_type", '""', "qemu64", "cluster"))
        in_ns("gnt-instance", "shutdown", "--timeout=0", cluster.instance)
        in_ns("gnt-instance", "startup", cluster.instance)
        assert_current(check, cluster)
    finally:
        in_ns("gnt-cluster", "modify", "-H", "kvm:cpu_type=")
        hard_reboot(cluster)
    assert_current(check, cluster)


def test_confd_that_does_not_answer_is_unknown(cluster, check):
    services = check("ganeti_kvm_parameters", sections={"kvm_parameters": {
        "source": "confd", "confd_port": "9", "confd_timeout": "0.5s"}})
    out = services[SERVICE]
    assert out["state"] == "3"
    assert out["summary"].startswith(
        "cannot tell whether 1 instance runs with changed parameters: "
        "ganeti-confd did not answer ([kvm_parameters] source = confd); confd: "
        "no complete answer from confd at "), out
    assert "kvm_params_pending" not in out["metrics"]
