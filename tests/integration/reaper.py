"""Run a command whose daemons must be reaped at once: reaper.py CMD [ARG...]

PID 1 on these machines reaps orphans only every second or two, so a stopped
daemon lingers as a zombie and `daemon-util stop` (start-stop-daemon --retry)
waits for it: a cluster teardown took 13 s of such waits. This runs CMD under a
child subreaper (as systemd would be on a real node): every daemon CMD leaves
behind is adopted by a background process that reaps it the moment it exits and
itself exits once the last one is gone. Exits with CMD's status.
"""

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv):
    if not argv:
        sys.exit(__doc__)
    status_r, status_w = os.pipe()
    if os.fork():
        # The caller's process: report CMD's exit status, leave the reaper behind.
        os.close(status_w)
        data = os.read(status_r, 16)
        sys.exit(int(data) if data else 1)
    os.close(status_r)
    os.setsid()  # not in the caller's session or process group: no signals from it
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        os.write(status_w, b"1")
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER): %s" % os.strerror(ctypes.get_errno()))
    child = os.fork()
    if child == 0:
        os.close(status_w)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            sys.stderr.write("reaper.py: %s: %s\n" % (argv[0], e))
            os._exit(127)
    # Keep none of the caller's pipes open: its reader would wait for us forever.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            os.write(status_w, b"%d" % code)
            os.close(status_w)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
