"""The Ganeti verify check: role, cache, lock, background refresh, timeout,
evaluation and piggyback.

End to end, the check script runs against a fake ssconf tree and
tests/fake_gnt_cluster (see its header for the FAKE_GNT_* knobs), which
prints the recorded outputs of tests/data/verify.  The evaluation is also
driven directly, with caches made from the same corpus.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support import ROOT, check_command, needs_root, run_script
from ganeti_cmk import background, verify
from ganeti_cmk.checks import cluster_verify as cv
from ganeti_cmk.localcheck import CRIT, OK, UNKNOWN, WARN, Problem, render_local
from localcheck_grammar import assert_valid_output

SCRIPT = "ganeti_cluster_verify"
FAKE = os.path.join(ROOT, "tests", "fake_gnt_cluster")
FAKE_SYSTEMD_RUN = os.path.join(ROOT, "tests", "fake_systemd_run")
FAKE_GNT_JOB = os.path.join(ROOT, "tests", "fake_gnt_job")
DATA = os.path.join(ROOT, "tests", "data", "verify")
MASTER = "master.example.com"
SERVICE = "Ganeti verify"


def wait_for(predicate, what, limit=30.0):
    """Poll until predicate() is true; fail after `limit` seconds."""
    end = time.time() + limit
    while not predicate():
        assert time.time() < end, "gave up waiting for " + what
        time.sleep(0.05)


def lock_is_held(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def alive(pid):
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Cluster:
    """A fake master: ssconf files, a config, the fake gnt-cluster's knobs."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.data_dir = tmp_path / "ganeti"
        self.data_dir.mkdir()
        self.ssconf(master_node=MASTER, cluster_name="cluster.example.com",
                    node_list="%s\nnode2.example.com\nnode3.example.com" % MASTER,
                    master_candidates=MASTER + "\nnode2.example.com",
                    instance_list="web1.example.com\ndb1.example.com")
        self.state_dir = tmp_path / "var" / "ganeti_cmk"
        self.cache = self.state_dir / "cluster_verify.json"
        self.lock = self.state_dir / "cluster_verify.lock"
        self.log = tmp_path / "gnt.log"
        self.release = tmp_path / "release"
        self.node = MASTER
        self.gnt_cluster = FAKE
        self.settings = {}
        # hermetic on a machine that runs systemd, too: see systemd()
        self.paths = {"systemd_system_dir": str(tmp_path / "no-systemd"),
                      "gnt_job": FAKE_GNT_JOB}
        self.job_log = tmp_path / "gnt-job.log"
        self.general = ""
        self.env = {"FAKE_GNT_LOG": str(self.log),
                    "FAKE_GNT_JOB_LOG": str(self.job_log)}
        self.processes = []

    def ssconf(self, **values):
        for key, value in values.items():
            (self.data_dir / ("ssconf_" + key)).write_text(value + "\n")

    def case(self, name):
        self.env["FAKE_GNT_CASE"] = os.path.join(DATA, name)

    def config_text(self):
        text = ("[paths]\nganeti_data_dir = %s\ngnt_cluster = %s\n"
                % (self.data_dir, self.gnt_cluster))
        text += "".join("%s = %s\n" % kv for kv in self.paths.items())
        text += "[ganeti]\nnode_name = %s\n[cluster_verify]\n" % self.node
        text += "".join("%s = %s\n" % kv for kv in self.settings.items())
        if self.general:
            text += "[general]\n" + self.general
        return text

    def run(self, *args):
        """Run the check; assert exit 0 (agent mode) and valid output."""
        proc = run_script(SCRIPT, *args, config_text=self.config_text(),
                          tmp_path=self.tmp, env=self.env)
        if "--nagios" not in args:
            assert proc.returncode == 0, proc.stderr
        proc.hosts = assert_valid_output(proc.stdout) if "--human" not in args \
            and "--nagios" not in args else None
        return proc

    def agent(self):
        """Agent mode: the host's own services and the piggybacked ones."""
        return self.run().hosts

    def start(self, *args, connection=None):
        """Start the check in the background (same environment).

        `connection`: an fd the check gets as fd 9, as the agent passes
        the client's connection under xinetd or systemd.
        """
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "MK_CONFDIR": str(self.tmp / "etc"),
               "MK_VARDIR": str(self.tmp / "var")}
        env.update(self.env)
        (self.tmp / "etc").mkdir(exist_ok=True)
        (self.tmp / "etc" / "ganeti_cmk.cfg").write_text(self.config_text())
        command = check_command(SCRIPT) + list(args)
        fds = ()
        if connection is not None:
            command = [sys.executable, "-c", "import os, sys; "
                       "fd = int(sys.argv[1]); os.dup2(fd, 9); os.close(fd); "
                       "os.execv(sys.argv[2], sys.argv[2:])",
                       str(connection)] + command
            fds = (connection,)
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True, env=env,
            pass_fds=fds)
        self.processes.append(proc)
        return proc

    def systemd(self, running=True):
        """Make the check see systemd (or not) and use the fake systemd-run."""
        marker = self.tmp / "run-systemd-system"
        if running:
            marker.mkdir()
        self.paths.update(systemd_run=FAKE_SYSTEMD_RUN,
                          systemd_system_dir=str(marker))
        self.env["FAKE_SYSTEMD_RUN_LOG"] = str(self.tmp / "systemd-run.log")

    def systemd_runs(self):
        """The fake systemd-run's calls so far: [[arg, ...]]."""
        log = self.tmp / "systemd-run.log"
        if not log.exists():
            return []
        return [call.strip("\n").split("\n")
                for call in log.read_text().split("--end\n") if call]

    def verifies(self):
        """The fake gnt-cluster's runs so far: [(pid, args)]."""
        if not self.log.exists():
            return []
        return [(int(line.split("\t")[0]), line.split("\t")[1:])
                for line in self.log.read_text().splitlines()]

    def wait_for_cache(self):
        wait_for(lambda: self.cache.exists() and not lock_is_held(str(self.lock)),
                 "the background refresh")

    def age_cache(self, seconds):
        data = json.loads(self.cache.read_text())
        data["started"] -= seconds
        data["finished"] -= seconds
        self.cache.write_text(json.dumps(data))

    def cleanup(self):
        self.release.touch()
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for pid, _ in self.verifies():
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.lock.exists():
            wait_for(lambda: not lock_is_held(str(self.lock)), "the lock")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.cleanup()


def service(hosts, host=None):
    return hosts[host][SERVICE]


# ------------------------------------------------------------------ role

@pytest.mark.parametrize("setup, reason", [
    ("no ssconf", "not in a Ganeti cluster"),
    ("regular node", "is a regular node; verify runs on the master "
     "master.example.com"),
    ("candidate", "is a master candidate; verify runs on the master"),
    ("no gnt-cluster", "no executable"),
])
def test_nothing_off_the_master_and_a_reason_by_hand(cluster, setup, reason):
    if setup == "no ssconf":
        os.unlink(str(cluster.data_dir / "ssconf_master_node"))
    elif setup == "regular node":
        cluster.node = "node3.example.com"
    elif setup == "candidate":
        cluster.node = "node2.example.com"
    else:
        cluster.gnt_cluster = str(cluster.tmp / "missing" / "gnt-cluster")
    cluster.case("era-2.4")
    proc = cluster.run()
    assert proc.stdout == ""
    proc = cluster.run("--refresh", "--human")
    assert proc.stdout.startswith("-        Ganeti verify: not monitored here: ")
    assert reason in proc.stdout and proc.stderr == ""
    proc = cluster.run("--nagios")
    assert proc.stdout.startswith("OK - not applicable here: ") and reason in proc.stdout
    assert proc.returncode == 0
    assert cluster.verifies() == [] and not cluster.cache.exists()


# -------------------------------------------- cache and background refresh

def test_agent_never_waits_for_verify(cluster):
    cluster.case("era-2.4")
    cluster.env["FAKE_GNT_WAIT_FILE"] = str(cluster.release)
    svc = service(cluster.agent())
    assert svc["state"] == "3"
    assert svc["summary"].startswith("first verify run in progress: refresh "
                                     "started in the background (pid ")
    # the agent got its line while verify still runs: no cache yet, lock held
    wait_for(lambda: cluster.verifies(), "verify to start")
    assert not cluster.cache.exists() and lock_is_held(str(cluster.lock))
    (pid, args), = cluster.verifies()
    assert args == ["verify", "--error-codes"]
    # verify runs in a session of its own, not in the agent's
    assert os.getsid(pid) == pid != os.getsid(0)
    # a second agent run sees it running and starts nothing
    svc = service(cluster.agent())
    assert svc["state"] == "3" and "refresh running for" in svc["summary"]
    cluster.release.touch()
    cluster.wait_for_cache()
    svc = service(cluster.agent())
    assert svc["state"] == "2"
    assert svc["summary"].startswith(
        "3 errors: ENODEDRBD node2.example.org (drbd minor 0 of instance "
        "web1.example.org is not active), EINSTANCEDOWN web1.example.org "
        "(instance not running on its primary node node1.example.org), "
        "ENODEORPHANLV node1.example.org (volume xenvg/old-disk is unknown) - "
        "verify ran ")
    assert set(svc["metrics"]) == {"ganeti_verify_errors", "ganeti_verify_warnings",
                                   "ganeti_verify_duration", "ganeti_verify_age"}
    assert svc["metrics"]["ganeti_verify_errors"] == 3
    assert len(cluster.verifies()) == 1


