"""Files the checks keep in state_dir: replaced atomically (read them back
with safefile.read_file)."""

import os


def write_atomically(path, text, mode=0o644):
    """Replace `path` with `text` (a file of `mode`); a reader sees the old
    file or the new.

    The directory is created if missing.  The temporary file is created
    exclusively, so a link planted in its place is never followed.
    OSError propagates.
    """
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    if os.path.lexists(tmp):  # left by a crashed run with our pid
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
