"""Hugepages: mem_path users (cluster default, running instances) against
the mounts and the hugepage pools; recorded /proc and /sys trees, real
stand-in instances, and on this machine real hugepages in a real hugetlbfs
mounted in a private mount namespace."""

import json
import os
import shutil
import subprocess

import pytest

from support import SYSTEM_PYTHON, assert_valid_output, check_command, needs_root
from ganeti_cmk.checks.hugepages import (CLUSTER_DEFAULT, Probe, Use, evaluate,
                                         memory_mib, mount_of, page_kb)
from ganeti_cmk.localcheck import CRIT, WARN, NotApplicable

SERVICE = "Hugepages"
MEMINFO = ("MemTotal:       24000000 kB\nHugePages_Total:     512\n"
           "HugePages_Free:      300\nHugePages_Rsvd:       10\n"
           "HugePages_Surp:        0\nHugepagesize:       2048 kB\n")
MOUNTS = ("/dev/vda1 / ext4 rw,relatime 0 0\n"
          "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
          "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"
          "none /mnt/huge\\0401G hugetlbfs rw,relatime,pagesize=1024M 0 0\n")


class Tree:
    """A node in tmp: fake /proc (meminfo, self/mounts, the real /proc/PID
    of the instances it starts), /sys pools, Ganeti
    dirs (the kvm_doubles Node) and real directories for the mem_paths."""

    def __init__(self, tmp_path, node, pools=None, mounts=MOUNTS):
        self.node = node
        self.proc = tmp_path / "proc"
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "meminfo").write_text(MEMINFO)
        self.root = tmp_path / "root"
        self.sys = tmp_path / "sys"
        mounts = mounts.replace(" /dev/hugepages ", " %s/dev/hugepages " % self.root)
        mounts = mounts.replace(" /mnt/", " %s/mnt/" % self.root)
        (self.proc / "self" / "mounts").write_text(mounts)
        for d in ("dev/hugepages", "mnt/huge 1G", "srv"):
            (self.root / d).mkdir(parents=True)
        for kb, values in (pools or {2048: (512, 300, 10, 0)}).items():
            d = self.sys / "kernel" / "mm" / "hugepages" / ("hugepages-%dkB" % kb)
            d.mkdir(parents=True)
            for name, value in zip(("nr_hugepages", "free_hugepages",
                                    "resv_hugepages", "surplus_hugepages"), values):
                (d / name).write_text("%d\n" % value)

    def path(self, sub):
        return "%s/%s" % (self.root, sub)

    def cluster(self, **hvparams):
        with open(os.path.join(self.node.data_dir, "ssconf_master_node"), "w") as f:
            f.write("node1.example.com\n")
        with open(os.path.join(self.node.data_dir, "ssconf_hvparams_kvm"), "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in hvparams.items()))

    def start(self, double, instance, mem_path, memory=128):
        proc = self.node.start(instance, kvm_path=double, runtime=False)
        os.symlink("/proc/%d" % proc.pid, str(self.proc / str(proc.pid)))
        cmd = [double, "-name", instance, "-m", memory, "-smp", 1]
        with open(os.path.join(self.node.kvm_dir, "conf", instance + ".runtime"), "w") as f:
            json.dump([cmd, [], {"mem_path": mem_path, "kvm_path": double}, []], f)
        return proc

    def config(self, **section):
        return ("[paths]\nproc = %s\nsys = %s\nganeti_run_dir = %s\n"
                "ganeti_data_dir = %s\n[ganeti]\nnode_name = node2.example.com\n"
                "[hugepages]\n%s\n" % (
                    self.proc, self.sys, self.node.run_dir, self.node.data_dir,
                    "\n".join("%s = %s" % kv for kv in section.items())))


@pytest.fixture
def tree(tmp_path, node):
    return Tree(tmp_path, node)


# --- parsers ------------------------------------------------------------------

@pytest.mark.parametrize("cmd, mib", [
    (["kvm", "-m", 1024], 1024), (["kvm", "-m", "512"], 512),
    (["kvm", "-m", "size=2048,slots=4,maxmem=8G"], 2048), (["kvm", "-m", "2G"], 2048),
    (["kvm", "-m", "x"], None), (["kvm"], None), (["kvm", "-m"], None),
    (["kvm", "-m", True], None), (["kvm", "-m", "1", "-m", "64"], 64)])
def test_memory_from_the_runtime_command(cmd, mib):
    assert memory_mib(cmd) == mib


@pytest.mark.parametrize("text, kb", [("2M", 2048), ("1G", 1048576), ("1024M", 1048576),
                                      ("64k", 64), ("2097152", 2048), ("big", None)])
def test_page_size_option(text, kb):
    assert page_kb(text) == kb


def test_mount_of_takes_the_longest_and_the_last():
    mounts = [("/", "ext4", {}), ("/dev", "devtmpfs", {}),
              ("/dev/hugepages", "tmpfs", {}), ("/dev/hugepages", "hugetlbfs", {})]
    assert mount_of("/dev/hugepages/vm", mounts)[1] == "hugetlbfs"
    assert mount_of("/dev/hugepagesx", mounts)[0] == "/dev"
    assert mount_of("/srv", mounts)[0] == "/"


# --- evaluate -------------------------------------------------------------------

def probe_with(uses, memory=None, pools=None, **fields):
    fields.setdefault("instances", sorted(memory or {}))
    p = Probe(uses=uses, memory=memory or {},
              pools=pools if pools is not None else {2048: {
                  "nr_hugepages": 512, "free_hugepages": 300,
                  "resv_hugepages": 10, "surplus_hugepages": 0}},
              **fields)
    return p


def test_covered_is_ok_with_numbers():
    p = probe_with([Use("/dev/hugepages", ["a", "b"])], {"a": 512, "b": 256})
    r = evaluate(p, "largest", CRIT)
    assert r.state == 0
    assert r.summary == ("mem_path /dev/hugepages is a hugetlbfs (2 MiB hugepages, "
                         "300 of 512 free); they cover the largest instance using it "
                         "(a, 512 MiB) (256 pages)")
    names = [m.name for m in r.metrics]
    assert names == ["hugepages_total", "hugepages_free", "hugepages_reserved",
                     "hugepages_surplus", "hugepages_needed"]


def test_sum_reserve_is_short():
    p = probe_with([Use("/dev/hugepages", ["a", "b"])], {"a": 512, "b": 256})
    r = evaluate(p, "sum", CRIT)
    assert r.state == 2
    assert r.summary == (
        "290 2 MiB hugepages available (300 free, 10 reserved) do not cover the 2 "
        "instances using it (a, b; 768 MiB), 384 pages, should it move or fail over "
        "here: add 94 (echo 606 > /sys/kernel/mm/hugepages/hugepages-2048kB/"
        "nr_hugepages)")
    assert evaluate(p, "sum", WARN).state == 1


def test_many_instances_keep_count_and_remedy():
    names = ["instance-%03d.example.com" % i for i in range(300)]
    p = probe_with([Use("/dev/hugepages", names)], {n: 1024 for n in names})
    r = evaluate(p, "sum", CRIT)
    assert r.state == 2 and len(r.summary) <= 960
    assert "the 300 instances using it (" in r.summary and "echo " in r.summary


def test_not_a_hugetlbfs_is_crit():
    p = probe_with([Use("/srv/vm", [CLUSTER_DEFAULT], fstype="ext4", mount_point="/")])
    r = evaluate(p, "largest", WARN)
    assert r.state == 2
    assert r.summary == ("mem_path /srv/vm (used by the cluster default) is on ext4 "
                         "(/), not a hugetlbfs: guest memory would not come from "
                         "hugepages; mount a hugetlbfs there")
    p = probe_with([Use("/gone", ["a"], exists=False, fstype=None)], {"a": 128})
    assert "mem_path /gone (used by a) does not exist" in evaluate(p, "sum", CRIT).summary


def test_cluster_default_only_checks_the_mount():
    r = evaluate(probe_with([Use("/dev/hugepages", [CLUSTER_DEFAULT])]), "largest", CRIT)
    assert r.state == 0
    assert r.summary.endswith("no instance using it runs here to size a reserve")


def test_unknown_memory_or_hvparams_is_not_ok():
    p = probe_with([Use("/dev/hugepages", ["a"])], {"a": None})
    r = evaluate(p, "largest", CRIT)
    assert r.state == 1 and r.summary.startswith("cannot tell what a needs")
    p = probe_with([], unknown={"b": "it has no runtime file"}, instances=["b"])
    assert evaluate(p, "largest", CRIT).state == 1


def test_not_used():
    r = evaluate(probe_with([], instances=["a", "b"]), "largest", CRIT)
    assert r.state == 0
    assert r.summary == ("not used: none of the 2 instances here (a, b) and not the "
                         "cluster default uses mem_path")
    with pytest.raises(NotApplicable):
        evaluate(probe_with([], in_cluster=False), "largest", CRIT)


# --- end to end on recorded trees and stand-in instances -------------------------

def test_not_used_end_to_end(agent, tree):
    tree.cluster(kvm_path="/usr/bin/kvm", mem_path="")
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "0"
    assert service["summary"] == ("not used: no instance here and not the cluster "
                                  "default uses mem_path")
    assert service["metrics"]["hugepages_total"] == 512


def test_running_instances_size_the_reserve(agent, tree, doubles):
    tree.cluster(mem_path=tree.path("dev/hugepages"))
    tree.start(doubles["none"], "big1", tree.path("dev/hugepages"), 512)
    tree.start(doubles["none"], "small1", tree.path("dev/hugepages"), "128")
    tree.start(doubles["none"], "plain1", "")
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "0", service
    assert "(big1, 512 MiB) (256 pages)" in service["summary"]
    assert service["metrics"]["hugepages_needed"] == 256
    service = agent("ganeti_hugepages", tree.config(reserve="sum",
                                                    short_state="warn"))[SERVICE]
    assert service["state"] == "1"
    assert "do not cover the 2 instances using it (big1, small1; 640 MiB), 320 pages" \
        in service["summary"]


def test_gigabyte_pages_from_the_mount_option(agent, tmp_path, node, doubles):
    tree = Tree(tmp_path, node, pools={2048: (0, 0, 0, 0), 1048576: (4, 1, 0, 0)})
    tree.cluster()
    tree.start(doubles["none"], "huge1", tree.path("mnt/huge 1G"), 2048)
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "2"
    assert "1 1 GiB hugepages available (1 free, 0 reserved) do not cover the " \
        "largest instance using it (huge1, 2048 MiB), 2 pages" in service["summary"]
    assert service["metrics"]["hugepages_1048576kb_free"] == 1


def test_config_data_adds_instances_that_can_fail_over_here(agent, tree, doubles):
    tree.cluster()
    tree.start(doubles["none"], "small1", tree.path("dev/hugepages"), 128)
    hp = tree.path("dev/hugepages")
    config = {
        "cluster": {"hvparams": {"kvm": {"mem_path": ""}}, "os_hvp": {},
                    "beparams": {"default": {"maxmem": 128}}},
        "nodes": {"n1": {"name": "node1.example.com"}, "n2": {"name": "node2.example.com"}},
        "disks": {"d1": {"dev_type": "drbd", "logical_id": ["n1", "n2", 11000, 0, 0, "s"]},
                  "p1": {"dev_type": "plain", "logical_id": ["xenvg", "other1"]}},
        "instances": {
            "u1": {"name": "big1", "primary_node": "n1", "hypervisor": "kvm",
                   "hvparams": {"mem_path": hp}, "beparams": {"maxmem": 2048},
                   "disks": ["d1"], "nics": []},
            "u2": {"name": "other1", "primary_node": "n1", "hypervisor": "kvm",
                   "hvparams": {"mem_path": hp}, "beparams": {"maxmem": 8192},
                   "disks": ["p1"], "nics": []},
            "u4": {"name": "roam1", "primary_node": "n1", "hypervisor": "kvm",
                   "hvparams": {"mem_path": hp}, "beparams": {"maxmem": 1536},
                   "disks": [], "nics": []},
            "u3": {"name": "small1", "primary_node": "n2", "hypervisor": "kvm",
                   "hvparams": {"mem_path": hp}, "beparams": {}, "disks": [], "nics": []}}}
    with open(os.path.join(tree.node.data_dir, "config.data"), "w") as f:
        json.dump(config, f)
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "2", service
    assert "290 2 MiB hugepages available (300 free, 10 reserved) do not cover the " \
        "largest instance using it (big1, 2048 MiB), 1024 pages" in service["summary"]
    assert "big1 (from config.data, can fail over here)" in service["details"]
    # diskless: migrates to any node; other1's plain disk keeps it on node1
    assert "roam1 (from config.data, can migrate here)" in service["details"]
    assert "other1" not in " ".join(service["details"])


def test_mem_path_not_mounted_end_to_end(agent, tree, doubles):
    tree.cluster(mem_path=tree.path("srv"))
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "2"
    assert "mem_path %s (used by the cluster default) is on ext4 (/)" % tree.path("srv") \
        in service["summary"]


def test_not_in_a_cluster_prints_nothing(tmp_path, tree):
    from support import run_script
    proc = run_script("ganeti_hugepages", tmp_path=tmp_path, config_text=tree.config())
    assert proc.returncode == 0 and proc.stdout == ""


# --- real hugepages and a real hugetlbfs --------------------------------------------

POOL_2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"


@pytest.fixture
def real_hugepages():
    """16 more 2 MiB hugepages than the machine had; its count back afterwards."""
    if not os.path.exists(POOL_2M) or not shutil.which("unshare"):
        pytest.skip("no 2 MiB hugepage pool or no unshare here")
    with open(POOL_2M) as f:
        before = int(f.read())
    try:
        with open(POOL_2M, "w") as f:
            f.write(str(before + 16))
        with open(POOL_2M) as f:
            if int(f.read()) < before + 16:
                pytest.skip("the kernel did not give 16 hugepages")
        yield before
    finally:
        with open(POOL_2M, "w") as f:
            f.write(str(before))


@needs_root
def test_real_hugetlbfs_in_a_private_mount_namespace(tmp_path, node, doubles, real_hugepages):
    mount = tmp_path / "hugepages"
    mount.mkdir()
    (tmp_path / "lib").mkdir()
    with open(os.path.join(node.data_dir, "ssconf_master_node"), "w") as f:
        f.write("node1.example.com\n")
    tree = Tree(tmp_path / "unused", node)
    tree.start(doubles["none"], "huge1", str(mount), 16)        # 8 pages
    cfg = tmp_path / "ganeti_cmk.cfg"
    cfg.write_text("[paths]\nganeti_run_dir = %s\nganeti_data_dir = %s\n" % (
        node.run_dir, node.data_dir))

    def check(mounted):
        script = ('mount -t hugetlbfs -o pagesize=2M none "$1" && shift; exec "$@"'
                  if mounted else 'shift; exec "$@"')
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
             "sh", str(mount)] + check_command("ganeti_hugepages", SYSTEM_PYTHON)
            + ["--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return assert_valid_output(proc.stdout)[None][SERVICE]

    service = check(mounted=True)
    assert service["state"] == "0", service
    assert "mem_path %s is a hugetlbfs (2 MiB hugepages" % mount in service["summary"]
    assert service["metrics"]["hugepages_total"] >= real_hugepages + 16
    assert service["metrics"]["hugepages_needed"] == 8
    service = check(mounted=False)
    assert service["state"] == "2"
    assert "is on " in service["summary"] and "not a hugetlbfs" in service["summary"]
    tree.start(doubles["none"], "huge2", str(mount), 2048 * 64)  # more than there is
    service = check(mounted=True)
    assert service["state"] == "2"
    assert "do not cover the largest instance using it (huge2, 131072 MiB), 65536 pages" \
        in service["summary"]


def test_unreadable_mounts_are_unknown_not_a_missing_hugetlbfs(agent, tree, doubles):
    # Without the mount table nothing says the mem_path is not a hugetlbfs:
    # that is "cannot read", never a CRIT naming "no file system".
    tree.cluster(mem_path=tree.path("dev/hugepages"))
    os.unlink(str(tree.proc / "self" / "mounts"))
    (tree.proc / "self" / "mounts").mkdir()
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "3", service
    assert service["summary"].startswith("cannot read: %s/self/mounts" % tree.proc)
    assert "no file system" not in service["summary"]


def test_long_instance_names_never_cut_the_count_or_the_end():
    # Ganeti names may be 255 characters long: ten of them do not fit the
    # summary, which must still end with what it says and how many more.
    names = ["%s-%02d.example.com" % ("x" * 200, i) for i in range(12)]
    p = probe_with([Use("/dev/hugepages", names)], {n: None for n in names})
    r = evaluate(p, "largest", CRIT)
    assert r.state == 1 and len(r.summary) <= 960
    assert r.summary.endswith("more need: hvparams or memory unknown (see details)")
    r = evaluate(probe_with([], instances=names), "largest", CRIT)
    assert r.state == 0 and len(r.summary) <= 960
    assert r.summary.endswith("more) and not the cluster default uses mem_path")
    assert r.summary.startswith("not used: none of the 12 instances here (")
    many = [Use("/dev/hugepages", names)]
    r = evaluate(probe_with(many, {n: 2 for n in names}), "sum", CRIT)
    assert r.state == 0 and len(r.summary) <= 960
    assert r.summary.endswith("more; 24 MiB) (12 pages)")


def test_an_unreadable_pool_is_unknown_not_short(agent, tree, doubles):
    # A pool file that cannot be read says nothing about free pages: no
    # CRIT "0 available", but UNKNOWN naming the file.
    tree.cluster()
    tree.start(doubles["none"], "big1", tree.path("dev/hugepages"), 512)
    free = tree.sys / "kernel" / "mm" / "hugepages" / "hugepages-2048kB" / "free_hugepages"
    free.unlink()
    os.symlink("/etc/passwd", str(free))
    service = agent("ganeti_hugepages", tree.config())[SERVICE]
    assert service["state"] == "3", service
    assert service["summary"].startswith("cannot read: %s" % free), service["summary"]


def test_sum_does_not_add_up_instances_that_could_migrate_to_any_node():
    # On shared storage every instance of the group may come to any node,
    # but not all to the same one: `sum` adds those here and their DRBD
    # failovers; the others only need the largest of them to fit.
    movers = {"ceph%d" % i: 512 for i in range(3)}
    p = probe_with([Use("/dev/hugepages", ["run1"] + sorted(movers))],
                   dict(movers, run1=128), instances=["run1"],
                   coming={n: "can migrate here" for n in movers})
    r = evaluate(p, "sum", CRIT)
    assert r.state == 0, r.summary
    assert "they cover the largest instance using it (ceph2, 512 MiB) (256 pages)" \
        in r.summary
    p.coming["run1"] = "can fail over here"
    p.memory["run1"] = 560
    r = evaluate(p, "sum", CRIT)
    assert r.state == 0 and "the 1 instance using it (run1; 560 MiB) (280 pages)" \
        in r.summary, r.summary
