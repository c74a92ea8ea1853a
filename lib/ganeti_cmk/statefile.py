"""Files the checks keep in `[paths] state_dir`: only root's.

The directory is created 0700 whatever the umask, and refused (UnsafeState,
whose text names the fix) when another user owns it or may write to it:
whoever can write there can plant a cache that makes a check say OK, or a
FIFO that blocks every run.  Files are written 0600, atomically (a new
file renamed over the old), with every write and the final size checked;
they are read back with `read`: no links, no FIFOs, bounded, owned by root
(or the user the check runs as), one link only, writable by nobody else.
"""

import errno
import os
import stat
import time

from .safefile import read_file, trusted_owners

TMP_SUFFIX = ".tmp"
TMP_MAX_AGE = 60  # seconds: a writer's temporary file older than this was left behind


class UnsafeState(OSError):
    """state_dir or a file in it is not safe to use; str() says the fix."""


def _fix(path):
    return "chown root: %s && chmod 700 %s" % (path, path)


def check_dir(state_dir):
    """Raise UnsafeState unless `state_dir` is a directory of root (or
    ours) that no other user may write to, nor replace (_check_parents);
    FileNotFoundError if missing.

    A symbolic link is followed only when root (or we) own it.
    """
    st = os.lstat(state_dir)
    if stat.S_ISLNK(st.st_mode) and st.st_uid in trusted_owners():
        st = os.stat(state_dir)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeState(errno.ENOTDIR, "not a directory ([paths] state_dir)",
                          state_dir)
    if st.st_uid not in trusted_owners():
        raise UnsafeState(errno.EPERM, "state_dir owned by uid %d, not root: its "
                          "files cannot be trusted; fix: %s"
                          % (st.st_uid, _fix(state_dir)), state_dir)
    if st.st_mode & 0o022:
        raise UnsafeState(errno.EPERM, "state_dir writable by other users (mode "
                          "%04o): its files cannot be trusted; fix: %s"
                          % (stat.S_IMODE(st.st_mode), _fix(state_dir)), state_dir)
    _check_parents(state_dir)


def _check_parents(state_dir):
    """UnsafeState when a directory above `state_dir` (as the kernel
    resolves it) may be written by another user without the sticky bit:
    that user could rename state_dir away and put one of theirs there,
    between check_dir and the open of a file in it."""
    path = os.path.dirname(os.path.realpath(state_dir))
    while True:
        st = os.lstat(path)
        if (st.st_uid not in trusted_owners()
                or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX)):
            raise UnsafeState(
                errno.EPERM, "%s, a parent of state_dir, is %s: they could put "
                "another directory in its place; fix: %s (or choose another "
                "[paths] state_dir)" % (
                    path, "owned by uid %d" % st.st_uid
                    if st.st_uid not in trusted_owners() else
                    "writable by other users (mode %04o)" % stat.S_IMODE(st.st_mode),
                    "chown root: %s" % path if st.st_uid not in trusted_owners()
                    else "chmod go-w %s" % path), state_dir)
        if path == os.path.dirname(path):
            return
        path = os.path.dirname(path)


def make_dir(state_dir):
    """Create `state_dir` (0700, missing parents 0755, whatever the umask)
    and check it (check_dir)."""
    missing = []
    path = state_dir
    while path != os.path.dirname(path) and not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        try:
            # umask can only take bits away: these are the most there are
            os.mkdir(path, 0o700 if path == state_dir else 0o755)
        except FileExistsError:
            pass
    check_dir(state_dir)


def read(path, limit):
    """The bytes of state file `path` (at most `limit`), checked as the
    module says; FileNotFoundError when there is none, UnsafeState when
    the directory is not safe, another OSError when the file is refused."""
    check_dir(os.path.dirname(path))
    return read_file(path, limit, private=True)


def write_atomically(path, text, mode=0o600):
    """Replace `path` with `text`; a reader sees the old file or the new.

    The directory is created if missing (make_dir).  The temporary file is
    created exclusively (`mode`, never writable by others), so a link planted in its place is never
    followed; a write that comes up short (a full file system) raises
    instead of leaving a cut file.  Temporary files that killed writers
    left behind are removed.  OSError propagates.
    """
    state_dir = os.path.dirname(path)
    make_dir(state_dir)
    remove_leftovers(state_dir)
    tmp = "%s.%d%s" % (path, os.getpid(), TMP_SUFFIX)
    if os.path.lexists(tmp):  # left by a crashed run with our pid
        os.unlink(tmp)
    data = text.encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, mode & 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if os.fstat(fd).st_size != len(data):
                raise OSError(errno.EIO, "written %d bytes, the file has %d"
                              % (len(data), os.fstat(fd).st_size), tmp)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def remove_leftovers(state_dir, now=None):
    """Remove `*.tmp` files of root (or ours) older than TMP_MAX_AGE from
    `state_dir`: what writers killed before their rename left behind."""
    now = time.time() if now is None else now
    for name in os.listdir(state_dir):
        if not name.endswith(TMP_SUFFIX):
            continue
        path = os.path.join(state_dir, name)
        try:
            st = os.lstat(path)
            if st.st_uid in trusted_owners() and now - st.st_mtime > TMP_MAX_AGE \
                    and not stat.S_ISDIR(st.st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
