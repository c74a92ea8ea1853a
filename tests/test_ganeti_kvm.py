"""The KVM run dir readers in ganeti.py: pid files, runtime files, -name."""

import json
import os

import pytest

from support import as_nobody, needs_root
from ganeti_cmk import ganeti


@pytest.fixture
def run_dir(tmp_path):
    for d in ("pid", "conf"):
        (tmp_path / "kvm-hypervisor" / d).mkdir(parents=True)
    return tmp_path


def write(run_dir, sub, name, content):
    path = run_dir / "kvm-hypervisor" / sub / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_pid_files(run_dir):
    write(run_dir, "pid", "web1", "1234\n")
    write(run_dir, "pid", "db3", "  99 ")
    write(run_dir, "pid", "empty", "")
    write(run_dir, "pid", "garbage", "12ab")
    write(run_dir, "pid", "zero", "0\n")
    write(run_dir, "pid", "negative", "-5\n")
    assert ganeti.kvm_pid_files(str(run_dir)) == [
        ("db3", 99), ("empty", None), ("garbage", None), ("negative", None),
        ("web1", 1234), ("zero", None)]


def test_pid_files_with_undecodable_name(run_dir):
    os.close(os.open(os.path.join(os.fsencode(str(run_dir)), b"kvm-hypervisor",
                                  b"pid", b"bad\xffname"), os.O_CREAT | os.O_WRONLY))
    assert ganeti.kvm_pid_files(str(run_dir)) == [("bad\ufffdname", None)]


def test_pid_files_that_are_not_plain_files_hold_no_pid(run_dir, tmp_path):
    """A FIFO would block the read, a link could point anywhere (Ganeti
    writes plain files): neither is read, neither is a pid."""
    from test_statefile import fails_instead_of_hanging
    pid_dir = run_dir / "kvm-hypervisor" / "pid"
    os.mkfifo(str(pid_dir / "fifo"))
    (tmp_path / "elsewhere").write_text("%d\n" % os.getpid())
    os.symlink(str(tmp_path / "elsewhere"), str(pid_dir / "link"))
    os.mkdir(str(pid_dir / "dir"))
    write(run_dir, "pid", "long", "1" * 65)
    write(run_dir, "pid", "web1", "1234\n")
    with fails_instead_of_hanging():
        assert ganeti.kvm_pid_files(str(run_dir)) == [
            ("dir", None), ("fifo", None), ("link", None), ("long", None),
            ("web1", 1234)]


def test_no_kvm_run_dir_means_no_instances(tmp_path):
    assert ganeti.kvm_pid_files(str(tmp_path / "missing")) == []
    assert ganeti.kvm_pid_files(str(tmp_path)) == []


def test_runtime_kvm_path_prefers_hvparams(run_dir):
    write(run_dir, "conf", "web1.runtime", json.dumps(
        [["/usr/bin/kvm", "-name", "web1", "-m", 1024], [],
         {"kvm_path": "/usr/local/bin/kvm-wrapper", "acpi": True}, []]))
    assert ganeti.kvm_runtime_path(str(run_dir), "web1") == "/usr/local/bin/kvm-wrapper"


def test_runtime_kvm_path_falls_back_to_the_command(run_dir):
    # 2.7-2.9 had three elements; hvparams without kvm_path
    write(run_dir, "conf", "old.runtime", json.dumps([["/usr/bin/kvm", "-name", "old"],
                                                      [], {}]))
    assert ganeti.kvm_runtime_path(str(run_dir), "old") == "/usr/bin/kvm"


@pytest.mark.parametrize("content", ["", "{", "{}", "[]", "[[]]", '[[1], [], {"kvm_path": 5}]',
                                     '"text"', b"\xff\xfe",
                                     '[["kvm"], [], {"kvm_path": "k\\nvm"}]'])
def test_runtime_in_another_shape_gives_none(run_dir, content):
    write(run_dir, "conf", "x.runtime", content)
    assert ganeti.kvm_runtime_path(str(run_dir), "x") is None


def planted_runtime(run_dir, tmp_path, kind):
    path = str(run_dir / "kvm-hypervisor" / "conf" / "x.runtime")
    valid = json.dumps([["/usr/bin/kvm"], [], {"kvm_path": "/usr/bin/kvm"}, []])
    if kind == "directory":
        os.mkdir(path)
    elif kind == "symlink loop":
        os.symlink(path, path)
    elif kind == "symlink to a valid file":
        (tmp_path / "valid").write_text(valid)
        os.symlink(str(tmp_path / "valid"), path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "deep JSON":
        with open(path, "w") as f:
            f.write("[" * 200000)
    elif kind == "too long":
        with open(path, "w") as f:
            f.write(valid + " " * ganeti.RUNTIME_MAX)


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "symlink to a valid file",
                                  "fifo", "deep JSON", "too long"])