def test_refresher_does_not_hold_the_agents_connection(cluster):
    """Under xinetd or systemd the agent's fd 9 is the client connection:
    a refresher that inherited it would make the server wait for verify."""
    cluster.case("era-2.4")
    cluster.env["FAKE_GNT_WAIT_FILE"] = str(cluster.release)
    server, connection = os.pipe()
    try:
        proc = cluster.start(connection=connection)
        os.close(connection)
        out, _ = proc.communicate()
        svc = assert_valid_output(out)[None][SERVICE]
        assert svc["summary"].startswith("first verify run in progress")
        wait_for(lambda: cluster.verifies(), "verify to start")
        assert lock_is_held(str(cluster.lock))     # the refresh still runs ...
        os.set_blocking(server, False)
        assert os.read(server, 1) == b""           # ... and the server has EOF
    finally:
        os.close(server)


def test_fresh_cache_is_printed_without_a_new_verify(cluster):
    cluster.case("era-3.0-clean")
    cluster.run("--refresh")
    for _ in range(3):
        svc = service(cluster.agent())
        assert svc["state"] == "0"
        assert svc["summary"].startswith("no errors or warnings (1 notice) - "
                                         "verify ran ")
    assert len(cluster.verifies()) == 1


def test_old_cache_is_shown_with_its_age_while_one_refresh_runs(cluster):
    cluster.case("era-2.16-groups")
    cluster.run("--refresh")
    cluster.age_cache(20 * 60)           # older than max_age (10m), not stale
    cluster.case("era-3.0-clean")
    cluster.env["FAKE_GNT_WAIT_FILE"] = str(cluster.release)
    svc = service(cluster.agent())
    assert svc["state"] == "1"           # the old result: 3 warnings
    assert svc["summary"].endswith("verify ran 20 min ago")
    assert svc["details"][-1].startswith("refresh started in the background")
    wait_for(lambda: len(cluster.verifies()) == 2, "the refresh")
    svc = service(cluster.agent())      # still the old result, refresh running
    assert svc["state"] == "1" and svc["details"][-1].startswith("refresh running")
    cluster.release.touch()
    cluster.wait_for_cache()
    svc = service(cluster.agent())
    assert svc["state"] == "0" and "verify ran 20 min ago" not in svc["summary"]
    assert len(cluster.verifies()) == 2


def test_stale_result_warns_and_names_the_hung_refresh(cluster):
    cluster.case("era-3.0-clean")
    cluster.run("--refresh")
    cluster.age_cache(2 * 3600)
    fd = os.open(str(cluster.lock), os.O_RDWR)  # a hung refresher holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242 %d\n" % (time.time() - 300))
        svc = service(cluster.agent())
    finally:
        os.close(fd)
    assert svc["state"] == "1"
    assert svc["summary"].startswith(
        "result is 2.0 h old, older than 30 min ([cluster_verify] stale_after); "
        "no errors or warnings (1 notice) - verify ran 2.0 h ago")
    assert svc["details"][-1] == "refresh running for 5.0 min (pid 4242)"
    assert len(cluster.verifies()) == 1


def test_a_result_from_the_future_is_due(cluster):
    """After the clock jumped back the cache must not look fresh forever."""
    cluster.case("era-2.16-groups")
    cluster.run("--refresh")
    cluster.age_cache(-2 * 3600 - 60)
    cluster.case("era-3.0-clean")
    svc = service(cluster.agent())
    assert svc["state"] == "1"
    assert svc["summary"].endswith("verify finished 2.0 h in the future (did "
                                   "the clock jump back?)")
    assert svc["details"][-1].startswith(
        "result from 2.0 h in the future; refresh started in the background")
    refresher = int(svc["details"][-1].split("(pid ")[1].rstrip(")"))
    wait_for(lambda: not alive(refresher), "the refresher")
    assert len(cluster.verifies()) == 2     # the refresher did not skip it
    svc = service(cluster.agent())
    assert svc["state"] == "0" and " - verify ran " in svc["summary"]


def test_refresh_runs_verify_when_the_cache_is_from_the_future(cluster):
    cluster.case("era-2.16-groups")
    cluster.run("--refresh")
    cluster.age_cache(-3600)
    cluster.case("era-3.0-clean")
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "0" and len(cluster.verifies()) == 2


def test_changed_arguments_make_the_cache_due(cluster):
    cluster.case("era-3.0-clean")
    cluster.run("--refresh")
    cluster.settings["extra_args"] = "--node-group site-a  -I ENODEN1"
    cluster.agent()
    wait_for(lambda: len(cluster.verifies()) == 2, "the refresh")
    cluster.wait_for_cache()
    assert [args for _, args in cluster.verifies()] == [
        ["verify", "--error-codes"],
        ["verify", "--error-codes", "--node-group", "site-a", "-I", "ENODEN1"]]
    cluster.agent()
    assert len(cluster.verifies()) == 2


def test_extra_args_may_quote_blanks(cluster):
    cluster.case("era-3.0-clean")
    cluster.settings["extra_args"] = """--node-group 'site a' -I "ENODEN1" x\\ y"""
    assert service(cluster.run("--refresh").hosts)["state"] == "0"
    cluster.settings["extra_args"] = "--node-group 'site a"
    svc = service(cluster.run("--refresh").hosts)
    assert svc["summary"].endswith(
        "(config problem: [cluster_verify] extra_args: \"--node-group 'site "
        "a\" is not a command line (No closing quotation), split at blanks)")
    assert [args for _, args in cluster.verifies()] == [
        ["verify", "--error-codes", "--node-group", "site a", "-I", "ENODEN1",
         "x y"],
        ["verify", "--error-codes", "--node-group", "'site", "a"]]


def test_unreadable_cache_is_replaced(cluster):
    cluster.case("era-3.0-clean")
    cluster.state_dir.mkdir(parents=True)
    cluster.cache.write_text('{"version": 1, "report": ')
    svc = service(cluster.agent())
    assert svc["state"] == "3"
    assert svc["summary"].startswith("no verify result yet: cache %s "
                                     "unreadable" % cluster.cache)
    wait_for(lambda: cluster.verifies(), "the refresh")
    cluster.wait_for_cache()
    assert service(cluster.agent())["state"] == "0"


def test_a_cache_that_is_a_directory_is_replaced(cluster):
    cluster.case("era-3.0-clean")
    cluster.cache.mkdir(parents=True)
    svc = service(cluster.agent())
    assert svc["state"] == "3"
    assert svc["summary"].startswith(
        "no verify result yet: cache %s unreadable (%s: not a regular file); "
        "refresh started in the background (pid " % (cluster.cache, cluster.cache))
    refresher = int(svc["summary"].split("(pid ")[1].rstrip(")"))
    wait_for(lambda: not alive(refresher), "the refresher")
    assert cluster.cache.is_file()
    assert service(cluster.agent())["state"] == "0"


def test_a_state_dir_that_is_a_file_is_named(cluster):
    cluster.case("era-3.0-clean")
    cluster.state_dir.parent.mkdir()
    cluster.state_dir.write_text("")
    svc = service(cluster.run("--refresh").hosts)
    assert (svc["state"], svc["summary"]) == ("3", "cannot refresh: %s: not a "
                                              "directory ([paths] state_dir)"
                                              % cluster.state_dir)


@needs_root
def test_not_root_on_the_master_is_told_to_run_as_root():
    tmp = Path(tempfile.mkdtemp())
    try:
        os.chmod(str(tmp), 0o755)
        cluster = Cluster(tmp)
        cluster.case("era-3.0-clean")
        # where nobody can see it (the checkout may be root's alone)
        cluster.gnt_cluster = str(tmp / "gnt-cluster")
        shutil.copy(FAKE, cluster.gnt_cluster)
        for args in (("--refresh",), ()):
            proc = run_script(SCRIPT, *args, config_text=cluster.config_text(),
                              tmp_path=tmp, env=cluster.env, user=65534)
            svc = assert_valid_output(proc.stdout)[None][SERVICE]
            assert svc["state"] == "3"
            assert svc["summary"].endswith(
                "%s: Permission denied (run the check as root)"
                % cluster.state_dir), svc["summary"]
        assert cluster.verifies() == []
    finally:
        shutil.rmtree(str(tmp))


def test_refreshes_that_never_write_a_result_are_named(cluster):
    """A refresher that dies before it writes anything (here: systemd-run
    says it started one, and nothing runs) left the service "first verify
    run in progress" for ever."""
    cluster.systemd()
    cluster.env["FAKE_SYSTEMD_RUN_RC"] = "0"
    svc = service(cluster.agent())
    assert svc["state"] == "3" and svc["summary"].startswith(
        "first verify run in progress"), svc
    old = time.time() - 3600
    os.utime(str(cluster.state_dir / "cluster_verify.lock"), (old, old))
    svc = service(cluster.agent())
    assert svc["state"] == "3"
    assert svc["summary"].startswith(
        "no verify result yet: no result 1.0 h after a refresh last started "
        "(the refreshes end without one: run ganeti_cluster_verify --refresh "
        "-v to see why); refresh started in the background"), svc["summary"]


