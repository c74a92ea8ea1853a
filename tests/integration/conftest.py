"""Fixtures for the integration tests (helpers in realcluster.py)."""

import os

import pytest

from realcluster import DATA_DIR, CheckRunner, Cluster, in_ns


@pytest.fixture(scope="session")
def cluster():
    """The cluster run.sh brought up; skip without one (fail under CI=true)."""
    why = None
    if os.geteuid() != 0:
        why = "not root"
    elif not os.path.exists(os.path.join(DATA_DIR, "ssconf_master_node")):
        why = "no Ganeti cluster on this machine"
    if why is None:
        nodes = in_ns("gnt-node", "list", "--no-headers", "-o", "name",
                      timeout=60, check=False)
        if nodes.returncode != 0:
            why = "the cluster's master daemon does not answer: %s" % nodes.stderr.strip()
    if why is not None:
        message = "%s: run `make integration` (or tests/integration/cluster-up.sh)" % why
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with open(os.path.join(DATA_DIR, "ssconf_master_node")) as f:
        node = f.read().strip()
    instances = in_ns("gnt-instance", "list", "--no-headers", "-o", "name").stdout.split()
    assert len(instances) == 1, "expected the harness's one instance: %r" % instances
    return Cluster(node, instances[0])


@pytest.fixture
def check(cluster, tmp_path):
    """check(name, *args, sections={...}) -> {service: fields} of one run."""
    return CheckRunner(cluster, tmp_path)