def test_runtime_that_cannot_be_read_gives_none(run_dir, tmp_path, kind):
    """Whatever is in the way, the instance's kvm_path is just unknown
    (the cluster's is used), never an error for the whole check."""
    from test_statefile import fails_instead_of_hanging
    planted_runtime(run_dir, tmp_path, kind)
    with fails_instead_of_hanging():
        assert ganeti.kvm_runtime_path(str(run_dir), "x") is None


@needs_root
def test_unreadable_runtime_raises_permission_error(run_dir):
    """Not an unknown kvm_path: the caller says what it may not read."""
    write(run_dir, "conf", "x.runtime", "[]")
    os.chmod(str(run_dir / "kvm-hypervisor" / "conf" / "x.runtime"), 0o600)
    assert as_nobody(lambda: ganeti.kvm_runtime_path(str(run_dir), "x")) == \
        "PermissionError"


def test_missing_runtime_gives_none(run_dir):
    assert ganeti.kvm_runtime_path(str(run_dir), "nothere") is None


def test_cluster_kvm_path(tmp_path):
    assert ganeti.cluster_kvm_path(str(tmp_path)) is None
    (tmp_path / "ssconf_hvparams_kvm").write_text(
        "acpi=True\nkvm_path=/usr/bin/kvm\nkvm_flag=\n")
    assert ganeti.cluster_kvm_path(str(tmp_path)) == "/usr/bin/kvm"
    (tmp_path / "ssconf_hvparams_kvm").write_text("kvm_path=\n")
    assert ganeti.cluster_kvm_path(str(tmp_path)) is None


@pytest.mark.parametrize("argv, name", [
    (["/usr/bin/kvm", "-name", "web1", "-m", "1024"], "web1"),
    (["kvm", "-name", "web1,debug-threads=on"], "web1"),
    (["qemu", "-name", "guest=vm7,debug-threads=on"], "vm7"),
    (["qemu", "--name", "two-dashes"], "two-dashes"),
    (["qemu", "-name", "first", "-name", "last"], "last"),
    (["qemu", "-m", "1024"], None),
    (["qemu", "-name"], None),
    (["-name"], None),
    ([], None),
])
def test_qemu_name(argv, name):
    assert ganeti.qemu_name(argv) == name


def test_cluster_hvparams_reads_ssconf_values_as_ganeti_writes_them(tmp_path):
    (tmp_path / "ssconf_hvparams_kvm").write_text(
        "kvm_path=/usr/bin/kvm\nvhost_net=True\nuse_chroot=False\nmem_path=\n"
        "cpu_cores=0\nmigration_bandwidth=32.5\ncpu_mask=all\n"
        "kvm_extra=-device virtio-rng\nvnc_bind_address=\n")
    params = ganeti.cluster_hvparams(str(tmp_path))
    assert params["vhost_net"] is True and params["use_chroot"] is False
    assert params["cpu_cores"] == 0 and params["migration_bandwidth"] == 32.5
    assert params["mem_path"] == "" and params["kvm_extra"] == "-device virtio-rng"
    assert params["cpu_mask"] == "all" and params["kvm_path"] == "/usr/bin/kvm"
    assert ganeti.cluster_hvparams(str(tmp_path / "none")) == {}


@pytest.mark.parametrize("text", ["not json", "{}", "[1, 2, 3]", '[[], [], []' ,
                                  "[" * 100000 + "]" * 100000])
def test_read_kvm_runtime_says_when_a_file_is_not_a_runtime(tmp_path, text):
    conf = tmp_path / "kvm-hypervisor" / "conf"
    conf.mkdir(parents=True)
    (conf / "x.runtime").write_text(text)
    with pytest.raises(ValueError):
        ganeti.read_kvm_runtime(str(tmp_path), "x")
    with pytest.raises(FileNotFoundError):
        ganeti.read_kvm_runtime(str(tmp_path), "y")
    (conf / "x.runtime").write_text('[["/usr/bin/kvm", "-m", "128"], [], {"vhost_net": true}, []]')
    runtime = ganeti.read_kvm_runtime(str(tmp_path), "x")
    assert runtime.cmd[0] == "/usr/bin/kvm" and runtime.hvparams == {"vhost_net": True}


# --- config.data (master candidates) ------------------------------------------

def write_config(tmp_path, config):
    (tmp_path / "config.data").write_text(json.dumps(config))
    return str(tmp_path)


CLUSTER = {"hvparams": {"kvm": {"vhost_net": False, "mem_path": "", "kernel_path": ""}},
           "os_hvp": {"debian+buster": {"kvm": {"vhost_net": True}}},
           "beparams": {"default": {"maxmem": 128, "vcpus": 1}}}


