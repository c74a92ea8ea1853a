"""Helpers for the integration tests: the real cluster that run.sh brought up.

`make integration` (tests/integration/run.sh) builds a single-node Ganeti 3.0 cluster
with one diskless KVM instance inside private network and UTS namespaces; these
helpers run gnt-* commands and the checks inside those namespaces (where the
hostname is the node's name, as on a real node) and validate every check line.
"""

import os
import subprocess

import pytest

from localcheck_grammar import parse_output
from support import ROOT, SYSTEM_PYTHON, check_command

HERE = os.path.dirname(os.path.abspath(__file__))
IN_NS = os.path.join(HERE, "in-ns")
DATA_DIR = "/var/lib/ganeti"
RUN_DIR = "/var/run/ganeti"


def in_ns(*cmd, timeout=120, check=True):
    """Run a command inside the cluster's namespaces; CompletedProcess (text)."""
    proc = subprocess.run([IN_NS] + list(cmd), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail("%s exited %d:\n%s%s" % (" ".join(cmd), proc.returncode,
                                             proc.stdout, proc.stderr))
    return proc


class Cluster:
    """The running test cluster, as Ganeti itself reports it."""

    def __init__(self, node, instance):
        self.node = node
        self.instance = instance
        self.data_dir = DATA_DIR
        self.run_dir = RUN_DIR

    def instance_status(self):
        return in_ns("gnt-instance", "list", "--no-headers", "-o", "status",
                     self.instance).stdout.strip()


def config_text(sections):
    """An INI file from {section: {key: value}}."""
    lines = []
    for section, values in sections.items():
        lines.append("[%s]" % section)
        lines.extend("%s = %s" % item for item in values.items())
        lines.append("")
    return "\n".join(lines)


class CheckRunner:
    """Runs checks/<name> (or any built check) inside the namespaces, agent-style.

    Every run gets a config with `[ganeti] node_name` set to the master's name and
    `[paths] state_dir` in the test's tmp dir, plus the sections a test adds; its
    stdout must be valid local-check output and its exit code 0.
    """

    def __init__(self, cluster, tmp_path):
        self.cluster = cluster
        self.tmp = tmp_path
        self.labels = None  # {host: {label: value}} of the last run
        for sub in ("etc", "var", "state", "log"):
            (tmp_path / sub).mkdir()

    def config(self, extra=None):
        sections = {"ganeti": {"node_name": self.cluster.node},
                    "paths": {"state_dir": str(self.tmp / "state")}}
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        path = self.tmp / "ganeti_cmk.cfg"
        path.write_text(config_text(sections))
        return str(path)

    def env(self):
        """The Checkmk agent's variables, pointing into the test's tmp dir."""
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "MK_LIBDIR": str(self.tmp), "MK_CONFDIR": str(self.tmp / "etc"),
                "MK_VARDIR": str(self.tmp / "var"), "MK_LOGDIR": str(self.tmp / "log")}

    def run_path(self, argv, cwd=ROOT, timeout=300):
        """Run argv in the namespaces; assert exit 0; {service: fields}
        (the host labels it printed in self.labels)."""
        proc = subprocess.run([IN_NS] + list(argv), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=self.env(),
                              cwd=cwd, timeout=timeout)
        assert proc.returncode == 0, (argv, proc.returncode, proc.stderr)
        hosts, self.labels = parse_output(proc.stdout, with_labels=True)
        return hosts[None]

    def __call__(self, name, *args, sections=None):
        """Check <name> --config <tmp config> ARGS with the node's python3."""
        return self.run_path(check_command(name, SYSTEM_PYTHON)
                             + ["--config", self.config(sections)] + list(args))
