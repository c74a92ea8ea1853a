"""KVM device: every diagnosis branch, real device nodes where root can make them."""

import errno
import os

import pytest

from support import needs_root
from ganeti_cmk.checks import kvm_device
from ganeti_cmk.checks.kvm_device import DeviceProbe, evaluate, probe

has_kvm = pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm here")
INTEL_CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                 "flags\t\t: fpu vme vmx sse2\n\nprocessor\t: 1\n")
NO_VIRT_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2\n"


def config_for(dev):
    return "[paths]\ndev_kvm = %s\n" % dev


# --- the real device and real device nodes ------------------------------

@has_kvm
def test_real_dev_kvm_is_ok(agent):
    service = agent("ganeti_kvm_device")["KVM device"]
    assert service["state"] == "0"
    assert "/dev/kvm usable, KVM API version 12, module kvm" in service["summary"]


@has_kvm
@needs_root
def test_not_root_gives_unknown_run_as_root(agent, tmp_path):
    os.chmod(tmp_path, 0o755)
    dev = tmp_path / "kvm"
    os.mknod(dev, 0o600 | 0o020000, os.makedev(10, 232))
    service = agent("ganeti_kvm_device", config_for(dev), user=65534)["KVM device"]
    assert service["state"] == "3"
    assert "permission denied for uid 65534: run the check as root" in service["summary"]


@has_kvm
@needs_root
def test_own_node_with_kvm_numbers_is_ok(agent, tmp_path):
    dev = tmp_path / "kvm"
    os.mknod(dev, 0o600 | 0o020000, os.makedev(10, 232))
    assert agent("ganeti_kvm_device", config_for(dev))["KVM device"]["state"] == "0"


@needs_root
def test_wrong_device_numbers_are_crit(agent, tmp_path):
    dev = tmp_path / "kvm"
    os.mknod(dev, 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers
    service = agent("ganeti_kvm_device", config_for(dev))["KVM device"]
    assert service["state"] == "2"
    assert "is device 1:3, not KVM's 10:232" in service["summary"]


@needs_root
def test_node_without_driver_is_crit_with_errno(tmp_path):
    # A misc device node whose minor no driver owns fails to open the way
    # /dev/kvm does when the module is gone; feed that real errno through.
    dev = tmp_path / "kvm"
    os.mknod(dev, 0o600 | 0o020000, os.makedev(10, 251))
    with pytest.raises(OSError) as e:
        os.close(os.open(str(dev), os.O_RDWR))
    assert e.value.errno in (errno.ENODEV, errno.ENXIO)
    result = evaluate(DeviceProbe("/dev/kvm", open_errno=e.value.errno))
    assert result.state == 2 and "exists but no driver answers" in result.summary


def test_regular_file_is_crit(agent, tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    service = agent("ganeti_kvm_device", config_for(dev))["KVM device"]
    assert service["state"] == "2"
    assert "is a regular file, not the KVM character device" in service["summary"]


def test_directory_is_crit(agent, tmp_path):
    service = agent("ganeti_kvm_device", config_for(tmp_path))["KVM device"]
    assert service["state"] == "2" and "is a directory" in service["summary"]


# --- missing device: the diagnosis from /proc and /sys (pyfakefs) ----------

def fake_node(fs, cpuinfo, modules=(), nested=None, misc=False):
    fs.create_file("/proc/cpuinfo", contents=cpuinfo)
    fs.create_dir("/sys/module")
    for m in modules:
        fs.create_dir("/sys/module/%s" % m)
    if nested is not None:
        fs.create_file("/sys/module/%s/parameters/nested" % modules[-1],
                       contents=nested + "\n")
    if misc:
        fs.create_dir("/sys/class/misc/kvm")


@pytest.mark.parametrize("cpuinfo,modules,misc,expected", [
    (INTEL_CPUINFO, (), False, "the kvm module is not loaded: run 'modprobe kvm_intel'"),
    (INTEL_CPUINFO, ("kvm",), False, "no vendor module: run 'modprobe kvm_intel'"),
    (NO_VIRT_CPUINFO, (), False, "no hardware virtualisation (no vmx/svm flag)"),
    ("", (), False, "run 'modprobe kvm_intel or kvm_amd'"),
    (INTEL_CPUINFO, ("kvm", "kvm_intel"), True,
     "missing although the kvm driver is loaded: recreate it with "
     "'mknod -m 660 /dev/kvm c 10 232'"),
])
def test_missing_device_diagnosis(fs, cpuinfo, modules, misc, expected):
    fake_node(fs, cpuinfo, modules, misc=misc)
    result = evaluate(probe("/dev/kvm"))
    assert result.state == 2
    assert result.summary.startswith("/dev/kvm is missing")
    assert expected in result.summary


@pytest.mark.parametrize("value,word", [("Y", "on"), ("1", "on"), ("N", "off")])
def test_modules_and_nested_flag(fs, value, word):
    fake_node(fs, INTEL_CPUINFO, ("kvm", "kvm_intel"), nested=value)
    p = probe("/dev/kvm")
    assert p.cpu_vendor == "GenuineIntel" and "vmx" in p.cpu_flags
    p.exists, p.api_version = True, 12
    summary = evaluate(p).summary
    assert summary == ("/dev/kvm usable, KVM API version 12, module kvm_intel, "
                       "nested virtualisation %s" % word)


# --- the remaining branches, from probe data --------------------------------

@pytest.mark.parametrize("fields,state,text", [
    ({"open_errno": errno.EACCES, "euid": 0}, 2, "cannot open /dev/kvm read-write: EACCES"),
    ({"open_errno": errno.EPERM, "euid": 1000}, 3, "run the check as root"),
    ({"open_errno": errno.EBUSY}, 2, "EBUSY"),
    ({"ioctl_errno": errno.ENOTTY}, 2, "KVM_GET_API_VERSION on /dev/kvm failed: ENOTTY"),
    ({"api_version": 11}, 2, "answers KVM API version 11, expected 12"),
    ({"api_version": 12, "modules": ["kvm"]}, 0, "kvm built in"),
])
def test_branches(fields, state, text):
    result = evaluate(DeviceProbe("/dev/kvm", **fields))
    assert result.state == state and text in result.summary


def test_check_metadata():
    assert kvm_device.CHECK.service == "KVM device"
    assert kvm_device.CHECK.name == "ganeti_kvm_device"