def test_refresh_that_cannot_start_is_visible(cluster):
    cluster.case("era-3.0-clean")
    (cluster.tmp / "elsewhere").write_text("")      # a file, not a directory
    state_dir = cluster.tmp / "elsewhere" / "x"
    text = cluster.config_text().replace(
        "[paths]\n", "[paths]\nstate_dir = %s\n" % state_dir)
    proc = run_script(SCRIPT, config_text=text, tmp_path=cluster.tmp,
                      env=cluster.env)
    svc = assert_valid_output(proc.stdout)[None][SERVICE]
    assert svc["state"] == "3"
    assert svc["summary"].startswith("no verify result yet: cache ")
    assert svc["summary"].endswith("cannot start a background refresh: %s: "
                                   "Not a directory" % state_dir)
    assert cluster.verifies() == []


def test_under_systemd_the_refresh_is_a_unit_of_its_own(cluster):
    """The agent's per-connection unit kills what is left in its cgroup when
    the agent exits: a refresher must run as a transient unit instead."""
    cluster.systemd()
    cluster.case("era-2.4")
    svc = service(cluster.agent())
    assert svc["summary"] == ("first verify run in progress: refresh started "
                              "in the background (systemd unit "
                              "ganeti-cmk-verify-refresh.service)")
    (call,) = cluster.systemd_runs()
    assert call[:8] == [
        "--no-block", "--collect", "--quiet", "--unit=ganeti-cmk-verify-refresh",
        "--description=Ganeti verify refresh (ganeti-cmk)",
        "--setenv=MK_CONFDIR=%s" % (cluster.tmp / "etc"),
        "--setenv=MK_VARDIR=%s" % (cluster.tmp / "var"), "--"]
    assert call[8] == sys.executable and "--refresh-cache" in call
    # the unit gets no environment but --setenv's: the cache lands in MK_VARDIR
    cluster.wait_for_cache()
    svc = service(cluster.agent())
    assert svc["state"] == "2" and svc["metrics"]["ganeti_verify_errors"] == 3
    assert len(cluster.verifies()) == 1 and len(cluster.systemd_runs()) == 1


def test_without_systemd_the_refresh_is_started_directly(cluster):
    cluster.systemd(running=False)
    cluster.case("era-2.4")
    svc = service(cluster.agent())
    assert svc["summary"].startswith("first verify run in progress: refresh "
                                     "started in the background (pid ")
    cluster.wait_for_cache()
    assert cluster.systemd_runs() == [] and len(cluster.verifies()) == 1


@pytest.mark.parametrize("error, state, summary", [
    ("Failed to start transient service unit: Unit "
     "ganeti-cmk-verify-refresh.service already exists.", "3",
     "first verify run in progress: refresh running (systemd unit "
     "ganeti-cmk-verify-refresh.service exists)"),
    ("Failed to connect to bus: No such file or directory", "3",
     "no verify result yet: cannot start a background refresh: systemd-run "
     "exited with 1: Failed to connect to bus: No such file or directory"),
])
def test_systemd_run_failing(cluster, error, state, summary):
    cluster.systemd()
    cluster.case("era-2.4")
    cluster.env.update(FAKE_SYSTEMD_RUN_RC="1", FAKE_SYSTEMD_RUN_ERR=error)
    svc = service(cluster.agent())
    assert (svc["state"], svc["summary"]) == (state, summary)
    assert cluster.verifies() == []


# ------------------------------------------------------------ the lock

def test_two_concurrent_refreshes_run_one_verify(cluster):
    cluster.case("era-2.4")
    cluster.env["FAKE_GNT_WAIT_FILE"] = str(cluster.release)
    first = cluster.start("--refresh")
    wait_for(lambda: cluster.verifies(), "the first verify")
    second = cluster.start("--refresh")
    # the second one waits on the lock (it has the lock file open) ...
    wait_for(lambda: any(
        os.path.realpath("/proc/%d/fd/%s" % (second.pid, fd)) == str(cluster.lock)
        for fd in os.listdir("/proc/%d/fd" % second.pid)), "the second to wait")
    cluster.release.touch()
    # ... and then shows the first one's result, which finished after it asked
    outputs = [p.communicate()[0] for p in (first, second)]
    for out in outputs:
        svc = assert_valid_output(out)[None][SERVICE]
        assert svc["state"] == "2" and svc["metrics"]["ganeti_verify_errors"] == 3
    assert len(cluster.verifies()) == 1


def test_concurrent_agent_runs_start_one_verify(cluster):
    cluster.case("era-2.4")
    cluster.env["FAKE_GNT_WAIT_FILE"] = str(cluster.release)
    for _ in range(4):
        assert service(cluster.agent())["state"] == "3"
    wait_for(lambda: cluster.verifies(), "verify")
    cluster.release.touch()
    cluster.wait_for_cache()
    assert service(cluster.agent())["state"] == "2"
    assert len(cluster.verifies()) == 1


@pytest.mark.parametrize("target", ["victim", "missing"])
def test_lock_file_is_never_a_link(cluster, target):
    """A link planted as the lock file is replaced, not written through."""
    cluster.case("era-3.0-clean")
    cluster.state_dir.mkdir(parents=True)
    victim = cluster.tmp / target
    if target == "victim":
        victim.write_text("keep\n")
    os.symlink(str(victim), str(cluster.lock))
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "0"
    assert not cluster.lock.is_symlink() and cluster.lock.is_file()
    assert cluster.lock.read_text().split()[0].isdigit()    # our record
    if target == "victim":
        assert victim.read_text() == "keep\n"
    else:
        assert not os.path.lexists(str(victim))
    # the agent's look at the lock does not follow one either
    cluster.age_cache(3600)
    os.unlink(str(cluster.lock))
    os.symlink(str(victim), str(cluster.lock))
    cluster.agent()
    cluster.wait_for_cache()
    assert not cluster.lock.is_symlink()
    assert victim.read_text() == "keep\n" if target == "victim" else \
        not os.path.lexists(str(victim))


def test_lock_file_that_is_not_a_file_is_named(cluster):
    cluster.case("era-3.0-clean")
    cluster.state_dir.mkdir(parents=True)
    os.mkfifo(str(cluster.lock))
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "3"
    assert svc["summary"] == ("cannot refresh: %s: not a regular file "
                              "(remove it)" % cluster.lock)
    svc = service(cluster.agent())
    assert svc["summary"] == ("no verify result yet: cannot start a background "
                              "refresh: %s: not a regular file (remove it)"
                              % cluster.lock)


def test_lock_outlives_a_killed_refresher(cluster):
    cluster.case("era-2.4")
    cluster.env["FAKE_GNT_WAIT_FILE"] = str(cluster.release)
    refresher = cluster.start("--refresh")
    wait_for(lambda: cluster.verifies(), "verify")
    refresher.kill()
    refresher.communicate()
    # gnt-cluster inherited the lock: nobody starts a second verify meanwhile
    assert lock_is_held(str(cluster.lock))
    svc = service(cluster.agent())
    assert svc["state"] == "3" and "refresh running" in svc["summary"]
    cluster.release.touch()
    wait_for(lambda: not lock_is_held(str(cluster.lock)), "verify to end")
    assert len(cluster.verifies()) == 1 and not cluster.cache.exists()
    # the crash left no result: the next agent run starts a refresh
    cluster.agent()
    cluster.wait_for_cache()
    assert service(cluster.agent())["state"] == "2"
    assert len(cluster.verifies()) == 2


# ------------------------------------------------------------ timeout

def test_timeout_kills_the_whole_process_group(cluster):
    cluster.settings["timeout"] = "1s"
    cluster.env.update(FAKE_GNT_MODE="hang",
                       FAKE_GNT_PIDFILE=str(cluster.tmp / "grandchild"))
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2"
    assert svc["summary"].startswith(
        "verify did not finish within 1 s ([cluster_verify] timeout) and was "
        "killed; it was waiting for locks (gnt-job list shows no other running "
        "job); its jobs 7, 8 "
        "were cancelled (gnt-job cancel) - verify ran ")
    assert "exit code none (killed)" in svc["details"][-1]
    # its jobs would wait behind the lock holder and pile up run after run
    assert cluster.job_log.read_text().splitlines()[-1] == "cancel 7 8"
    assert "%s cancel 7 8: Job 7 canceled Job 8 canceled" % FAKE_GNT_JOB \
        in svc["details"]
    (pid, _), = cluster.verifies()
    grandchild = int((cluster.tmp / "grandchild").read_text())
    wait_for(lambda: not alive(pid) and not alive(grandchild), "the kill")
    assert not lock_is_held(str(cluster.lock))


@pytest.mark.parametrize("gnt_job, said", [
    ("fake", "gnt-job cancel failed (exit code 1: Job 8 is no longer "
     "waiting in the queue); they may still be queued (gnt-job list)"),
    ("missing", "cannot run %s/missing/gnt-job (No such file or directory); "
     "they may still be queued (gnt-job list)"),
])
def test_jobs_that_cannot_be_cancelled_are_named(cluster, gnt_job, said):
    cluster.settings["timeout"] = "1s"
    cluster.env.update(FAKE_GNT_MODE="hang", FAKE_GNT_JOB_RC="1",
                       FAKE_GNT_PIDFILE=str(cluster.tmp / "grandchild"))
    if gnt_job == "missing":
        cluster.paths["gnt_job"] = str(cluster.tmp / "missing" / "gnt-job")
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2"
    assert svc["summary"].startswith(
        "verify did not finish within 1 s ([cluster_verify] timeout) and was "
        "killed; it was waiting for locks %s; its jobs 7, 8: " % (
            "held by another job" if gnt_job == "missing" else
            "(gnt-job list shows no other running job)")
        + (said % cluster.tmp if "%s" in said else said) + " - verify ran ")


