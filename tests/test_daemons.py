"""The "Ganeti daemons" check against real processes and ssconf trees.

The daemons are copies of /bin/sleep named like Ganeti's (so /proc shows
the comm a real daemon has), with pid files in a temp run dir as
daemon-util writes them; ssconf files describe a four-node cluster of
which the test picks the node the check runs on (`[ganeti] node_name`).
ganeti-mond's HTTP side is a real socket server on 127.0.0.1.
"""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from localcheck_grammar import labels_of, parse_output
from support import needs_root, run_script
from ganeti_cmk import ganeti
from ganeti_cmk.checks import daemons
from ganeti_cmk.localcheck import render_local, Result, OK

SERVICE = "Ganeti daemons"
CLUSTER = "cluster1.example.com"
NODES = ["node1.example.com", "node2.example.com", "node3.example.com",
         "node4.example.com"]
ALL = ["ganeti-noded", "ganeti-confd", "ganeti-wconfd", "ganeti-rapi", "ganeti-luxid"]
DAEMON_UTIL = "/usr/lib/ganeti/daemon-util"


class Node:
    """A temp node: ssconf, a run dir with pid files, fake daemons."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.data_dir = tmp_path / "lib"
        self.run_dir = tmp_path / "run"
        self.bin_dir = tmp_path / "sbin"
        for d in (self.data_dir, self.run_dir, self.bin_dir):
            d.mkdir()
        self.processes = []
        self.ssconf(master_node=NODES[0], cluster_name=CLUSTER,
                    node_list="\n".join(NODES), master_candidates="\n".join(NODES[:2]),
                    offline_nodes=NODES[3], nodegroups="0f1e-uuid default",
                    hypervisor_list="kvm", enabled_user_shutdown="False",
                    node_vm_capable="\n".join("%s=True" % n for n in NODES),
                    node_primary_ips="\n".join("%s 192.0.2.%d" % (n, i)
                                               for i, n in enumerate(NODES, 1)))

    def ssconf(self, **values):
        for key, value in values.items():
            (self.data_dir / ("ssconf_" + key)).write_text(value + "\n")

    def start(self, *names):
        """Start fake daemons (sleep copies named like them) with pid files."""
        for name in names:
            exe = self.bin_dir / name
            if not exe.exists():
                shutil.copy("/bin/sleep", str(exe))
            proc = subprocess.Popen([str(exe), "600"])
            self.processes.append(proc)
            (self.run_dir / (name + ".pid")).write_text("%d\n" % proc.pid)

    def stop(self):
        for proc in self.processes:
            proc.kill()
            proc.wait()

    def config(self, node=NODES[0], **daemons_keys):
        keys = {"daemon_dir": str(self.bin_dir), "mond": "no"}
        keys.update(daemons_keys)
        return ("[paths]\nganeti_data_dir = %s\nganeti_run_dir = %s\n"
                "systemd_system_dir = %s\n[ganeti]\nnode_name = %s\n[daemons]\n%s"
                % (self.data_dir, self.run_dir, self.tmp / "no-systemd", node,
                   "".join("%s = %s\n" % kv for kv in keys.items())))

    def run(self, node=NODES[0], args=(), user=None, **keys):
        """Run the check as the agent does: (fields of the service, labels, proc)."""
        proc = run_script("ganeti_daemons", *args, config_text=self.config(node, **keys),
                          tmp_path=self.tmp, user=user)
        assert proc.returncode == 0, proc.stderr
        hosts, labels = parse_output(proc.stdout, with_labels=True)
        services = hosts[None]
        return services.get(SERVICE), labels.get(None), proc


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.stop()


class Stub:
    """An HTTP 'mond' on 127.0.0.1: answers `status`, or never (None)."""

    def __init__(self, status):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.status = status
        self.held = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.status is None:
                self.held.append(conn)  # accepted, never answered
                continue
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 3\r\n\r\n[1]" % self.status)
            conn.close()

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def stub():
    made = []

    def make(status):
        made.append(Stub(status))
        return made[-1]
    yield make
    for s in made:
        s.close()


# --- roles -------------------------------------------------------------------

def test_master_with_every_daemon_is_ok_and_labelled(node):
    node.start(*ALL)
    out, labels, _ = node.run()
    assert out["state"] == "0", out
    assert out["summary"] == ("master of %s: ganeti-noded, ganeti-confd, ganeti-wconfd, "
                              "ganeti-rapi, ganeti-luxid run" % CLUSTER)
    assert out["metrics"] == {"ganeti_daemons_expected": 5, "ganeti_daemons_missing": 0}
    assert labels == {"ganeti/cluster": CLUSTER, "ganeti/role": "master",
                      "ganeti/nodegroup": "default"}


def test_missing_daemon_is_crit_with_the_command(node):
    node.start("ganeti-noded", "ganeti-wconfd", "ganeti-rapi", "ganeti-luxid")
    out, _, _ = node.run()
    assert out["state"] == "2"
    assert out["summary"] == ("ganeti-confd not running, start it: %s start ganeti-confd "
                              "(master of %s)" % (DAEMON_UTIL, CLUSTER))
    assert "ganeti-confd: no pid file; start it: %s start ganeti-confd" % DAEMON_UTIL \
        in out["details"]
    assert out["metrics"]["ganeti_daemons_missing"] == 1


def test_several_missing_share_one_command_pattern(node):
    node.start("ganeti-noded")
    out, _, _ = node.run()
    assert out["summary"] == (
        "4 daemons not running: ganeti-confd, ganeti-wconfd, ganeti-rapi, ganeti-luxid, "
        "start each: %s start <daemon> (master of %s)" % (DAEMON_UTIL, CLUSTER))


def test_candidate_needs_no_master_daemons(node):
    node.start("ganeti-noded", "ganeti-confd")
    out, labels, _ = node.run(NODES[1])
    assert out["state"] == "0"
    assert out["summary"] == "master candidate in %s: ganeti-noded, ganeti-confd run" % CLUSTER
    assert labels["ganeti/role"] == "candidate"


def test_master_daemon_left_on_a_candidate_is_warn(node):
    node.start("ganeti-noded", "ganeti-confd", "ganeti-luxid")
    out, _, _ = node.run(NODES[1])
    assert out["state"] == "1"
    assert out["summary"] == (
        "ganeti-luxid runs but this node is not the master (%s is), left behind by a "
        "master failover? Stop it: %s stop ganeti-luxid (master candidate in %s)"
        % (NODES[0], DAEMON_UTIL, CLUSTER))


def test_regular_node(node):
    node.start("ganeti-noded")
    out, labels, _ = node.run(NODES[2])
    assert out["state"] == "2"
    assert out["summary"].startswith("ganeti-confd not running")
    assert out["summary"].endswith("(node in %s)" % CLUSTER)
    assert labels["ganeti/role"] == "regular"


def test_offline_node_expects_nothing(node):
    node.start("ganeti-noded")
    out, labels, _ = node.run(NODES[3])
    assert out["state"] == "0"
    assert out["summary"] == ("offline node in %s: no Ganeti daemon expected "
                              "(ganeti-noded run)" % CLUSTER)
    assert labels["ganeti/role"] == "offline"


def test_orphan_is_warn_with_the_remedy(node):
    out, labels, _ = node.run("node9.example.com")
    assert out["state"] == "1"
    assert out["summary"].startswith(
        "orphan node: configured for cluster %s but not a member (node9.example.com is "
        "not in ssconf_node_list of the master %s); re-add it on the master (gnt-node add "
        "--readd node9.example.com) or remove Ganeti from it (%s stop-all"
        % (CLUSTER, NODES[0], DAEMON_UTIL))
    assert labels == {"ganeti/cluster": CLUSTER, "ganeti/role": "orphan"}


def test_not_in_a_cluster_prints_nothing(node):
    os.unlink(str(node.data_dir / "ssconf_master_node"))
    out, labels, proc = node.run()
    assert out is None and labels is None and proc.stdout == ""
    assert "not in a Ganeti cluster" in proc.stderr


def test_drained_node_is_seen_as_regular(node):
    # ssconf does not say which nodes are drained, and a drained node is
    # never a master candidate, so it has no config.data either.
    node.start("ganeti-noded", "ganeti-confd")
    out, labels, _ = node.run(NODES[2])
    assert out["state"] == "0" and labels["ganeti/role"] == "regular"


# --- pid files ---------------------------------------------------------------

def test_zombie_garbage_and_reused_pids_are_not_running(node):
    node.start("ganeti-noded", "ganeti-rapi")
    zombie = subprocess.Popen(["/bin/true"])
    for _ in range(500):  # it exits at once; not reaped it stays a zombie
        with open("/proc/%d/stat" % zombie.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    (node.run_dir / "ganeti-confd.pid").write_text("%d\n" % zombie.pid)
    (node.run_dir / "ganeti-wconfd.pid").write_text("not a pid\n")
    (node.run_dir / "ganeti-luxid.pid").write_text("%d\n" % os.getpid())
    try:
        out, _, _ = node.run()
    finally:
        zombie.wait()
    assert out["state"] == "2"
    run = node.run_dir
    assert out["summary"] == (
        "3 daemons not running: ganeti-confd, ganeti-wconfd, ganeti-luxid, remove the "
        "stale pid files first (rm %s/ganeti-confd.pid %s/ganeti-wconfd.pid "
        "%s/ganeti-luxid.pid), then start each: %s start <daemon> (master of %s)"
        % (run, run, run, DAEMON_UTIL, CLUSTER))
    details = "\n".join(out["details"])
    assert "ganeti-confd: its pid file names pid %d, which has exited (a zombie)" \
        % zombie.pid in details
    assert "ganeti-wconfd: its pid file %s/ganeti-wconfd.pid holds no process id" % run \
        in details
    assert "ganeti-luxid: its pid file names pid %d, which is another process " \
        "(python" % os.getpid() in details


def test_huge_or_linked_pid_file_is_unknown(node):
    node.start(*ALL[:-1])
    (node.run_dir / "ganeti-luxid.pid").symlink_to("/etc/passwd")
    out, _, _ = node.run()
    assert out["state"] == "3"
    assert out["summary"].startswith("cannot tell whether ganeti-luxid runs: its pid "
                                     "file is refused: %s/ganeti-luxid.pid" % node.run_dir)


@needs_root
def test_pid_file_of_a_stranger_is_refused(node):
    node.start(*ALL)
    os.chown(str(node.run_dir / "ganeti-rapi.pid"), 12345, 12345)
    out, _, _ = node.run()
    assert out["state"] == "3"
    assert "owned by uid 12345" in out["summary"]


@needs_root
def test_a_strangers_process_named_like_the_daemon_is_not_it():
    """A dead daemon's pid reused by another user's process that names
    itself like the daemon (any user can) is not the daemon."""
    import tempfile
    where = tempfile.mkdtemp()
    try:
        os.chmod(where, 0o755)
        exe = os.path.join(where, "ganeti-confd")
        shutil.copy("/bin/sleep", exe)
        stranger = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534",
                                     "--clear-groups", exe, "600"])
        try:
            for _ in range(500):  # until setpriv has become the daemon's name
                with open("/proc/%d/comm" % stranger.pid) as f:
                    if f.read().strip() == "ganeti-confd":
                        break
                time.sleep(0.01)
            with open(os.path.join(where, "ganeti-confd.pid"), "w") as f:
                f.write("%d\n" % stranger.pid)
            s = daemons.pid_status("/proc", where, "ganeti-confd", (0,))
        finally:
            stranger.kill()
            stranger.wait()
    finally:
        shutil.rmtree(where)
    assert s.running is False
    assert s.why == ("its pid file names pid %d, a process of uid 65534, which is "
                     "neither root nor a Ganeti user: the pid was reused" % stranger.pid)
    assert s.stale


def test_daemon_status_units(tmp_path):
    (tmp_path / "ganeti-confd.pid").write_text("")
    s = daemons.pid_status("/proc", str(tmp_path), "ganeti-confd", (os.geteuid(),))
    assert s.running is False and s.stale
    s = daemons.pid_status("/proc", str(tmp_path), "ganeti-noded", (os.geteuid(),))
    assert s.running is False and s.why == "no pid file" and s.stale is None


def test_a_pid_hidden_by_hidepid_is_not_called_stopped(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()  # no pid 1 visible: procfs.others_hidden() says hidden
    (tmp_path / "ganeti-noded.pid").write_text("4242\n")
    s = daemons.pid_status(str(proc), str(tmp_path), "ganeti-noded", (os.geteuid(),),
                           hidden=True)
    assert s.running is None
    assert s.why == ("cannot see pid 4242: %s hides other users' processes (hidepid); "
                     "run the check as root" % proc)


# --- kvmd and mond ------------------------------------------------------------

def test_kvmd_is_expected_only_where_it_stays_up(node):
    data = str(node.data_dir)
    assert not daemons.kvmd_wanted(data, NODES[0])
    node.ssconf(enabled_user_shutdown="True")
    assert daemons.kvmd_wanted(data, NODES[0])
    node.ssconf(node_vm_capable="%s=False" % NODES[0])
    assert not daemons.kvmd_wanted(data, NODES[0])
    node.ssconf(node_vm_capable="%s=True" % NODES[0], hypervisor_list="xen-pvm")
    assert not daemons.kvmd_wanted(data, NODES[0])
    node.ssconf(hypervisor_list="xen-pvm\nkvm")
    node.start(*ALL)
    out, _, _ = node.run()
    assert out["summary"] == ("ganeti-kvmd not running, start it: %s start ganeti-kvmd "
                              "(master of %s)" % (DAEMON_UTIL, CLUSTER))


def test_mond_expected_by_auto_only_where_installed(node, stub):
    node.start(*ALL)
    out, _, _ = node.run(mond="auto")
    assert out["state"] == "0"  # no ganeti-mond in daemon_dir: not built
    node.start("ganeti-mond")  # now it is installed and runs
    server = stub(200)
    out, _, _ = node.run(mond="auto", mond_port=server.port)
    assert out["state"] == "0", out
    assert "ganeti-mond answers on 127.0.0.1:%d with HTTP 200" % server.port in out["details"]


def test_mond_that_never_answers_is_crit(node, stub):
    node.start(*ALL + ["ganeti-mond"])
    server = stub(None)
    out, _, _ = node.run(mond="yes", mond_port=server.port, mond_timeout="0.5s")
    assert out["state"] == "2"
    assert out["summary"] == (
        "ganeti-mond runs but does not answer on port %d, restart it: %s stop ganeti-mond, "
        "then %s start ganeti-mond (master of %s)" % (server.port, DAEMON_UTIL,
                                                     DAEMON_UTIL, CLUSTER))
    assert "ganeti-mond: 127.0.0.1: no answer within 0 s" not in out["details"]
    assert any(d.startswith("ganeti-mond: 127.0.0.1: no answer within")
               for d in out["details"])


def test_mond_answering_http_500_is_warn(node, stub):
    node.start(*ALL + ["ganeti-mond"])
    server = stub(500)
    out, _, _ = node.run(mond="yes", mond_port=server.port)
    assert out["state"] == "1"
    assert out["summary"] == ("ganeti-mond answers on 127.0.0.1:%d with HTTP 500 "
                              "(master of %s)" % (server.port, CLUSTER))


def test_http_status_of_closed_and_garbage_ports(stub):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert daemons.http_status("127.0.0.1", port, 1) == "connection refused"
    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(1)

    def answer():
        conn, _ = garbage.accept()
        conn.sendall(b"SSH-2.0-OpenSSH\r\n")
        conn.close()
    threading.Thread(target=answer, daemon=True).start()
    assert daemons.http_status("127.0.0.1", garbage.getsockname()[1], 2) == \
        "not an HTTP answer"
    garbage.close()


# --- systemd -------------------------------------------------------------------

SYSTEMCTL = """#!/bin/sh
for unit in ganeti.target ganeti-noded.service ganeti-confd.service \
    ganeti-wconfd.service ganeti-rapi.service ganeti-luxid.service \
    ganeti-kvmd.service ganeti-mond.service ganeti-metad.service; do
  state=active
  case $unit in ganeti-confd.service|ganeti-kvmd.service|ganeti-mond.service|\
