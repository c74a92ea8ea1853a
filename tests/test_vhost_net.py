"""vhost-net: who wants it (running instances' runtime hvparams, the
cluster default) against whether the device really opens, with real device
nodes, real processes standing in for instances and fake Ganeti dirs."""

import errno
import json
import os

import pytest

from support import needs_root
from ganeti_cmk.checks.vhost_net import Probe, evaluate, wants_vhost
from ganeti_cmk.localcheck import NotApplicable

SERVICE = "vhost-net"
CHAR = 0o020000


def ssconf(node, hvparams=None):
    """Make `node` a cluster member; hvparams lines for ssconf_hvparams_kvm."""
    with open(os.path.join(node.data_dir, "ssconf_master_node"), "w") as f:
        f.write("node1.example.com\n")
    if hvparams is not None:
        with open(os.path.join(node.data_dir, "ssconf_hvparams_kvm"), "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in hvparams.items()))


def start(node, double, instance, hvparams, nics=({"mac": "aa:00:00:00:00:01"},)):
    """A running stand-in instance with these runtime hvparams."""
    import json
    proc = node.start(instance, kvm_path=double, runtime=False)
    with open(os.path.join(node.kvm_dir, "conf", instance + ".runtime"), "w") as f:
        json.dump([node.argv(instance, double), list(nics), hvparams, []], f)
    return proc


def config(node, device):
    return ("[paths]\nganeti_run_dir = %s\nganeti_data_dir = %s\nstate_dir = %s\n"
            "[ganeti]\nnode_name = node2.example.com\n"
            "[vhost_net]\ndevice = %s\n" % (node.run_dir, node.data_dir,
                                           node.state_dir, device))


def config_data(node, instances, cluster_kvm=None, os_hvp=None):
    """A 3.0-style config.data: node1 and node2 (this node), instances as
    (name, primary, secondary or None or "diskless", hvparams, nics); without
    a secondary the instance has a local (plain) disk."""
    disks, insts = {}, {}
    for i, (name, primary, secondary, hvparams, nics) in enumerate(instances):
        disk_uuids = []
        if secondary == "diskless":
            pass
        elif secondary:
            disks["disk-%d" % i] = {"dev_type": "drbd", "logical_id": [
                primary, secondary, 11000 + i, 0, 0, "secret"], "children": []}
            disk_uuids.append("disk-%d" % i)
        else:
            disks["disk-%d" % i] = {"dev_type": "plain", "logical_id": ["xenvg", name]}
            disk_uuids.append("disk-%d" % i)
        insts["uuid-%d" % i] = {"name": name, "primary_node": primary, "os": "debian",
                                "hypervisor": "kvm", "hvparams": hvparams,
                                "beparams": {}, "nics": [{"mac": "x"}] * nics,
                                "disks": disk_uuids}
    data = {"cluster": {"hvparams": {"kvm": cluster_kvm or {"vhost_net": False,
                                                            "nic_type": "paravirtual"}},
                        "os_hvp": os_hvp or {}, "beparams": {"default": {"maxmem": 128}}},
            "nodes": {"n1": {"name": "node1.example.com"},
                      "n2": {"name": "node2.example.com"}},
            "instances": insts, "disks": disks}
    with open(os.path.join(node.data_dir, "config.data"), "w") as f:
        json.dump(data, f)


def fake_device(tmp_path, numbers=(10, 251), mode=0o600):
    """A character device node; 10:251 is a misc minor no driver owns."""
    dev = tmp_path / "vhost-net"
    os.mknod(dev, mode | CHAR, os.makedev(*numbers))
    return dev


VHOST = {"vhost_net": True, "nic_type": "paravirtual"}
NO_VHOST = {"vhost_net": False, "nic_type": "paravirtual"}


# --- who wants it -----------------------------------------------------------

@pytest.mark.parametrize("hvparams, nics, wanted", [
    (VHOST, 1, True), (VHOST, None, True), (VHOST, 0, False),
    (NO_VHOST, 1, False), ({"vhost_net": True, "nic_type": "e1000"}, 2, False),
    ({"vhost_net": True}, 1, True), ({"vhost_net": "True"}, 1, False), ({}, None, False)])
def test_wants_vhost_as_ganeti_opens_it(hvparams, nics, wanted):
    assert wants_vhost(hvparams, nics) is wanted


# --- evaluate ---------------------------------------------------------------

def test_missing_device_wanted_by_an_instance_is_crit_with_modprobe():
    p = Probe("/dev/vhost-net", exists=False, instances=["a", "web1"], wanting={"web1": "vhost_net=True"})
    r = evaluate(p)
    assert r.state == 2
    assert r.summary == (
        "/dev/vhost-net is missing, module vhost_net not loaded (no "
        "/sys/module/vhost_net): instance web1 (vhost_net=True) needs it, so a start "
        "or migration here fails ('Failed to open /dev/vhost-net'): run 'modprobe "
        "vhost_net' and add vhost_net to /etc/modules")


def test_wanted_by_the_cluster_default_names_the_setting():
    p = Probe("/dev/vhost-net", open_errno=errno.ENODEV, cluster_default=True)
    r = evaluate(p)
    assert r.state == 2
    assert "does not open read-write: ENODEV" in r.summary
    assert "the cluster default (gnt-cluster modify -H kvm:vhost_net=True) needs it" \
        in r.summary


def test_module_loaded_but_node_missing_says_mknod():
    r = evaluate(Probe("/dev/vhost-net", exists=False, cluster_default=True,
                       module_loaded=True))
    assert r.state == 2 and "'mknod -m 600 /dev/vhost-net c 10 238'" in r.summary


def test_many_instances_are_counted_and_the_remedy_stays():
    names = ["instance-%03d.example.com" % i for i in range(200)]
    r = evaluate(Probe("/dev/vhost-net", exists=False, instances=names,
                       wanting={n: "vhost_net=True" for n in names}))
    assert r.state == 2 and len(r.summary) <= 960
    assert "200 instances" in r.summary and "modprobe vhost_net" in r.summary


def test_not_needed_in_a_cluster():
    r = evaluate(Probe("/dev/vhost-net", exists=False, instances=["a", "b"]))
    assert r.state == 0
    assert r.summary.startswith("not needed: none of the 2 instances here (a, b) and "
                                "not the cluster default uses vhost_net; "
                                "/dev/vhost-net is missing, module vhost_net not loaded")
    r = evaluate(Probe("/dev/vhost-net", exists=False))
    assert r.summary.startswith(
        "not needed: no instance here and not the cluster default uses vhost_net")


def test_not_in_a_cluster():
    with pytest.raises(NotApplicable):
        evaluate(Probe("/dev/vhost-net", in_cluster=False, exists=False))
    r = evaluate(Probe("/dev/vhost-net", in_cluster=False, instances=["a"],
                       exists=False))
    assert r.state == 0 and r.summary.startswith(
        "not needed: none of the 1 instance here (a) uses vhost_net (not in a cluster)")


def test_usable_and_needed():
    r = evaluate(Probe("/dev/vhost-net", module_loaded=True, instances=["a"],
                       wanting={"a": "vhost_net=True"}, cluster_default=True))
    assert r.state == 0
    assert r.summary == ("/dev/vhost-net usable, needed by instance a (vhost_net=True) "
                         "and the cluster default (gnt-cluster modify -H "
                         "kvm:vhost_net=True); module vhost_net loaded")


def test_unknown_needs_are_not_ok_when_the_device_fails():
    r = evaluate(Probe("/dev/vhost-net", exists=False, instances=["a"],
                       unknown={"a": "it has no runtime file"}))
    assert r.state == 1
    assert "cannot tell whether it is needed: a unknown" in r.summary
    r = evaluate(Probe("/dev/vhost-net", exists=False, cluster_default=None))
    assert r.state == 1 and "the cluster default (no ssconf_hvparams_kvm)" in r.summary
    # ... but a working device is fine whoever wants it
    assert evaluate(Probe("/dev/vhost-net", cluster_default=None)).state == 0


def test_permission_denied_as_a_user_is_unknown():
    r = evaluate(Probe("/dev/vhost-net", open_errno=errno.EACCES, euid=1000,
                       cluster_default=True))
    assert r.state == 3 and "run the check as root" in r.summary


# --- end to end: real device nodes, real processes --------------------------

@needs_root
def test_device_without_driver_fails_to_open_and_is_crit(agent, node, tmp_path):
    ssconf(node, {"vhost_net": "True", "nic_type": "paravirtual"})
    dev = fake_device(tmp_path)
    with pytest.raises(OSError) as e:
        os.close(os.open(str(dev), os.O_RDWR))
    assert e.value.errno in (errno.ENODEV, errno.ENXIO)
    service = agent("ganeti_vhost_net", config(node, dev))[SERVICE]
    assert service["state"] == "2"
    assert "%s does not open read-write: %s" % (
        dev, errno.errorcode[e.value.errno]) in service["summary"]
    assert "the cluster default (gnt-cluster modify -H kvm:vhost_net=True)" \
        in service["summary"]
    assert "modprobe vhost_net" in service["summary"]


@needs_root
def test_a_device_that_opens_but_is_not_vhost_is_crit(agent, node, tmp_path):
    ssconf(node, {"vhost_net": "True"})
    dev = fake_device(tmp_path, (1, 3))  # /dev/null's numbers: opens, no ioctl
    service = agent("ganeti_vhost_net", config(node, dev))[SERVICE]
    assert service["state"] == "2"
    assert "opens but is not vhost-net (device 1:3, VHOST_GET_FEATURES: ENOTTY" \
        in service["summary"]


def test_missing_and_regular_file(agent, node, tmp_path):
    ssconf(node, {"vhost_net": "True"})
    service = agent("ganeti_vhost_net", config(node, tmp_path / "none"))[SERVICE]
    assert service["state"] == "2" and "none is missing" in service["summary"]
    regular = tmp_path / "file"
    regular.write_text("")
    service = agent("ganeti_vhost_net", config(node, regular))[SERVICE]
    assert service["state"] == "2"
    assert "file is a regular file, not the vhost-net character device 10:238" \
        in service["summary"]
    assert "remove it" in service["summary"]


def test_a_fifo_at_the_device_path_is_never_opened(agent, node, tmp_path):
    # Opened, a FIFO with no writer would block a reader; it is reported.
    ssconf(node, {"vhost_net": "True"})
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    service = agent("ganeti_vhost_net", config(node, fifo))[SERVICE]
    assert service["state"] == "2"
    assert "fifo is a named pipe, not the vhost-net character device 10:238" \
        in service["summary"]


def test_running_instances_decide(agent, node, doubles, tmp_path):
    ssconf(node, {"vhost_net": "False", "nic_type": "paravirtual"})
    start(node, doubles["none"], "plain1", NO_VHOST)
    start(node, doubles["none"], "e1000", {"vhost_net": True, "nic_type": "e1000"})
    start(node, doubles["none"], "nonics", VHOST, nics=())
    missing = tmp_path / "missing"
    service = agent("ganeti_vhost_net", config(node, missing))[SERVICE]
    assert service["state"] == "0", service
    assert service["summary"].startswith(
        "not needed: none of the 3 instances here (e1000, nonics, plain1) and not "
        "the cluster default uses vhost_net; %s is missing" % missing)
    start(node, doubles["none"], "fast1", VHOST)
    service = agent("ganeti_vhost_net", config(node, missing))[SERVICE]
    assert service["state"] == "2"
    assert "instance fast1 (vhost_net=True) needs it" in service["summary"]


def test_a_stale_pid_file_wants_nothing(agent, node, doubles, tmp_path):
    ssconf(node, NO_VHOST)
    proc = start(node, doubles["none"], "gone1", VHOST)
    proc.kill()
    proc.wait()
    service = agent("ganeti_vhost_net", config(node, tmp_path / "missing"))[SERVICE]
    assert service["state"] == "0"
    assert "not needed: no instance here" in service["summary"]


def test_an_unreadable_runtime_is_not_ok(agent, node, doubles, tmp_path):
    ssconf(node, NO_VHOST)
    start(node, doubles["none"], "broken1", VHOST)
    with open(os.path.join(node.kvm_dir, "conf", "broken1.runtime"), "w") as f:
        f.write("{not json")
    service = agent("ganeti_vhost_net", config(node, tmp_path / "missing"))[SERVICE]
    assert service["state"] == "1"
    assert "cannot tell whether it is needed: broken1 unknown" in service["summary"]


def test_not_in_a_cluster_prints_nothing(node, tmp_path):
    from support import run_script
    proc = run_script("ganeti_vhost_net", tmp_path=tmp_path,
                      config_text=config(node, tmp_path / "missing"))
    assert proc.returncode == 0 and proc.stdout == ""
    assert "not in a Ganeti cluster" in proc.stderr


@needs_root
def test_not_root_is_unknown(agent, public_dir):
    from kvm_doubles import Node
    public = Node(os.path.join(public_dir, "node"))
    for d in (public.root, os.path.dirname(public.data_dir), public.data_dir):
        os.chmod(d, 0o755)
    ssconf(public, {"vhost_net": "True"})
    dev = os.path.join(public_dir, "vhost-net")
    os.mknod(dev, 0o600 | CHAR, os.makedev(10, 238))
    with open(os.path.join(public_dir, "ganeti_cmk.cfg"), "w") as f:
        f.write(config(public, dev))
    service = agent("ganeti_vhost_net", user=65534,
                    env={"MK_CONFDIR": public_dir})[SERVICE]
    assert service["state"] == "3"
    assert "permission denied for uid 65534: run the check as root" in service["summary"]


# --- config.data on master candidates ------------------------------------------

def test_config_data_names_instances_to_start_or_fail_over_here(agent, node, doubles,
                                                                 tmp_path):
    ssconf(node, NO_VHOST)
    start(node, doubles["none"], "running1", NO_VHOST)
    config_data(node, [
        ("running1", "n2", None, {"vhost_net": True}, 1),     # modified, runs here
        ("down1", "n2", None, {"vhost_net": True}, 1),        # primary here, down
        ("drbd1", "n1", "n2", {}, 1),                         # OS override, failover
        ("elsewhere1", "n1", None, {"vhost_net": True}, 1),   # local disk: never here
        ("diskless1", "n1", "diskless", {"vhost_net": True}, 1),  # migrates anywhere
        ("nonic1", "n2", None, {"vhost_net": True}, 0),       # no NIC, no vhost
    ], os_hvp={"debian": {"kvm": {"vhost_net": True}}})
    service = agent("ganeti_vhost_net", config(node, tmp_path / "missing"))[SERVICE]
    assert service["state"] == "2", service
    assert ("4 instances diskless1 (vhost_net=True, can migrate here), down1 "
            "(vhost_net=True, primary here), drbd1 (vhost_net=True, "
            "can fail over here), running1 (vhost_net=True from its next start) need "
            "it") in service["summary"]
    assert "elsewhere1" not in service["summary"] and "nonic1" not in service["summary"]
    assert any("config.data read" in d for d in service["details"])


def test_an_offline_instance_needs_nothing_until_it_is_online(agent, node, doubles,
                                                              tmp_path):
    # Ganeti starts no instance marked offline (gnt-instance modify
    # --offline): it needs vhost-net only once it is online again.
    ssconf(node, NO_VHOST)
    config_data(node, [("retired1", "n2", None, {"vhost_net": True}, 1)])
    with open(os.path.join(node.data_dir, "config.data")) as f:
        data = json.load(f)
    data["instances"]["uuid-0"]["admin_state"] = "offline"
    with open(os.path.join(node.data_dir, "config.data"), "w") as f:
        json.dump(data, f)
    service = agent("ganeti_vhost_net", config(node, tmp_path / "missing"))[SERVICE]
    assert service["state"] == "0", service
    assert service["summary"].startswith("not needed: no instance here")
    data["instances"]["uuid-0"]["admin_state"] = "down"
    with open(os.path.join(node.data_dir, "config.data"), "w") as f:
        json.dump(data, f)
    service = agent("ganeti_vhost_net", config(node, tmp_path / "missing"))[SERVICE]
    assert service["state"] == "2", service
    assert "instance retired1 (vhost_net=True, primary here) needs it" in service["summary"]


def test_broken_config_data_is_not_ok(agent, node, tmp_path):
    ssconf(node, NO_VHOST)
    with open(os.path.join(node.data_dir, "config.data"), "w") as f:
        f.write("[]")
    service = agent("ganeti_vhost_net", config(node, tmp_path / "missing"))[SERVICE]
    assert service["state"] == "1"
    assert "cannot tell whether it is needed: config.data unknown" in service["summary"]


def test_long_instance_names_never_cut_the_count_or_the_end():
    # Ganeti names may be 255 characters long: ten of them do not fit.
    names = ["%s-%02d.example.com" % ("x" * 200, i) for i in range(12)]
    r = evaluate(Probe("/dev/vhost-net", instances=names))
    assert r.state == 0 and len(r.summary) <= 960
    assert r.summary.startswith("not needed: none of the 12 instances here (")
    assert r.summary.endswith("more) and not the cluster default uses vhost_net; "
                              "/dev/vhost-net usable")
    r = evaluate(Probe("/dev/vhost-net", instances=names, exists=False))
    assert r.state == 0 and len(r.summary) <= 960
    assert r.summary.endswith("/dev/vhost-net is missing, module vhost_net not "
                              "loaded (no /sys/module/vhost_net)")
