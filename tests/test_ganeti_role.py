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
    monkeypatch.setattr(socket, "gethostbyaddr", lambda host: lookups.append(1) or (
        "Node1.Example.COM.", [], ["192.0.2.1"]))
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
    monkeypatch.setattr(socket, "gethostbyaddr", lambda host: ("node1", ["node1.example.com"], []))
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
    monkeypatch.setattr(socket, "gethostbyaddr", lambda host: ("node1", ["node1.example.com"], []))
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


def hanging_resolver(monkeypatch):
    """socket.gethostbyaddr that never answers (until the test ends)."""
    import socket
    import threading
    release = threading.Event()
    monkeypatch.setattr(socket, "gethostbyaddr",
                        lambda host: release.wait(30) and ("late.example.com", [], []))
    return release


def test_fqdn_lookup_that_does_not_answer_in_time_is_cannot_tell(tmp_path, monkeypatch):
    """DNS down: the lookup is given up after its timeout and nothing is
    remembered (not the short host name either)."""
    from ganeti_cmk.localcheck import CannotTell
    release = hanging_resolver(monkeypatch)
    try:
        with pytest.raises(CannotTell) as e:
            ganeti.fqdn(str(tmp_path), timeout=1)
    finally:
        release.set()
    assert str(e.value).startswith("cannot tell this node's name: looking up the FQDN of ")
    assert str(e.value).endswith("did not finish within 1 s (is DNS down?); set "
                                 "[ganeti] node_name to the name Ganeti knows this node by")
    assert not (tmp_path / "fqdn").exists()


def test_fqdn_lookup_stops_before_the_deadline(tmp_path, monkeypatch):
    """With less time left than its own timeout, the lookup gives up before
    the check's deadline: CannotTell, not DeadlineExceeded."""
    from ganeti_cmk import runner
    from ganeti_cmk.localcheck import CannotTell
    release = hanging_resolver(monkeypatch)
    runner.arm_deadline(2)
    try:
        with pytest.raises(CannotTell):
            ganeti.fqdn(str(tmp_path), timeout=60)
    finally:
        runner.arm_deadline(0)
        release.set()


def test_failed_lookup_uses_the_host_name_without_remembering_it(tmp_path, monkeypatch):
    """A resolver that knows no name: the host name, as socket.getfqdn()
    (and so Ganeti) would take it, for this run only; a name looked up
    before, however old, is better."""
    import os
    import socket
    import time

    def unknown(host):
        raise socket.herror(1, "Unknown host")
    monkeypatch.setattr(socket, "gethostbyaddr", unknown)
    assert ganeti.fqdn(str(tmp_path)) == os.uname().nodename.lower()
    assert not (tmp_path / "fqdn").exists()
    (tmp_path / "fqdn").write_text("%s\nnode1.example.com\n" % os.uname().nodename)
    old = time.time() - 10 * ganeti.FQDN_MAX_AGE
    os.utime(str(tmp_path / "fqdn"), (old, old))
    assert ganeti.fqdn(str(tmp_path)) == "node1.example.com"
    release = hanging_resolver(monkeypatch)
    try:
        assert ganeti.fqdn(str(tmp_path), timeout=0.2) == "node1.example.com"
    finally:
        release.set()


HANGING_DNS = r"""
set -e
ip link set lo up
hostname cmk-test-node
mount --bind "$1/resolv.conf" /etc/resolv.conf
mount --bind "$1/hosts" /etc/hosts
"$2" -c 'import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[1], "w").close()
time.sleep(120)' "$1/listening" &
while [ ! -e "$1/listening" ]; do sleep 0.01; done
shift 2
"$@"
status=$?
kill $!
exit $status
"""


def test_hung_dns_is_unknown_for_the_master_service_not_a_vanished_one(tmp_path):
    """A real resolver that never answers (its own network, UTS and mount
    namespaces: a name server on 127.0.0.1 that reads and never replies,
    /etc/hosts without the host name), [ganeti] node_name unset: the
    verify check says it cannot tell this node's name, within its
    deadline, instead of printing nothing (not the master)."""
    import os
    import shutil
    import subprocess
    import sys
    from support import assert_valid_output, check_command
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip")
    ns = tmp_path / "ns"
    ns.mkdir()
    (ns / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    (ns / "hosts").write_text("127.0.0.1 localhost\n")
    data = tmp_path / "lib"
    write_ssconf(data, master_node="cmk-test-node.example.com\n",
                 cluster_name="c.example.com\n")
    etc, var = tmp_path / "etc", tmp_path / "var"
    etc.mkdir()
    (etc / "ganeti_cmk.cfg").write_text(
        "[paths]\nganeti_data_dir = %s\ngnt_cluster = /bin/false\n" % data)
    result = subprocess.run(
        ["unshare", "--net", "--uts", "--mount", "--propagation", "private",
         "sh", "-c", HANGING_DNS, "sh", str(ns), sys.executable]
        + check_command("ganeti_cluster_verify"),
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MK_CONFDIR": str(etc),
             "MK_VARDIR": str(var)},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    services = assert_valid_output(result.stdout)[None]
    assert services["Ganeti verify"]["state"] == "3", (result.stdout, result.stderr)
    assert services["Ganeti verify"]["summary"].startswith(
        "cannot tell this node's name: looking up the FQDN of cmk-test-node did not "
        "finish within 5 s (is DNS down?)")
    assert not (var / "ganeti_cmk" / "fqdn").exists()