def test_configured_instances_3_0_layout(tmp_path):
    data_dir = write_config(tmp_path, {
        "cluster": CLUSTER,
        "nodes": {"u-n1": {"name": "node1.example.com"}, "u-n2": {"name": "Node2.Example.com."}},
        "disks": {"d1": {"dev_type": "drbd", "logical_id": ["u-n1", "u-n2", 1, 0, 0, "s"],
                         "children": [{"dev_type": "plain", "logical_id": ["xenvg", "x"]}]},
                  "d2": {"dev_type": "plain", "logical_id": ["xenvg", "y"]}},
        "instances": {
            "i1": {"name": "web1", "primary_node": "u-n1", "os": "debian+buster",
                   "hypervisor": "kvm", "hvparams": {"mem_path": "/hp"},
                   "beparams": {"maxmem": 1024}, "nics": [{}, {}], "disks": ["d1"]},
            "i2": {"name": "db1", "primary_node": "u-n2", "os": "debian+bullseye",
                   "hypervisor": "kvm", "hvparams": {}, "beparams": {}, "nics": [],
                   "disks": ["d2"]},
            "i3": {"name": "far1", "primary_node": "u-n1", "hypervisor": "kvm",
                   "hvparams": {}, "beparams": {}, "disks": ["d2"]},
            "i4": {"name": "xen1", "primary_node": "u-n2", "hypervisor": "xen-pvm",
                   "hvparams": {}, "beparams": {}, "disks": []}}})
    found = ganeti.configured_kvm_instances(data_dir, "node2.example.com")
    assert [(i.name, i.primary, i.nics) for i in found] == [("db1", True, 0),
                                                            ("web1", False, 2)]
    web1 = found[1]
    # cluster, then the OS's, then the instance's own, as Ganeti fills them
    assert web1.hvparams == {"vhost_net": True, "mem_path": "/hp", "kernel_path": ""}
    assert web1.beparams == {"maxmem": 1024, "vcpus": 1}
    assert found[0].hvparams["vhost_net"] is False and found[0].beparams["maxmem"] == 128


def test_configured_instances_with_embedded_disks_and_node_names(tmp_path):
    # before 2.10 nodes were named directly, disks embedded in the instance
    data_dir = write_config(tmp_path, {"cluster": CLUSTER, "nodes": {}, "instances": {
        "web1": {"name": "web1", "primary_node": "node1", "disks": [
            {"dev_type": "drbd8", "logical_id": ["node1", "node2", 1, 0, 0, "s"]}]}}})
    assert [i.name for i in ganeti.configured_kvm_instances(data_dir, "node2")] == ["web1"]
    assert ganeti.configured_kvm_instances(data_dir, "node3") == []


def test_instances_that_can_migrate_to_any_node_of_the_group(tmp_path):
    # Diskless instances and those whose disks are all on storage no node
    # holds (rbd, ext, sharedfile, gluster, blockdev) migrate or fail over to
    # any node (gnt-instance migrate -n, the iallocator of their group):
    # Ganeti's DTS_EXT_MIRROR.  Local disks (plain, file) never move.
    data_dir = write_config(tmp_path, {
        "cluster": CLUSTER,
        "nodes": {"u-n1": {"name": "node1", "group": "g1"},
                  "u-n2": {"name": "node2", "group": "g1"},
                  "u-n3": {"name": "node3", "group": "g2"}},
        "disks": {"r1": {"dev_type": "rbd", "logical_id": ["rbd", "x"]},
                  "s1": {"dev_type": "sharedfile", "logical_id": ["loop", "/s/x"]},
                  "p1": {"dev_type": "plain", "logical_id": ["xenvg", "y"]}},
        "instances": {
            "i1": {"name": "diskless1", "primary_node": "u-n1", "disks": []},
            "i2": {"name": "ceph1", "primary_node": "u-n1", "disks": ["r1", "s1"]},
            "i3": {"name": "mixed1", "primary_node": "u-n1", "disks": ["r1", "p1"]},
            "i4": {"name": "plain1", "primary_node": "u-n1", "disks": ["p1"]},
            "i5": {"name": "othergroup1", "primary_node": "u-n3", "disks": ["r1"]},
            "i6": {"name": "old1", "primary_node": "u-n1", "disk_template": "rbd",
                   "disks": [{"dev_type": "rbd", "logical_id": ["rbd", "z"]}]}}})
    found = ganeti.configured_kvm_instances(data_dir, "node2")
    assert [(i.name, i.primary, i.movable) for i in found] == [
        ("ceph1", False, True), ("diskless1", False, True), ("old1", False, True)]
    assert [i.name for i in ganeti.configured_kvm_instances(data_dir, "node1")] == [
        "ceph1", "diskless1", "mixed1", "old1", "plain1"]


def test_no_config_data_means_not_a_candidate(tmp_path):
    assert ganeti.configured_kvm_instances(str(tmp_path), "node1") is None


@pytest.mark.parametrize("text", ["[]", "{}", '{"instances": []}', "not json",
                                  "[" * 100000])
def test_config_data_that_is_not_a_configuration(tmp_path, text):
    (tmp_path / "config.data").write_text(text)
    with pytest.raises(ValueError):
        ganeti.configured_kvm_instances(str(tmp_path), "node1")


def test_config_data_link_is_refused(tmp_path):
    os.symlink("/etc/passwd", str(tmp_path / "config.data"))
    with pytest.raises(OSError):
        ganeti.configured_kvm_instances(str(tmp_path), "node1")
