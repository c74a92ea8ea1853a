"""`ganeti-cmk status`: every check in one process, in every format."""

import json
import os
import subprocess
import sys

from support import ROOT
from ganeti_cmk.localcheck import worst
from localcheck_grammar import assert_valid_output


def ganeti_cmk(tmp_path, *args, extra_config=""):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.path.join(ROOT, "lib"),
           "MK_CONFDIR": str(tmp_path), "MK_VARDIR": str(tmp_path)}
    (tmp_path / "ganeti_cmk.cfg").write_text(
        "[paths]\nganeti_data_dir = %s\nganeti_run_dir = %s\n%s"
        % (tmp_path, tmp_path, extra_config))
    return subprocess.run([sys.executable, "-m", "ganeti_cmk.cli"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=60)


def test_status_local_format_is_valid_and_has_the_kvm_device(tmp_path):
    proc = ganeti_cmk(tmp_path, "status", "--format", "local")
    services = assert_valid_output(proc.stdout)[None]
    assert "KVM device" in services
    assert proc.returncode == worst(int(s["state"]) for s in services.values())


def test_status_json_and_human_agree(tmp_path):
    data = json.loads(ganeti_cmk(tmp_path, "status", "--format", "json").stdout)
    human = ganeti_cmk(tmp_path, "status").stdout
    for entry in data:
        assert entry["service"] in human
        assert (entry["summary"] or entry["not_applicable"]) in human


def test_status_json_lists_checks_that_do_not_apply_here(tmp_path):
    """As the human table does: state null, and why."""
    data = json.loads(ganeti_cmk(tmp_path, "status", "--format", "json").stdout)
    verify = [e for e in data if e["service"] == "Ganeti verify"]
    assert verify == [{
        "state": None, "state_name": None, "service": "Ganeti verify",
        "not_applicable": "this node is not in a Ganeti cluster (no %s/ssconf_master_node)"
        % tmp_path, "summary": None, "details": [], "host": None, "metrics": {},
        "cached_at": None}]
    assert all(e["cached_at"] is None for e in data)


def test_cached_results_say_so():
    """A result read from a cache (verify's) is marked in json and the table."""
    from ganeti_cmk.cli import as_json
    from ganeti_cmk.human import render_human
    from ganeti_cmk.localcheck import OK, Result
    r = Result(OK, "Ganeti verify", "no errors or warnings", ["ran for 12 s"],
               cached_at=1000.0)
    assert as_json(r)["cached_at"] == 1000.0
    assert render_human([r], now=1300.0).splitlines()[1:] == [
        "           (a cached result, made 5 min ago)", "           ran for 12 s"]


def test_status_nagios_is_one_line(tmp_path):
    proc = ganeti_cmk(tmp_path, "status", "--format", "nagios")
    assert proc.stdout.count("\n") == 1
    assert proc.stdout.split(" - ")[0] in ("OK", "WARNING", "CRITICAL", "UNKNOWN")


def test_checks_lists_every_check(tmp_path):
    from ganeti_cmk.checks import load_all
    listed = [line.split()[:2] for line in ganeti_cmk(tmp_path, "checks").stdout.splitlines()]
    assert [name for name, _ in listed] == ["ganeti_" + c.module for c in load_all()]
    assert len(listed) >= 3


def test_no_command_prints_help(tmp_path):
    proc = ganeti_cmk(tmp_path)
    assert proc.returncode == 2 and "status" in proc.stdout


def test_status_says_why_a_check_is_not_monitored(tmp_path):
    out = ganeti_cmk(tmp_path, "status").stdout
    assert "-        Ganeti verify: not monitored here: this node is not in a " \
           "Ganeti cluster (no %s/ssconf_master_node)" % tmp_path in out


def test_status_shows_a_bad_key_only_on_the_check_that_reads_it(tmp_path):
    # verify runs last and must answer: make this a master whose gnt-cluster
    # is /bin/false (it prints "first verify run in progress")
    (tmp_path / "ssconf_master_node").write_text("node1.example.com\n")
    config = ("gnt_cluster = /bin/false\nstate_dir = %s\n"   # still in [paths]
              "[ganeti]\nnode_name = node1.example.com\n"
              "[kvm_binary]\ncrit_after = soon\n" % tmp_path)
    out = ganeti_cmk(tmp_path, "status", "--format", "json",
                     extra_config=config).stdout
    data = {e["service"]: e for e in json.loads(out)}
    assert "[kvm_binary] crit_after: 'soon'" in data["KVM binary versions"]["summary"]
    assert "crit_after" not in data["Ganeti verify"]["summary"]


def test_status_with_stdout_closed_is_no_traceback(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.path.join(ROOT, "lib"),
           "MK_CONFDIR": str(tmp_path), "MK_VARDIR": str(tmp_path)}
    proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m",
                           "ganeti_cmk", "status"], stdin=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env,
                          timeout=60, cwd="/")
    assert proc.stderr == "" and proc.returncode in (0, 1, 2, 3)