def test_a_process_verify_leaves_behind_does_not_hold_the_result(cluster):
    """Only verify's own exit counts: a process it left behind that keeps
    its stdout and the lock open neither blocks the result nor the lock."""
    cluster.settings["timeout"] = "3s"
    pidfile = cluster.tmp / "lingering"
    cluster.env.update(FAKE_GNT_MODE="linger", FAKE_GNT_PIDFILE=str(pidfile))
    cluster.case("era-3.0-clean")
    try:
        svc = service(cluster.run("--refresh").hosts)
        assert svc["state"] == "0"
        assert svc["summary"].startswith("no errors or warnings (1 notice)")
        assert alive(int(pidfile.read_text()))
        assert not lock_is_held(str(cluster.lock))
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_huge_output_is_cut_and_counted_but_not_stored(cluster, tmp_path):
    """100 MB of output once made a 333 MB cache that every agent run read."""
    line = "  - ERROR:EINSTANCEDOWN:instance:vm%06d.example.com:instance down "
    lines = 140000                      # 128 bytes each: 17.1 MiB
    with open(str(tmp_path / "huge.out"), "w") as f:
        for i in range(lines):
            f.write((line % i).ljust(127, "x") + "\n")
    with open(str(tmp_path / "huge.err"), "w") as f:
        f.write("debug: nothing to see here\n" * 80000)      # 2.1 MiB
    (tmp_path / "huge.rc").write_text("1\n")
    cluster.env["FAKE_GNT_CASE"] = str(tmp_path / "huge")
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2"
    assert svc["summary"].startswith(
        "output truncated: only the first 16 MiB of 17.1 MiB on stdout and the "
        "first 1 MiB of 2.1 MiB on stderr were read; the incomplete run found "
        "131072 errors: EINSTANCEDOWN vm000000.example.com (instance down xxxxxxxx")
    assert re.search(r" - verify ran \d+ s ago; no complete result yet$",
                     svc["summary"]), svc["summary"]
    # every finding in what was read counts, 10000 are stored
    assert svc["metrics"]["ganeti_verify_errors"] == 16 * 2 ** 20 // 128
    assert "121072 more findings not stored (only the first 10000 are " \
        "kept)" in svc["details"]
    assert cluster.cache.stat().st_size < 4 * 2 ** 20
    again = service(cluster.agent())
    assert again["state"] == "2"
    assert again["summary"].split(" - verify ran ")[0] == \
        svc["summary"].split(" - verify ran ")[0]


def test_agent_refuses_a_cache_too_big_to_be_ours(cluster):
    cluster.case("era-3.0-clean")
    cluster.run("--refresh")
    data = json.loads(cluster.cache.read_text())
    data["padding"] = "x" * (33 * 2 ** 20)
    cluster.cache.write_text(json.dumps(data))
    svc = service(cluster.agent())
    assert svc["state"] == "3"
    assert "cache %s unreadable (%s: larger than 8 MiB)" \
        % (cluster.cache, cluster.cache) in svc["summary"]


def test_verify_sleeping_past_the_timeout_is_crit(cluster):
    cluster.settings["timeout"] = "1"
    cluster.env["FAKE_GNT_SLEEP"] = "30"
    cluster.case("era-3.0-clean")
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2" and "did not finish within 1 s" in svc["summary"]
    assert "no errors or warnings" not in svc["summary"]


def test_refresh_outlives_the_runner_deadline(cluster):
    cluster.general = "deadline = 1s\n"
    cluster.env["FAKE_GNT_SLEEP"] = "2"
    cluster.case("era-2.4")
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2" and svc["metrics"]["ganeti_verify_errors"] == 3


# ------------------------------------------------ every case, end to end

CASES = [
    # case, state, summary start
    ("era-3.0-clean", "0", "no errors or warnings (1 notice) - verify ran "),
    ("locks-then-clean", "0", "no errors or warnings - verify ran "),
    ("era-2.16-groups", "1", "3 warnings: EINSTANCESPLITGROUPS db1.site-b.example.com "),
    ("era-2.7", "2", "2 errors: ENODESSH node1.example.net (ssh communication with "),
    ("era-3.1-assessment", "2", "1 error, 2 warnings: EINSTANCEFAULTYDISK web1"),
    ("all-codes-3.0", "2", "ganeti-noded on node3.example.com does not answer; "
     "32 errors, 9 warnings: ENODERPC node3.example.com (while contacting "
     "node: Error 7: Failed to connect to node...), ECLUSTERCFG (instance web9"),
    ("unrecognised", "2", "4 errors, 1 warning: ERROR (FATAL:ENEWCODE:node:"
     "node1.example.com:a severity we do no...), ERROR (ERROR node1.example.com "
     "lost its disks), ENEWCODE node1.example.com (an unknown code is still a "
     "finding), +2 more - verify ran "),
    ("indented", "2", "2 errors, 1 warning: ENODEDRBD node1.example.com (drbd "
     "minor 1 of instance web1.example.com is not active), ENODEDRBD "
     "node2.example.com (drbd minor 0 of instance web1.example.com is not "
     "active), WARNING node3.example.com (volume xenvg/old is unknown) - "
     "verify ran "),
    ("job-failed", "1", "1 verify job failed: Job 513 has failed: Failure: "
     "command execution error: Can't get the node information of "
     "node2.example.com: Error 7: Failed to connect to node2.example.com port "
     "1811: No route to host - verify ran "),
    ("job-failed-group", "1", "1 verify job failed: Job 77 has failed: "
     "Failure: prerequisites not met for this operation: error type: "
     "unknown_entity, error details: Group 'nosuch' not found - verify ran "),
    ("not-master", "3", "gnt-cluster says this is not the master"),
    ("not-in-cluster", "3", "gnt-cluster says this node is not in a cluster"),
    ("no-daemon-2.x", "2", "the master daemon (ganeti-luxid) does not answer, "
     "verify did not run (is it running?): Cannot communicate with the master "
     "daemon. Is it running and listening for connections? - verify ran "),
    ("no-daemon-3.0", "2", "the master daemon (ganeti-luxid) does not answer, "
     "verify did not run (is it running?): Connect timed out - verify ran "),
    ("queue-drained", "1", "the job queue is drained, verify did not run "
     "(upgrade in progress? gnt-cluster queue undrain): Failure: the job "
     "queue is marked for drain"),
    ("queue-drained-3.0", "1", "the job queue is drained, verify did not run "
     "(upgrade in progress? gnt-cluster queue undrain): Unhandled Ganeti "
     "error: Queue drained - verify ran "),
    ("noded-stopped-3.0", "2", "ganeti-noded on node1.ganeti.test does not "
     "answer; 6 errors, 1 warning: ENODERPC node1.ganeti.test (while "
     "contacting node: Error 7: Failed to connect to 192...."),
    ("queue-full", "2", "the job queue is full"),
    ("no-permission", "3", "not allowed to talk to the master daemon"),
    ("usage", "3", "gnt-cluster rejected the arguments: check [cluster_verify] "
     "extra_args: gnt-cluster: error: option -I: invalid choice"),
    ("corrupt-config", "2", "the cluster configuration is corrupt: Corrupt "),
    ("traceback", "1", "gnt-cluster verify crashed: KeyError: 'opresult'"),
]


@pytest.mark.parametrize("case, state, start", CASES)
def test_each_recorded_case_end_to_end(cluster, case, state, start):
    cluster.case(case)
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == state
    assert svc["summary"].startswith(start), svc["summary"]
    assert svc["details"][-1].startswith("verify ran ")
    # the agent then prints the same from the cache, without a new verify
    again = service(cluster.agent())
    assert (again["state"], again["details"]) == (state, svc["details"])
    assert len(cluster.verifies()) == 1


def test_all_codes_are_listed_one_per_line_grouped_by_code(cluster):
    cluster.case("all-codes-3.0")
    svc = service(cluster.run("--refresh").hosts)
    lines = svc["details"][:41]
    assert sorted(line.split()[1].rstrip(":") for line in lines) == \
        sorted(verify.CODES)
    assert [line.split()[0] for line in lines] == ["CRIT"] * 32 + ["WARN"] * 9
    assert "CRIT ENODEN1 node1.example.com: not enough memory to accomodate " \
        "instance failovers should node node2.example.com fail (8192MiB " \
        "needed, 4096MiB available)" in lines
    assert "CRIT ECLUSTERCFG: instance web9.example.com: disk/0 has invalid " \
        "size: 0" in lines
    assert "CRIT ECLUSTERDANGLINGNODES: the following nodes (and their " \
        "instances) belong to a non existing group: node9.example.com" in lines
    assert svc["details"][41] == "NOTICE: 1 non-redundant instance(s) found."


def test_nagios_and_human_output(cluster):
    cluster.case("era-2.16-groups")
    proc = cluster.run("--refresh", "--nagios")
    assert proc.returncode == 1 and proc.stdout.startswith("WARNING - 3 warnings")
    proc = cluster.run("--human")
    assert proc.returncode == 0 and "Ganeti verify" in proc.stdout


