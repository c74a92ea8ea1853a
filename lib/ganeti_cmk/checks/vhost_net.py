"""vhost-net: can this node start the instances that want vhost_net?

Ganeti opens /dev/vhost-net read-write for every paravirtual NIC of an
instance with the hypervisor parameter vhost_net=True, and the start (or
the migration onto this node) fails with "Failed to open /dev/vhost-net"
when it cannot.  It never checks this beforehand.  Probe: which of the
instances running here (their runtime hvparams) and whether the cluster's
KVM default (ssconf) want it; open the device as Ganeti does and ask it
for its features (VHOST_GET_FEATURES); /sys/module/vhost_net.  Evaluate:
CRIT when it is wanted and does not work, naming who wants it and the
modprobe; OK otherwise, saying whether it is needed.
"""

import errno
import os

from .. import ganeti, sysfs
from ..localcheck import CRIT, OK, UNKNOWN, WARN, NotApplicable, Result
from ..runner import Check, SharedSettings
from ..safefile import errno_text, file_type
from ..words import fit, plural, some

SERVICE = "vhost-net"
SECTION = "vhost_net"
MODULE = "vhost_net"
MISC_MAJOR, VHOST_NET_MINOR = 10, 238
VHOST_GET_FEATURES = 0x8008AF00  # _IOR(VHOST_VIRTIO=0xAF, 0x00, __u64)
PARAVIRTUAL = "paravirtual"  # the only nic_type for which Ganeti uses vhost

DEFAULTS = {
    "device": "/dev/vhost-net",
}


def wants_vhost(hvparams, nics=None):
    """Whether Ganeti opens /dev/vhost-net for these hvparams: vhost_net
    true and paravirtual NICs (`nics`: how many the instance has, None
    when not known)."""
    if hvparams.get("vhost_net") is not True:
        return False
    if hvparams.get("nic_type", PARAVIRTUAL) != PARAVIRTUAL:
        return False
    return nics is None or nics > 0


class Probe:
    """Who wants vhost-net, and what opening the device showed."""

    __slots__ = ("device", "in_cluster", "cluster_default", "cluster_nic_type",
                 "instances", "wanting", "unknown", "config_read", "exists",
                 "file_type", "rdev",
                 "open_errno", "ioctl_errno", "module_loaded", "euid")

    def __init__(self, device, **fields):
        self.device = device
        self.in_cluster = True
        self.cluster_default = False   # True / False / None (not known)
        self.cluster_nic_type = None
        self.instances = []            # instances running here
        self.wanting = {}              # instance: why it wants vhost-net
        self.unknown = {}              # instance or source: why it is not known
        self.config_read = False       # config.data (master candidates) read
        self.exists = True
        self.file_type = "character device"
        self.rdev = (MISC_MAJOR, VHOST_NET_MINOR)
        self.open_errno = None
        self.ioctl_errno = None
        self.module_loaded = False
        self.euid = 0
        for key, value in fields.items():
            setattr(self, key, value)

    @property
    def works(self):
        return (self.exists and self.file_type == "character device"
                and self.open_errno is None and self.ioctl_errno is None)


