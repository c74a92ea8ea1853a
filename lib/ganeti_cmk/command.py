"""Running another program: bounded in time and output, never via a shell.

The one way a check runs a command (gnt-cluster, gnt-job, hcheck, ...).
The command runs in a session of its own with cwd "/" and no PYTHON*
variables (Ganeti's tools are Python: nothing of the caller's environment
may change what they import); its stdout and stderr go to unlinked files,
not pipes, and only the process itself is waited for, so a process it
leaves behind holding them open holds nothing up.  After `timeout`, or
when the check's own deadline strikes meanwhile, its whole process group
is killed.
"""

import os

KILL_GRACE = 5  # s to wait for the end after killing the group
MIB = 1 << 20


def clean_env(extra=None):
    """The environment for a command: ours without PYTHON* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra or {})
    return env


def run_bounded(command, timeout, tmpdir, limits=(MIB, MIB), keep_fds=(),
                env=None):
    """Run `command` (a list, never a shell line); kill its process group
    after `timeout` seconds.

    Output goes to unlinked files in `tmpdir` (None: the system's).
    Returns (exit code, timed out, [(first `limit` bytes, full size)] for
    stdout and stderr); the exit code is negative for a signal, None when
    it did not end even after the kill.  `keep_fds` stay open in the
    command.  OSError when it cannot be started.
    """
    import subprocess
    import tempfile
    with tempfile.TemporaryFile(dir=tmpdir) as out, \
            tempfile.TemporaryFile(dir=tmpdir) as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True,
                                pass_fds=keep_fds, cwd="/",
                                env=clean_env() if env is None else env)
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
        except BaseException:  # the check's deadline: leave nothing behind
            _kill(proc)
            raise
        return proc.returncode, timed_out, [
            _head(f.fileno(), limit) for f, limit in zip((out, err), limits)]


def _kill(proc):
    import signal
    import subprocess
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:  # stuck in the kernel: leave it
        pass


def _head(fd, limit):
    """(the first `limit` bytes of the file, its size); pread: a process
    still writing through the shared offset does not move ours."""
    size = os.fstat(fd).st_size
    chunks, got, want = [], 0, min(size, limit)
    while got < want:
        chunk = os.pread(fd, want - got, got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks), size
