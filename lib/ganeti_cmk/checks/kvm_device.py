"""KVM device: can this node start KVM instances, and if not, why not?

Probe: stat, open and KVM_GET_API_VERSION on `[paths] dev_kvm`, plus what
/proc/cpuinfo and /sys/module say.  Evaluate: OK with the API version, the
vendor module and nested virtualisation, or CRIT with a diagnosis and the
remedy; UNKNOWN "run as root" when only permissions stand in the way.
"""

import errno
import os

from .. import procfs, sysfs
from ..localcheck import CRIT, OK, UNKNOWN, Result
from ..runner import Check, SharedSettings
from ..safefile import errno_text, file_type

SERVICE = "KVM device"
KVM_MAJOR, KVM_MINOR = 10, 232
KVM_API_VERSION = 12
KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO=0xAE, 0x00)
VENDOR_MODULE = {"GenuineIntel": "kvm_intel", "AuthenticAMD": "kvm_amd",
                 "HygonGenuine": "kvm_amd"}


class DeviceProbe:
    """What the device node, the CPU and the kernel modules showed."""

    __slots__ = ("path", "exists", "file_type", "rdev", "open_errno",
                 "api_version", "ioctl_errno", "euid", "cpu_vendor",
                 "cpu_flags", "modules", "nested", "misc_registered")

    def __init__(self, path, **fields):
        self.path = path
        self.exists = True
        self.file_type = "character device"
        self.rdev = (KVM_MAJOR, KVM_MINOR)
        self.open_errno = None
        self.api_version = None
        self.ioctl_errno = None
        self.euid = 0
        self.cpu_vendor = None
        self.cpu_flags = set()
        self.modules = []          # loaded kvm modules: kvm, kvm_intel, ...
        self.nested = None         # True / False / None (not known)
        self.misc_registered = False
        for key, value in fields.items():
            setattr(self, key, value)


def read_modules(sys_root):
    """Loaded kvm modules (kvm first) and the vendor module's nested flag."""
    modules = sorted(n for n in sysfs.modules(sys_root)
                     if n == "kvm" or n.startswith("kvm_"))
    nested = None
    for name in modules:
        try:
            value = sysfs.module_parameter(sys_root, name, "nested")
        except OSError:
            continue
        if value is not None:
            nested = value.upper() in ("Y", "1")
            break
    return modules, nested


def probe(dev_kvm, proc="/proc", sys_root="/sys"):
    """Look at the device, the CPU and the modules; never raises OSError."""
    import fcntl
    p = DeviceProbe(dev_kvm, euid=os.geteuid())
    p.cpu_vendor, p.cpu_flags = procfs.cpu(proc)
    p.modules, p.nested = read_modules(sys_root)
    p.misc_registered = os.path.exists(os.path.join(sys_root, "class", "misc", "kvm"))
    try:
        st = os.stat(dev_kvm)
    except FileNotFoundError:
        p.exists = False
        return p
    except OSError as e:
        p.open_errno = e.errno
        return p
    p.file_type = file_type(st.st_mode)
    if p.file_type != "character device":
        return p
    p.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if p.rdev != (KVM_MAJOR, KVM_MINOR):
        return p
    try:
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        p.open_errno = e.errno
        return p
    try:
        p.api_version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
    except OSError as e:
        p.ioctl_errno = e.errno
    finally:
        os.close(fd)
    return p


def _vendor_module(p):
    return VENDOR_MODULE.get(p.cpu_vendor, "kvm_intel or kvm_amd")


def _not_loaded(p):
    """Why the kvm driver is not there, and what to do."""
    if not (p.cpu_flags & {"vmx", "svm"}) and p.cpu_flags:
        return ("the CPU offers no hardware virtualisation (no vmx/svm flag): "
                "enable VT-x/AMD-V in the firmware setup, or nested "
                "virtualisation if this node is itself a VM")
    if "kvm" in p.modules:
        return ("the kvm module is loaded but no vendor module: run "
                "'modprobe %s' and check dmesg (disabled in firmware?)"
                % _vendor_module(p))
    return "the kvm module is not loaded: run 'modprobe %s'" % _vendor_module(p)


