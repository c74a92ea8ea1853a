"""The tests that drop privileges pass from a checkout only root can reach.

Root's work naturally lands under /root (mode 0700), where nobody (uid
65534) cannot read the checkout: what such tests run as nobody must come
from a copy every user can read (support.public_lib, kvm_doubles.public_dir,
support.as_nobody importing the library first).  This copies the working
tree into a 0700 directory and runs those tests there.
"""

import os
import shutil
import subprocess
import sys

import pytest

from support import ROOT, needs_root, reachable_by_all

PRIVILEGE_DROPPING = [
    "tests/test_kvm_device.py::test_not_root_gives_unknown_run_as_root",
    "tests/test_kvm_binary.py::test_not_root_is_unknown_run_as_root",
    "tests/test_kvm_binary.py::test_hidden_processes_are_unknown_not_ok",
    "tests/test_cluster_verify.py::test_not_root_on_the_master_is_told_to_run_as_root",
    "tests/test_ganeti_kvm.py::test_unreadable_runtime_raises_permission_error",
    "tests/test_procfs.py",
]


@needs_root
def test_privilege_dropping_tests_pass_from_a_private_checkout(tmp_path):
    home = tmp_path / "root"
    home.mkdir(mode=0o700)
    clone = home / "ganeti-cmk"
    clone.mkdir()
    assert not reachable_by_all(str(clone))
    skip = shutil.ignore_patterns("__pycache__", ".venv", ".pytest_cache", ".hypothesis")
    for name in ("lib", "tests"):
        shutil.copytree(os.path.join(ROOT, name), str(clone / name), ignore=skip)
    for name in os.listdir(ROOT):
        if name.endswith((".cfg", ".ini", ".toml")) and os.path.isfile(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), str(clone / name))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
        + PRIVILEGE_DROPPING, cwd=str(clone), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=600)
    assert result.returncode == 0, result.stdout
    assert " passed" in result.stdout and " failed" not in result.stdout
    if "SKIPPED" in result.stdout:  # e.g. no /dev/kvm: say what did not run
        pytest.skip("some ran, some skipped:\n" + result.stdout[-2000:])