ganeti-metad.service) state=inactive;; esac
  printf 'Id=%s\\nLoadState=%s\\nActiveState=%s\\nSubState=%s\\n\\n' "$unit" \
    "${LOAD:-loaded}" "$state" dead
done
"""


def test_under_systemd_the_units_decide(node, tmp_path):
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(SYSTEMCTL)
    systemctl.chmod(0o755)
    (tmp_path / "no-systemd").mkdir()
    out, _, _ = node.run(systemctl=str(systemctl))
    assert out["state"] == "2"
    assert out["summary"] == ("ganeti-confd not running, start it: systemctl start "
                              "ganeti-confd.service (master of %s)" % CLUSTER)
    assert "ganeti-confd: its unit is inactive (dead); start it: systemctl start " \
        "ganeti-confd.service" in out["details"]


def test_systemd_without_ganeti_units_falls_back_to_pid_files(node, tmp_path):
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(SYSTEMCTL.replace("${LOAD:-loaded}", "not-found"))
    systemctl.chmod(0o755)
    (tmp_path / "no-systemd").mkdir()
    node.start(*ALL)
    out, _, _ = node.run(systemctl=str(systemctl))
    assert out["state"] == "0"
    assert "checked pid files in %s" % node.run_dir in out["details"]


def test_failing_systemctl_is_unknown(node, tmp_path):
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n")
    systemctl.chmod(0o755)
    (tmp_path / "no-systemd").mkdir()
    out, _, _ = node.run(systemctl=str(systemctl))
    assert out["state"] == "3"
    assert "Failed to connect to bus" in out["summary"]


# --- labels --------------------------------------------------------------------

def test_node_group_from_config_with_several_groups(node):
    node.ssconf(nodegroups="u1 default\nu2 rack-b")
    (node.data_dir / "config.data").write_text(
        '{"cluster": {}, "instances": {}, "nodes": {"x": {"name": "%s", "group": "u2"}}, '
        '"nodegroups": '
        '{"u1": {"name": "default"}, "u2": {"name": "rack-b"}}}' % NODES[0])
    node.start(*ALL)
    _, labels, _ = node.run()
    assert labels["ganeti/nodegroup"] == "rack-b"
    assert ganeti.node_group(str(node.data_dir), NODES[1]) is None
    # remembered while config.data stays the same file
    state = node.tmp / "var" / "ganeti_cmk"
    assert (state / "nodegroup").read_text().endswith("\nrack-b")
    (state / "nodegroup").write_text((state / "nodegroup").read_text()[:-6] + "cached")
    _, labels, _ = node.run()
    assert labels["ganeti/nodegroup"] == "cached"
    (node.data_dir / "config.data").write_text(
        '{"cluster": {}, "instances": {}, "nodes": {"x": {"name": "%s", "group": "u1"}}, '
        '"nodegroups": '
        '{"u1": {"name": "default"}, "u2": {"name": "rack-b"}}}' % NODES[0])
    _, labels, _ = node.run()
    assert labels["ganeti/nodegroup"] == "default"
    os.unlink(str(node.data_dir / "config.data"))  # a regular node has none
    _, labels, _ = node.run()
    assert "ganeti/nodegroup" not in labels


def test_broken_config_leaves_the_group_out(node):
    node.ssconf(nodegroups="u1 default\nu2 rack-b")
    (node.data_dir / "config.data").write_text('{"cluster": {}, "instances": {}, "nodes": [1]}')
    with pytest.raises(ValueError):
        ganeti.node_group(str(node.data_dir), NODES[0])
    node.start(*ALL)
    out, labels, _ = node.run()
    assert out["state"] == "0" and "ganeti/nodegroup" not in labels


def test_hostile_names_stay_on_their_lines(node):
    node.ssconf(cluster_name='evil\r\n0 "Fake" - OK\\n"}', nodegroups='u1 x"}\t<<<local>>>')
    node.start(*ALL)
    out, labels, proc = node.run()
    assert out["state"] == "0"
    assert labels["ganeti/cluster"] == 'evil 0 "Fake" - OK/n"}'
    assert labels["ganeti/nodegroup"] == 'x"} <<<local>>>'
    assert len(proc.stdout.splitlines()) == 4


def test_labels_only_in_agent_mode(node):
    node.start(*ALL)
    proc = run_script("ganeti_daemons", "--nagios", config_text=node.config(),
                      tmp_path=node.tmp)
    assert "<<<" not in proc.stdout and proc.stdout.startswith("OK - master of")
    proc = run_script("ganeti_daemons", "--human", config_text=node.config(),
                      tmp_path=node.tmp)
    assert proc.stdout.splitlines()[-1] == (
        "host labels: ganeti/cluster=%s, ganeti/nodegroup=default, ganeti/role=master"
        % CLUSTER)


def test_labels_render_as_checkmk_reads_them():
    lines = render_local([Result(OK, "S", "fine")], {"a/b": "x\ny", "empty": ""})
    assert lines == ["0 S - fine", "<<<labels:sep(0)>>>", '{"a/b": "x y"}',
                     "<<<local:sep(0)>>>"]
    assert labels_of("\n".join(lines) + "\n") == {None: {"a/b": "x y"}}


@pytest.mark.parametrize("text", [
    "<<<labels:sep(0)>>>\n{\"a\": \"b\"}\n",                       # no local section after
    "<<<labels:sep(0)>>>\n[\"a\"]\n<<<local:sep(0)>>>\n",          # not an object
    "<<<labels:sep(0)>>>\n{\"a\": 1}\n<<<local:sep(0)>>>\n",       # not a string
    "<<<labels:sep(0)>>>\n{\"a:b\": \"c\"}\n<<<local:sep(0)>>>\n",  # colon in a key
    "<<<labels:sep(0)>>>\n{\"a\": \"b\"}\n{\"c\": \"d\"}\n<<<local:sep(0)>>>\n",
])
def test_grammar_rejects_other_label_forms(text):
    with pytest.raises(AssertionError):
        parse_output(text)
