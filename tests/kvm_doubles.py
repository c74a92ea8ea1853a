"""Real processes that look like Ganeti's KVM instances, for the tests and
the bench (importable without pytest; the fixtures are in conftest.py).

A 20-line C program stands in for qemu: it ignores its arguments except
`-pidfile` (written once it is ready, after `-chroot` if given) and pauses,
so its argv can carry a full Ganeti-style qemu command line.  It embeds a
"QEMU emulator version ..." literal like the real binary (or none).
Binaries are replaced the way dpkg does it: a new file renamed over the old.
"""

import json
import os
import shutil
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The stand-in's file name, unique to this test run (other runs on the same
# machine must not see our doubles) and short enough to be its whole comm.
NAME = "qemu-%d-cmk" % (os.getpid() % 100000)
NAMES = NAME                     # process_names that match only our doubles
OLD = ("7.2.15", "Debian 1:7.2+dfsg-7+deb12u12")
NEW = ("7.2.18", "Debian 1:7.2+dfsg-7+deb12u15")

C_SOURCE = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef QEMU_VERSION
const char version[] = "QEMU emulator version " QEMU_VERSION
    "\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers";
#endif
int main(int argc, char **argv) {
    const char *pidfile = 0, *jail = 0;
    FILE *f = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "-pidfile")) pidfile = argv[i + 1];
        if (!strcmp(argv[i], "-chroot")) jail = argv[i + 1];
    }
#ifdef QEMU_VERSION
    if (argc > 1 && !strcmp(argv[1], "--version")) { puts(version); return 0; }
#endif
    if (pidfile && !(f = fopen(pidfile, "w"))) return 1;
    if (jail && (chroot(jail) || chdir("/"))) return 1;
    if (f) { fprintf(f, "%d\n", (int)getpid()); fclose(f); }
    pause();
    return 0;
}
"""

LIB_SOURCE = "int cmktest_answer(void) { return 42; }\n"


def compile_double(directory, version=None, name="double"):
    """Compile the stand-in; `version` is (number, package) or None."""
    src = os.path.join(directory, "double.c")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    out = os.path.join(directory, name)
    cmd = ["gcc", "-O1", "-o", out, src]
    if version:
        cmd.insert(1, '-DQEMU_VERSION="%s (%s)"' % version)
    subprocess.run(cmd, check=True, timeout=60)
    return out


def compile_library(directory, name="libcmktest.so.1"):
    src = os.path.join(directory, "lib.c")
    with open(src, "w") as f:
        f.write(LIB_SOURCE)
    out = os.path.join(directory, name)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", out, src], check=True,
                   timeout=60)
    return out


def install(source, path, mtime=None):
    """Put `source` at `path` as dpkg does: write path.dpkg-new, rename over.

    dpkg also gives the file the mtime it has in the package (its build
    time): pass that as `mtime`.
    """
    tmp = path + ".dpkg-new"
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.rename(tmp, path)


def install_symlink(target, path):
    """Replace a symlink as dpkg does (a new symlink renamed over it)."""
    tmp = path + ".dpkg-new"
    os.symlink(target, tmp)
    os.rename(tmp, path)


def wait_until(predicate, what="condition", timeout=20):
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.01)


def wait_for_pidfile(path, pid):
    """Wait until the process wrote its pid file (it is ready then)."""
    def written():
        try:
            with open(path) as f:
                return f.read().strip() == str(pid)
        except FileNotFoundError:
            return False
    wait_until(written, "process %d to write %s" % (pid, path))


class Node:
    """A Ganeti node in a temp dir: run dir with pid/ and conf/, a bin dir.

    `start()` runs a stand-in with Ganeti's argv; processes are killed by
    `stop_all()` (the `node` fixture does it).
    """

    def __init__(self, root):
        self.root = str(root)
        self.run_dir = os.path.join(self.root, "run", "ganeti")
        self.kvm_dir = os.path.join(self.run_dir, "kvm-hypervisor")
        self.data_dir = os.path.join(self.root, "lib", "ganeti")
        self.state_dir = os.path.join(self.root, "state")
        self.bin = os.path.join(self.root, "bin")
        for d in ("pid", "conf", "ctrl"):
            os.makedirs(os.path.join(self.kvm_dir, d), exist_ok=True)
        for d in (self.data_dir, self.state_dir, self.bin):
            os.makedirs(d, exist_ok=True)
        self.procs = []

    def pid_file(self, instance):
        return os.path.join(self.kvm_dir, "pid", instance)

    def binary(self, name=NAME):
        return os.path.join(self.bin, name)

    def argv(self, instance, kvm_path, pid_file=None):
        ctrl = os.path.join(self.kvm_dir, "ctrl", instance)
        return [kvm_path, "-name", instance, "-m", "128", "-smp", "1",
                "-pidfile", pid_file or self.pid_file(instance),
                "-device", "virtio-balloon", "-monitor",
                "unix:%s.monitor,server,nowait" % ctrl, "-serial", "none"]

    def start(self, instance, kvm_path=None, exe=None, extra=(), runtime=True,
              pid_file=None, env=None):
        """Start an instance; kvm_path is argv[0] and the runtime's kvm_path.

        `exe` is what is executed (default: kvm_path).  Returns the Popen
        once the process is ready (its pid file written).
        """
        kvm_path = kvm_path or self.binary()
        argv = self.argv(instance, kvm_path, pid_file) + list(extra)
        if runtime:
            with open(os.path.join(self.kvm_dir, "conf", instance + ".runtime"), "w") as f:
                json.dump([argv, [], {"kvm_path": kvm_path}, []], f)
        return self.spawn(argv, pid_file or self.pid_file(instance),
                          executable=exe or kvm_path, env=env)

    def spawn(self, cmd, pid_file, executable=None, env=None):
        """Run `cmd`; return its Popen once it wrote its pid to `pid_file`."""
        p = subprocess.Popen(cmd, executable=executable, env=env,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        wait_for_pidfile(pid_file, p.pid)
        return p

    def spawn_in_own_mount_namespace(self, instance, binary):
        """Start `instance` in a private mount namespace in which a tmpfs
        over the bin dir holds a copy of `binary` at our binary's path."""
        if not shutil.which("unshare"):
            import pytest
            pytest.skip("unshare is needed")
        pid_file = self.pid_file(instance)
        script = ('mount -t tmpfs none "$1" && cp "$2" "$1/%s" && '
                  'exec "$1/%s" -name "$4" -pidfile "$3"' % (NAME, NAME))
        return self.spawn(["unshare", "--mount", "--propagation", "private",
                           "sh", "-c", script, "sh", self.bin, binary, pid_file,
                           instance], pid_file)

    def config(self, **kvm_binary):
        """The config file text pointing the check at this node."""
        values = {"process_names": NAMES, "kvm_path": self.binary()}
        values.update(kvm_binary)
        return ("[paths]\nganeti_run_dir = %s\nganeti_data_dir = %s\n"
                "state_dir = %s\n[kvm_binary]\n%s\n" % (
                    self.run_dir, self.data_dir, self.state_dir,
                    "\n".join("%s = %s" % kv for kv in sorted(values.items()))))

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=20)
