"""Readers for Ganeti's on-disk state: ssconf, the node's role, KVM run dir.

Nothing here talks to a Ganeti daemon; every reader takes the directory it
reads (`[paths] ganeti_data_dir`, `ganeti_run_dir`) so tests can use fakes.
"""

import os
import time

from .jsonc import loads
from .localcheck import CannotTell, NotApplicable
from .safefile import read_file as read_bounded
from .safefile import trusted_owners

# Roles, worded to follow "this node is ...".
MASTER = "the master"
CANDIDATE = "a master candidate"
REGULAR = "a regular node"
OFFLINE = "an offline node"
NOT_LISTED = "not in the node list"
NOT_IN_CLUSTER = "not in a cluster"

SSCONF_MAX = 128 * 1024  # Ganeti's own limit for an ssconf file

# The users Ganeti's daemons may run as (configure --with-*-user; Debian
# creates gnt-masterd, gnt-confd, gnt-rapi, gnt-metad): files they write
# (daemon pid files, config.data) are Ganeti's, not a stranger's.
DAEMON_USERS = ("gnt-masterd", "gnt-confd", "gnt-luxid", "gnt-rapi",
                "gnt-metad", "gnt-mond", "gnt-noded", "gnt-wconfd", "gnt-kvmd")


def owners():
    """The uids whose files count as Ganeti's: root, the user the check
    runs as, and Ganeti's daemon users that exist on this node."""
    import pwd
    uids = {0, os.geteuid()}
    for name in DAEMON_USERS:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    return tuple(sorted(uids))


FQDN_FILE = "fqdn"
FQDN_MAX_AGE = 3600
FQDN_FILE_MAX = 1024  # two host names of at most 255 bytes each
FQDN_TIMEOUT = 5.0  # seconds: a resolver that has not answered by then is down


def fqdn(state_dir, now=None, timeout=FQDN_TIMEOUT):
    """This machine's lower-cased FQDN, as Ganeti names it (socket.getfqdn()).

    Remembered for an hour in `<state_dir>/fqdn` with the host name it was
    looked up for: the lookup (resolver, maybe DNS) costs more than half of
    Python's start-up, and every node would pay it every minute.  The
    lookup never waits more than `timeout` seconds, nor past the check's
    deadline (DNS that is down can take 30 s and more).  When it cannot
    answer, the name remembered last is used, however old; without one, a
    resolver that says it knows no name gives the host name (as
    socket.getfqdn does), never remembered, and one that does not answer in
    time raises CannotTell.
    """
    from .statefile import read, write_atomically
    host = os.uname().nodename
    path = os.path.join(state_dir, FQDN_FILE)
    now = time.time() if now is None else now
    known, age = None, None
    try:
        age = now - os.stat(path).st_mtime
        cached_host, _, name = read(path, FQDN_FILE_MAX).decode("utf-8").partition("\n")
        if cached_host == host and name.strip():
            known = name.strip()
    except (OSError, ValueError):
        pass
    if known and 0 <= age < FQDN_MAX_AGE:
        return known
    from .runner import time_left
    wait = max(0.1, min(timeout, time_left(timeout + 1) - 1))  # 1 s for the rest
    name = _lookup_fqdn(host, wait)
    if not name:
        if known:
            return known
        if name is None:
            from .words import format_duration
            raise CannotTell(
                "cannot tell this node's name: looking up the FQDN of %s did not "
                "finish within %s (is DNS down?); set [ganeti] node_name to the "
                "name Ganeti knows this node by" % (host, format_duration(wait)))
        return host.lower()
    name = name.lower().rstrip(".")
    try:
        write_atomically(path, "%s\n%s\n" % (host, name))
    except OSError:
        pass  # not root, or no state dir: look it up again next time
    return name


def _lookup_fqdn(host, timeout):
    """socket.getfqdn(host), waited for at most `timeout` seconds: the
    name; False when the resolver knows none; None when it has not
    answered in time (the lookup thread is left to finish on its own)."""
    import _thread  # not threading: its import costs start-up time
    import socket
    done = _thread.allocate_lock()
    done.acquire()
    answer = [None]

    def look():
        try:
            name, aliases, _ = socket.gethostbyaddr(host)
            answer[0] = next((n for n in [name] + aliases if "." in n), name)
        except Exception:  # OSError, UnicodeError: no name known
            answer[0] = False
        finally:
            done.release()
    _thread.start_new_thread(look, ())
    done.acquire(timeout=timeout)
    return answer[0]


