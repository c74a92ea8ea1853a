"""Role detection from ssconf files."""

import pytest

from ganeti_cmk import ganeti


def write_ssconf(d, **values):
    d.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        (d / ("ssconf_" + key)).write_text(value)
    return str(d)


@pytest.fixture
def cluster(tmp_path):
    return write_ssconf(
        tmp_path / "lib", master_node="node1.example.com\n",
        cluster_name="cluster1.example.com\n",
        node_list="node1.example.com\nnode2.example.com\nnode3.example.com\nnode4.example.com\n",
        master_candidates="node1.example.com\nnode2.example.com\n",
        offline_nodes="node4.example.com\n")


@pytest.mark.parametrize("node,role", [
    ("node1.example.com", ganeti.MASTER),
    ("NODE1.example.com.", ganeti.MASTER),
    ("node2.example.com", ganeti.CANDIDATE),
    ("node3.example.com", ganeti.REGULAR),
    ("node4.example.com", ganeti.OFFLINE),
    ("node9.example.com", ganeti.NOT_LISTED),
])
def test_roles(cluster, node, role):
    r = ganeti.node_role(cluster, node)
    assert r.role == role
    assert r.master == "node1.example.com" and r.cluster == "cluster1.example.com"
    assert r.is_master == (role == ganeti.MASTER)


def test_not_in_a_cluster_never_asks_for_the_node_name(tmp_path):
    def no_fqdn_please():
        raise AssertionError("the node name was looked up")
    for data_dir in (tmp_path, tmp_path / "missing"):
        assert ganeti.node_role(str(data_dir), no_fqdn_please).role == ganeti.NOT_IN_CLUSTER


def test_node_name_may_be_a_function(cluster):
    assert ganeti.node_role(cluster, lambda: "Node2.example.com").role == ganeti.CANDIDATE


def test_ssconf_lists(cluster):
    assert ganeti.read_ssconf_list(cluster, "master_candidates") == [
        "node1.example.com", "node2.example.com"]
    assert ganeti.read_ssconf_list(cluster, "instance_list") == []
