"""Readers for /proc: pids, comm, cmdline, state, exe identity, maps.

Every reader takes the proc root (normally "/proc") so tests can point it
elsewhere.  Processes exit at any moment: a reader returns None when the
process (or, for kernel threads and zombies, its executable) is gone.
PermissionError is not hidden: the caller decides (usually "run as root").
Text from /proc is untrusted and goes only into Result fields; comm and
cmdline are decoded with replacement characters, paths stay file-system
strings (os.fsdecode) so they can be looked up again.
"""

import errno
import os
import time

DELETED = " (deleted)"
_GONE = (FileNotFoundError, ProcessLookupError, NotADirectoryError)


def pids(proc="/proc"):
    """The process ids listed in `proc`, unsorted."""
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def _read(path, limit=1 << 20):
    """Up to `limit` bytes of a /proc file (they can exceed one read)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[:limit]
    finally:
        os.close(fd)


def _text(data):
    return data.decode("utf-8", "replace")


def printable(path):
    """A file-system string (undecodable bytes as surrogates) decoded like
    comm and cmdline (U+FFFD), to compare it with them."""
    return _text(os.fsencode(path))


def comm(proc, pid):
    """The kernel's short name (at most 15 characters), or None if gone."""
    try:
        return _text(_read("%s/%d/comm" % (proc, pid), 64)).rstrip("\n")
    except _GONE:
        return None


def cmdline(proc, pid):
    """The argument list, or None if gone; a zombie's is empty."""
    try:
        data = _read("%s/%d/cmdline" % (proc, pid))
    except _GONE:
        return None
    if not data:
        return []
    return [_text(arg) for arg in data.rstrip(b"\0").split(b"\0")]


def _stat(proc, pid):
    """The fields of /proc/PID/stat after comm (state first), or None."""
    try:
        data = _read("%s/%d/stat" % (proc, pid), 4096)
    except _GONE:
        return None
    return data[data.rfind(b")") + 1:].split()  # comm may contain ") "


def state(proc, pid):
    """The one-letter state from /proc/PID/stat ('R', 'S', 'Z', ...), or None."""
    fields = _stat(proc, pid)
    return _text(fields[0]) if fields else None


def start_time(proc, pid):
    """When `pid` started, in seconds after boot (boot_time()'s clock,
    truncated to a clock tick), or None once it has exited (gone, or a
    zombie).  A process that got the pid of an exited one started later.
    """
    fields = _stat(proc, pid)
    if not fields or len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def uids(proc, pid):
    """The (real, effective, saved, file-system) user ids of `pid` from
    /proc/PID/status, or None if gone.

    Not the owner of /proc/PID: a process that makes itself non-dumpable
    shows as root's there.
    """
    try:
        data = _read("%s/%d/status" % (proc, pid), 64 << 10)
    except _GONE:
        return None
    for line in data.split(b"\n"):
        if line.startswith(b"Uid:"):
            return tuple(int(uid) for uid in line.split()[1:5])
    return None


def foreign_uid(proc, pid, allowed):
    """The first user id of `pid` (real, effective, saved, fs) that is not
    in `allowed`, or None (also when the process is gone)."""
    return next((uid for uid in uids(proc, pid) or () if uid not in allowed), None)


def cpu(proc):
    """(vendor, flags) of the first processor in /proc/cpuinfo; (None, set())
    when it cannot be read."""
    vendor, flags = None, set()
    try:
        data = _read("%s/cpuinfo" % proc, 1 << 20)
    except OSError:
        return vendor, flags
    for line in _text(data).split("\n"):
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if not line.strip() and (vendor or flags):
            break
    return vendor, flags


def _unescape(field):
    """A /proc/mounts field: blanks and backslashes are octal escapes."""
    if b"\\" not in field:
        return os.fsdecode(field)
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out += field[i:i + 1]
            i += 1
    return os.fsdecode(bytes(out))


MOUNTS_MAX = 16 << 20


def mounts(proc):
    """The mounts of our mount namespace, in mount order: [(mount point,
    file system type, {option: value or ''})] from /proc/self/mounts.

    A table over MOUNTS_MAX raises OSError (EFBIG): cut, it would lack the
    last mounts."""
    path = "%s/self/mounts" % proc
    data = _read(path, MOUNTS_MAX + 1)
    if len(data) > MOUNTS_MAX:
        raise OSError(errno.EFBIG, "larger than %d MiB" % (MOUNTS_MAX >> 20), path)
    found = []
    for line in data.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        options = {}
        for option in _text(fields[3]).split(","):
            key, _, value = option.partition("=")
            options[key] = value
        found.append((_unescape(fields[1]), _text(fields[2]), options))
    return found


def meminfo(proc):
    """/proc/meminfo as {field: number} (kB for the sizes, counts for
    HugePages_*)."""
    values = {}
    for line in _text(_read("%s/meminfo" % proc, 1 << 20)).splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[key.strip()] = int(words[0])
    return values


