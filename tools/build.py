#!/usr/bin/env python3
"""Build the checks for the Checkmk agent and the Checkmk .mkp (stdlib only).

    tools/build.py agent OUTDIR   the agent's library directory, in OUTDIR
    tools/build.py mkp OUTDIR     OUTDIR/<name>-<version>.mkp

The checks are those of the registry (lib/ganeti_cmk/checks/__init__.py,
NAMES): check `kvm_binary` becomes the entry script `local/ganeti_kvm_binary`.
OUTDIR mirrors the agent's library directory (/usr/lib/check_mk_agent):

    local/ganeti_<name>     an entry script per check, executable, the only
                            files for local/ (the agent runs every one there)
    ganeti_cmk/**.py        the library, with __pycache__/*.pyc

An entry script starts `#!/usr/bin/python3 -ISB` (the nodes' python3,
isolated: no site, no user or environment paths, no bytecode written) and
imports the library from ../ganeti_cmk, or ../../ganeti_cmk when the agent
runs it from local/<interval>/.  The bytecode is the build's python3's
(checked hash-based .pyc, valid however the files' times are set): a node
with the same Python minor version imports without compiling, any other
Python compiles the sources.

The same tree built by the same Python version gives the same bytes:
members sorted, every timestamp $SOURCE_DATE_EPOCH (default: the time of
the last git commit), uid/gid 0, no user names, gzip header mtime 0,
PYTHONHASHSEED=0 while compiling (set constants).
"""

import ast
import gzip
import importlib.util
import io
import json
import marshal
import os
import pprint
import re
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON3 = "/usr/bin/python3"  # the nodes' (Debian's) python3
SHEBANG = "#!%s -ISB\n" % PYTHON3
LIBRARY = "ganeti_cmk"  # the library's directory beside local/
NAME_RE = re.compile(r"^[^\d\W][-\w]*$")  # Checkmk 2.3+ package names
# Keys that mkp/info must set; the build adds version and files.
INFO_KEYS = ("author", "description", "download_url", "name", "title",
             "version.min_required", "version.packaged",
             "version.usable_until")