def test_a_command_that_cannot_run_is_unknown(cluster):
    broken = cluster.tmp / "gnt-cluster"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    cluster.gnt_cluster = str(broken)
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "3"
    assert svc["summary"].startswith("cannot run %s: No such file or directory"
                                     % broken)
    # nothing ran, so nothing was killed either
    assert svc["details"][-1].startswith("verify could not run at ")
    assert svc["details"][-1].endswith(": %s verify --error-codes" % broken)


def test_long_stderr_never_pushes_the_age_out_of_the_summary(cluster, tmp_path):
    """stderr goes into the summary shortened; the details have all of it."""
    debug = ["2024-01-12 02:30:%02d: DEBUG luxi: connecting to "
             "/var/run/ganeti/socket/ganeti-query (attempt %d)" % (i, i)
             for i in range(40)]
    (tmp_path / "chatty.err").write_text("\n".join(debug + [
        "Cannot communicate with the master daemon.",
        "Is it running and listening for connections?", "x" * 500]) + "\n")
    (tmp_path / "chatty.rc").write_text("1\n")
    cluster.env["FAKE_GNT_CASE"] = str(tmp_path / "chatty")
    cluster.settings["severity"] = "ENODEXX:warn"    # a config problem too
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2"
    assert svc["summary"].startswith(
        "the master daemon (ganeti-luxid) does not answer, verify did not run "
        "(is it running?): Cannot communicate with the master daemon. Is it "
        "running and listening for connections? - verify ran ")
    assert svc["summary"].endswith("(config problem: [cluster_verify] "
                                   "severity: ENODEXX is not a verify error "
                                   "code (typo?))")
    assert "stderr: " + debug[-1] in svc["details"]
    # a job's long error is cut in the summary, whole in the details
    cause = "the cause, " * 50
    (tmp_path / "chatty.err").write_text(
        "Job 9 has failed: Failure: command execution error:\n%s\n" % cause)
    (tmp_path / "chatty.out").write_text(
        "1 job(s) failed while verifying the cluster.\n")
    cluster.settings["extra_args"] = "-v"           # makes the cache due
    svc = service(cluster.run("--refresh").hosts)
    summary = svc["summary"].split(" - verify ran ")[0]
    assert summary.startswith("1 verify job failed: Job 9 has failed: Failure: "
                              "command execution error: the cause, the cause")
    assert len(summary) <= 230 and summary.endswith("...")
    assert "stderr: Job 9 has failed: Failure: command execution error: %s" \
        % cause.strip() in svc["details"]


def test_exit_1_without_error_or_reason_warns(cluster, tmp_path):
    base = tmp_path / "odd"
    (tmp_path / "odd.out").write_text("Submitted jobs 1, 2\n")
    (tmp_path / "odd.rc").write_text("1\n")
    cluster.env["FAKE_GNT_CASE"] = str(base)
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "1"
    assert svc["summary"].startswith("gnt-cluster verify exited with 1 but "
                                     "reported no ERROR: no reason given")


