"""The Debian package (make deb): built with debhelper, lintian-clean,
reproducible, then installed, run, upgraded, removed and purged on this
machine with apt and dpkg, as Puppet's `package` resource would.

The packages are built once per session into tmp through the Makefile
(a second build with DEB_VERSION_SUFFIX is the upgrade). The lifecycle
test changes the machine's package database and /etc/check_mk, and puts
back what was there: a ganeti-cmk package installed before (repacked with
dpkg-repack) and the operator's ganeti_cmk.cfg (bytes, mode, owner, times).
"""

import glob
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from support import ROOT, SYSTEM_PYTHON
from ganeti_cmk import __version__
from localcheck_grammar import assert_valid_output

PACKAGE = "ganeti-cmk"
SUFFIX = "+test1"  # DEB_VERSION_SUFFIX of the upgrade
AGENTDIR = "/usr/lib/check_mk_agent"
LOCALDIR = AGENTDIR + "/local"
CONFIG = "/etc/check_mk/ganeti_cmk.cfg"
EXAMPLE = "usr/share/doc/ganeti-cmk/examples/ganeti_cmk.cfg.example"
AGENT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
OPERATOR_CONFIG = (b"# the operator's own settings\n[general]\ndeadline = soon\n"
                   b"[paths]\nganeti_data_dir = /nonexistent/ganeti-cmk-test\n")


def why_not():
    if os.geteuid() != 0:
        return "needs root (dpkg, apt)"
    if not os.path.exists("/etc/debian_version"):
        return "not Debian"
    for tool in ("apt-get", "dpkg", "dpkg-deb", SYSTEM_PYTHON):
        if not shutil.which(tool):
            return "no %s" % tool
    if not (shutil.which("dh") and shutil.which("dpkg-buildpackage")):
        return "no debhelper or dpkg-dev (make test installs them)"
    return None


pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))


def run(*cmd, env=None, cwd=None, timeout=600):
    """cmd; fail with its output unless it exits 0; return stdout."""
    proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          env=env, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, "%s: exit %d\n%s" % (" ".join(cmd), proc.returncode,
                                                      proc.stdout)
    return proc.stdout


def make_deb(outdir, **env_extra):
    """`make deb DISTDIR=outdir`; the path of the one .deb it wrote."""
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)
    env.update(env_extra)
    run("make", "--no-print-directory", "-s", "PYTHON=" + sys.executable, "deb",
        "DISTDIR=%s" % outdir, env=env, cwd=ROOT)
    debs = glob.glob(os.path.join(str(outdir), "*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def checkout_state():
    """What a build might leave in the checkout: git's view, dist/, debian/."""
    status = run("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=all")
    return (status, os.path.exists(os.path.join(ROOT, "dist")),
            sorted(os.listdir(os.path.join(ROOT, "debian"))))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """{"base": .deb of this tree, "upgrade": the same with SUFFIX}."""
    before = checkout_state()
    out = tmp_path_factory.mktemp("deb")
    built = {"base": make_deb(out / "base"),
             "upgrade": make_deb(out / "upgrade", DEB_VERSION_SUFFIX=SUFFIX)}
    assert checkout_state() == before, "make deb left files in the checkout"
    return built


@pytest.fixture(scope="module")
def unpacked(debs, tmp_path_factory):
    """The base package extracted (dpkg-deb -x) and its control files (-e)."""
    root = tmp_path_factory.mktemp("unpacked")
    run("dpkg-deb", "-x", debs["base"], str(root / "fs"))
    run("dpkg-deb", "-e", debs["base"], str(root / "DEBIAN"))
    return root


@pytest.fixture(scope="module")
def built_checks(tmp_path_factory):
    """What `make build` writes with Debian's python3: {path relative to the
    agent's library dir: bytes}, the checks in local/ and their library."""
    out = tmp_path_factory.mktemp("agent")
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)
    run(SYSTEM_PYTHON, os.path.join(ROOT, "tools", "build.py"), "agent", str(out), env=env)
    return {os.path.relpath(os.path.join(top, f), str(out)): read(os.path.join(top, f))
            for top, _, files in os.walk(str(out)) for f in files}


def check_names(built):
    return sorted(p[len("local/"):] for p in built if p.startswith("local/"))


def field(deb, name):
    return run("dpkg-deb", "-f", deb, name).strip()


def members(deb):
    """The data tar's members: {path without ./: TarInfo}."""
    fsys = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE,
                          check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(fsys)) as tf:
        return {m.name[2:].rstrip("/"): m for m in tf.getmembers() if m.name != "./"}


