"""KVM binary versions on the real instance, across a real binary replacement.

swap-qemu.sh replaces /usr/bin/qemu-system-x86_64 as dpkg does (a new file renamed
over it) with a build whose embedded version differs; the running instance keeps
the old inode until Ganeti restarts it.
"""

import json
import os
import re
import subprocess

import pytest

from realcluster import HERE, in_ns

pytestmark = pytest.mark.integration

SERVICE = "KVM binary versions"
QEMU = "/usr/bin/qemu-system-x86_64"
SWAP = os.path.join(HERE, "swap-qemu.sh")


def qemu_version():
    """What the installed qemu says: ('7.2.22', 'Debian 1:7.2+dfsg-7+deb12u18+b3')."""
    out = subprocess.run([QEMU, "--version"], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=30, check=True).stdout
    m = re.match(r"QEMU emulator version (\S+) \((.*)\)", out)
    assert m, out
    return m.groups()


def swap(action):
    proc = subprocess.run([SWAP, action], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def instance_pid(cluster):
    with open(os.path.join(cluster.run_dir, "kvm-hypervisor", "pid", cluster.instance)) as f:
        return int(f.read().strip())


def restart(cluster):
    """A hard reboot: Ganeti stops the qemu process and starts a new one."""
    in_ns("gnt-instance", "reboot", "--type=hard", "--shutdown-timeout=0",
          cluster.instance)
    assert cluster.instance_status() == "running"


@pytest.fixture
def replaced_qemu(cluster):
    """Whatever happened: the original binary back, the instance running it."""
    yield
    swap("restore")
    if os.readlink("/proc/%d/exe" % instance_pid(cluster)).endswith(" (deleted)"):
        restart(cluster)


def test_replaced_binary_names_the_instance_until_it_restarts(cluster, check, replaced_qemu):
    number, package = qemu_version()
    pid = instance_pid(cluster)
    with open(os.path.join(cluster.run_dir, "kvm-hypervisor", "conf",
                           cluster.instance + ".runtime")) as f:
        started_as = json.load(f)[0][0]

    # Nothing replaced: OK, with the version qemu itself prints.
    result = check("ganeti_kvm_binary")[SERVICE]
    assert result["state"] == "0", result
    assert "QEMU %s, %s" % (number, package) in result["summary"], result
    assert result["metrics"] == {"kvm_outdated": 0, "kvm_processes": 1}
    assert "%s: pid %d, %s, QEMU %s (%s)" % (cluster.instance, pid, QEMU, number,
                                             package) in result["details"], result

    # A new build renamed over it: the running instance is named, with both versions.
    old, new = swap("upgrade").strip().split("\t")
    assert old == "%s (%s)" % (number, package)
    new_number = new.split()[0]
    assert qemu_version()[0] == new_number
    result = check("ganeti_kvm_binary")[SERVICE]
    assert result["state"] == "1", result  # WARN at once by default, CRIT after 7 days
    assert result["metrics"] == {"kvm_outdated": 1, "kvm_processes": 1}
    summary = result["summary"]
    assert "1 of 1 instance runs a replaced KVM binary" in summary, summary
    assert "%s (running %s, installed %s since" % (cluster.instance, number,
                                                   new_number) in summary, summary
    detail = [d for d in result["details"] if d.startswith(cluster.instance + ":")]
    assert len(detail) == 1, result
    assert "pid %d, %s (deleted)" % (pid, QEMU) in detail[0], detail
    assert "running %s, installed %s" % (old, new) in detail[0], detail
    assert "started as %s" % started_as in detail[0], detail

    # Ganeti restarts it on the new binary: OK again, with the new version.
    restart(cluster)
    assert instance_pid(cluster) != pid
    result = check("ganeti_kvm_binary")[SERVICE]
    assert result["state"] == "0", result
    assert result["metrics"] == {"kvm_outdated": 0, "kvm_processes": 1}
    assert "QEMU %s" % new_number in result["summary"], result

    # The original back (a downgrade, as dpkg would do it) is a replacement too.
    swap("restore")
    result = check("ganeti_kvm_binary")[SERVICE]
    assert result["state"] == "1", result
    assert "(running %s, installed %s since" % (new_number, number) in result["summary"]
    restart(cluster)
    result = check("ganeti_kvm_binary")[SERVICE]
    assert result["state"] == "0", result
    assert "QEMU %s, %s" % (number, package) in result["summary"], result
