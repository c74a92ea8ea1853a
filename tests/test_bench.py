"""bench/run.py in its quick mode, so that `make bench` cannot rot.

No timing assertions: the numbers of a quick run mean nothing.  What is
checked is that every section is written and that no process of the load
outlives the benchmark, also when it is stopped half-way.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from support import ROOT, SYSTEM_PYTHON
from ganeti_cmk.checks import NAMES

BENCH = os.path.join(ROOT, "bench", "run.py")
CHECKS = tuple("ganeti_" + name for name in NAMES)
# what an installed needrestart would leave: the bench must never put them there
NEEDRESTART_HOOKS = ("/etc/apt/apt.conf.d/99needrestart", "/etc/dpkg/dpkg.cfg.d/needrestart",
                     "/etc/needrestart")

pytestmark = [
    pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the qemu stand-ins"),
    pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                       reason="the checks run under the system python3"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("agent"))
    subprocess.run([SYSTEM_PYTHON, os.path.join(ROOT, "tools", "build.py"),
                    "agent", out], check=True, stdout=subprocess.DEVNULL, timeout=60)
    return os.path.join(out, "local")


def leftovers(workdir):
    """Command lines of live processes that name the bench's work dir (its
    sleeps by argv[0], the stand-ins by their -pidfile)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
            with open("/proc/%s/stat" % pid) as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and any(workdir in arg for arg in argv):
            found.append(" ".join(argv))
    return found


def bench(built, tmp_path):
    return [sys.executable, BENCH, "--quick", "--checks", built,
            "--python", SYSTEM_PYTHON, "--output", str(tmp_path / "benchmarks.md"),
            "--workdir", str(tmp_path / "work")]


def test_quick_run_writes_every_section_and_cleans_up(built, tmp_path):
    hooks_before = [path for path in NEEDRESTART_HOOKS if os.path.exists(path)]
    proc = subprocess.run(bench(built, tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "benchmarks.md").read_text()
    for heading in ("## Machine", "## Targets", "## Each check in agent mode",
                    "## KVM binary versions: scaling",
                    "## Ganeti verify: parser throughput", "## Against needrestart",
                    "## Memory"):
        assert heading in text
    assert "| python3 -c pass |" in text and "| python3 -I -S -c pass |" in text
    agent_mode = text.split("## Each check in agent mode")[1].split("\n## ")[0]
    for check in CHECKS:  # every registered check, measured and held to a target
        assert re.search(r"^\| %s( \(.*\))? \|" % check, agent_mode, re.M), check
        assert "| `%s" % check in text
    assert "## What was tried" in text
    assert "Quick mode" in text
    assert leftovers(str(tmp_path / "work")) == []
    assert [path for path in NEEDRESTART_HOOKS if os.path.exists(path)] == hooks_before


def test_stopped_half_way_it_kills_its_load(built, tmp_path):
    work = str(tmp_path / "work")
    proc = subprocess.Popen(bench(built, tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, universal_newlines=True)
    try:
        end = time.monotonic() + 60
        sleeper = os.path.join(work, "sleep")
        # instances first, then the sleeps: wait until both run
        while not any(cmd.startswith(sleeper) for cmd in leftovers(work)):
            assert proc.poll() is None and time.monotonic() < end, "no load seen"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert leftovers(work) == []
    assert not (tmp_path / "benchmarks.md").exists()
