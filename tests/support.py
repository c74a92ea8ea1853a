"""Helpers the tests share: where things are, and running a check script.

(Kept out of conftest.py: pytest may load several conftest modules under the
one name "conftest", so tests must not import from it.)
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "lib"), os.path.dirname(os.path.abspath(__file__))):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from localcheck_grammar import assert_valid_output  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


LIB = os.path.join(ROOT, "lib")


def reachable_by_all(path):
    """Whether every user may reach `path`: each directory on the way
    searchable by others (a clone under /root, mode 0700, is not)."""
    import stat
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == os.path.dirname(path):
            return True
        path = os.path.dirname(path)


_PUBLIC_LIB = []


def public_lib():
    """A copy of lib/ that every user can read, made once per test session,
    for what tests run as another user: the checkout may live where only
    root can go (a clone under /root)."""
    if not _PUBLIC_LIB:
        import atexit
        import shutil
        import tempfile
        top = tempfile.mkdtemp(prefix="ganeti-cmk-lib-")
        atexit.register(shutil.rmtree, top, True)
        shutil.copytree(LIB, os.path.join(top, "lib"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for d, _, files in os.walk(top):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        _PUBLIC_LIB.append(os.path.join(top, "lib"))
    return _PUBLIC_LIB[0]


def check_command(name, python=None, public=False):
    """The argv that runs check `name` (ganeti_<module>) from the checkout:
    `ganeti-cmk run <name>` with lib/ on sys.path, no environment needed.
    `public`: from public_lib(), for another user."""
    code = ("import sys; sys.path.insert(0, %r); from ganeti_cmk.cli import main; "
            "sys.exit(main(['run', %r] + sys.argv[1:]))"
            % (public_lib() if public else LIB, name))
    return [python or sys.executable, "-c", code]


def run_script(name, *args, config_text=None, tmp_path=None, env=None,
               user=None, timeout=60):
    """Run check `name` (ganeti_<module>) from the checkout as a subprocess
    in a clean environment: `python3 -m ganeti_cmk run <name>`.

    Runs under the test's interpreter, or the system python3 with `user`.

    With `tmp_path`, MK_CONFDIR and MK_VARDIR point into it and `config_text`
    becomes $MK_CONFDIR/ganeti_cmk.cfg, so agent mode (no arguments) reads
    it.  `user` runs the check as that uid with setpriv (needs root).
    """
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if tmp_path is not None:
        confdir = tmp_path / "etc"
        vardir = tmp_path / "var"
        confdir.mkdir(exist_ok=True)
        vardir.mkdir(exist_ok=True)
        full_env.update(MK_CONFDIR=str(confdir), MK_VARDIR=str(vardir))
        if config_text is not None:
            (confdir / "ganeti_cmk.cfg").write_text(config_text)
    full_env.update(env or {})
    python = sys.executable
    if user is not None:
        # pyenv's interpreters may not load as another user; the node's is this
        python = SYSTEM_PYTHON
    cmd = check_command(name, python, public=user is not None) + list(args)
    if user is not None:
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user,
               "--clear-groups"] + cmd
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=full_env, timeout=timeout, cwd="/")


def run_agent(name, tmp_path, config_text=None, env=None, user=None):
    """Run a check as the agent does; assert exit 0 and valid output.

    Returns {service: fields} of the host's own services (parse_output).
    """
    proc = run_script(name, tmp_path=tmp_path, config_text=config_text,
                      env=env, user=user)
    assert proc.returncode == 0, proc.stderr
    return assert_valid_output(proc.stdout)[None]


def as_nobody(function):
    """Call function() in a forked child running as uid and gid 65534.

    Returns the name of the exception it raised (an AssertionError inside
    counts), or None.  Needs root.  Every module of the library is
    imported first: the child may not be able to read the checkout.
    """
    import importlib
    import pkgutil
    import ganeti_cmk
    for module in pkgutil.walk_packages(ganeti_cmk.__path__, "ganeti_cmk."):
        if not module.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(module.name)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        outcome = b"?"
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                function()
                outcome = b""
            except BaseException as e:
                outcome = type(e).__name__.encode()
        finally:
            os.write(write_end, outcome)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        outcome = f.read()
    os.waitpid(child, 0)
    return outcome.decode() or None