# --- the package file -----------------------------------------------------

def test_name_version_and_relations(debs):
    assert os.path.basename(debs["base"]) == "%s_%s_all.deb" % (PACKAGE, __version__)
    assert os.path.basename(debs["upgrade"]) == "%s_%s%s_all.deb" % (
        PACKAGE, __version__, SUFFIX)
    assert field(debs["base"], "Package") == PACKAGE
    assert field(debs["base"], "Version") == __version__
    assert field(debs["base"], "Architecture") == "all"
    assert field(debs["base"], "Depends") == "python3 (>= 3.9)"
    assert set(field(debs["base"], "Enhances").split(", ")) == {"check-mk-agent", "ganeti"}
    run("dpkg", "--compare-versions", field(debs["upgrade"], "Version"), "gt", __version__)


def test_holds_the_built_checks_exactly_as_make_build_writes_them(debs, unpacked,
                                                                   built_checks):
    names = check_names(built_checks)
    assert names and all(n.startswith("ganeti_") for n in names)
    agent = unpacked / "fs" / AGENTDIR.lstrip("/")
    assert sorted(os.listdir(str(agent / "local"))) == names
    shipped = sorted(os.path.relpath(os.path.join(top, f), str(agent))
                     for top, _, files in os.walk(str(agent)) for f in files)
    assert shipped == sorted(built_checks)
    files = members(debs["base"])
    for path, data in built_checks.items():
        assert read(str(agent / path)) == data, path
        member = files[AGENTDIR.lstrip("/") + "/" + path]
        assert member.isfile() and (member.uid, member.gid) == (0, 0)
        assert member.mode == (0o755 if path.startswith("local/") else 0o644), path


def test_never_a_file_in_etc_and_no_maintainer_scripts(debs, unpacked):
    assert not [p for p in members(debs["base"]) if p == "etc" or p.startswith("etc/")]
    assert sorted(os.listdir(str(unpacked / "DEBIAN"))) == ["control", "md5sums"]
    assert read(str(unpacked / "fs" / EXAMPLE)) == read(
        os.path.join(ROOT, "mkp", "ganeti_cmk.cfg.example"))


def test_docs_changelog_copyright_and_library(unpacked):
    doc = unpacked / "fs" / "usr/share/doc/ganeti-cmk"
    names = set(os.listdir(str(doc)))
    for page in ["README.md"] + [os.path.basename(p)
                                 for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))]:
        assert page in names or page + ".gz" in names, page
    with gzip.open(str(doc / "changelog.gz"), "rt") as f:
        assert f.readline().startswith("ganeti-cmk (%s) " % __version__)
    copyright = read(str(doc / "copyright")).decode()
    assert copyright.startswith(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
    assert "License: GPL-2+\n" in copyright and "/usr/share/common-licenses/GPL-2" in copyright
    assert not (unpacked / "fs" / "usr/share/ganeti-cmk").exists()  # one copy
    agent = unpacked / "fs" / "usr/lib/check_mk_agent"
    shipped = sorted(os.path.relpath(os.path.join(top, f), str(agent))
                     for top, _, files in os.walk(str(agent / "ganeti_cmk"))
                     for f in files if f.endswith(".py"))
    lib = os.path.join(ROOT, "lib")
    sources = sorted(os.path.relpath(p, lib) for p in
                     glob.glob(os.path.join(lib, "ganeti_cmk", "**", "*.py"), recursive=True))
    assert shipped == sources


def long_options(help_text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))