def probe_device(p):
    """Open the device read-write as Ganeti does (following links, as it
    does), then VHOST_GET_FEATURES; only a character device is opened."""
    import fcntl
    try:
        st = os.stat(p.device)
    except FileNotFoundError:
        p.exists = False
        return
    except OSError as e:
        p.open_errno = e.errno
        return
    p.file_type = file_type(st.st_mode)
    if p.file_type != "character device":
        return
    p.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    try:
        fd = os.open(p.device, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        p.open_errno = e.errno
        return
    try:
        fcntl.ioctl(fd, VHOST_GET_FEATURES, bytearray(8))
    except OSError as e:
        p.ioctl_errno = e.errno
    finally:
        os.close(fd)


def probe(device, proc, sys_root, data_dir, run_dir, node_name):
    """Look at the cluster default, the running instances, the instances
    of this node in config.data (master candidates), and the device.
    `node_name` is a function: called only in a cluster."""
    p = Probe(device, euid=os.geteuid())
    p.in_cluster = ganeti.read_ssconf(data_dir, "master_node") is not None
    if p.in_cluster:
        if ganeti.read_ssconf(data_dir, "hvparams_kvm") is None:
            p.cluster_default = None
        else:
            hvparams = ganeti.cluster_hvparams(data_dir)
            p.cluster_default = wants_vhost(hvparams)
            p.cluster_nic_type = hvparams.get("nic_type")
    runtimes, p.unknown = ganeti.running_kvm_runtimes(proc, run_dir)
    p.instances = sorted(set(runtimes) | set(p.unknown))
    p.wanting = {name: "vhost_net=True" for name, runtime in runtimes.items()
                 if wants_vhost(runtime.hvparams, len(runtime.nics)
                                if isinstance(runtime.nics, list) else None)}
    if p.in_cluster:
        _configured(p, data_dir, node_name(), runtimes)
    p.module_loaded = MODULE in sysfs.modules(sys_root)
    probe_device(p)
    return p


def _configured(p, data_dir, node, runtimes):
    """Add the instances config.data gives this node (master candidates
    only): those to be started here, and those that can fail over or
    migrate here."""
    configured, why = ganeti.configured_here(data_dir, node)
    if why:
        p.unknown[ganeti.CONFIG_DATA] = why
    if configured is None:
        return
    p.config_read = True
    for inst in configured:
        if inst.name in p.wanting or not wants_vhost(inst.hvparams, inst.nics):
            continue
        p.wanting[inst.name] = ("vhost_net=True from its next start"
                                if inst.primary and inst.name in runtimes
                                else "vhost_net=True, " + inst.relation)


def _module_text(p):
    return ("module vhost_net loaded" if p.module_loaded
            else "module vhost_net not loaded (no /sys/module/vhost_net)")


def _failure(p):
    """What is wrong with the device, in words, or None when it works."""
    if not p.exists:
        return "%s is missing" % p.device
    if p.file_type != "character device":
        return "%s is a %s, not the vhost-net character device %d:%d" % (
            p.device, p.file_type, MISC_MAJOR, VHOST_NET_MINOR)
    if p.open_errno is not None:
        return "%s does not open read-write: %s" % (p.device, errno_text(p.open_errno))
    if p.ioctl_errno is not None:
        return "%s opens but is not vhost-net (device %d:%d, VHOST_GET_FEATURES: " \
            "%s)" % (p.device, p.rdev[0], p.rdev[1], errno_text(p.ioctl_errno))
    return None


def _who(p, limit):
    """'instance a (vhost_net=True) and the cluster default (gnt-cluster
    modify -H kvm:vhost_net=True)', naming at most `limit` instances."""
    parts = []
    if p.wanting:
        items = ["%s (%s)" % item for item in sorted(p.wanting.items())]
        parts.append("%s %s" % (
            "instance" if len(items) == 1 else plural(len(items), "instance"),
            some(items, limit)))
    if p.cluster_default:
        parts.append("the cluster default (gnt-cluster modify -H kvm:vhost_net=True)")
    return " and ".join(parts)


def _remedy(p):
    if p.exists and p.file_type != "character device":
        return "remove it and run 'modprobe vhost_net' (udev creates the device)"
    if p.module_loaded:
        return ("the vhost_net module is loaded: recreate the device with "
                "'mknod -m 600 %s c %d %d'" % (p.device, MISC_MAJOR, VHOST_NET_MINOR))
    return "run 'modprobe vhost_net' and add vhost_net to /etc/modules"


def _not_needed(p, limit):
    """'not needed: ...', saying which sources were looked at, naming at
    most `limit` instances."""
    n = len(p.instances)
    here = ("no instance here" if not n else "none of the %s here (%s)" % (
        plural(n, "instance"), some(p.instances, limit)))
    if not p.in_cluster:
        return "not needed: %s uses vhost_net (not in a cluster)" % here
    return "not needed: %s and not the cluster default uses vhost_net" % here


def _details(p):
    details = ["device: %s (%s)" % (p.device, _failure(p) or "opens read-write, "
                                    "answers VHOST_GET_FEATURES"),
               _module_text(p)]
    if not p.in_cluster:
        details.append("this node is not in a Ganeti cluster (no ssconf_master_node)")
    elif p.cluster_default is None:
        details.append("the cluster default is not known: no ssconf_hvparams_kvm")
    else:
        details.append("cluster default: %s (nic_type %s)" % (
            "wants vhost-net" if p.cluster_default else "no vhost-net",
            p.cluster_nic_type or "not set"))
    details.append("instances running here: %s" % (", ".join(p.instances) or "none"))
    details.append("wanting vhost-net (vhost_net=True, paravirtual NICs): %s" % (
        ", ".join("%s (%s)" % item for item in sorted(p.wanting.items())) or "none"))
    details += ["%s: not known: %s" % item for item in sorted(p.unknown.items())]
    if p.config_read:
        details.append("config.data read: instances with this node as primary or "
                       "secondary, or that can migrate here, are included")
    elif p.in_cluster:
        details.append("no config.data (not a master candidate): instances not "
                       "running here are not looked at, only the cluster default")
    return details


def evaluate(p):
    """The one Result for a Probe."""
    if not p.in_cluster and not p.instances:
        raise NotApplicable("this node is not in a Ganeti cluster and runs no "
                            "KVM instance")
    details = _details(p)
    failure = _failure(p)
    needed = bool(p.wanting or p.cluster_default)
    if failure is None:
        if needed:
            return Result(OK, SERVICE, fit(lambda n: "%s usable, needed by %s; %s" % (
                p.device, _who(p, n), _module_text(p))), details)
        return Result(OK, SERVICE, fit(lambda n: "%s; %s usable" % (
            _not_needed(p, n), p.device)), details)
    if (p.open_errno in (errno.EACCES, errno.EPERM) and p.euid != 0
            and p.exists and p.file_type == "character device"):
        return Result(UNKNOWN, SERVICE, "cannot open %s: permission denied for "
                      "uid %d: run the check as root" % (p.device, p.euid), details)
    if needed:
        verb = "needs" if len(p.wanting) + bool(p.cluster_default) == 1 else "need"
        return Result(CRIT, SERVICE, fit(lambda n: "%s, %s: %s %s it, so a start "
                                         "or migration here fails ('Failed to "
                                         "open /dev/vhost-net'): %s" % (
                                             failure, _module_text(p), _who(p, n),
                                             verb, _remedy(p))), details)
    unsure = sorted(p.unknown)
    if p.in_cluster and p.cluster_default is None:
        unsure.append("the cluster default (no ssconf_hvparams_kvm)")
    if unsure:
        return Result(WARN, SERVICE, fit(lambda n: "%s, %s; cannot tell whether it "
                                         "is needed: %s unknown" % (
                                             failure, _module_text(p), some(unsure, n))),
                      details)
    return Result(OK, SERVICE, fit(lambda n: "%s; %s, %s" % (
        _not_needed(p, n), failure, _module_text(p))), details)


class Settings(SharedSettings):
    """`[vhost_net]` and the paths."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "data_dir",
                                "node_name", "proc", "run_dir", "state_dir", "sys")
        self.device = config.get_path(SECTION, "device")


def run(ctx):
    s = ctx.settings
    try:
        p = probe(s.device, s.proc, s.sys, s.data_dir, s.run_dir,
                  s.node)
    except PermissionError as e:
        return [Result(UNKNOWN, SERVICE, "cannot read %s: permission denied: run "
                       "the check as root" % (e.filename or e))]
    ctx.log("vhost-net: wanted by %s, cluster default %s, exists=%s open_errno=%s "
            "ioctl_errno=%s" % (p.wanting, p.cluster_default, p.exists,
                                p.open_errno, p.ioctl_errno))
    return [evaluate(p)]


CHECK = Check(
    "vhost_net", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: does /dev/vhost-net work on this node "
    "where instances (or the cluster default) want vhost_net?",
    epilog="States: OK usable, or not needed; CRIT wanted (by instances here "
    "or the cluster default) and the\ndevice does not open; WARN it does not "
    "open and whether it is needed is unknown; UNKNOWN not root.")
