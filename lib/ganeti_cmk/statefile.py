"""Files the checks keep and read: replaced atomically, read defensively."""

import errno
import os
import stat


def write_atomically(path, text):
    """Replace `path` with `text`; a reader sees the old file or the new.

    The directory is created if missing.  The temporary file is created
    exclusively, so a link planted in its place is never followed.
    OSError propagates.
    """
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    if os.path.lexists(tmp):  # left by a crashed run with our pid
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def read_bounded(path, limit):
    """The bytes of the regular file `path`, which may hold at most `limit`.

    For files another process (or user) may have put in our way: a symlink
    is not followed (ELOOP), a FIFO or device is opened without blocking
    and refused, and a longer file is refused rather than read or cut
    (EFBIG).  OSError (a PermissionError too) propagates.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise OSError(errno.EFBIG, "longer than %d bytes" % limit, path)
    finally:
        os.close(fd)