def test_man_page_per_program_made_from_its_help(unpacked, built_checks, tmp_path):
    """Every program has a page that renders without a warning and names
    every option its --help names."""
    fs = unpacked / "fs"
    programs = [("usr/share/man/man1/ganeti-cmk.1.gz", fs / "usr/bin/ganeti-cmk", ["status"])]
    programs += [("usr/share/man/man8/%s.8.gz" % name, fs / LOCALDIR.lstrip("/") / name, [])
                 for name in check_names(built_checks)]
    pages = sorted(os.path.relpath(os.path.join(top, f), str(fs))
                   for top, _, files in os.walk(str(fs / "usr/share/man")) for f in files)
    assert pages == sorted(page for page, _, _ in programs)
    # ASCII, no hyphenation: the options as --help spells them
    env = {"PATH": AGENT_PATH, "LC_ALL": "C", "MANWIDTH": "80", "MANROFFOPT": "-rHY=0"}
    for page, program, subcommands in programs:
        proc = subprocess.run(["man", "--warnings", "-l", str(fs / page)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
        assert proc.returncode == 0 and proc.stderr == "", (page, proc.stderr)
        text = re.sub(r"\s+", " ", proc.stdout)
        name = os.path.basename(str(program))
        assert text.startswith(name.upper()), page
        assert "NAME %s - " % name in text, page
        for args in [[]] + [[sub] for sub in subcommands]:
            helped = run(SYSTEM_PYTHON, str(program), *args, "--help",
                         env={"PATH": AGENT_PATH, "COLUMNS": "80"}, cwd=str(tmp_path))
            assert long_options(helped) and long_options(helped) <= long_options(text), page


def test_lintian_reports_no_error_and_no_warning(debs):
    if not shutil.which("lintian"):
        pytest.skip("no lintian (make test installs it)")
    for deb in debs.values():
        proc = subprocess.run(["lintian", "--display-info", deb], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
        tags = proc.stdout.splitlines()
        assert not [t for t in tags if re.match(r"^[EW]: ", t)], proc.stdout
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert all(t.startswith(("I: ", "N: ")) or not t.strip() for t in tags), proc.stdout


def test_same_tree_gives_same_bytes_dated_by_the_last_commit(debs, tmp_path):
    again = make_deb(tmp_path, PYTHONHASHSEED="random")
    assert sha256(again) == sha256(debs["base"])
    commit = int(run("git", "-C", ROOT, "log", "-1", "--format=%ct").strip())
    assert {m.mtime for m in members(debs["base"]).values()} == {commit}


def test_a_version_suffix_that_is_no_debian_version_fails(tmp_path):
    proc = subprocess.run(["make", "--no-print-directory", "-s", "deb",
                           "DISTDIR=%s" % tmp_path, "DEB_VERSION_SUFFIX=-1 x"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert proc.returncode != 0 and "not a version of a native Debian package" in proc.stdout
    assert os.listdir(str(tmp_path)) == []


# --- on this machine: install, run, upgrade, remove, purge ------------------

def dpkg(*args):
    """dpkg ARGS, waiting while another apt or dpkg holds the lock."""
    for _ in range(60):
        proc = subprocess.run(["dpkg"] + list(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=600)
        if proc.returncode == 0 or "lock" not in proc.stdout:
            break
        time.sleep(10)
    assert proc.returncode == 0, "dpkg %s: %s" % (" ".join(args), proc.stdout)
    return proc.stdout


def apt_install(deb):
    run("apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q",
        "--no-install-recommends", os.path.abspath(deb),
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def status():
    """`<status> <version>` of the package, or "" when it is not installed
    and has no config files left (purged, or never there)."""
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", PACKAGE],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, timeout=60)
    words = proc.stdout.split()
    return proc.stdout.strip() if proc.returncode == 0 and words[2:3] != ["not-installed"] else ""


def file_state(path):
    """Bytes, mode, owner and times of a file; None if there is none."""
    if not os.path.lexists(path):
        return None
    st = os.lstat(path)
    return (read(path), st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)


@pytest.fixture
def machine(tmp_path):
    """Save what the lifecycle changes; put it back afterwards.  One
    lifecycle at a time on a machine (two test runs from two checkouts
    would install and purge the package under each other)."""
    import fcntl
    with open(MACHINE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _saved_machine(tmp_path)


MACHINE_LOCK = "/run/lock/cmk-deb-lifecycle.lock"


def _saved_machine(tmp_path):
    before = status()
    repacked = None
    if before.startswith("install ok installed"):
        had_repack = shutil.which("dpkg-repack")
        run("sh", os.path.join(ROOT, "tools", "install-debian-packages"), "dpkg-repack")
        run("dpkg-repack", PACKAGE, cwd=str(tmp_path))
        repacked = glob.glob(str(tmp_path / "*.deb"))[0]
        if not had_repack:
            run("apt-get", "-o", "DPkg::Lock::Timeout=600", "purge", "-y", "-q",
                "dpkg-repack", env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if before:
        dpkg("--purge", PACKAGE)
    confdir_existed = os.path.isdir(os.path.dirname(CONFIG))
    config = file_state(CONFIG)
    if config is not None:
        os.unlink(CONFIG)
    yield
    if status():
        dpkg("--purge", PACKAGE)
    if repacked:
        dpkg("-i", repacked)
    if os.path.lexists(CONFIG):
        os.unlink(CONFIG)
    if config is not None:
        data, mode, uid, gid, mtime_ns = config
        with open(CONFIG, "wb") as f:
            f.write(data)
        os.chown(CONFIG, uid, gid)
        os.chmod(CONFIG, mode & 0o7777)
        os.utime(CONFIG, ns=(mtime_ns, mtime_ns))
    elif not confdir_existed and os.path.isdir(os.path.dirname(CONFIG)):
        os.rmdir(os.path.dirname(CONFIG))


def installed_files():
    """dpkg -L: the package's paths that are no directory in the package."""
    return [p for p in dpkg("-L", PACKAGE).splitlines()
            if p.startswith("/") and p != "/." and not os.path.isdir(p)]


def run_like_the_agent(checks, tmp_path):
    """Each installed check as the agent runs it: cwd local/, stdin
    /dev/null, only PATH, MK_CONFDIR and MK_VARDIR; exit 0 and valid lines.
    Returns {service: fields} of them all."""
    etc, var = tmp_path / "etc", tmp_path / "var"
    for d in (etc, var):
        d.mkdir(exist_ok=True)
    # the defaults, except that no real cluster's verify is started
    (etc / "ganeti_cmk.cfg").write_text("[paths]\nganeti_data_dir = %s\n"
                                        % (tmp_path / "no-ganeti"))
    env = {"PATH": AGENT_PATH, "MK_CONFDIR": str(etc), "MK_VARDIR": str(var)}
    before = sorted(os.listdir(LOCALDIR))
    services = {}
    for check in checks:
        proc = subprocess.run(["./" + check], cwd=LOCALDIR, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
        assert proc.returncode == 0, (check, proc.stderr)
        found = assert_valid_output(proc.stdout)[None]
        assert not set(found) & set(services), "a service twice"
        services.update(found)
    assert sorted(os.listdir(LOCALDIR)) == before, "a check wrote into local/"
    assert "KVM device" in services
    return services


def the_command_works(checks, tmp_path):
    """/usr/bin/ganeti-cmk lists every installed check and runs them all;
    without MK_CONFDIR it reads the operator's /etc/check_mk/ganeti_cmk.cfg."""
    env = {"PATH": AGENT_PATH, "MK_VARDIR": str(tmp_path / "var")}
    listed = run("ganeti-cmk", "checks", env=env, cwd=str(tmp_path)).splitlines()
    assert sorted(line.split()[0] for line in listed) == sorted(checks)
    proc = subprocess.run(["ganeti-cmk", "status", "--format", "local"], env=env,
                          cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, universal_newlines=True, timeout=120)
    services = assert_valid_output(proc.stdout)[None]
    assert "deadline" in services["KVM device"]["summary"]  # the operator's bad value


def test_install_run_upgrade_remove_purge_never_touch_the_config(debs, machine, tmp_path):
    paths = ["/" + p for p in members(debs["base"])]
    existed = {p for p in paths if os.path.lexists(p)}
    assert not [p for p in existed if not os.path.isdir(p)], "package files already there"

    # installing creates no config
    apt_install(debs["base"])
    assert status() == "install ok installed %s" % __version__
    assert not os.path.lexists(CONFIG)
    dpkg("--purge", PACKAGE)

    # the operator's config survives install, upgrade, remove and purge
    os.makedirs(os.path.dirname(CONFIG), exist_ok=True)
    with open(CONFIG, "wb") as f:
        f.write(OPERATOR_CONFIG)
    os.chmod(CONFIG, 0o600)
    config = file_state(CONFIG)

    apt_install(debs["base"])
    assert file_state(CONFIG) == config
    files = installed_files()
    checks = sorted(os.path.basename(p) for p in files
                    if os.path.dirname(p) == LOCALDIR)
    assert checks and all(c.startswith("ganeti_") for c in checks)
    run_like_the_agent(checks, tmp_path)
    the_command_works(checks, tmp_path)

    apt_install(debs["upgrade"])
    assert status() == "install ok installed %s%s" % (__version__, SUFFIX)
    assert file_state(CONFIG) == config
    run_like_the_agent(checks, tmp_path)
    files = sorted(set(files) | set(installed_files()))

    dpkg("-r", PACKAGE)
    assert file_state(CONFIG) == config
    assert [p for p in files if os.path.lexists(p)] == []
    dpkg("--purge", PACKAGE)
    assert file_state(CONFIG) == config
    assert status() == ""
    assert [p for p in files if os.path.lexists(p)] == []
    left = sorted(p for p in paths if p not in existed and os.path.lexists(p))
    assert left == [], "left behind after purge"