def version():
    """The one version: __version__ in lib/ganeti_cmk/__init__.py."""
    with open(os.path.join(ROOT, "lib", "ganeti_cmk", "__init__.py"),
              encoding="utf-8") as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def registry():
    """The registered checks' CHECK objects, in order."""
    lib = os.path.join(ROOT, "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    from ganeti_cmk.checks import load_all
    return load_all()


# A check's entry script; an agent must still get a valid line when the
# library cannot be loaded (a Python too old, a damaged or missing file).
ENTRY = """%(shebang)s# %(name)s: a Checkmk local check of ganeti-cmk %(version)s.  The library is
# ../ganeti_cmk beside local/ (../../ganeti_cmk from local/<interval>/).
import sys
from os.path import dirname, isdir, realpath

lib = dirname(dirname(realpath(__file__)))
if not isdir(lib + "/ganeti_cmk"):
    lib = dirname(lib)
sys.path.append(lib)
try:
    from ganeti_cmk.runner import main
    from ganeti_cmk.checks.%(module)s import CHECK
except Exception as e:
    print(%(broken)r %% type(e).__name__)
    sys.exit(0)
sys.exit(main(CHECK))
"""


def library_files():
    """(path relative to lib/, path on disk) of every library module, sorted."""
    lib = os.path.join(ROOT, "lib")
    found = []
    for top, dirs, files in os.walk(os.path.join(lib, LIBRARY)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(top, name)
                found.append((os.path.relpath(path, lib).replace(os.sep, "/"),
                              path))
    return sorted(found)


def source_date_epoch():
    """$SOURCE_DATE_EPOCH, else the last commit's time, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=30)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def entry_script(check):
    """The entry script of one check (text)."""
    from ganeti_cmk import __version__
    from ganeti_cmk.localcheck import UNKNOWN, Result, render_line
    broken = render_line(Result(UNKNOWN, check.service, "cannot load "
                                "ganeti_cmk (%s): reinstall the check"))
    return ENTRY % {"shebang": SHEBANG, "name": check.name, "version": __version__,
                    "module": check.module, "broken": broken}


def bytecode(source, path):
    """The .pyc of a module: PEP 552 checked hash-based bytecode."""
    code = compile(source, path, "exec", dont_inherit=True)
    return (importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))


def pyc_path(relpath):
    """Where this Python looks for a module's bytecode: __pycache__ beside it."""
    directory, name = relpath.rsplit("/", 1)
    return "%s/__pycache__/%s.%s.pyc" % (directory, name[:-3], sys.implementation.cache_tag)


def agent_files():
    """[(path in the agent's library directory, bytes, mode)], sorted: the
    entry scripts and the library with its bytecode."""
    files = []
    for check in registry():
        files.append(("local/" + check.name, entry_script(check).encode("utf-8"), 0o755))
    for relpath, path in library_files():
        with open(path, "rb") as f:
            source = f.read()
        files.append((relpath, source, 0o644))
        files.append((pyc_path(relpath), bytecode(source, relpath), 0o644))
    return sorted(files)


def build_agent(outdir):
    """Write the agent's files into outdir (the library replaced as a
    whole, no module of an older build left); return the entry scripts."""
    library = os.path.join(outdir, LIBRARY)
    if os.path.isdir(library):
        shutil.rmtree(library)
    written = []
    for relpath, data, mode in agent_files():
        path = os.path.join(outdir, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write(path, data, mode)
        if relpath.startswith("local/"):
            written.append(path)
    return written


def manifest_template():
    """mkp/info: the package's fixed keys, a Python dict literal."""
    with open(os.path.join(ROOT, "mkp", "info"), encoding="utf-8") as f:
        info = ast.literal_eval(f.read())
    if sorted(info) != sorted(INFO_KEYS):
        raise SystemExit("mkp/info: keys must be exactly %s" % ", ".join(INFO_KEYS))
    if not NAME_RE.match(info["name"]):
        raise SystemExit("mkp/info: name %r is not a Checkmk package name"
                         % info["name"])
    return info


def _tarinfo(name, size, mode, epoch):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _tar(members, epoch, fileobj):
    """A plain tar of (name, data, mode) members, in the given order."""
    with tarfile.open(fileobj=fileobj, mode="w",
                      format=tarfile.USTAR_FORMAT) as tf:
        for name, data, mode in members:
            tf.addfile(_tarinfo(name, len(data), mode, epoch), io.BytesIO(data))


def mkp_bytes(epoch):
    """The .mkp: gzip tar of info, info.json and agents.tar."""
    info = manifest_template()
    base = "custom/%s/lib/" % info["name"]
    agents = [(base + relpath, data, mode) for relpath, data, mode in agent_files()]
    with open(os.path.join(ROOT, "mkp", "ganeti_cmk.cfg.example"), "rb") as f:
        agents.append((base + "ganeti_cmk.cfg.example", f.read(), 0o644))
    agents.sort()
    info["description"] = info["description"].replace("{services}", ", ".join(
        "'%s' (%s)" % (check.service, check.name) for check in registry()))
    info["version"] = version()
    info["files"] = {"agents": [name for name, _, _ in agents]}
    if "/" in info["version"]:
        raise SystemExit("version %r: Checkmk forbids '/'" % info["version"])

    agents_tar = io.BytesIO()
    _tar(agents, epoch, agents_tar)
    top = [("info", (pprint.pformat(info) + "\n").encode("utf-8"), 0o644),
           ("info.json", (json.dumps(info, sort_keys=True) + "\n").encode("utf-8"),
            0o644),
           ("agents.tar", agents_tar.getvalue(), 0o644)]  # Checkmk's order
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                       compresslevel=9) as gz:
        _tar(top, epoch, gz)
    return info, out.getvalue()


def build_mkp(outdir, epoch):
    info, data = mkp_bytes(epoch)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "%s-%s.mkp" % (info["name"], info["version"]))
    _write(path, data, 0o644)
    return path


def _write(path, data, mode):
    """Replace path atomically (a running agent never sees half a check)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv):
    if len(argv) != 2 or argv[0] not in ("agent", "mkp"):
        sys.stderr.write(__doc__)
        return 2
    if os.environ.get("PYTHONHASHSEED") != "0":  # see bytecode()
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    epoch = source_date_epoch()
    if argv[0] == "agent":
        paths = build_agent(argv[1])
    else:
        paths = [build_mkp(argv[1], epoch)]
    for path in paths:
        print("%s (%d bytes)" % (path, os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
