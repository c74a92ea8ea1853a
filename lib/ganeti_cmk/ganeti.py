"""Readers for Ganeti's on-disk state: ssconf files and the node's role.

Nothing here talks to a Ganeti daemon; every reader takes the directory it
reads (`[paths] ganeti_data_dir`, `ganeti_run_dir`) so tests can use fakes.
"""

import os

MASTER = "master"
CANDIDATE = "master candidate"
REGULAR = "regular node"
OFFLINE = "offline node"
NOT_LISTED = "not in the node list"
NOT_IN_CLUSTER = "not in a cluster"

SSCONF_MAX = 128 * 1024  # Ganeti's own limit for an ssconf file


def read_ssconf(data_dir, key):
    """The value of `ssconf_<key>` without trailing newlines, or None."""
    try:
        with open(os.path.join(data_dir, "ssconf_" + key), "rb") as f:
            data = f.read(SSCONF_MAX)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return data.decode("utf-8", "replace").rstrip("\n")


def read_ssconf_list(data_dir, key):
    """An ssconf list value (one item per line) as a list; [] when absent."""
    value = read_ssconf(data_dir, key)
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


class NodeRole:
    """This node's role in the cluster, as its ssconf files tell it."""

    __slots__ = ("role", "node", "master", "cluster")

    def __init__(self, role, node, master=None, cluster=None):
        self.role = role
        self.node = node
        self.master = master
        self.cluster = cluster

    @property
    def is_master(self):
        return self.role == MASTER

    def __repr__(self):
        return "NodeRole(%r, node=%r, master=%r)" % (self.role, self.node,
                                                     self.master)


def node_role(data_dir, node_name):
    """Decide master / candidate / regular / offline / not in a cluster.

    Ganeti compares `ssconf_master_node` with the lower-cased FQDN; so do we,
    with `node_name` (from `[ganeti] node_name` or the FQDN).  An unreadable
    ssconf file (permissions) raises OSError: that is an error, not a role.
    """
    node = node_name.lower().rstrip(".")
    master = read_ssconf(data_dir, "master_node")
    if master is None:
        return NodeRole(NOT_IN_CLUSTER, node)
    master = master.strip().lower().rstrip(".")
    cluster = read_ssconf(data_dir, "cluster_name")
    role = NodeRole(REGULAR, node, master, cluster and cluster.strip())
    nodes = [n.lower() for n in read_ssconf_list(data_dir, "node_list")]
    if node == master:
        role.role = MASTER
    elif nodes and node not in nodes:
        role.role = NOT_LISTED
    elif node in [n.lower() for n in read_ssconf_list(data_dir, "offline_nodes")]:
        role.role = OFFLINE
    elif node in [n.lower() for n in read_ssconf_list(data_dir, "master_candidates")]:
        role.role = CANDIDATE
    return role
