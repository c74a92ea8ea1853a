"""A parser for /proc/drbd (DRBD 8): text in, data out.

The kernel writes one block per minor (drbd_proc.c):

    version: 8.4.11 (api:1/proto:86-101)
    srcversion: ...                         (or GIT-hash: ... build by ...)
     0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
        ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
     1: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----
        ns:0 nr:460288 ... oos:588416
            [=======>............] sync'ed: 44.4% (588416/1048576)K
            finish: 0:00:08 speed: 65,736 (65,736) want: 61,440 K/sec
     2: cs:Unconfigured

8.0 to 8.2 write `st:` where later versions write `ro:`; 8.2.6 added
`oos:` (KiB out of sync).  A resync with more than 4 GiB to go counts in
MiB (`(14996/15360)M`), and a kernel bug glues `finish:` to it.  DRBD 9
writes only the version lines here: it is recognised, not parsed.

Nothing here raises on bad input: a block that does not read as DRBD's
(a torn line, a truncated file) is kept with a `problem`, words outside
DRBD's vocabulary are listed in `unknown`, so the check can say UNKNOWN
with the raw text instead of guessing.  No regular expressions: `re`
costs start-up time every minute.
"""

# drbd_strings.c (8.4; Ahead/Behind since 8.3.10)
CONNECTION_STATES = frozenset((
    "StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe",
    "NetworkFailure", "ProtocolError", "TearDown", "WFConnection",
    "WFReportParams", "Connected", "StartingSyncS", "StartingSyncT",
    "WFBitMapS", "WFBitMapT", "WFSyncUUID", "SyncSource", "SyncTarget",
    "PausedSyncS", "PausedSyncT", "VerifyS", "VerifyT", "Ahead", "Behind"))
ROLES = frozenset(("Primary", "Secondary", "Unknown"))
DISK_STATES = frozenset((
    "Diskless", "Attaching", "Failed", "Negotiating", "Inconsistent",
    "Outdated", "DUnknown", "Consistent", "UpToDate"))
UNCONFIGURED = "Unconfigured"

KIB = 1024
MAX_RAW = 300  # characters of a block kept for messages


class Sync:
    """A resync or online verify in progress, as DRBD shows it."""

    __slots__ = ("verify", "percent", "left", "total", "finish", "speed",
                 "stalled")

    def __init__(self, verify=False, percent=None, left=None, total=None,
                 finish=None, speed=None, stalled=False):
        self.verify = verify    # an online verify ("verified:"), not a resync
        self.percent = percent  # float, 0 to 100
        self.left = left        # bytes still to go, None if not shown
        self.total = total      # bytes of the whole run
        self.finish = finish    # DRBD's estimate of the seconds left
        self.speed = speed      # KiB/s over the last ~18 s
        self.stalled = stalled  # DRBD says "(stalled)"

    def __repr__(self):
        return "Sync(%s%%, left=%s, finish=%s)" % (self.percent, self.left,
                                                   self.finish)


class Device:
    """One minor's block."""

    __slots__ = ("minor", "cs", "role", "peer_role", "disk", "peer_disk",
                 "counters", "sync", "unknown", "problem", "raw")

    def __init__(self, minor, raw=""):
        self.minor = minor
        self.cs = None          # connection state word
        self.role = None        # local role (ro:/st: before the slash)
        self.peer_role = None
        self.disk = None        # local disk state (ds: before the slash)
        self.peer_disk = None
        self.counters = {}      # ns, nr, dw, dr, al, bm, lo, pe, ua, ap, ep, oos
        self.sync = None        # Sync while resyncing or verifying
        self.unknown = []       # "cs:Foo": words DRBD 8 does not write
        self.problem = None     # why the block does not read as DRBD's
        self.raw = raw          # the block's text, lines joined, shortened

    @property
    def configured(self):
        return self.cs != UNCONFIGURED

    @property
    def oos(self):
        """Bytes out of sync (None: not shown, DRBD before 8.2.6)."""
        kib = self.counters.get("oos")
        return None if kib is None else kib * KIB

    def __repr__(self):
        return "Device(%d, %s %s/%s %s/%s)" % (
            self.minor, self.cs, self.role, self.peer_role, self.disk,
            self.peer_disk)


class ProcDrbd:
    """The whole file."""

    __slots__ = ("version", "major", "devices", "problems")

    def __init__(self):
        self.version = None   # "8.4.11", None when there is no version line
        self.major = None     # 8, 9, ...
        self.devices = []     # Device, in file order, Unconfigured ones too
        self.problems = []    # texts: what does not read as DRBD's, file-wide

    @property
    def drbd9(self):
        """DRBD 9 or later: /proc/drbd has no per-minor lines there."""
        return self.major is not None and self.major >= 9

    @property
    def torn(self):
        """Some part did not read as DRBD's: worth reading the file again."""
        return bool(self.problems) or any(d.problem for d in self.devices)

    def configured(self):
        return [d for d in self.devices if d.configured]


