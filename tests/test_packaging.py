"""Packaging: the built checks, the .mkp, make install/uninstall, pip install.

The checks are built once per session through the Makefile (into tmp, not
the checkout); the .mkp is read back with tarfile + ast.literal_eval and
with the PyPI `mkp` package; the built checks run exactly as the Checkmk
Linux agent runs local checks.
"""

import ast
import glob
import gzip
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

import mkp
import pytest

from support import ROOT
from ganeti_cmk import __version__
from localcheck_grammar import assert_valid_output

from ganeti_cmk.checks import NAMES  # noqa: E402

CHECKS = sorted("ganeti_" + name for name in NAMES)
PACKAGE = "ganeti_cmk"
MKP_NAME = "%s-%s.mkp" % (PACKAGE, __version__)
BASE = "custom/%s/lib/" % PACKAGE
EXAMPLE_CFG = os.path.join(ROOT, "mkp", "ganeti_cmk.cfg.example")
SYSTEM_PYTHON = "/usr/bin/python3"
AGENT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # no venv, no pyenv shims
# mkp 0.7 extracts without a tar filter; Python 3.12+ warns about 3.14.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Python 3.14 will, by default, filter extracted tar archives")
REQUIRED_KEYS = ("title", "name", "description", "version", "version.packaged",
                 "version.min_required", "author", "download_url", "files")
CMK_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[pb]\d+)?\Z")


