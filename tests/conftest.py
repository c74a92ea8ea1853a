"""pytest hooks and fixtures; shared helpers live in support.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

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
