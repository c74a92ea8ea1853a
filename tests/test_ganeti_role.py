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


def test_fqdn_is_looked_up_once_an_hour_per_host_name(tmp_path, monkeypatch):
    import os
    import socket
    lookups = []
    monkeypatch.setattr(socket, "getfqdn", lambda: lookups.append(1) or "Node1.Example.COM.")
    state = str(tmp_path / "state")
    assert ganeti.fqdn(state) == "node1.example.com" and len(lookups) == 1
    assert ganeti.fqdn(state) == "node1.example.com" and len(lookups) == 1
    with open(os.path.join(state, "fqdn")) as f:
        assert f.read() == "%s\nnode1.example.com\n" % os.uname().nodename
    ganeti.fqdn(state, now=__import__("time").time() + 3601)  # an hour later
    assert len(lookups) == 2
    with open(os.path.join(state, "fqdn"), "w") as f:
        f.write("another-host\nother.example.com\n")  # renamed machine
    assert ganeti.fqdn(state) == "node1.example.com" and len(lookups) == 3


def test_fqdn_without_a_writable_state_dir(tmp_path, monkeypatch):
    import socket
    monkeypatch.setattr(socket, "getfqdn", lambda: "node1.example.com")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert ganeti.fqdn(str(blocker / "state")) == "node1.example.com"


@pytest.mark.parametrize("planted", ["fifo", "symlink", "too long"])
def test_fqdn_file_in_the_way_is_not_read(tmp_path, monkeypatch, planted):
    """A FIFO would block, a link could point anywhere: looked up instead,
    and the file replaced."""
    import os
    import socket
    from test_statefile import fails_instead_of_hanging
    monkeypatch.setattr(socket, "getfqdn", lambda: "node1.example.com")
    path = tmp_path / "fqdn"
    if planted == "fifo":
        os.mkfifo(str(path))
    elif planted == "symlink":
        (tmp_path / "elsewhere").write_text("%s\nplanted.example.com\n" % os.uname().nodename)
        os.symlink(str(tmp_path / "elsewhere"), str(path))
    else:
        path.write_text("%s\n%s\n" % (os.uname().nodename, "x" * ganeti.FQDN_FILE_MAX))
    with fails_instead_of_hanging():
        assert ganeti.fqdn(str(tmp_path)) == "node1.example.com"
    assert not path.is_symlink() and path.read_text().endswith("\nnode1.example.com\n")


def test_ssconf_through_a_link_or_fifo_is_refused_not_waited_for(cluster, tmp_path):
    import os
    link = tmp_path / "lib" / "ssconf_cluster_name"
    link.unlink()
    os.mkfifo(str(link))  # reading it would block until a writer comes
    with pytest.raises(OSError):
        ganeti.read_ssconf(cluster, "cluster_name")
    link.unlink()
    link.symlink_to(tmp_path / "lib" / "ssconf_master_node")
    with pytest.raises(OSError):
        ganeti.read_ssconf(cluster, "cluster_name")
