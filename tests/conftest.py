"""pytest hooks and fixtures; shared helpers live in support.py."""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kvm_doubles import NEW, OLD, ROOT, Node, compile_double  # noqa: E402
from support import run_agent  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs a real Ganeti "
                            "cluster (make integration)")


@pytest.fixture
def agent(tmp_path):
    """agent(name, config_text=None, ...) -> {service: fields}."""
    def run(name, config_text=None, **kwargs):
        return run_agent(name, tmp_path, config_text, **kwargs)
    return run


@pytest.fixture(scope="session")
def doubles(tmp_path_factory):
    """{"old": path, "new": path, "none": path}: compiled stand-ins."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the qemu stand-in")
    d = str(tmp_path_factory.mktemp("doubles"))
    return {"old": compile_double(d, OLD, "old"), "new": compile_double(d, NEW, "new"),
            "none": compile_double(d, None, "none")}


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node")
    yield n
    n.stop_all()


@pytest.fixture
def public_dir():
    """A temp dir that any user may read, outside the places whose mappings
    the library check ignores (/tmp, /run, ...): in the checkout, unless that
    is itself in such a place (a CI clone in /tmp) or out of other users'
    reach (a clone under /root), else in /var/lib."""
    from ganeti_cmk.procfs import IGNORED_MAPPINGS
    from support import reachable_by_all
    base = ROOT
    if (os.path.realpath(ROOT) + "/").startswith(IGNORED_MAPPINGS) \
            or not reachable_by_all(ROOT):
        base = "/var/lib"
    d = tempfile.mkdtemp(prefix=".ganeti-cmk-test-", dir=base)
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