def test_built_check_refreshes_through_its_own_library(cluster, tmp_path):
    """The built check (tools/build.py) refreshes through the library
    beside local/, not the checkout's."""
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py"),
                    "agent", str(tmp_path / "agent")], check=True,
                   stdout=subprocess.DEVNULL, timeout=120)
    app = tmp_path / "agent" / "local" / "ganeti_cluster_verify"
    (cluster.tmp / "etc").mkdir(exist_ok=True)
    (cluster.tmp / "etc" / "ganeti_cmk.cfg").write_text(cluster.config_text())
    cluster.case("era-2.4")
    env = dict(cluster.env, PATH=os.environ.get("PATH", "/usr/bin:/bin"),
               MK_CONFDIR=str(cluster.tmp / "etc"), MK_VARDIR=str(cluster.tmp / "var"))

    def agent():
        proc = subprocess.run([sys.executable, str(app)], env=env, cwd=str(tmp_path),
                              stdout=subprocess.PIPE, universal_newlines=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        return assert_valid_output(proc.stdout)[None][SERVICE]

    assert agent()["summary"].startswith("first verify run in progress")
    cluster.wait_for_cache()
    assert agent()["state"] == "2"


# ------------------------------------------------------------ piggyback

def test_piggyback_sends_findings_to_their_hosts(cluster):
    cluster.settings["piggyback"] = "yes"
    cluster.case("all-codes-3.0")
    hosts = cluster.run("--refresh").hosts
    # every node and instance from ssconf, and every item with findings,
    # but not this host, not UUIDs, not groups or the cluster
    assert set(hosts) == {None, "node1.example.com", "node2.example.com",
                          "node3.example.com", "web1.example.com",
                          "db1.example.com", "db2.example.com"} | {
        "web%d.example.com" % i for i in range(2, 9)}
    web1 = service(hosts, "web1.example.com")
    assert web1["state"] == "2"
    assert web1["summary"].startswith(
        "1 error: EINSTANCEDOWN (instance not running on its primary node "
        "node1.example.com) - gnt-cluster verify on the master ")
    assert web1["details"] == ["CRIT EINSTANCEDOWN web1.example.com: instance "
                               "not running on its primary node node1.example.com"]
    db1 = service(hosts, "db1.example.com")
    assert db1["state"] == "2" and db1["details"][0].startswith("CRIT EINSTANCEBADNODE")
    assert service(hosts, "web6.example.com")["state"] == "1"
    node2 = service(hosts, "node2.example.com")
    assert node2["summary"].startswith(
        "6 errors, 2 warnings: ENODEDRBD (drbd minor 0 of disk 7a6b5c4d-3e2f-"
        "1a0b-9c8d-7e6f5a4b3c2d...), ENODELVM (node didn't return data for the "
        "volume group 'xenvg' - it...), ENODESETUP (")
    assert len(node2["details"]) == 8


def test_piggyback_hosts_without_findings_are_ok(cluster):
    cluster.settings["piggyback"] = "yes"
    cluster.case("era-3.0-clean")
    hosts = cluster.run("--refresh").hosts
    assert set(hosts) == {None, "node2.example.com", "node3.example.com",
                          "web1.example.com", "db1.example.com"}
    assert all(service(hosts, h)["state"] == "0" for h in hosts if h)
    assert service(hosts, "db1.example.com")["summary"].startswith(
        "no errors or warnings - gnt-cluster verify on the master ")


def test_no_piggyback_by_default_and_unknown_without_a_complete_run(cluster):
    cluster.case("all-codes-3.0")
    assert set(cluster.run("--refresh").hosts) == {None}
    cluster.settings["piggyback"] = "yes"
    cluster.case("queue-drained")
    cluster.settings["extra_args"] = "-v"   # makes the cache due
    hosts = cluster.run("--refresh").hosts
    assert set(hosts) == {None, "node2.example.com", "node3.example.com",
                          "web1.example.com", "db1.example.com"}
    web1 = service(hosts, "web1.example.com")
    assert web1["state"] == "3" and web1["summary"].startswith(
        "no complete verify result on the master: the job queue is drained, "
        "verify did not run")


# ---------------------------------------------- evaluation, driven directly

def make_cache(case, now, age=60.0, duration=12.0, **fields):
    path = os.path.join(DATA, case)

    def read(ext, default=""):
        return open(path + ext).read() if os.path.exists(path + ext) else default

    report = verify.parse(read(".out"), read(".err"), int(read(".rc", "0")))
    cache = {"version": cv.CACHE_VERSION, "command": ["gnt-cluster", "verify",
                                                      "--error-codes"],
             "started": now - age - duration, "finished": now - age,
             "timeout": 600.0, "timed_out": False, "error": None,
             "report": report.to_data()}
    cache.update(fields)
    return cache


def evaluate(case, config="", now=1700000000.0, **kwargs):
    config = cv.CHECK.config(text="[cluster_verify]\n" + config)
    results = cv.evaluate(make_cache(case, now), cv.Settings(config), now,
                          **kwargs)
    assert_valid_output("".join(line + "\n" for line in render_local(results)))
    return results[0], config.problems


def test_severity_overrides_and_ignores():
    result, problems = evaluate("era-2.4")
    assert result.state == CRIT and problems == []
    assert result.metrics[0].value == 3
    result, problems = evaluate(
        "era-2.4", "severity = EINSTANCEDOWN:warn, ENODEORPHANLV:ok\n"
        "ignore_codes = ENODEDRBD\n")
    assert problems == []
    assert result.state == WARN
    assert result.summary.startswith("1 warning: EINSTANCEDOWN web1.example.org")
    assert [m.value for m in result.metrics[:2]] == [0, 1]
    assert result.details[:3] == [
        "WARN EINSTANCEDOWN web1.example.org: instance not running on its "
        "primary node node1.example.org",
        "OK ENODEORPHANLV node1.example.org: volume xenvg/old-disk is unknown",
        "ignored ENODEDRBD node2.example.org: drbd minor 0 of instance "
        "web1.example.org is not active"]
    result, _ = evaluate("era-2.4", "ignore_items = web1\\.example\\.org node[12]\\..*\n")
    assert result.state == OK
    assert result.summary.startswith("no errors or warnings (1 notice)")
    assert [d.split()[0] for d in result.details[:3]] == ["ignored"] * 3
    # the item regex must match the whole name
    result, _ = evaluate("era-2.4", "ignore_items = web1 node\n")
    assert result.state == CRIT and result.metrics[0].value == 3


@pytest.mark.parametrize("config, problem", [
    ("severity = ENODEN1:sometimes", "[cluster_verify] severity: 'ENODEN1:sometimes' "
     "is not CODE:ok, CODE:warn or CODE:crit, ignored"),
    ("severity = :warn", "[cluster_verify] severity: ':warn' is not CODE:ok"),
    ("severity = ENODEN1:unknown", "[cluster_verify] severity: "
     "'ENODEN1:unknown' is not CODE:ok"),
    ("severity = ENODEXX:warn", "[cluster_verify] severity: ENODEXX is not a "
     "verify error code (typo?)"),
    ("ignore_codes = enoden1 EBOGUS", "[cluster_verify] ignore_codes: EBOGUS is "
     "not a verify error code (typo?)"),
    ("ignore_items = web[", "[cluster_verify] ignore_items: 'web[' is not a "
     "regular expression"),
    ("timeout = 0", "[cluster_verify] timeout: '0' is not a duration"),
])
def test_bad_settings_are_config_problems(config, problem):
    _, problems = evaluate("era-3.0-clean", config + "\n")
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_settings_defaults():
    s = cv.Settings(cv.CHECK.config(text=""))
    assert (s.max_age, s.stale_after, s.timeout) == (600, 1800, 600)
    assert s.extra_args == [] and s.severity == {} and s.ignore_codes == set()
    assert s.ignore_items == [] and s.piggyback is False
    s = cv.Settings(cv.CHECK.config(text="[cluster_verify]\nignore_codes = enoden1\n"))
    assert s.ignore_codes == {"ENODEN1"}
    s = cv.Settings(cv.CHECK.config(text="[cluster_verify]\nseverity = enoden1:Warn "
                           "ENODEDRBD:critical ENODEOS:warning ENODELVM:ok\n"))
    assert s.severity == {"ENODEN1": WARN, "ENODEDRBD": CRIT, "ENODEOS": WARN,
                          "ENODELVM": OK}


def test_stale_after_must_leave_room_for_a_refresh(cluster):
    """A result turns stale while a refresh may still legitimately run."""
    cluster.case("era-3.0-clean")
    cluster.settings.update(max_age="10m", timeout="10m", stale_after="15m")
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "1"
    assert svc["summary"].endswith(
        "(config problem: [cluster_verify] stale_after: 15 min is not more "
        "than max_age + timeout (20 min): a result would turn stale while its "
        "refresh may still run)")
    cluster.settings["stale_after"] = "21m"
    assert service(cluster.run("--refresh").hosts)["state"] == "0"


def test_bad_setting_makes_the_check_warn_end_to_end(cluster):
    cluster.case("era-3.0-clean")
    cluster.settings["severity"] = "ENODEN1:sometimes"
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "1"
    assert "config problem: [cluster_verify] severity" in svc["summary"]


def test_first_run_and_refresh_notes():
    settings = cv.Settings(cv.CHECK.config(text=""))
    (r,) = cv.evaluate(None, settings, 0, Problem(OK, "refresh started (pid 9)"))
    assert (r.state, r.summary) == (UNKNOWN, "first verify run in progress: "
                                    "refresh started (pid 9)")
    assert r.metrics == []
    (r,) = cv.evaluate(None, settings, 0, Problem(WARN, "cannot start a background "
                                               "refresh: x"))
    assert r.summary == "no verify result yet: cannot start a background refresh: x"
    result, _ = evaluate("era-3.0-clean", refresh_note=Problem(WARN, "cannot start a "
                                                          "background refresh: x"))
    assert result.state == WARN
    assert result.summary.startswith("cannot start a background refresh: x; "
                                     "no errors or warnings")


def test_age_duration_and_run_details():
    now = 1700000000.0
    cache = make_cache("era-3.0-clean", now, age=125.0, duration=7.4)
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")), now)
    assert r.summary == "no errors or warnings (1 notice) - verify ran 2.1 min ago"
    assert [(m.name, m.value) for m in r.metrics] == [
        ("ganeti_verify_errors", 0), ("ganeti_verify_warnings", 0),
        ("ganeti_verify_duration", 7.4), ("ganeti_verify_age", 125)]
    assert r.details[-1].endswith("for 7 s, exit code 0: gnt-cluster verify "
                                  "--error-codes")
    # a clock that went back: age 0, not a negative number, and it says so;
    # the age is unknown, so it is not fine (WARN) until a refresh replaces it
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")), now - 3600)
    assert r.metrics[3].value == 0 and r.state == WARN
    assert r.summary == ("result is from 58 min in the future: its age is "
                         "unknown (did the clock jump back?); no errors or "
                         "warnings (1 notice) - verify finished 58 min in the "
                         "future (did the clock jump back?)")
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")), now - 150)
    assert r.summary.endswith(" - verify ran 0 s ago")   # within a minute


def test_summary_names_the_worst_three_and_counts_the_rest():
    result, _ = evaluate("all-codes-3.0")
    assert result.summary == (
        "ganeti-noded on node3.example.com does not answer; "
        "32 errors, 9 warnings: ENODERPC node3.example.com (while contacting "
        "node: Error 7: Failed to connect to node...), ECLUSTERCFG (instance "
        "web9.example.com: disk/0 has invalid size: 0), ECLUSTERCLIENTCERT "
        "(Client certificate /var/lib/ganeti/client.pem of node 6e4...), "
        "+38 more - verify ran 1 min ago")


def test_unrecognised_lines_and_stderr_are_in_the_details():
    result, _ = evaluate("unrecognised")
    assert "unrecognised output: something new in Ganeti 3.2" in result.details
    result, _ = evaluate("job-failed-group")
    assert result.state == WARN
    assert "stderr: Job 77 has failed: Failure: prerequisites not met for this " \
        "operation: error type: unknown_entity, error details: Group 'nosuch' " \
        "not found" in result.details


def test_killed_by_a_signal_warns():
    now = 1700000000.0
    cache = make_cache("era-3.0-clean", now)
    cache["report"]["exit_code"] = -9
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")), now)
    assert r.state == WARN and r.summary.startswith("gnt-cluster was killed by signal 9")


def verify_task(tmp_path, text="", command=("gnt-cluster", "verify")):
    settings = cv.Settings(cv.CHECK.config(text="[paths]\nstate_dir = %s\n"
                                           "gnt_job = %s\n%s" % (tmp_path, FAKE_GNT_JOB, text)))
    return settings, cv.make_task(settings, list(command))


def test_a_failed_background_refresh_is_cached(tmp_path, monkeypatch):
    settings, task = verify_task(tmp_path)

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(background, "refresh", broken)
    with pytest.raises(RuntimeError):
        background.refresh_in_background(task, print)
    cache = background.read_cache(task)
    (r,) = cv.evaluate(cache, settings, cache["finished"] + 5)
    assert r.state == UNKNOWN
    assert r.summary.startswith("the background refresh failed: RuntimeError: "
                                "disk on fire - verify ran 5 s ago")
    assert r.details[-1].startswith("verify could not run at ")


def record(**fields):
    """A minimal record of the verify task."""
    data = {"version": cv.CACHE_VERSION, "command": ["gnt-cluster", "verify"],
            "report": {}, "started": 1, "finished": 2, "timeout": 600,
            "timed_out": False, "error": None}
    data.update(fields)
    return data


def test_cache_is_written_atomically_and_checked(tmp_path):
    _, task = verify_task(tmp_path)
    path = task.cache
    background.write_cache(task, record())
    assert os.listdir(str(tmp_path)) == ["cluster_verify.json"]
    assert background.read_cache(task)["finished"] == 2
    for bad in (record(version=99), record(report=[]), [1, 2]):
        background.write_cache(task, bad)
        with pytest.raises(ValueError):
            background.read_cache(task)
    _, elsewhere = verify_task(tmp_path / "none")
    assert background.read_cache(elsewhere) is None
    # a temporary file left behind (here a symlink) is replaced, not followed
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(str(victim), "%s.%d.tmp" % (path, os.getpid()))
    background.write_cache(task, record(finished=3))
    assert victim.read_text() == "keep" and background.read_cache(task)["finished"] == 3
    assert sorted(os.listdir(str(tmp_path))) == ["cluster_verify.json", "victim"]


# ------------------------------------------- incomplete runs, bounds, causes

def test_a_timeout_names_the_job_that_holds_the_locks(cluster):
    """Ganeti 3.0 says nothing on stderr while verify waits: gnt-job does."""
    cluster.settings["timeout"] = "1s"
    cluster.env.update(FAKE_GNT_MODE="hang", FAKE_GNT_QUIET="1",
                       FAKE_GNT_JOB_HOLDER="59",
                       FAKE_GNT_PIDFILE=str(cluster.tmp / "grandchild"))
    svc = service(cluster.run("--refresh").hosts)
    assert svc["state"] == "2"
    assert re.match(
        r"verify did not finish within 1 s \(\[cluster_verify\] timeout\) and "
        r"was killed; it was waiting for locks held by job 59 "
        r"\(TEST_DELAY\(60\.0\), running for 3(\.0)? min\); its jobs 7, 8 were "
        r"cancelled \(gnt-job cancel\) - verify ran \d+ s ago; no complete "
        r"result yet$", svc["summary"]), svc["summary"]
    assert "gnt-job list after the timeout: job 7 waiting " \
        "CLUSTER_VERIFY_GROUP(x)" in svc["details"]
    assert cluster.job_log.read_text().splitlines() == [
        "list --no-headers --separator=| -o id,status,summary,start_ts 7 8",
        "list --no-headers --separator=| -o id,status,summary,start_ts --running",
        "cancel 7 8"]


def ok_then(cluster, breakage):
    """A complete clean run, then a newer one broken by `breakage()`."""
    cluster.case("era-3.0-clean")
    assert service(cluster.run("--refresh").hosts)["state"] == "0"
    cluster.age_cache(20 * 60)
    breakage()
    cluster.settings["max_age"] = "1s"
    return cluster.run("--refresh").hosts


@pytest.mark.parametrize("breakage, why", [
    ("signal", "gnt-cluster was killed by signal 9"),
    ("exit", "gnt-cluster verify exited with 1 but reported no ERROR: "
     "no reason given"),
    ("timeout", "verify did not finish within 1 s"),
])
def test_an_incomplete_run_keeps_the_last_complete_verdict(cluster, tmp_path,
                                                           breakage, why):
    def broken():
        if breakage == "signal":
            cluster.env["FAKE_GNT_MODE"] = "killed"
        elif breakage == "exit":
            (tmp_path / "odd.out").write_text("Submitted jobs 1, 2\n")
            (tmp_path / "odd.rc").write_text("1\n")
            cluster.env["FAKE_GNT_CASE"] = str(tmp_path / "odd")
        else:
            cluster.settings["timeout"] = "1s"
            cluster.env.update(FAKE_GNT_MODE="hang", FAKE_GNT_PIDFILE=str(
                tmp_path / "grandchild"))
    cluster.settings["piggyback"] = "yes"
    hosts = ok_then(cluster, broken)
    svc = service(hosts)
    assert svc["state"] in ("1", "2"), svc
    assert svc["summary"].startswith(why), svc["summary"]
    assert re.search(r" - verify ran \d+ s ago, so the last complete result "
                     r"counts \(verify ran 20 min ago\): no errors or warnings "
                     r"\(1 notice\)$", svc["summary"]), svc["summary"]
    assert svc["metrics"]["ganeti_verify_age"] >= 1200
    assert "the last complete result:" in svc["details"]
    # piggybacked hosts keep the complete verdict and say why
    web1 = service(hosts, "web1.example.com")
    assert web1["state"] == "0"
    assert re.match(r"no errors or warnings - gnt-cluster verify on the master "
                    r"20 min ago; the newest verify \(ran \d+ s ago\) does not "
                    r"count: " + re.escape(why), web1["summary"]), web1
    # and the agent shows the same from the cache
    again = cluster.agent()
    assert service(again)["summary"].split(" - ")[0] == svc["summary"].split(" - ")[0]


def test_a_last_complete_result_from_the_future_never_stays_ok():
    """The clock jumped back a day after the last complete verify, and every
    run since is incomplete: that result's age is unknown, not forever
    below stale_after.  The piggybacked services stayed OK ("0 s ago")
    until the clock caught up."""
    now = 1700000000.0
    last = make_cache("era-3.0-clean", now, age=-86400.0)
    last["complete"] = True
    newest = make_cache("era-3.0-clean", now, timed_out=True, complete=False,
                        last_complete=last)
    config = cv.CHECK.config(text="[cluster_verify]\npiggyback = yes\n")
    results = cv.evaluate(newest, cv.Settings(config), now,
                          node="node1.example.com",
                          hosts=["node1.example.com", "web1.example.com"])
    assert_valid_output("".join(line + "\n" for line in render_local(results)))
    web1 = next(r for r in results if r.host == "web1.example.com")
    assert web1.state == WARN, web1.summary
    assert "result is from 1 d in the future: its age is unknown (did the " \
        "clock jump back?)" in web1.summary, web1.summary
    master = results[0]
    assert master.state == CRIT and "its age is unknown" in master.summary


def test_what_an_incomplete_run_found_about_a_host_reaches_its_service():
    """verify was killed after it reported an ERROR about web1: the master
    is CRIT and names it, and web1's own service, which shows the last
    complete (clean) result, must not stay OK about it."""
    now = 1700000000.0
    last = make_cache("era-3.0-clean", now, age=1200.0)
    last["complete"] = True
    out = ("Submitted jobs 1, 2\nWaiting for job 1 ...\n* Verifying node status\n"
           "  - ERROR:ENODEDRBD:node:web1.example.com:drbd minor 0 is not active\n")
    newest = dict(make_cache("era-3.0-clean", now),
                  **cv.parse_output(-9, out.encode(), b""))
    assert newest["complete"] is False
    newest["last_complete"] = last
    config = cv.CHECK.config(text="[cluster_verify]\npiggyback = yes\n")
    results = cv.evaluate(newest, cv.Settings(config), now,
                          node="node1.example.com",
                          hosts=["node1.example.com", "web1.example.com",
                                 "db1.example.com"])
    assert_valid_output("".join(line + "\n" for line in render_local(results)))
    master = results[0]
    assert master.state == CRIT and "ENODEDRBD" in master.summary
    web1 = next(r for r in results if r.host == "web1.example.com")
    assert web1.state == CRIT, web1.summary
    assert web1.summary.startswith("1 error: ENODEDRBD (drbd minor 0 is not "
                                   "active) - gnt-cluster verify on the master "
                                   "20 min ago; the newest verify"), web1.summary
    db1 = next(r for r in results if r.host == "db1.example.com")
    assert db1.state == OK, db1.summary


@pytest.mark.parametrize("stdout", [
    "",
    "Usage:\n  gnt-cluster verify [opts...]\n\nOptions:\n  -h, --help  show "
    "this help message and exit\n",
], ids=["nothing", "help"])
def test_exit_0_without_verifying_anything_is_not_fine(stdout):
    """`extra_args = --help` (or a gnt-cluster that prints nothing) exits 0
    without submitting a job or verifying a section: that checked nothing,
    and said "no errors or warnings" (OK)."""
    now = 1700000000.0
    cache = dict(make_cache("era-3.0-clean", now),
                 **cv.parse_output(0, stdout.encode(), b""))
    assert cache["complete"] is False
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")), now)
    assert r.state == WARN, r.summary
    assert r.summary.startswith(
        "gnt-cluster verify exited with 0 but verified nothing (no job "
        "submitted, no section):"), r.summary
    assert "no complete result yet" in r.summary


def test_piggybacked_services_turn_stale_like_the_masters(cluster):
    cluster.settings["piggyback"] = "yes"
    cluster.case("era-3.0-clean")
    cluster.run("--refresh")
    cluster.age_cache(2 * 3600)
    cluster.env["FAKE_GNT_SLEEP"] = "30"     # the refresh it starts is slow
    hosts = cluster.agent()
    assert service(hosts)["state"] == "1"
    web1 = service(hosts, "web1.example.com")
    assert web1["state"] == "1"
    assert web1["summary"] == (
        "no errors or warnings - gnt-cluster verify on the master 2.0 h ago; "
        "result is 2.0 h old, older than 30 min ([cluster_verify] stale_after)")


@needs_root
def test_a_full_state_dir_never_caches_a_cut_output_as_complete(cluster, tmp_path):
    """verify's output goes to files in state_dir: on a full file system it
    is cut (the WARNING at its end is lost) although verify exits 0."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    (tmp_path / "long.out").write_text(
        "Submitted jobs 1, 2\n" + "Mon Nov 30 16:15:19 2026 * Verifying "
        "something that takes many words to say\n" * 8000
        + "  - WARNING:ENODELVM:node:node2.example.com:lost at the end\n")
    (tmp_path / "long.rc").write_text("0\n")
    cluster.env["FAKE_GNT_CASE"] = str(tmp_path / "long")
    assert (tmp_path / "long.out").stat().st_size > 512 * 1024
    cluster.state_dir.mkdir(parents=True)
    # a private mount namespace: the tmpfs goes away with the check
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o size=256k,mode=0700 tmpfs "$0" && exec "$@"',
               str(cluster.state_dir)] + check_command(SCRIPT) + ["--refresh"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "ganeti_cmk.cfg").write_text(cluster.config_text())
    env = dict(cluster.env, PATH=os.environ["PATH"], MK_CONFDIR=str(tmp_path / "etc"),
               MK_VARDIR=str(tmp_path / "var"))
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    svc = assert_valid_output(proc.stdout)[None][SERVICE]
    assert svc["state"] == "1", svc
    assert re.match(r"the file system of %s was full while verify ran \(0(\.\d)? "
                    r"MiB free after it\): its output may be cut - verify ran "
                    r"\d+ s ago; no complete result yet$" % re.escape(
                        str(cluster.state_dir)), svc["summary"]), svc["summary"]


def cache_of(tmp_path, stdout, stderr="", rc=1, last_complete=None):
    """Parse `stdout` as verify's and write the cache; the task."""
    _, task = verify_task(tmp_path)
    rec = record(**cv.parse_output(rc, stdout.encode(), stderr.encode()))
    if last_complete is not None:
        rec["complete"], rec["last_complete"] = False, last_complete
    background.write_cache(task, rec)
    return task


def test_long_section_titles_and_many_findings_make_a_small_cache(tmp_path):
    """470 KB of output once made a 38.8 MiB cache the agent refused: each
    finding stored its 4 KB section title."""
    out = ("* " + "Verifying a section with a long title " * 105 + "\n"
           + "".join("  - ERROR:ENODELVM:node:n%d.example.com:lost\n" % i
                     for i in range(10000)))
    assert 450000 < len(out) < 500000
    task = cache_of(tmp_path, out)
    size = os.path.getsize(task.cache)
    assert size < 1 << 20, size
    cache = background.read_cache(task)
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")),
                       cache["finished"])
    assert r.metrics[0].value == 10000 and r.state == CRIT