def node_name(configured, state_dir):
    """This node's name as Ganeti knows it: `[ganeti] node_name`, else the
    lower-cased FQDN (looked up as Ganeti does, remembered in state_dir)."""
    return (configured or fqdn(state_dir)).lower().rstrip(".")


def read_ssconf(data_dir, key, limit=SSCONF_MAX):
    """The value of `ssconf_<key>` without trailing newlines, or None.

    A link, FIFO or file over `limit` (Ganeti's size limit) raises OSError.
    """
    try:
        data = read_bounded(os.path.join(data_dir, "ssconf_" + key), limit)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return data.decode("utf-8", "replace").rstrip("\n")


def read_ssconf_list(data_dir, key, limit=SSCONF_MAX):
    """An ssconf list value (one item per line) as a list; [] when absent."""
    value = read_ssconf(data_dir, key, limit)
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


def read_ssconf_pairs(data_dir, key, sep=None):
    """An ssconf file of `<node><sep><value>` lines (`node_primary_ips`:
    blank, `node_vm_capable`: "=") as {lower-cased node: value}."""
    pairs = {}
    for line in read_ssconf_list(data_dir, key):
        name, _, value = line.partition(sep) if sep else line.partition(" ")
        pairs[name.strip().lower()] = value.strip()
    return pairs




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
    with `node_name` (from `[ganeti] node_name` or the FQDN), which may be a
    function: it is called only inside a cluster, as the FQDN can cost a DNS
    lookup.  An unreadable ssconf file (permissions) raises OSError: that is
    an error, not a role.
    """
    master = read_ssconf(data_dir, "master_node")
    if master is None:
        return NodeRole(NOT_IN_CLUSTER, None)
    if callable(node_name):
        node_name = node_name()
    node = node_name.lower().rstrip(".")
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


def require_master(data_dir, node_name, what="the check runs"):
    """The NodeRole of the master; NotApplicable on any other node.

    The gate of every master-only check: the service lives on the master
    and follows it after a failover.
    """
    role = node_role(data_dir, node_name)
    if role.role == NOT_IN_CLUSTER:
        raise NotApplicable("this node is not in a Ganeti cluster (no %s)"
                            % os.path.join(data_dir, "ssconf_master_node"))
    if not role.is_master:
        raise NotApplicable("%s is %s; %s on the master %s, where the "
                            "service lives" % (role.node, role.role, what,
                                               role.master))
    return role


# KVM hypervisor run dir: <run_dir>/kvm-hypervisor/{pid/<inst>,conf/<inst>.runtime}
KVM_RUN_SUBDIR = "kvm-hypervisor"
PID_FILE_MAX = 64
RUNTIME_MAX = 4 << 20  # a runtime file is a few kB


def kvm_pid_files(run_dir):
    """[(instance, pid)] from `<run_dir>/kvm-hypervisor/pid/`, sorted.

    pid is None when the file does not hold a number (Ganeti's ReadPidFile
    gives 0 then) or is not a plain file of at most PID_FILE_MAX bytes (a
    link, a FIFO: not read).  No directory means no instances: [].  An
    unreadable directory or file raises PermissionError.
    """
    from .procfs import printable  # names as /proc's text is decoded
    pid_dir = os.path.join(run_dir, KVM_RUN_SUBDIR, "pid")
    try:
        names = os.listdir(pid_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        try:
            text = read_bounded(os.path.join(pid_dir, name), PID_FILE_MAX)
        except FileNotFoundError:
            continue  # removed by Ganeti while we listed
        except PermissionError:
            raise
        except OSError:
            text = b""
        try:
            pid = int(text.strip())
        except ValueError:
            pid = None
        found.append((printable(name), pid if pid and pid > 0 else None))
    return sorted(found)


NOT_RUNNING = "which is not running (stale pid file)"


def instance_process_problem(proc, pid, instance, run_dir=None):
    """Why `pid`, from `instance`'s pid file, is not that instance's qemu
    (a text to follow "the pid file names pid N, "), or None when it is.

    As Ganeti checks it: the process is alive (not a zombie) and its
    `-name` is the instance, so a reused pid is never taken for it.  And
    it runs as root (or the user the check runs as) or, with `run_dir`, as
    the user Ganeti runs the instance as (kvm_runas_uids), or it started
    before root wrote the pid file: another user's process, whose -name
    that user chose, never stands for an instance whose pid file was left
    behind.  PermissionError propagates (/proc
    hides the process: not root).
    """
    from . import procfs
    argv = procfs.cmdline(proc, pid)
    if argv is None:
        return NOT_RUNNING
    if not argv:
        if procfs.state(proc, pid) == "Z":
            return "a zombie (the instance has exited)"
        return NOT_RUNNING
    name = qemu_name(argv)
    if name != instance:
        return "another process (-name %s): the pid was reused" % (
            name if name is not None else "missing")
    uid = procfs.foreign_uid(proc, pid, trusted_owners())
    if uid is not None and run_dir is not None:
        uid = procfs.foreign_uid(proc, pid, set(trusted_owners())
                                 | kvm_runas_uids(run_dir, instance))
        if uid is not None and _older_than_its_pid_file(proc, pid, run_dir, instance):
            uid = None
    if uid is not None:
        return ("a process of uid %d, which is neither root nor the user Ganeti "
                "runs the instance as: not taken for the instance" % uid)
    return None


def _older_than_its_pid_file(proc, pid, run_dir, instance):
    """Whether `pid` started before root wrote `instance`'s pid file.

    qemu writes its own pid there (as root, before it drops to its -runas
    user), and a pid is not reused while its process lives: a process
    older than the file is the one that wrote it, whichever user it runs
    as now (after a security_model change and a soft reboot the runtime
    file names the old user).  A stale file is older than any process
    that got its pid later.
    """
    import stat
    import time
    from . import procfs
    try:
        st = os.stat(os.path.join(run_dir, KVM_RUN_SUBDIR, "pid", instance),
                     follow_symlinks=False)
    except (OSError, ValueError):
        return False
    started = procfs.start_time(proc, pid)
    if started is None or st.st_uid != 0 or not stat.S_ISREG(st.st_mode):
        return False
    return time.time() - (procfs.boot_time() - started) <= st.st_mtime


def running_instances(proc, run_dir):
    """{instance: pid} of the KVM instances whose qemu runs on this node:
    a pid file naming a live process with that `-name`.  PermissionError
    propagates (pid files or /proc not readable: not root)."""
    return {instance: pid for instance, pid in kvm_pid_files(run_dir)
            if pid is not None
            and instance_process_problem(proc, pid, instance, run_dir) is None}


class KvmRuntime:
    """An instance's runtime file: what its qemu was started with.

    Ganeti writes `conf/<instance>.runtime` as the JSON array `[kvm_cmd,
    nics, hvparams, disks]` when it starts the instance; a soft reboot and
    a live migration reuse it.  `hvparams` are the filled hypervisor
    parameters of that start.  `mtime`: when the file was last written
    (the start, a soft reboot or an incoming migration), None if unknown.
    """

    __slots__ = ("cmd", "nics", "hvparams", "disks", "mtime")

    def __init__(self, cmd, nics, hvparams, disks, mtime=None):
        self.cmd = cmd
        self.nics = nics
        self.hvparams = hvparams
        self.disks = disks
        self.mtime = mtime

    def option(self, name):
        """The value after the last `name` in the command (`-m`, `-smp`,
        `-uuid`), as text; None when absent."""
        value = None
        for i, arg in enumerate(self.cmd[:-1]):
            if arg == name:
                value = self.cmd[i + 1]
        return None if value is None else str(value)


def read_kvm_runtime(run_dir, instance):
    """The KvmRuntime of `instance`.

    FileNotFoundError when it has none; ValueError when the file is not a
    runtime file (not JSON, not that shape, nested too deep); OSError when
    it is refused (safefile: a link, not a plain file, too big, another
    owner).
    """
    path = os.path.join(run_dir, KVM_RUN_SUBDIR, "conf", instance + ".runtime")
    try:
        data = loads(read_bounded(path, RUNTIME_MAX).decode("utf-8", "replace"))
    except RecursionError:
        raise ValueError("%s: nested too deep" % path)
    if not (isinstance(data, list) and len(data) >= 3
            and isinstance(data[0], list) and isinstance(data[2], dict)):
        raise ValueError("%s: not a KVM runtime file" % path)
    try:
        mtime = os.lstat(path).st_mtime
    except OSError:
        mtime = None
    return KvmRuntime(data[0], data[1], data[2], data[3] if len(data) > 3 else [],
                      mtime)


def kvm_runtime_path(run_dir, instance):
    """The kvm binary path an instance was started with, or None.

    `hvparams["kvm_path"]` of its runtime file, else `kvm_cmd[0]`, if
    absolute.  None when the file is missing, refused or not a runtime
    file; PermissionError propagates.
    """
    try:
        runtime = read_kvm_runtime(run_dir, instance)
    except PermissionError:
        raise
    except (OSError, ValueError):
        return None
    kvm_path = runtime.hvparams.get("kvm_path")
    if not isinstance(kvm_path, str) or not kvm_path:
        kvm_path = runtime.cmd[0] if runtime.cmd else None
    # Ganeti accepts only absolute paths; anything else would be looked up
    # relative to our working directory.
    return kvm_path if isinstance(kvm_path, str) and kvm_path.startswith("/") else None


UID_FILE_MAX = 64


def kvm_runas_uids(run_dir, instance):
    """The uids other than root that Ganeti runs `instance`'s qemu as
    (`-runas`), from its runtime file: `security_model = user` means the
    uid of `security_domain`, `pool` the uid Ganeti took from the uid pool
    (`<run_dir>/kvm-hypervisor/uid/<instance>`).  An empty set when it runs
    as root, or when that cannot be read.
    """
    try:
        hvparams = read_kvm_runtime(run_dir, instance).hvparams
    except (OSError, ValueError):
        return set()
    model = hvparams.get("security_model")
    if model == "user" and isinstance(hvparams.get("security_domain"), str):
        import pwd
        try:
            return {pwd.getpwnam(hvparams["security_domain"]).pw_uid}
        except (KeyError, ValueError):
            return set()
    if model == "pool":
        path = os.path.join(run_dir, KVM_RUN_SUBDIR, "uid", instance)
        try:
            return {int(read_bounded(path, UID_FILE_MAX).strip())}
        except (OSError, ValueError):
            return set()
    return set()


def cluster_hvparams(data_dir, hypervisor="kvm", keys=None):
    """The cluster's default hypervisor parameters from
    `ssconf_hvparams_<hypervisor>` as {key: value}; {} when absent.

    Ganeti writes one `key=value` per line: strings bare, booleans
    True/False, numbers as numbers, anything else as JSON.  Only the
    cluster level: OS and instance overrides are not in ssconf.  With
    `keys`, only those are converted and returned.
    """
    params = {}
    for line in (read_ssconf(data_dir, "hvparams_" + hypervisor) or "").splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key and (keys is None or key in keys):
            params[key] = _ssconf_value(value.strip())
    return params


def _ssconf_value(text):
    if text in ("True", "False"):
        return text == "True"
    if text[:1] in "[{\"" or text.lstrip("-").replace(".", "", 1).isdigit():
        try:
            return loads(text)
        except ValueError:
            pass
    return text


def cluster_kvm_path(data_dir):
    """`kvm_path` from `ssconf_hvparams_kvm` (the cluster default), or None."""
    value = cluster_hvparams(data_dir, keys=("kvm_path",)).get("kvm_path")
    return value if isinstance(value, str) and value else None


def qemu_name(argv):
    """The instance name in a qemu command line, or None.

    The value of the last `-name` (as qemu and Ganeti take it), cut at the
    first comma (`inst1,debug-threads=on`), `guest=` removed (libvirt style).
    """
    name = None
    for i, arg in enumerate(argv[1:-1], 1):
        if arg in ("-name", "--name"):
            name = argv[i + 1]
    if name is None:
        return None
    name = name.split(",", 1)[0]
    return name[6:] if name.startswith("guest=") else name



# Instance names as Ganeti accepts them (netutils.Hostname.GetNormalizedName):
# lower-case letters, digits, ".", "_", "-"; at most 255; no empty label.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


def valid_instance_name(name):
    """Whether `name` is an instance name Ganeti could have written."""
    return (0 < len(name) <= 255 and set(name) <= _NAME_CHARS
            and ".." not in name and not name.startswith("."))


BDEV_CACHE_SUBDIR = "bdev-cache"
BDEV_CACHE_MAX = 1024  # "<instance> <primary|secondary> <iv_name>\n"
DISK_LINKS_SUBDIR = "instance-disks"
DISK_SEPARATOR = ":"   # Ganeti's default (configure --with-disk-separator)
DRBD_PREFIX = "drbd"


class DiskOwner:
    """Which instance's disk a block device is, as Ganeti's run dir says."""

    __slots__ = ("instance", "disk", "source", "problem")

    def __init__(self, instance=None, disk=None, source=None, problem=None):
        self.instance = instance  # a valid instance name, or None
        self.disk = disk          # "disk/0" (Ganeti's iv_name), or None
        self.source = source      # the file that said so
        self.problem = problem    # why it names no instance, or None

    def __repr__(self):
        return "DiskOwner(%r, %r, problem=%r)" % (self.instance, self.disk,
                                                  self.problem)


def bdev_cache_minors(run_dir):
    """The DRBD minors with a `<run_dir>/bdev-cache/bdev_drbd<N>` file.

    Ganeti's node daemon writes one per device it creates or assembles,
    on the primary and the secondary node, and removes it at shutdown.
    No directory: [].  PermissionError propagates.
    """
    try:
        names = os.listdir(os.path.join(run_dir, BDEV_CACHE_SUBDIR))
    except (FileNotFoundError, NotADirectoryError):
        return []
    prefix = "bdev_" + DRBD_PREFIX
    return sorted(int(name[len(prefix):]) for name in names
                  if name.startswith(prefix) and name[len(prefix):].isdigit()
                  and name[len(prefix):].isascii())


def read_bdev_cache(run_dir, minor):
    """The DiskOwner of /dev/drbd<minor> from Ganeti's bdev-cache, or None
    when there is no entry.

    Ganeti (backend.DevCacheManager.UpdateCache) writes
    "<instance> <primary|secondary> <iv_name>\\n"; the role word is the one
    of the last create or assemble and is not updated by a migration, so
    it is not returned.  Anything else gives a DiskOwner with a problem.
    """
    path = os.path.join(run_dir, BDEV_CACHE_SUBDIR, "bdev_%s%d" % (DRBD_PREFIX, minor))
    try:
        data = read_bounded(path, BDEV_CACHE_MAX)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        from .safefile import describe
        return DiskOwner(source=path, problem="not read: %s" % describe(e))
    words = data.decode("utf-8", "replace").split()
    if len(words) != 3 or words[1] not in ("primary", "secondary"):
        return DiskOwner(source=path, problem="not Ganeti's format")
    instance, disk = words[0], words[2]
    if not valid_instance_name(instance):
        return DiskOwner(source=path, problem="names no valid instance")
    if not _valid_disk_name(disk):
        return DiskOwner(source=path, problem="names no valid disk")
    return DiskOwner(instance, disk, path)


def _valid_disk_name(name):
    # Ganeti's iv_name: "disk/<index>", or "not_visible" for a disk without one
    if name == "not_visible":
        return True
    head, _, index = name.partition("/")
    return head == "disk" and index.isdigit() and index.isascii() and len(index) <= 6


def instance_disk_links(run_dir):
    """{minor: DiskOwner} from `<run_dir>/instance-disks/<instance>:<index>`.

    Ganeti links each disk of an instance started (or migrated in) on this
    node to its device; links are only read (readlink), never followed,
    and count only when root (Ganeti's node daemon) or we made them.
    Links to anything but /dev/drbd<N> are skipped; a minor that several
    links name (a stale one beside the live one) gets a DiskOwner with a
    problem.  No directory: {}.
    """
    directory = os.path.join(run_dir, DISK_LINKS_SUBDIR)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    trusted, claims = trusted_owners(), {}
    for name in sorted(names):
        instance, sep, index = name.rpartition(DISK_SEPARATOR)
        if not (sep and index.isdigit() and index.isascii() and len(index) <= 6
                and valid_instance_name(instance)):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            target = os.readlink(path)
        except OSError:
            continue  # not a link, or removed meanwhile
        if st.st_uid not in trusted:
            continue
        device = target.rsplit("/", 1)[-1]
        number = device[len(DRBD_PREFIX):]
        if target == "/dev/" + device and device.startswith(DRBD_PREFIX) \
                and number.isdigit() and number.isascii():
            claims.setdefault(int(number), []).append(
                DiskOwner(instance, "disk/%d" % int(index), path))
    found = {}
    for minor, links in claims.items():
        found[minor] = links[0] if len(links) == 1 else DiskOwner(
            source=directory, problem="has several links to /dev/%s%d: %s" % (
                DRBD_PREFIX, minor, ", ".join(os.path.basename(o.source)
                                               for o in links)))
    return found


CONFIG_DATA = "config.data"
CONFIG_DATA_MAX = 256 << 20  # the cluster's whole configuration


def read_config_data(data_dir, limit=CONFIG_DATA_MAX):
    """The cluster configuration `<data_dir>/config.data` as a dict with
    dicts `cluster` and `instances`, or None where this node has none
    (only the master and master candidates keep a copy).

    Read with safefile (Ganeti's daemon users may own it), at most `limit`
    bytes; OSError when it is refused, ValueError when it is not a Ganeti
    configuration.
    """
    path = os.path.join(data_dir, CONFIG_DATA)
    if not os.path.lexists(path):  # most nodes: no owners() lookups (pwd)
        return None
    try:
        data = read_bounded(path, limit, owners=owners())
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        config = loads(data.decode("utf-8", "replace"))
    except RecursionError:
        raise ValueError("%s is not a Ganeti configuration (nested too deep)" % path)
    except ValueError as e:
        raise ValueError("%s is not a Ganeti configuration (not JSON: %s)" % (path, e))
    if not (isinstance(config, dict) and isinstance(config.get("cluster"), dict)
            and isinstance(config.get("instances"), dict)):
        raise ValueError("%s is not a Ganeti configuration" % path)
    return config


NODE_GROUP_CACHE = "nodegroup"


def node_group(data_dir, node, state_dir=None):
    """The name of `node`'s node group, or None when this node cannot tell.

    ssconf lists the groups (`ssconf_nodegroups`: "<uuid> <name>") but not
    which node is in which: with one group that is the answer; with more,
    only the master and the master candidates know, from the cluster's
    config (`config.data`, which Ganeti copies to them alone).  That file
    can be tens of MiB: the answer is remembered in `<state_dir>/nodegroup`
    for as long as the file is the same (inode, size, mtime).  OSError or
    ValueError when it is refused or not Ganeti's config.
    """
    groups = {}
    for line in read_ssconf_list(data_dir, "nodegroups"):
        uuid, _, name = line.partition(" ")
        groups[uuid.strip()] = name.strip()
    if len(groups) == 1:
        return next(iter(groups.values())) or None
    path = os.path.join(data_dir, CONFIG_DATA)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    key = "%s %d %d %d %d" % (node, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    cache = os.path.join(state_dir, NODE_GROUP_CACHE) if state_dir else None
    if cache:
        try:
            cached_key, _, name = read_bounded(cache, 4096).decode(
                "utf-8", "replace").partition("\n")
            if cached_key == key:
                return name or None
        except (OSError, ValueError):
            pass
    name = _group_in_config(data_dir, node, groups)
    if cache:
        try:
            from .statefile import write_atomically
            write_atomically(cache, "%s\n%s" % (key, name or ""))
        except OSError:
            pass  # not root, or no state dir: read the config next time
    return name


def _group_in_config(data_dir, node, groups):
    config = read_config_data(data_dir)
    if config is None:
        return None
    try:
        for info in config["nodes"].values():
            if str(info.get("name", "")).lower() == node:
                group = config["nodegroups"].get(info.get("group"), {})
                return group.get("name") or groups.get(info.get("group"))
    except (AttributeError, KeyError, TypeError) as e:
        raise ValueError("%s is not a Ganeti configuration (%s)" % (
            os.path.join(data_dir, CONFIG_DATA), type(e).__name__))
    return None


def enabled_disk_templates(data_dir):
    """The cluster's enabled disk templates from `config.data`, or None
    where this node has no copy (only master candidates keep one).

    ssconf does not carry them (Ganeti 2.x to 3.1).  OSError propagates
    (a copy we may not read: not root); ValueError when it is not a
    Ganeti configuration.
    """
    config = read_config_data(data_dir)
    if config is None:
        return None
    templates = config["cluster"].get("enabled_disk_templates")
    if not isinstance(templates, list):
        raise ValueError("%s is not a Ganeti configuration"
                         % os.path.join(data_dir, CONFIG_DATA))
    return [t for t in templates if isinstance(t, str)]


def running_kvm_runtimes(proc, run_dir):
    """The runtime files of the KVM instances running here.

    An instance runs when its pid file names a live qemu with its -name
    (instance_process_problem).  Returns ({instance: KvmRuntime}, {instance: why
    its runtime could not be read}); stale pid files are left out.
    PermissionError (not root) propagates.
    """
    runtimes, unreadable = {}, {}
    for instance, pid in kvm_pid_files(run_dir):
        if pid is None or instance_process_problem(proc, pid, instance, run_dir) is not None:
            continue
        try:
            runtimes[instance] = read_kvm_runtime(run_dir, instance)
        except PermissionError:
            raise
        except FileNotFoundError:
            unreadable[instance] = "it has no runtime file"
        except (OSError, ValueError) as e:
            from .safefile import describe
            unreadable[instance] = describe(e) if isinstance(e, OSError) else str(e)
    return runtimes, unreadable


DRBD_TYPES = ("drbd", "drbd8")
# Disks no node holds (Ganeti's DTS_EXT_MIRROR): an instance with only
# these, or none ("diskless"), migrates or fails over to any node.
EXT_MIRROR_TYPES = ("rbd", "ext", "gluster", "sharedfile", "blockdev", "diskless")
MIGRATE_HERE = "can migrate here"  # the relation of such an instance


class ConfiguredInstance:
    """A KVM instance as the cluster configuration has it (config.data):
    `hvparams` and `beparams` filled as Ganeti fills them at start (cluster
    defaults, then the OS's, then the instance's own); `primary` says this
    node is its primary; else it is a DRBD secondary here (a failover
    target) or, `movable`, its disks are on no node (or it has none) so it
    can be migrated or failed over to this node of its group; `nics` is how
    many NICs it has."""

    __slots__ = ("name", "primary", "hvparams", "beparams", "nics", "movable")

    def __init__(self, name, primary, hvparams, beparams, nics, movable=False):
        self.name = name
        self.primary = primary
        self.hvparams = hvparams
        self.beparams = beparams
        self.nics = nics
        self.movable = movable

    @property
    def relation(self):
        """How it may come to this node, in words."""
        return (MIGRATE_HERE if self.movable else "primary here"
                if self.primary else "can fail over here")

    def __repr__(self):
        return "ConfiguredInstance(%r, primary=%r)" % (self.name, self.primary)


# The cluster's HMAC key (confd's and the cluster's shared secret).
HMAC_KEY_FILE = "hmac.key"
HMAC_KEY_MAX = 4096


def read_hmac_key(data_dir):
    """The bytes of `<data_dir>/hmac.key` (all of them: Ganeti signs with
    the whole file); OSError when it is missing or refused."""
    return read_bounded(os.path.join(data_dir, HMAC_KEY_FILE), HMAC_KEY_MAX,
                        owners=owners())


def confd_peers(data_dir):
    """The addresses confd listens on: the master candidates' primary IPs
    (`ssconf_master_candidates_ips`), as Ganeti's own client asks them."""
    return read_ssconf_list(data_dir, "master_candidates_ips")


# Where a filled parameter's value comes from, as Ganeti fills it.
LEVEL_CLUSTER = "cluster"
LEVEL_OS = "OS"
LEVEL_INSTANCE = "instance"


def _dict(value):
    return value if isinstance(value, dict) else {}


def _disk_nodes(disk, disks):
    """The node uuids of a disk (its DRBD pair, also in children)."""
    if isinstance(disk, str):  # 2.16 and later: a uuid into config["disks"]
        disk = disks.get(disk)
    disk = _dict(disk)
    nodes = []
    logical_id = disk.get("logical_id")
    if disk.get("dev_type") in DRBD_TYPES and isinstance(logical_id, list):
        nodes += [n for n in logical_id[:2] if isinstance(n, str)]
    for child in disk.get("children") or []:
        nodes += _disk_nodes(child, disks)
    return nodes


def _movable(inst, disks):
    """Whether an instance can move to any node (Ganeti's
    AllDiskOfType(disks, DTS_EXT_MIRROR)): no disks, or all on storage no
    node holds."""
    template = inst.get("disk_template")
    if isinstance(template, str):  # before 2.16 the instance names it
        return template in EXT_MIRROR_TYPES
    instance_disks = inst.get("disks")
    for disk in instance_disks if isinstance(instance_disks, list) else []:
        if isinstance(disk, str):
            disk = disks.get(disk)
        if _dict(disk).get("dev_type") not in EXT_MIRROR_TYPES:
            return False
    return True


ADMIN_OFFLINE = "offline"  # admin_state: Ganeti starts it only once online


def configured_kvm_instances(data_dir, node):
    """The KVM instances that are or may come to `node` (not those marked
    offline, which Ganeti does not start), from
    `<data_dir>/config.data`, which only master candidates have (None
    there is none): `node` is their primary or DRBD secondary, or they
    can be moved there (`movable`: disks on no node; from a node of the
    same group, as the iallocator picks).  ValueError, OSError: see
    read_config_data."""
    config = read_config_data(data_dir)
    if config is None:
        return None
    cluster = config["cluster"]
    nodes = _dict(config.get("nodes"))
    node_uuids = {uuid for uuid, n in nodes.items()
                  if str(_dict(n).get("name", "")).lower().rstrip(".") == node}
    node_uuids.add(node)  # configurations before 2.10 name nodes directly
    groups = {_dict(nodes.get(uuid)).get("group") for uuid in node_uuids} - {None}
    disks = _dict(config.get("disks"))
    found = []
    for inst in config["instances"].values():
        inst = _dict(inst)
        if inst.get("hypervisor", "kvm") != "kvm" or not isinstance(inst.get("name"), str):
            continue
        if inst.get("admin_state") == ADMIN_OFFLINE:
            continue  # never started until brought online
        primary = inst.get("primary_node") in node_uuids
        movable = False
        if not primary and not node_uuids & set(
                _disk_nodes_all(inst.get("disks") or [], disks)):
            group = _dict(nodes.get(inst.get("primary_node"))).get("group")
            movable = _movable(inst, disks) and (
                not groups or group is None or group in groups)
            if not movable:
                continue
        try:
            filled = instance_config(cluster, None, inst)
        except ValueError:
            continue
        nics = inst.get("nics")
        found.append(ConfiguredInstance(
            inst["name"], primary, {k: v for k, (v, _) in filled.hv.items()},
            {k: v for k, (v, _) in filled.be.items()},
            len(nics) if isinstance(nics, list) else 0, movable))
    return sorted(found, key=lambda i: i.name)


def configured_here(data_dir, node):
    """configured_kvm_instances for a check: (instances, None); (None,
    None) where there is no config.data (not a master candidate); (None,
    why) when it cannot be used.  PermissionError propagates (not root)."""
    try:
        return configured_kvm_instances(data_dir, node), None
    except PermissionError:
        raise
    except OSError as e:
        from .safefile import describe
        return None, describe(e)
    except ValueError as e:
        return None, str(e)


def _disk_nodes_all(instance_disks, disks):
    nodes = []
    for disk in instance_disks if isinstance(instance_disks, list) else []:
        nodes += _disk_nodes(disk, disks)
    return nodes


def fill_hvparams(cluster_hv, os_hv, instance_hv):
    """{key: (value, level)}: an instance's hypervisor parameters filled as
    Ganeti fills them (objects.Cluster.FillHV): the cluster's
    `hvparams[<hv>]`, then `os_hvp[<os>][<hv>]`, then the instance's own."""
    filled = {}
    for level, params in ((LEVEL_CLUSTER, cluster_hv), (LEVEL_OS, os_hv),
                          (LEVEL_INSTANCE, instance_hv)):
        for key, value in _dict(params).items():
            filled[key] = (value, level)
    return filled


def fill_beparams(cluster_be, instance_be):
    """{key: (value, level)}: backend parameters filled as Ganeti fills them
    (Cluster.FillBE): the cluster's `beparams["default"]`, then the
    instance's own."""
    return fill_hvparams(cluster_be, {}, instance_be)


class InstanceConfig:
    """An instance's current parameters: filled hv and be params with the
    level each value comes from, and the modification times (None:
    unknown) of the instance and the cluster (which holds the OS level)."""

    __slots__ = ("name", "uuid", "hypervisor", "os", "hv", "be",
                 "mtime", "cluster_mtime")

    def __init__(self, name, uuid, hypervisor, os_name, hv, be, mtime,
                 cluster_mtime):
        self.name = name
        self.uuid = uuid
        self.hypervisor = hypervisor
        self.os = os_name
        self.hv = hv
        self.be = be
        self.mtime = mtime
        self.cluster_mtime = cluster_mtime

    def since(self, level):
        """When a value of `level` may last have changed (None: unknown):
        the instance's mtime, and for the OS and cluster levels also the
        cluster's. The instance counts for every level: removing its
        override (`-H key=default`) changes the instance, not the level
        the value then comes from."""
        if level == LEVEL_INSTANCE:
            return self.mtime
        if self.mtime is None or self.cluster_mtime is None:
            return None
        return max(self.mtime, self.cluster_mtime)


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(
        value, bool) else None


def instance_config(cluster, uuid, instance):
    """The InstanceConfig of one instance object of the configuration
    (config.data or confd share the shape), given the `cluster` object;
    ValueError when the instance object is not one."""
    if not (isinstance(instance, dict) and isinstance(instance.get("name"), str)):
        raise ValueError("not an instance object")
    hypervisor = instance.get("hypervisor") or "kvm"
    os_name = instance.get("os")
    if not (isinstance(hypervisor, str) and isinstance(os_name, (str, type(None)))):
        raise ValueError("instance object with a hypervisor or OS that is no name")
    hv = fill_hvparams(
        _dict(_dict(cluster.get("hvparams")).get(hypervisor)),
        _dict(_dict(_dict(cluster.get("os_hvp")).get(os_name)).get(hypervisor)),
        instance.get("hvparams"))
    be = fill_beparams(_dict(_dict(cluster.get("beparams")).get("default")),
                       instance.get("beparams"))
    return InstanceConfig(instance["name"], uuid, hypervisor, os_name, hv, be,
                          _number(instance.get("mtime")),
                          _number(cluster.get("mtime")))


def config_instances(config):
    """{name: InstanceConfig or ValueError} of every instance in a
    configuration dict (read_config_data)."""
    found = {}
    for uuid, instance in config["instances"].items():
        try:
            ic = instance_config(config["cluster"], uuid, instance)
        except ValueError as e:
            found["(uuid %s)" % uuid] = e
            continue
        found[ic.name] = ic
    return found