def boot_time():
    """Seconds since boot, the clock of start_time()."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def others_hidden(proc):
    """Whether `proc` hides other users' processes from us (mounted with
    hidepid=1: listed, not readable; hidepid=2: not even listed).

    Probed on pid 1 (init, root's): its cmdline is readable by every user
    unless /proc hides it.
    """
    try:
        _read("%s/1/cmdline" % proc, 1)
    except PermissionError:
        return True
    except _GONE:
        return True
    return False


def exe_name(proc, pid):
    """The executable's file name (no ' (deleted)'), or None.

    One readlink, cheap enough to run for every process on a node.
    """
    try:
        link = os.readlink("%s/%d/exe" % (proc, pid))
    except _GONE:
        return None
    if link.endswith(DELETED):
        link = link[:-len(DELETED)]
    return link.rsplit("/", 1)[-1]


class Exe:
    """A process's running executable.

    `path` is the file's path as the kernel shows it (relative to our root
    within our mount namespace, else to the process's), without the
    ' (deleted)' suffix; `deleted` says the suffix was there, i.e. the file
    was removed or renamed over since the process started.  `stat` is the
    running file's own stat (old inode, even when deleted).
    """

    __slots__ = ("path", "deleted", "stat")

    def __init__(self, path, deleted, stat):
        self.path = path
        self.deleted = deleted
        self.stat = stat

    def __repr__(self):
        return "Exe(%r, deleted=%r)" % (self.path, self.deleted)


def exe(proc, pid):
    """The running executable of `pid` as an Exe, or None if gone.

    None also for kernel threads and zombies (no executable).  Raises
    PermissionError when we may not look (another user's process, not root).
    """
    link_path = "%s/%d/exe" % (proc, pid)
    try:
        link = os.readlink(link_path)
        st = os.stat(link_path)
    except _GONE:
        return None
    deleted = link.endswith(DELETED)
    if deleted:
        # A file literally named "x (deleted)" that still exists is not deleted.
        literal = disk_stat(proc, pid, link)
        if literal is not None and same_file(literal, st):
            deleted = False
        else:
            link = link[:-len(DELETED)]
    return Exe(link, deleted, st)


def same_file(a, b):
    """Two stat results name the same inode."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_OWN_MOUNT_NS = {}  # proc root -> our mount namespace; it does not change


def _mount_ns(proc, pid):
    try:
        return os.readlink("%s/%s/ns/mnt" % (proc, pid))
    except (OSError, ValueError):
        return None


def disk_path(proc, pid, path):
    """Where `path`, as /proc/PID/exe or maps shows it, is on disk for us.

    Within our own mount namespace the kernel shows paths relative to our
    root even for a chrooted process (qemu -chroot chroots after it started,
    into an empty directory), so `path` is the file.  In another mount
    namespace paths are relative to that namespace: /proc/PID/root/<path>.
    """
    if proc not in _OWN_MOUNT_NS:
        _OWN_MOUNT_NS[proc] = _mount_ns(proc, "self")
    mine = _OWN_MOUNT_NS[proc]
    if mine is not None and mine == _mount_ns(proc, pid):
        return path
    return "%s/%d/root%s" % (proc, pid, path)


def disk_stat(proc, pid, path):
    """os.stat (symlinks followed) of `path` on disk for `pid`, or None.

    None whenever no file is there: missing, a symlink loop, a NUL byte in
    the path.  Only PermissionError propagates.
    """
    try:
        return os.stat(disk_path(proc, pid, path))
    except PermissionError:
        raise
    except (OSError, ValueError):
        return None


# Executable mappings that are not shared libraries (needrestart ignores
# the same): memfd, SysV shm, devices, DRM and aio buffers, temp files.
IGNORED_MAPPINGS = ("/memfd:", "/SYSV", "/dev/", "/drm", "/[aio]", "/tmp/",
                    "/var/tmp/", "/run/", "/var/run/")


def deleted_mappings(proc, pid, ignore=IGNORED_MAPPINGS):
    """Executable file mappings marked ' (deleted)', or None if gone.

    These are shared libraries replaced on disk since the process mapped
    them (the process's own executable is among them when it was replaced):
    {path: address range}, the range of one mapping of it (for mapped_stat).
    """
    try:
        data = _read("%s/%d/maps" % (proc, pid), 64 << 20)
    except _GONE:
        return None
    found = {}
    for line in data.splitlines():
        # address perms offset dev inode path
        fields = line.split(None, 5)
        if len(fields) < 6 or b"x" not in fields[1] or fields[4] == b"0":
            continue
        path = _text(fields[5])
        if not path.endswith(DELETED):
            continue
        path = path[:-len(DELETED)]
        if path.startswith("/") and not path.startswith(tuple(ignore)):
            found.setdefault(path, _text(fields[0]))
    return found


def mapped_stat(proc, pid, addresses):
    """os.stat of the file `pid` maps at `addresses` ('7f1c...-7f1c...').

    The mapped inode itself, even when no path names it any more; its ctime
    then says when it was unlinked.  None if the process or the mapping is
    gone.  Only root may look (CAP_SYS_ADMIN): PermissionError otherwise.
    """
    try:
        return os.stat("%s/%d/map_files/%s" % (proc, pid, addresses))
    except _GONE:
        return None


def names_matcher(patterns):
    """A match function for executable names from shell patterns.

    Plain names and `prefix*` (all the defaults) are matched without
    fnmatch, which would import re and cost start-up time every minute.
    """
    exact, prefixes, others = set(), [], []
    for pattern in patterns:
        if not any(c in pattern for c in "*?["):
            exact.add(pattern)
        elif pattern.endswith("*") and not any(c in pattern[:-1] for c in "*?["):
            prefixes.append(pattern[:-1])
        else:
            others.append(pattern)
    prefixes = tuple(prefixes)
    regex = None
    if others:
        import fnmatch
        import re
        regex = re.compile("|".join(fnmatch.translate(p) for p in others)).match

    def matches(name):
        return (name in exact or name.startswith(prefixes)
                or (regex is not None and regex(name) is not None))
    return matches