def hypothesis_settings(**kwargs):
    from hypothesis import HealthCheck, settings
    return settings(deadline=None, suppress_health_check=list(HealthCheck),
                    **kwargs)


def test_any_verify_output_makes_a_cache_the_agent_reads(tmp_path_factory):
    from hypothesis import given, strategies as st
    text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=64)

    @hypothesis_settings(max_examples=8)
    @given(findings=st.integers(0, 12000), title=st.integers(0, 5000),
           message=st.integers(0, 400), unicode=st.booleans(),
           sections=st.integers(0, 400), tail=text)
    def check(findings, title, message, unicode, sections, tail):
        char = "\u00e9\u2028" if unicode else "x\\x01"
        lines = ["* %s %d" % (char * (title // 2), i) for i in range(sections)]
        lines += ["  - %s:ENODE%d:node:%s%d:%s" % (
            "ERROR" if i % 2 else "WARNING", i % 50, char * 20, i,
            char * (message // 2)) for i in range(findings)]
        out = "\n".join(lines) + "\n" + tail
        base = tmp_path_factory.mktemp("cache")
        complete = cache_of(base, out, rc=1)
        last = background.read_cache(complete)
        task = cache_of(base, out, "stderr " * 20000, rc=-9, last_complete=last)
        assert os.path.getsize(task.cache) <= background.MAX_CACHE
        cache = background.read_cache(task)
        cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")), cache["finished"])

    check()


def test_a_record_too_big_for_the_reader_is_stored_without_its_output(tmp_path):
    _, task = verify_task(tmp_path)
    big = record(report=verify.parse("  - ERROR:ENODELVM:node:n:x\n").to_data(),
                 padding="x" * background.MAX_CACHE)
    background.write_cache(task, big)
    assert os.path.getsize(task.cache) < 1 << 20
    cache = background.read_cache(task)
    assert cache["complete"] is False
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")),
                       cache["finished"])
    assert r.state == UNKNOWN and r.summary.startswith(
        "the result (8 MiB) is too big to store")


CORRUPT = [
    ("deep nesting", "[" * 200000 + "]" * 200000),
    ("NaN", '{"version": 2, "command": [], "started": NaN, "finished": 1}'),
    ("Infinity", None),
    ("wrong report types", None),
    ("a finding of 5 fields", None),
    ("a string for a list", None),
    ("nested last complete", None),
    ("binary", "\x00\xff" * 100),
]


def corrupt(name):
    good = record(report=verify.parse(open(os.path.join(
        DATA, "era-2.4.out")).read(), "", 1).to_data())
    if name == "Infinity":
        return json.dumps(good).replace('"finished": 2', '"finished": Infinity')
    if name == "wrong report types":
        good["report"]["failed_jobs"] = "3"
    if name == "a finding of 5 fields":
        good["report"]["findings"][0].pop()
    if name == "a string for a list":
        good["report"]["stderr"] = "oops"
    if name == "nested last complete":
        good["last_complete"] = dict(good, last_complete=dict(good))
    return json.dumps(good)


@pytest.mark.parametrize("name, text", CORRUPT, ids=[n for n, _ in CORRUPT])
def test_a_corrupt_cache_is_unreadable_and_the_next_refresh_heals_it(
        cluster, name, text):
    cluster.case("era-3.0-clean")
    cluster.state_dir.mkdir(parents=True)
    cluster.cache.write_text(text or corrupt(name))
    cluster.cache.chmod(0o600)
    svc = service(cluster.agent())
    assert svc["state"] == "3"
    assert svc["summary"].startswith("no verify result yet: cache %s unreadable ("
                                     % cluster.cache), svc["summary"]
    wait_for(lambda: cluster.verifies(), "the refresh")
    cluster.wait_for_cache()
    assert service(cluster.agent())["state"] == "0"


def test_any_json_in_the_cache_reads_as_a_record_or_as_unreadable(tmp_path_factory):
    from hypothesis import given, strategies as st
    leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=20)
    good = json.loads(corrupt("good"))
    paths = [("report",), ("report", "findings"), ("report", "findings", 0),
             ("report", "findings", 0, 5), ("report", "more"), ("report", "failure"),
             ("report", "exit_code"), ("started",), ("cancel",), ("jobs_state",),
             ("truncated",), ("last_complete",), ("complete",), ("command",)]

    @hypothesis_settings(max_examples=150)
    @given(path=st.sampled_from(paths), value=values)
    def check(path, value):
        data = json.loads(json.dumps(good))
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        _, task = verify_task(tmp_path_factory.mktemp("json"))
        with open(task.cache, "w") as f:
            f.write(json.dumps(data))
        try:
            cache = background.read_cache(task)
        except ValueError:
            return
        results = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="[cluster_verify]\npiggyback = yes\n")),
                              1700000000.0, hosts=("web1.example.org",))
        assert_valid_output("".join(line + "\n" for line in render_local(results)))

    check()


def test_piggyback_with_an_instance_list_beyond_128_kib(cluster):
    """About 4,000 instances: ssconf_instance_list exceeds Ganeti's 128 KiB."""
    names = ["instance-%05d.example.com" % i for i in range(5300)]
    cluster.ssconf(instance_list="\n".join(names))
    assert (cluster.data_dir / "ssconf_instance_list").stat().st_size > 128 * 1024
    cluster.settings["piggyback"] = "yes"
    cluster.case("era-3.0-clean")
    hosts = cluster.run("--refresh").hosts
    assert service(hosts)["state"] == "0"
    assert len(hosts) == 1 + 2 + 5300
    assert service(hosts, names[-1])["state"] == "0"


def test_an_ssconf_list_that_cannot_be_read_keeps_the_masters_service(cluster):
    (cluster.data_dir / "ssconf_instance_list").unlink()
    os.mkfifo(str(cluster.data_dir / "ssconf_instance_list"))
    cluster.settings["piggyback"] = "yes"
    cluster.case("era-3.0-clean")
    hosts = cluster.run("--refresh").hosts
    svc = service(hosts)
    assert svc["state"] == "1"
    assert svc["summary"].startswith("no piggyback services: %s: not a regular "
                                     "file; no errors or warnings" % (
                                         cluster.data_dir / "ssconf_instance_list"))


def test_a_huge_item_does_not_push_the_others_out_of_the_summary(tmp_path):
    huge = "h" * 100000
    out = "".join("  - ERROR:EINSTANCEDOWN:instance:%s:instance down\n" % name
                  for name in (huge, "web1.example.com", "web2.example.com"))
    task = cache_of(tmp_path, out)
    cache = background.read_cache(task)
    (r,) = cv.evaluate(cache, cv.Settings(cv.CHECK.config(text="")),
                       cache["finished"])
    assert r.summary.startswith(
        "3 errors: EINSTANCEDOWN %s... (instance down), EINSTANCEDOWN "
        "web1.example.com (instance down), EINSTANCEDOWN web2.example.com "
        "(instance down) - verify ran 0 s ago" % ("h" * 57)), r.summary


def test_host_names_checkmk_would_drop_get_no_piggyback_service(cluster):
    long_name = ("a" * 60 + ".") * 4 + "example.com"     # 255 characters
    cluster.ssconf(instance_list="web1.example.com\n" + long_name)
    cluster.settings["piggyback"] = "yes"
    cluster.case("era-3.0-clean")
    hosts = cluster.run("--refresh").hosts
    assert long_name not in hosts and "web1.example.com" in hosts
    assert "no piggyback service for 1 host: %s... (not a host name Checkmk " \
        "accepts: longer than 240 characters or other characters than " \
        "letters, digits, '.', '-' and '_')" % long_name[:57] \
        in service(hosts)["details"]


@needs_root
@pytest.mark.parametrize("kind", ["fifo", "other owner", "symlink"])
def test_the_cache_is_read_safely(cluster, tmp_path, kind):
    cluster.case("era-3.0-clean")
    cluster.run("--refresh")
    good = tmp_path / "good.json"
    shutil.copy(str(cluster.cache), str(good))
    cluster.cache.unlink()
    if kind == "fifo":
        os.mkfifo(str(cluster.cache), 0o600)
        why = "not a regular file"
    elif kind == "other owner":
        shutil.copy(str(good), str(cluster.cache))
        os.chown(str(cluster.cache), 65534, 65534)
        why = "owned by uid 65534, not by root"
    else:
        os.symlink(str(good), str(cluster.cache))
        why = "Too many levels of symbolic links"
    svc = service(cluster.agent())      # at once: a FIFO never blocks it
    assert svc["state"] == "3"
    assert svc["summary"].startswith("no verify result yet: cache %s unreadable "
                                     "(%s: %s)" % (cluster.cache, cluster.cache,
                                                   why)), svc["summary"]
