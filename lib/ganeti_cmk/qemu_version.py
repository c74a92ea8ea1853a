"""The QEMU version a binary embeds, read from the file, never by running it.

qemu's `--version` text is a literal in the binary: "QEMU emulator version
7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".  Finding it means reading up to
the whole file (18 MB for Debian 12's qemu-system-x86_64), so results are
cached in a small text file keyed by the file's identity (device, inode,
size, mtime): 100 instances on one old binary cost one read, and the next
run none.  A binary without the literal has version None ("unknown").
"""

import errno
import os
import stat

from .safefile import describe
from .statefile import UnsafeState, read, write_atomically

MARKER = b"QEMU emulator version "
_VERSION = (rb"QEMU emulator version ([0-9][0-9A-Za-z.+~_-]{0,40})"
            rb"(?: ?\(([^()\x00-\x1f\t]{1,120})\))?")
CHUNK = 1 << 20
WINDOW = 256  # longer than any literal _VERSION matches
MAX_SCAN = 512 << 20  # no real qemu binary comes near this
CACHE_FILE = "kvm_binary_versions"
CACHE_MAX = 1 << 20  # ~10000 entries; a node needs a few


class Version:
    """An embedded version: number ('7.2.22') and package ('Debian 1:7.2...')."""

    __slots__ = ("number", "package")

    def __init__(self, number, package=None):
        self.number = number
        self.package = package

    def full(self):
        return "%s (%s)" % (self.number, self.package) if self.package else self.number

    def __eq__(self, other):
        return (isinstance(other, Version)
                and (self.number, self.package) == (other.number, other.package))

    def __hash__(self):
        return hash((self.number, self.package))

    def __repr__(self):
        return "Version(%r)" % self.full()


class Unread(Version):
    """The version of a file not read because of its owner: any user could
    make a check that runs as root read gigabytes every minute."""

    __slots__ = ()
    __eq__ = object.__eq__  # two unread files are not known to be equal
    __hash__ = object.__hash__

    def __init__(self, uid):
        Version.__init__(self, "version not read (owned by uid %d)" % uid)


def scan(f):
    """Search an open binary file for the version literal; Version or None."""
    import re  # only here: a cache hit must not pay for importing re
    literal = re.compile(_VERSION)
    buf, done = b"", 0
    while True:
        chunk = f.read(CHUNK) if done < MAX_SCAN else b""
        if chunk is None:  # a "regular" file that would block: /proc/kmsg
            raise OSError(errno.EAGAIN, "reading would block")
        done += len(chunk)
        buf += chunk
        at = buf.find(MARKER)
        # Parse a literal only when it cannot continue in the next chunk.
        while at >= 0 and (len(buf) - at >= WINDOW or not chunk):
            match = literal.match(buf, at)
            if match:
                return Version(*(g.decode("ascii", "replace") if g else None
                                 for g in match.groups()))
            at = buf.find(MARKER, at + 1)
        if not chunk:
            return None
        buf = buf[at:] if at >= 0 else buf[-len(MARKER):]


def identity(st):
    """The cache key of a file: device, inode, size, mtime."""
    return "%d:%d:%d:%d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class VersionCache:
    """Versions by file identity, kept in `<state_dir>/kvm_binary_versions`.

    One line per identity: `key<TAB>number<TAB>package` (no package: two
    fields; no version found: the key alone); plain text, so a cache hit
    needs neither json nor re.  Only identities used in this run are
    written back, so the file holds what the running processes and the
    installed binaries need.  A missing, corrupt or unwritable cache only
    costs reads; one that is not a plain file (a link, a FIFO) or is longer
    than CACHE_MAX is not read, and replaced.  A state_dir another user
    could have written to is not used at all: `problem` says why and how
    to fix it.
    """

    def __init__(self, state_dir, log=lambda message: None):
        self.path = os.path.join(state_dir, CACHE_FILE) if state_dir else None
        self.log = log
        self.reads = 0
        self.problem = None
        self._old = self._load()
        self._used = {}

    def _load(self):
        entries = {}
        if not self.path:
            return entries
        try:
            text = read(self.path, CACHE_MAX).decode("utf-8", "replace")
        except FileNotFoundError:
            return entries
        except UnsafeState as e:
            self.problem = describe(e)
            self.path = None
            return entries
        except OSError as e:
            self.log("version cache %s unreadable (%s), starting afresh"
                     % (self.path, e))
            return entries
        for line in text.split("\n"):
            fields = line.split("\t")
            if len(fields) <= 3 and fields[0].count(":") == 3:
                entries[fields[0]] = tuple(fields[1:])
        return entries

    def get(self, path, st):
        """The Version of the file `path` whose stat is `st`, or None.

        The file is opened and checked to still be that identity (a pid can
        be reused between stat and open); OSError propagates.  Only files
        of root or of the user we run as are read, others give Unread;
        anything but a regular file is not even opened.
        """
        key = identity(st)
        if key not in self._used and key in self._old:
            self._used[key] = self._old[key]
        if key in self._used:
            fields = self._used[key]
            return Version(*fields) if fields and fields[0] else None
        if not stat.S_ISREG(st.st_mode):  # opening a device can do something
            raise OSError(errno.EINVAL, "not a regular file", path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(f.fileno())
            if not stat.S_ISREG(now.st_mode) or identity(now) != key:
                raise FileNotFoundError("%s changed while reading it" % path)
            if now.st_uid not in (0, os.geteuid()):
                self.log("version of %s not read: owned by uid %d" % (path, now.st_uid))
                return Unread(now.st_uid)
            self.reads += 1
            version = scan(f)
        self.log("read version of %s: %s" % (path, version and version.full()))
        self._used[key] = (() if version is None else (version.number,) if
                           version.package is None else (version.number, version.package))
        return version

    def save(self):
        """Write the identities used in this run, if anything changed."""
        if not self.path or self._used == self._old:
            return
        text = "".join("\t".join((key,) + self._used[key]) + "\n"
                       for key in sorted(self._used))
        try:
            write_atomically(self.path, text)
        except UnsafeState as e:
            self.problem = describe(e)
        except OSError as e:
            self.log("cannot write version cache %s (%s)" % (self.path, e))
