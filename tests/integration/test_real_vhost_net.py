"""vhost-net on the real cluster: this machine has no /dev/vhost-net and no
vhost_net module, so a cluster that turns vhost_net on cannot start its
instance here.  The check must say so (CRIT, naming the setting) before
the restart that then really fails."""

import os

import pytest

from realcluster import in_ns

pytestmark = pytest.mark.integration

SERVICE = "vhost-net"


@pytest.fixture
def no_vhost_here():
    if os.path.exists("/dev/vhost-net") or os.path.exists("/sys/module/vhost_net"):
        pytest.skip("this machine has vhost-net: the failure cannot be shown here")



def hard_reboot_fails_on_vhost_net(cluster):
    """Ganeti's own restart fails the way the check said it would."""
    reboot = in_ns("gnt-instance", "reboot", "--type=hard", "--shutdown-timeout=0",
                   cluster.instance, check=False, timeout=300)
    assert reboot.returncode != 0, reboot.stdout
    assert "Failed to open /dev/vhost-net" in reboot.stdout + reboot.stderr, (
        reboot.stdout, reboot.stderr)

def test_not_needed_while_nothing_wants_it(check, cluster, no_vhost_here):
    result = check("ganeti_vhost_net")[SERVICE]
    assert result["state"] == "0", result
    assert result["summary"].startswith(
        "not needed: none of the 1 instance here (%s) and not the cluster default "
        "uses vhost_net; /dev/vhost-net is missing, module vhost_net not loaded"
        % cluster.instance), result["summary"]


def test_cluster_default_vhost_net_is_crit_before_the_start_fails(check, cluster,
                                                                  no_vhost_here):
    try:
        in_ns("gnt-cluster", "modify", "-H", "kvm:vhost_net=True")
        result = check("ganeti_vhost_net")[SERVICE]
        assert result["state"] == "2", result
        # config.data (the master is a candidate) shows the instance that
        # inherits it, too
        assert result["summary"].startswith(
            "/dev/vhost-net is missing, module vhost_net not loaded (no "
            "/sys/module/vhost_net): instance %s (vhost_net=True from its next "
            "start) and the cluster default (gnt-cluster modify -H "
            "kvm:vhost_net=True) need it" % cluster.instance), result["summary"]
        assert "run 'modprobe vhost_net'" in result["summary"]
        # The instance still runs with what it was started with ...
        assert cluster.instance_status() == "running"
        # ... and Ganeti's own restart now fails the way the check said.
        hard_reboot_fails_on_vhost_net(cluster)
        assert cluster.instance_status() != "running"
        result = check("ganeti_vhost_net")[SERVICE]
        assert result["state"] == "2", result
    finally:
        in_ns("gnt-cluster", "modify", "-H", "kvm:vhost_net=False")
        if cluster.instance_status() != "running":
            in_ns("gnt-instance", "startup", cluster.instance, timeout=300)
    assert cluster.instance_status() == "running"
    assert check("ganeti_vhost_net")[SERVICE]["state"] == "0"


def test_instance_level_vhost_net_is_crit_before_the_start_fails(check, cluster,
                                                                   no_vhost_here):
    """gnt-instance modify -H vhost_net=True: the running instance keeps its
    runtime, config.data on the master already has the setting."""
    try:
        in_ns("gnt-instance", "modify", "-H", "vhost_net=True", cluster.instance)
        result = check("ganeti_vhost_net")[SERVICE]
        assert result["state"] == "2", result
        assert ("instance %s (vhost_net=True from its next start) needs it, so a "
                "start or migration here fails ('Failed to open /dev/vhost-net'): "
                "run 'modprobe vhost_net'" % cluster.instance) in result["summary"], \
            result["summary"]
        assert cluster.instance_status() == "running"
        hard_reboot_fails_on_vhost_net(cluster)
        result = check("ganeti_vhost_net")[SERVICE]
        assert result["state"] == "2", result
        assert "instance %s (vhost_net=True, primary here) needs it" % cluster.instance \
            in result["summary"], result["summary"]
    finally:
        in_ns("gnt-instance", "modify", "-H", "vhost_net=default", cluster.instance)
        if cluster.instance_status() != "running":
            in_ns("gnt-instance", "startup", cluster.instance, timeout=300)
    assert cluster.instance_status() == "running"
    assert check("ganeti_vhost_net")[SERVICE]["state"] == "0"
