"""The one way the checks read a file they did not write.

Anything on disk may have been put in our way: a symbolic link to a huge
file or a device, a FIFO that blocks every reader, a file another user
controls.  `read_file` never follows a link that is not root's (or ours),
never blocks (O_NONBLOCK), checks the open descriptor (fstat) before
reading a byte: a regular file, owned by one of `owners`, no longer than
`limit`.  Each refusal is an OSError whose text says what is wrong.
"""

import errno
import os
import stat

MIB = 1 << 20


def trusted_owners():
    """root and the user the check runs as."""
    return (0, os.geteuid())


def open_file(path, owners=None, follow_trusted_links=False, private=False):
    """An fd of the regular file `path`, checked on the descriptor.

    With `follow_trusted_links` symbolic links owned by one of `owners`
    are followed (an operator's link to a managed file), and what they
    lead to is lstat-ed before it is opened (_follow_trusted); any other
    link is refused (ELOOP).  `private` (a file the checks wrote) also refuses a
    file that others may write or that has another name (a hard link).
    Returns (fd, fstat result); the caller closes fd.
    """
    owners = trusted_owners() if owners is None else owners
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW
    try:  # errors name `path`, the file the caller knows
        fd = os.open(_follow_trusted(path, owners) if follow_trusted_links
                     else path, flags)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if st.st_uid not in owners:
            raise OSError(errno.EPERM, "owned by uid %d, not by %s" % (
                st.st_uid, _owners_text(owners)), path)
        if private and st.st_mode & 0o022:
            raise OSError(errno.EPERM, "writable by other users (mode %04o)"
                          % stat.S_IMODE(st.st_mode), path)
        if private and st.st_nlink != 1:
            raise OSError(errno.EPERM, "has %d hard links" % st.st_nlink, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


MAX_LINKS = 8  # trusted links followed one after the other


def _follow_trusted(path, owners):
    """The file the links of `owners` starting at `path` lead to, one link
    at a time (the file's own link is then opened with O_NOFOLLOW: a link
    of anyone else on the way is refused, ELOOP).  What it leads to must
    be a regular file before it is opened at all: opening a device can
    act.  A link replaced while it was read is refused."""
    for _ in range(MAX_LINKS):
        try:
            st = os.lstat(path)
        except OSError:
            return path  # the open says why
        if not (stat.S_ISLNK(st.st_mode) and st.st_uid in owners):
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                raise OSError(errno.EINVAL, "not a regular file", path)
            return path
        target = os.readlink(path)
        again = os.lstat(path)
        if (again.st_dev, again.st_ino, again.st_uid) != (st.st_dev, st.st_ino, st.st_uid):
            raise OSError(errno.EAGAIN, "replaced while it was read", path)
        path = os.path.join(os.path.dirname(path), target)
    raise OSError(errno.ELOOP, "more than %d links" % MAX_LINKS, path)


def _owners_text(owners):
    names = ["root" if uid == 0 else "uid %d" % uid for uid in sorted(set(owners))]
    return " or ".join(names)


def read_file(path, limit, owners=None, follow_trusted_links=False, private=False):
    """The bytes of the regular file `path`, at most `limit` of them.

    A longer file is refused (EFBIG), not cut: a cut file would be read as
    complete.  See open_file for the other checks.
    """
    fd, st = open_file(path, owners, follow_trusted_links, private)
    try:
        if st.st_size > limit:
            raise OSError(errno.EFBIG, "larger than %s" % _size(limit), path)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise OSError(errno.EFBIG, "larger than %s" % _size(limit), path)
    finally:
        os.close(fd)


def _size(limit):
    return "%g MiB" % (limit / MIB) if limit >= MIB else "%d bytes" % limit


def describe(e):
    """An OSError as 'path: what is wrong'."""
    what = e.strerror or str(e)
    return "%s: %s" % (e.filename, what) if e.filename else what


def file_type(mode):
    """A stat mode's file type in words: 'character device', 'regular
    file', ..."""
    for test, name in ((stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISREG, "regular file"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "file of unknown type"


def errno_text(number):
    """'ENXIO (No such device or address)'."""
    return "%s (%s)" % (errno.errorcode.get(number, "errno %d" % number),
                        os.strerror(number))