def _ok_summary(p):
    vendor = [m for m in p.modules if m != "kvm"]
    parts = ["%s usable, KVM API version %d" % (p.path, p.api_version)]
    parts.append("module %s" % ", ".join(vendor) if vendor else "kvm built in")
    if p.nested is not None:
        parts.append("nested virtualisation %s" % ("on" if p.nested else "off"))
    return ", ".join(parts)


def evaluate(p):
    """The one Result for a DeviceProbe."""
    details = ["device: %s" % p.path,
               "modules: %s" % (", ".join(p.modules) or "none loaded"),
               "CPU: %s, virtualisation flag: %s" % (
                   p.cpu_vendor or "unknown vendor",
                   " ".join(sorted(p.cpu_flags & {"vmx", "svm"})) or "none")]

    def crit(text):
        return Result(CRIT, SERVICE, text, details)

    if not p.exists:
        if p.misc_registered:
            return crit("%s is missing although the kvm driver is loaded: "
                        "recreate it with 'mknod -m 660 %s c %d %d' and check "
                        "udev" % (p.path, p.path, KVM_MAJOR, KVM_MINOR))
        return crit("%s is missing: %s" % (p.path, _not_loaded(p)))
    if p.file_type != "character device":
        return crit("%s is a %s, not the KVM character device %d:%d: remove "
                    "it and reload the kvm module" % (
                        p.path, p.file_type, KVM_MAJOR, KVM_MINOR))
    if p.rdev != (KVM_MAJOR, KVM_MINOR):
        return crit("%s is device %d:%d, not KVM's %d:%d: recreate it with "
                    "'mknod -m 660 %s c %d %d'" % (
                        p.path, p.rdev[0], p.rdev[1], KVM_MAJOR, KVM_MINOR,
                        p.path, KVM_MAJOR, KVM_MINOR))
    if p.open_errno in (errno.EACCES, errno.EPERM) and p.euid != 0:
        return Result(UNKNOWN, SERVICE, "cannot open %s: permission denied "
                      "for uid %d: run the check as root" % (p.path, p.euid),
                      details)
    if p.open_errno in (errno.ENXIO, errno.ENODEV):
        return crit("%s exists but no driver answers (%s): %s" % (
            p.path, errno_text(p.open_errno), _not_loaded(p)))
    if p.open_errno is not None:
        return crit("cannot open %s read-write: %s" % (
            p.path, errno_text(p.open_errno)))
    if p.ioctl_errno is not None:
        return crit("KVM_GET_API_VERSION on %s failed: %s" % (
            p.path, errno_text(p.ioctl_errno)))
    if p.api_version != KVM_API_VERSION:
        return crit("%s answers KVM API version %s, expected %d: kernel and "
                    "qemu do not match" % (p.path, p.api_version, KVM_API_VERSION))
    return Result(OK, SERVICE, _ok_summary(p), details)


class Settings(SharedSettings):
    """The paths this check reads."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "proc", "sys")
        self.dev_kvm = config.get_path("paths", "dev_kvm")


def run(ctx):
    s = ctx.settings
    dev_kvm = s.dev_kvm
    data = probe(dev_kvm, s.proc, s.sys)
    ctx.log("probed %s: exists=%s type=%s rdev=%s open_errno=%s api=%s modules=%s"
            % (dev_kvm, data.exists, data.file_type, data.rdev, data.open_errno,
               data.api_version, data.modules))
    return [evaluate(data)]


CHECK = Check(
    "kvm_device", SERVICE, run=run, settings=Settings,
    description="Checkmk local check: is /dev/kvm present and usable, so "
    "that this node can start KVM instances?",
    epilog="States: OK usable (API 12); CRIT missing or unusable, with the "
    "reason and the remedy;\nUNKNOWN when the check lacks the permission "
    "to open the device (run it as root).")