def make(*args, env=None):
    """Run the Makefile with this interpreter; fail with its output."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "-s", "PYTHON=" + sys.executable] + list(args),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


def build_tool(*args, **env_extra):
    """tools/build.py ARGS, SOURCE_DATE_EPOCH unset unless given."""
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)
    env.update(env_extra)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build.py")] + list(args),
                   check=True, stdout=subprocess.DEVNULL, env=env, timeout=300)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def commit_time():
    out = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"],
                         stdout=subprocess.PIPE, universal_newlines=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else 0


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """`make build mkp` into tmp: {"agent": the agent's library dir,
    "local": its local/, "mkp": path}."""
    out = tmp_path_factory.mktemp("packaging")
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)  # the default: last commit time
    make("build", "mkp", "BUILDDIR=%s" % (out / "agent"), "DISTDIR=%s" % (out / "dist"),
         env=env)
    return {"agent": out / "agent", "local": out / "agent" / "local",
            "mkp": out / "dist" / MKP_NAME, "epoch": commit_time()}


@pytest.fixture(scope="session")
def package(built):
    """The .mkp read with the stdlib only: members, info, agents members."""
    with tarfile.open(built["mkp"], "r:gz") as outer:
        members = outer.getmembers()
        data = {m.name: outer.extractfile(m).read() for m in members}
    with tarfile.open(fileobj=io.BytesIO(data["agents.tar"])) as inner:
        agents = [(m, inner.extractfile(m).read()) for m in inner.getmembers()]
    return {"members": members, "data": data,
            "info": ast.literal_eval(data["info"].decode("utf-8")),
            "agents": agents}


# --- the built checks ----------------------------------------------------

def library_modules():
    """lib/ganeti_cmk/**.py, relative to lib/."""
    lib = os.path.join(ROOT, "lib")
    return sorted(os.path.relpath(os.path.join(top, f), lib)
                  for top, dirs, files in os.walk(os.path.join(lib, PACKAGE))
                  for f in files if f.endswith(".py"))


def agent_layout():
    """Every file the build writes, relative to the agent's library dir:
    the entry scripts in local/, the library with a .pyc per module."""
    tag = sys.implementation.cache_tag
    files = ["local/" + c for c in CHECKS]
    for module in library_modules():
        directory, name = os.path.split(module)
        files += [module, "%s/__pycache__/%s.%s.pyc" % (directory, name[:-3], tag)]
    return sorted(files)


def test_build_makes_an_entry_script_per_check_and_the_library_beside_local(built):
    assert CHECKS, "no checks/ganeti_* found"
    assert sorted(os.listdir(built["local"])) == CHECKS
    assert sorted(files_under(built["agent"])) == agent_layout()
    for name in CHECKS:
        path = built["local"] / name
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
        text = read(path).decode()
        # the nodes' python3, isolated (no site, no environment), no bytecode written
        assert text.startswith("#!/usr/bin/python3 -ISB\n")
        assert "sys.path.append(lib)" in text and "sys.path.insert" not in text
        assert "checks.%s import CHECK" % name[len("ganeti_"):] in text
    for path, (mode, data) in files_under(built["agent"]).items():
        if not path.startswith("local/"):
            assert mode == 0o644, path
        if path.endswith(".py"):
            assert data == read(os.path.join(ROOT, "lib", path))


def test_every_check_module_is_registered_so_it_gets_built():
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(
        ROOT, "lib", "ganeti_cmk", "checks")) if name.endswith(".py") and name != "__init__.py")
    assert sorted(NAMES) == modules and len(modules) >= 3


def test_built_check_version_is_the_package_version(built, tmp_path):
    for name in CHECKS:
        proc = subprocess.run([str(built["local"] / name), "--version"],
                              stdout=subprocess.PIPE, universal_newlines=True,
                              env={"PATH": AGENT_PATH}, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0
        assert proc.stdout.split() == [name, __version__]


def interpreters():
    """This test's Python, the system python3, pyenv's 3.9 and 3.13 if there."""
    found = [sys.executable, SYSTEM_PYTHON]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for version in ("3.9", "3.13"):
        found += sorted(glob.glob(os.path.join(root, "versions", version + ".*",
                                               "bin", "python")))[-1:]
    return [p for i, p in enumerate(found) if os.path.exists(p) and p not in found[:i]]


@pytest.mark.parametrize("python", interpreters())
def test_built_check_runs_under_every_python_and_uses_bytecode_when_it_fits(
        built, tmp_path, python):
    """The .pyc beside each module is used by the Python version that built
    it and rejected, falling back to the source, by every other version;
    none writes bytecode (-B, as in the entry scripts' #! line)."""
    env = {"PATH": AGENT_PATH, "MK_CONFDIR": str(tmp_path), "MK_VARDIR": str(tmp_path),
           "LC_ALL": "C.UTF-8"}
    (tmp_path / "ganeti_cmk.cfg").write_text(problem_config(tmp_path))
    agent = tmp_path / "agent"
    shutil.copytree(str(built["agent"]), str(agent))
    before = files_under(agent)
    script = str(agent / "local" / "ganeti_kvm_device")
    proc = subprocess.run([python, "-ISB", "-v", script], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert assert_valid_output(proc.stdout)[None]["KVM device"]["state"] == "2"
    runner = str(agent / PACKAGE / "__pycache__" / ("runner.%s.pyc"
                                                    % sys.implementation.cache_tag))
    from_bytecode = "# code object from '%s'" % runner in proc.stderr
    same = subprocess.run([python, "-c", "import sys; print(sys.implementation.cache_tag)"],
                          stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=60).stdout.strip() == sys.implementation.cache_tag
    assert from_bytecode == same, proc.stderr[-3000:]
    assert files_under(agent) == before


# --- the .mkp, read back with the standard library -------------------------

def test_mkp_is_a_gzip_tar_of_info_info_json_and_agents_tar(built, package):
    raw = read(built["mkp"])
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    assert not raw[3] & 0x08, "gzip header must not carry a file name"
    assert [m.name for m in package["members"]] == ["info", "info.json", "agents.tar"]
    for m in package["members"]:
        assert m.isfile() and m.mode == 0o644
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
    with gzip.open(built["mkp"]) as f:  # a plain tar inside, nothing else
        assert tarfile.open(fileobj=f).getnames() == ["info", "info.json", "agents.tar"]


def test_manifest_has_every_key_checkmk_requires(built, package):
    info = package["info"]
    for key in REQUIRED_KEYS:
        assert key in info, key
    for key in REQUIRED_KEYS[:-1]:
        assert isinstance(info[key], str) and info[key].strip(), key
    assert "version.usable_until" in info
    assert info["version.usable_until"] is None or \
        CMK_VERSION.match(info["version.usable_until"])
    assert re.match(r"^[^\d\W][-\w]*$", info["name"]) and info["name"] == PACKAGE
    assert info["version"] == __version__ and "/" not in info["version"]
    assert CMK_VERSION.match(info["version.min_required"])
    assert CMK_VERSION.match(info["version.packaged"])
    assert os.path.basename(built["mkp"]) == "%s-%s.mkp" % (info["name"], info["version"])
    assert json.loads(package["data"]["info.json"].decode("utf-8")) == info
    assert package["data"]["info"].decode("utf-8").endswith("}\n")


def test_manifest_files_are_exactly_the_part_tar_members(package):
    info = package["info"]
    assert list(info["files"]) == ["agents"]
    names = [m.name for m, _ in package["agents"]]
    assert info["files"]["agents"] == names == sorted(names)
    expected = [BASE + "ganeti_cmk.cfg.example"] + [BASE + f for f in agent_layout()]
    assert names == sorted(expected)
    for m, _ in package["agents"]:
        assert m.isfile(), m.name
        assert not m.name.startswith("/") and ".." not in m.name.split("/")
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")


def test_part_tar_holds_the_built_checks_and_library_and_the_example_config(built,
                                                                             package):
    files = {m.name: (m, data) for m, data in package["agents"]}
    for path, (mode, data) in files_under(built["agent"]).items():
        member, packed = files[BASE + path]
        assert member.mode == mode and packed == data, path
    member, data = files[BASE + "ganeti_cmk.cfg.example"]
    assert member.mode == 0o644 and data == read(EXAMPLE_CFG)


def test_every_member_has_the_commit_time_as_mtime(built, package):
    epoch = built["epoch"]
    assert {m.mtime for m in package["members"]} == {epoch}
    assert {m.mtime for m, _ in package["agents"]} == {epoch}


def test_gnu_tar_extracts_the_listed_files_as_checkmk_does(built, package, tmp_path):
    """Checkmk installs a part with `tar xf - --touch -C <dir> <files...>`."""
    part = tmp_path / "agents"
    part.mkdir()
    proc = subprocess.run(["tar", "xf", "-", "--touch", "-C", str(part)]
                          + package["info"]["files"]["agents"],
                          input=package["data"]["agents.tar"], timeout=60)
    assert proc.returncode == 0
    for path, (mode, data) in files_under(built["agent"]).items():
        assert read(part / BASE / path) == data


# --- the .mkp, read back with the PyPI mkp package ------------------------

def test_pypi_mkp_reads_the_package(built, package, tmp_path):
    pkg = mkp.load_file(str(built["mkp"]))
    assert pkg.info == package["info"]
    assert pkg.json_info == package["info"]
    pkg.extract_files(str(tmp_path))
    extracted = sorted(os.path.relpath(os.path.join(top, f), str(tmp_path / "agents"))
                       for top, _, files in os.walk(str(tmp_path / "agents")) for f in files)
    assert extracted == package["info"]["files"]["agents"]
    for name in CHECKS:
        path = tmp_path / "agents" / BASE / "local" / name
        assert os.access(str(path), os.X_OK)


# --- reproducible bytes ----------------------------------------------------

def test_same_tree_gives_same_bytes(tmp_path):
    """Two builds in a row, the second with another hash seed: same bytes."""
    build_tool("mkp", str(tmp_path / "a"))
    build_tool("mkp", str(tmp_path / "b"), PYTHONHASHSEED="123")
    build_tool("agent", str(tmp_path / "la"))
    build_tool("agent", str(tmp_path / "lb"), PYTHONHASHSEED="random")
    assert read(tmp_path / "a" / MKP_NAME) == read(tmp_path / "b" / MKP_NAME)
    assert files_under(tmp_path / "la") == files_under(tmp_path / "lb")


def test_source_date_epoch_sets_every_timestamp(tmp_path):
    build_tool("mkp", str(tmp_path), SOURCE_DATE_EPOCH="1700000000")
    with tarfile.open(tmp_path / MKP_NAME, "r:gz") as outer:
        assert {m.mtime for m in outer.getmembers()} == {1700000000}
        inner = tarfile.open(fileobj=outer.extractfile("agents.tar"))
        assert {m.mtime for m in inner.getmembers()} == {1700000000}


# --- run as the Checkmk agent runs local checks ----------------------------

def problem_config(tmp_path):
    """/dev/kvm missing and a bad deadline: the checks must report, exit 0."""
    return ("[general]\ndeadline = soon\n[paths]\ndev_kvm = %s\nganeti_data_dir = %s\n"
            % (tmp_path / "no-kvm", tmp_path / "no-ganeti"))


def agent_environment(libdir, etc, var, log):
    """What the agent exports to local checks, nothing from this test run."""
    return {"MK_LIBDIR": str(libdir), "MK_CONFDIR": str(etc), "MK_VARDIR": str(var),
            "MK_LOGDIR": str(log), "PATH": AGENT_PATH, "LC_ALL": "C.UTF-8"}


def run_like_the_agent(localdir, env):
    """run_local_checks(): cd LOCALDIR, ./* that are executable regular files
    (not *.dpkg-*), stdin /dev/null, stderr discarded; local/<secs>/* go
    through run_cached, which keeps the output only on exit 0.
    Returns {relative path: stdout}."""
    outputs = {}
    synchronous = sorted(f for f in os.listdir(localdir)
                         if os.path.isfile(os.path.join(localdir, f)))
    cached = sorted(os.path.join(d, f) for d in os.listdir(localdir)
                    if d[:1].isdigit() and os.path.isdir(os.path.join(localdir, d))
                    for f in os.listdir(os.path.join(localdir, d)))
    for script in synchronous + cached:
        path = os.path.join(localdir, script)
        if os.access(path, os.X_OK) and not re.search(r"\.dpkg-(new|old|temp)$", script):
            outputs[script] = run_one(localdir, script, env)
    return outputs


def run_one(localdir, script, env):
    """One local check as the agent calls it; assert exit 0, return stdout."""
    proc = subprocess.run(["./" + script], cwd=localdir, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True,
                          timeout=120)
    assert proc.returncode == 0, "%s exited %d" % (script, proc.returncode)
    return proc.stdout


@pytest.fixture
def agent_dirs(built, tmp_path):
    """MK_LIBDIR with the checks and their library from the .mkp (as mkp
    extracts them, as the agent bakery deploys its custom files),
    ganeti_kvm_device also in local/300/; the config, var and log dirs."""
    pkg = mkp.load_file(str(built["mkp"]))
    pkg.extract_files(str(tmp_path / "site"))
    libdir = tmp_path / "lib"
    shutil.copytree(str(tmp_path / "site" / "agents" / BASE), str(libdir))
    os.unlink(str(libdir / "ganeti_cmk.cfg.example"))
    local = libdir / "local"
    (local / "300").mkdir()
    shutil.copy2(str(local / "ganeti_kvm_device"), str(local / "300"))
    dirs = {"lib": libdir, "local": local}
    for name in ("etc", "var", "log"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
    dirs["env"] = agent_environment(libdir, dirs["etc"], dirs["var"], dirs["log"])
    return dirs


def system_python_is_clean(env):
    """The system python3 must not find ganeti_cmk on its own, or this test
    could not tell a self-contained check from one that borrows it."""
    proc = subprocess.run(
        ["/usr/bin/env", "python3", "-c",
         "import importlib.util, sys; print(sys.executable); "
         "print(importlib.util.find_spec('ganeti_cmk') is None)"],
        env=env, cwd="/", stdout=subprocess.PIPE, universal_newlines=True, timeout=60)
    return proc.stdout.split() == [SYSTEM_PYTHON, "True"]


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no /usr/bin/python3")
@pytest.mark.parametrize("problems", [False, True], ids=["as-configured", "with-problems"])
def test_built_checks_run_as_the_agent_runs_them(agent_dirs, problems):
    env = agent_dirs["env"]
    assert system_python_is_clean(env), "the system python3 imports ganeti_cmk by itself"
    config = agent_dirs["etc"] / "ganeti_cmk.cfg"
    if problems:
        config.write_text(problem_config(agent_dirs["lib"]))
    else:  # the defaults, except that no real cluster's verify is started
        config.write_text("[paths]\nganeti_data_dir = %s\n" % (agent_dirs["lib"] / "no-ganeti"))
    outputs = run_like_the_agent(str(agent_dirs["local"]), env)
    assert sorted(outputs) == sorted(CHECKS + ["300/ganeti_kvm_device"])
    for script, text in outputs.items():
        assert_valid_output(text)
    section = "".join(text for script, text in sorted(outputs.items())
                      if not script.startswith("300/"))
    services = assert_valid_output(section)[None]  # one section: names unique
    device = services["KVM device"]
    cached = assert_valid_output(outputs["300/ganeti_kvm_device"])[None]["KVM device"]
    assert cached["state"] == device["state"]
    if problems:
        assert device["state"] == "2" and "no-kvm" in device["summary"]
        assert all("deadline" in s["summary"] for s in services.values())
    elif os.path.exists("/dev/kvm") and os.geteuid() == 0:
        assert device["state"] == "0"
    leftovers = sorted(os.listdir(str(agent_dirs["local"])))
    assert leftovers == sorted(CHECKS + ["300"]), "a check wrote into the local dir"


FAKE_VERIFY = """#!/bin/sh
echo "Tue Feb  8 06:54:45 2011 * Verifying node status"
echo "Tue Feb  8 06:54:45 2011   - ERROR:ENODEDRBD:node:node2.example.org:drbd minor 0 is not active"
exit 1
"""


def test_verify_refreshes_in_the_background_from_the_built_check(agent_dirs):
    """The detached refresh re-imports the library from beside local/, with
    nothing but the agent's environment."""
    lib, env = agent_dirs["lib"], agent_dirs["env"]
    ssconf = lib / "ganeti"
    ssconf.mkdir()
    for key, value in (("master_node", "master.example.org"),
                       ("node_list", "master.example.org\nnode2.example.org"),
                       ("master_candidates", "master.example.org"),
                       ("cluster_name", "cluster.example.org")):
        (ssconf / ("ssconf_" + key)).write_text(value + "\n")
    fake = lib / "gnt-cluster"
    fake.write_text(FAKE_VERIFY)
    fake.chmod(0o755)
    # systemd_system_dir: never a real transient unit, even on a systemd machine
    (agent_dirs["etc"] / "ganeti_cmk.cfg").write_text(
        "[paths]\nganeti_data_dir = %s\ngnt_cluster = %s\nsystemd_system_dir = %s\n"
        "[ganeti]\nnode_name = %s\n"
        % (ssconf, fake, lib / "no-systemd", "master.example.org"))
    local = str(agent_dirs["local"])
    first = assert_valid_output(run_one(local, "ganeti_cluster_verify", env))[None]
    assert "Ganeti verify" in first
    cache = agent_dirs["var"] / "ganeti_cmk" / "cluster_verify.json"
    for _ in range(1200):  # the refresh runs detached; wait up to a minute
        if cache.exists():
            break
        time.sleep(0.05)
    second = assert_valid_output(run_one(local, "ganeti_cluster_verify", env))[None]
    assert second["Ganeti verify"]["state"] == "2"
    assert "ENODEDRBD" in str(second["Ganeti verify"]), (first, second)


# --- make install / uninstall -----------------------------------------------

def files_under(root):
    """{relative path: (mode, bytes)} of every file below root."""
    found = {}
    for top, _, files in os.walk(str(root)):
        for f in files:
            path = os.path.join(top, f)
            found[os.path.relpath(path, str(root))] = (
                stat.S_IMODE(os.lstat(path).st_mode), read(path))
    return found


def test_install_and_uninstall_with_destdir(tmp_path):
    dest = tmp_path / "root"
    make("install", "DESTDIR=%s" % dest, "BUILDDIR=%s" % (tmp_path / "build"))
    libdir = "usr/lib/check_mk_agent/"
    expected = {libdir + path: value
                for path, value in files_under(tmp_path / "build").items()}
    assert sorted(expected) == [libdir + f for f in agent_layout()]
    expected["etc/check_mk/ganeti_cmk.cfg.example"] = (0o644, read(EXAMPLE_CFG))
    assert files_under(dest) == expected
    make("uninstall", "DESTDIR=%s" % dest)
    assert files_under(dest) == {}


def test_install_keeps_the_operators_files_and_uninstall_only_removes_its_own(tmp_path):
    dest = tmp_path / "root"
    (dest / "etc/check_mk").mkdir(parents=True)
    (dest / "opt/local").mkdir(parents=True)
    (dest / "etc/check_mk/ganeti_cmk.cfg").write_text("[general]\ndeadline = 20s\n")
    (dest / "opt/local/other_check").write_text("#!/bin/sh\necho '0 other - fine'\n")
    (dest / "opt/plugins").mkdir()
    before = files_under(dest)
    args = ["DESTDIR=%s" % dest, "LIBDIR=/opt", "BUILDDIR=%s" % (tmp_path / "build")]
    make("install", *args)
    (dest / "opt/ganeti_cmk/gone.py").write_text("# a module of an older version\n")
    make("install", *args)  # an upgrade over an installed version
    after = files_under(dest)
    added = {k: v for k, v in after.items() if k not in before}
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(added) == sorted(["etc/check_mk/ganeti_cmk.cfg.example"]
                                   + ["opt/" + f for f in agent_layout()])
    assert sorted(os.listdir(str(dest / "opt"))) == ["ganeti_cmk", "local", "plugins"]
    make("uninstall", *args)
    assert files_under(dest) == before


# --- pip install . ------------------------------------------------------------

def test_pip_install_gives_the_library_the_command_and_the_checks(tmp_path):
    """In a fresh venv, from a copy of the source (pip builds in the tree)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(ROOT, "lib"), str(src / "lib"), ignore=ignore)
    shutil.copy2(os.path.join(ROOT, "setup.py"), str(src))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(src)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stdout
    env = {"PATH": AGENT_PATH, "MK_CONFDIR": str(tmp_path), "MK_VARDIR": str(tmp_path)}
    (tmp_path / "ganeti_cmk.cfg").write_text(problem_config(tmp_path))
    listing = subprocess.run([str(venv / "bin/ganeti-cmk"), "checks"], env=env,
                             stdout=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert listing.returncode == 0
    assert set(CHECKS) <= {line.split()[0] for line in listing.stdout.splitlines()}
    for name in CHECKS:
        script = str(venv / "bin" / name)
        version = subprocess.run([script, "--version"], env=env, stdout=subprocess.PIPE,
                                 universal_newlines=True, timeout=60)
        assert version.stdout.split() == [name, __version__]
        proc = subprocess.run([script], env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, timeout=120)
        assert proc.returncode == 0
        assert_valid_output(proc.stdout)


# Modules the checks import (or Python imports for them) after start-up.
SHADOWED = ("json", "signal", "socket", "re", "struct", "argparse", "shutil", "warnings",
            "textwrap", "fnmatch", "errno", "stat", "time", "pwd", "subprocess",
            "tempfile", "select", "selectors", "threading", "fcntl", "traceback",
            "contextlib", "enum", "functools", "collections", "operator", "locale",
            "gettext", "copy", "base64", "zipfile", "pkgutil", "types")


def test_no_module_is_imported_from_the_current_directory(built, tmp_path):
    """The agent runs the checks with its local dir as the current
    directory, people from anywhere (root in a user's directory): a
    `json.py` there must never be imported, by the built checks or by the
    checkout's command (`python3 -c`, which puts '' first on sys.path)."""
    from support import check_command
    from ganeti_cmk.checks import NAMES
    cwd = tmp_path / "users-dir"
    cwd.mkdir()
    marker = tmp_path / "imported"
    for name in SHADOWED:
        (cwd / (name + ".py")).write_text(
            "open(%r, 'a').write(%r)\n" % (str(marker), name + "\n"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "MK_CONFDIR": str(tmp_path / "etc"), "MK_VARDIR": str(tmp_path / "var")}
    for check in NAMES:
        for command in ([str(built["local"] / ("ganeti_" + check))],
                        check_command("ganeti_" + check, SYSTEM_PYTHON)):
            for options in ([], ["--human"]):
                proc = subprocess.run(command + options, cwd=str(cwd), env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, universal_newlines=True,
                                      timeout=60)
                assert not marker.exists(), (command, marker.read_text())
                assert proc.returncode == 0, proc.stderr
                if not options:
                    assert_valid_output(proc.stdout)