def _short(text, limit=MAX_RAW):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _minor_line(line):
    """The minor number if `line` starts a block (' 5: cs:...'), else None."""
    head, sep, rest = line.partition(":")
    head = head.strip()
    if sep and head.isdigit() and head.isascii() and rest.lstrip().startswith("cs:"):
        return int(head)
    return None


def parse_version(line):
    """('8.4.11', 8) from 'version: 8.4.11 (api:1/proto:86-101)', else None."""
    if not line.startswith("version:"):
        return None
    words = line[8:].split()
    if not words:
        return None
    version = words[0]
    major = version.split(".", 1)[0]
    if not (major.isdigit() and major.isascii()):
        return None
    return version, int(major)


def parse(text):
    """A ProcDrbd from the text of /proc/drbd."""
    result = ProcDrbd()
    blocks, current, header = [], None, []
    for line in text.split("\n"):
        minor = _minor_line(line)
        if minor is not None:
            current = (minor, [line])
            blocks.append(current)
        elif current is not None:
            if line.strip():
                current[1].append(line)
        elif line.strip():
            header.append(line)
    for line in header:
        found = parse_version(line.strip())
        if found and result.version is None:
            result.version, result.major = found
    if result.version is None and header:
        result.problems.append("no version line (first line: %s)" % _short(header[0], 80))
    seen = {}
    for minor, lines in blocks:
        if minor in seen:  # one status per minor: which one is now is unknown
            seen[minor].problem = ("minor %d appears twice: the file changed "
                                   "while it was read" % minor)
            continue
        seen[minor] = parse_block(minor, lines)
        result.devices.append(seen[minor])
    return result


def parse_block(minor, lines):
    """A Device from the lines of one minor's block."""
    joined = " ".join(line.strip() for line in lines)
    device = Device(minor, _short(joined))
    words = lines[0].split(":", 1)[1].split()
    if words == ["cs:" + UNCONFIGURED]:
        device.cs = UNCONFIGURED
        return device
    if len(words) < 3 or not words[0].startswith("cs:") or \
            not words[1].startswith(("ro:", "st:")) or not words[2].startswith("ds:"):
        device.problem = "not a DRBD status line"
        return device
    device.cs = words[0][3:]
    roles = words[1][3:].split("/")
    disks = words[2][3:].split("/")
    if len(roles) != 2 or len(disks) != 2 or not all(roles + disks) or not device.cs:
        device.problem = "not a DRBD status line"
        return device
    device.role, device.peer_role = roles
    device.disk, device.peer_disk = disks
    for prefix, word, known in (("cs", device.cs, CONNECTION_STATES),
                                ("ro", device.role, ROLES),
                                ("ro", device.peer_role, ROLES),
                                ("ds", device.disk, DISK_STATES),
                                ("ds", device.peer_disk, DISK_STATES)):
        if word not in known:
            device.unknown.append("%s:%s" % (prefix, word))
    for word in joined.split():
        key, sep, value = word.partition(":")
        if sep and key in COUNTERS and key not in device.counters:
            number = _integer(value)
            if number is not None:
                device.counters[key] = number
            elif key == "oos":
                device.problem = "%s is not a number of KiB" % _short(word, 40)
    device.sync = parse_sync(joined)
    return device


COUNTERS = frozenset(("ns", "nr", "dw", "dr", "al", "bm", "lo", "pe", "ua",
                      "ap", "ep", "oos"))


def _integer(text):
    return int(text) if text.isdigit() and text.isascii() else None


def _number(text):
    """A float from the start of `text` ('44.4% ...' -> 44.4), or None."""
    end = 0
    while end < len(text) and (text[end].isdigit() or text[end] == "."):
        end += 1
    try:
        return float(text[:end]) if text[:end].isascii() else None
    except ValueError:
        return None


def parse_sync(joined):
    """The Sync of a block's joined text, or None when it shows none."""
    for label, verify in (("sync'ed:", False), ("verified:", True)):
        at = joined.find(label)
        if at >= 0:
            break
    else:
        return None
    rest = joined[at + len(label):].lstrip()
    sync = Sync(verify=verify, percent=_number(rest))
    if sync.percent is not None and not 0 <= sync.percent <= 100:
        sync.percent = None
    # "(left/total)K" or "...)M" right after the percentage
    opening, closing = rest.find("("), rest.find(")")
    if 0 <= opening < closing and rest[closing + 1:closing + 2] in ("K", "M"):
        left, _, total = rest[opening + 1:closing].partition("/")
        unit = KIB if rest[closing + 1] == "K" else KIB * KIB
        left, total = _integer(left), _integer(total)
        if left is not None and total is not None and left <= total:
            sync.left, sync.total = left * unit, total * unit
    at = rest.find("finish:")
    if at >= 0:
        parts = rest[at + 7:].split(None, 1)[0].split(":") if rest[at + 7:].split() else []
        if len(parts) == 3 and all(p.isdigit() and p.isascii() for p in parts):
            sync.finish = int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])
    at = rest.find("speed:")
    if at >= 0 and rest[at + 6:].split():
        sync.speed = _integer(rest[at + 6:].split()[0].replace(",", ""))
    sync.stalled = "(stalled)" in rest
    return sync
