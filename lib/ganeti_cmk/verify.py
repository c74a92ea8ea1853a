"""`gnt-cluster verify` output -> findings (a pure parser: text in, data out).

Understands every Ganeti from 2.4 to 3.1: findings with `--error-codes`
(`  - ERROR:ENODEDRBD:node:node1:msg`, item `None` = no item) and without
(`  - ERROR: node node1: msg`, `cluster: msg` before 2.16, `cluster : msg`
after), NOTICE/INFO notes, hook warnings, hook output, section headers, job
lines, timestamps or none; a finding is one however far it is indented
(only other indented text is hook output continuing the finding before
it).  Anything else is kept as unrecognised, and a line
that mentions ERROR or WARNING becomes a finding anyway: nothing that looks
like a problem is dropped.  stderr is classified into the reasons verify could
not run (not the master, master daemon down, queue drained, ...); the harmless
"Job N is trying to acquire all necessary locks" only sets `waited_for_locks`.
"""

ERROR, WARNING = "ERROR", "WARNING"

# The 41 verify error codes of Ganeti 2.16 to 3.1 (none removed since 2.6),
# with the item type each one reports about.
CODES = {
    "ECLUSTERCERT": "cluster", "ECLUSTERCFG": "cluster",
    "ECLUSTERCLIENTCERT": "cluster", "ECLUSTERDANGLINGINST": "node",
    "ECLUSTERDANGLINGNODES": "node", "ECLUSTERFILECHECK": "cluster",
    "EEXTAGS": "node", "EGROUPDIFFERENTPVSIZE": "group",
    "EINSTANCEBADNODE": "instance", "EINSTANCEDOWN": "instance",
    "EINSTANCEFAULTYDISK": "instance", "EINSTANCELAYOUT": "instance",
    "EINSTANCEMISSINGCFGPARAMETER": "instance",
    "EINSTANCEMISSINGDISK": "instance", "EINSTANCEPOLICY": "instance",
    "EINSTANCESPLITGROUPS": "instance", "EINSTANCEUNSUITABLENODE": "instance",
    "EINSTANCEWRONGNODE": "instance", "ENODEDRBD": "node",
    "ENODEDRBDHELPER": "node", "ENODEDRBDVERSION": "node",
    "ENODEFILECHECK": "node", "ENODEFILESTORAGEPATHS": "node",
    "ENODEFILESTORAGEPATHUNUSABLE": "node",
    "ENODEGLUSTERSTORAGEPATHUNUSABLE": "node", "ENODEHOOKS": "node",
    "ENODEHV": "node", "ENODELVM": "node", "ENODEN1": "node",
    "ENODENET": "node", "ENODEOOBPATH": "node", "ENODEORPHANINSTANCE": "node",
    "ENODEORPHANLV": "node", "ENODEOS": "node", "ENODERPC": "node",
    "ENODESETUP": "node", "ENODESHAREDFILESTORAGEPATHUNUSABLE": "node",
    "ENODESSH": "node", "ENODETIME": "node", "ENODEUSERSCRIPTS": "node",
    "ENODEVERSION": "node",
}

# What a Report keeps (a cache every agent run reads must stay small): the
# first MAX_FINDINGS findings (the rest only counted, by severity and code),
# the first MAX_LINES of every other list, MAX_LINE characters of a line,
# and in the cache (to_data) at most MAX_BYTES of JSON: section titles
# once each, the findings and lines beyond the budget only counted.
MAX_FINDINGS = 10000
MAX_LINES = 1000
MAX_LINE = 4096
LONG_LINE = 1 << 18  # characters of a stdout line parsed (its fields cut to MAX_LINE)
MAX_BYTES = 2 << 20

# Why verify could not run, as told on stderr.
NOT_MASTER = "not master"
NOT_IN_CLUSTER = "not in cluster"
NO_DAEMON = "master daemon unreachable"
NO_PERMISSION = "no permission"
QUEUE_DRAINED = "queue drained"
QUEUE_FULL = "queue full"
CORRUPT_CONFIG = "corrupt config"
USAGE = "usage error"
CRASHED = "crashed"

# One regex per stdout line: optional ctime stamp, then one message shape.
_LINE = r"""
(?:[A-Z][a-z]{2}\ [A-Z][a-z]{2}\ [ \d]\d\ \d\d:\d\d:\d\d\ \d{4,}(?:\ |\Z))?
(?:
   \ *-\ (?P<sev>ERROR|WARNING):(?:
        (?P<code>[A-Z][A-Z0-9_]*):(?P<ctype>[a-z_]*):(?P<citem>[^:]*):(?P<cmsg>.*)
      | \ ?(?P<ptype>cluster|node|instance|group)(?:\ (?P<pitem>\S*?))?:\ ?(?P<pmsg>.*)
      | \ *(?P<smsg>.*)
   )
 | \ *-\ (?P<ntag>NOTICE|INFO):\ *(?P<nmsg>.*)
 | \ {0,2}-\ (?P<bullet>.*)
 | \*\ *(?P<section>.*)
 | Submitted\ jobs?\ (?P<jobs>\d+(?:,\ *\d+)*)
 | Waiting\ for\ job\ (?P<waiting>\d+)(?:\ for\ .*)?\ \.\.\.
 | (?P<failed>\d+)\ job\(s\)\ failed\ while\ verifying\ the\ cluster\.
 | \ {3,}(?P<cont>\S.*)
 | (?P<other>.*)
)"""
# A line of no known shape that still looks like a problem report.
_FINDING_LIKE = r"\b(ERROR|WARNING|FATAL|CRITICAL)\b|^[A-Z]+:E[A-Z0-9_]+:"
_HARMLESS_STDERR = (r"Job \d+(?: for .*)? is (?:trying to acquire all "
                    r"necessary locks|waiting in queue)\s*\Z")
_JOB_STDERR = (r"(?:Job \d+(?: for .*)? (?:has failed: |has been archived)"
               r"|Failed to submit job)")
_FAILURES = (
    (NOT_MASTER, r"This is not the master node"),
    (NOT_IN_CLUSTER, r"Cluster not initialized|not part of a cluster"),
    (QUEUE_DRAINED, r"job queue is marked for drain|Queue drained"),
    (QUEUE_FULL, r"job queue is full"),
    (NO_PERMISSION, r"permissions? to connect to the master daemon"),
    (NO_DAEMON, r"Cannot communicate with the (?:master|config) daemon|Timeout "
     r"while talking to the master daemon|Connect timed out|running and listening"),
    (CORRUPT_CONFIG, r"Corrupt configuration file"),
    (CRASHED, r"Traceback \(most recent call last\)"),
    (USAGE, r"(?m)^Usage: |^gnt-cluster: error: |no such option"),
)
# SafeEncode: \n, \t, \'r (carriage return), \xNN (control or non-ASCII;
# Ganeti 3 writes code points via backslashreplace, 2.x writes UTF-8 bytes).
_ESCAPE = (r"\\(?:n|t|'r|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})"
           r"|(?:\\x[0-9a-fA-F]{2})+")
_BLANK = dict.fromkeys(list(range(0x20)) + list(range(0x7f, 0xa0)), " ")


class _Regexes:
    """The patterns above, compiled once, on first use: the agent's cached
    path needs this module's data classes but not `re` (start-up time)."""

    compiled = None

    def __init__(self):
        import re
        self.line = re.compile(_LINE, re.X).fullmatch
        self.finding_like = re.compile(_FINDING_LIKE).search
        self.harmless = re.compile(_HARMLESS_STDERR).match
        self.job = re.compile(_JOB_STDERR).match
        self.failures = [(kind, re.compile(p).search) for kind, p in _FAILURES]
        self.escape = re.compile(_ESCAPE).sub


def _regexes():
    if _Regexes.compiled is None:
        _Regexes.compiled = _Regexes()
    return _Regexes.compiled


def _unescape(match):
    text = match.group()
    if text[1] == "x":
        data = bytes(int(text[i + 2:i + 4], 16) for i in range(0, len(text), 4))
        out = ""
        while data:  # UTF-8 where it is valid, a byte not in UTF-8 as latin-1
            try:
                return out + data.decode("utf-8")
            except UnicodeDecodeError as e:
                out += data[:e.start].decode("utf-8") + chr(data[e.start])
                data = data[e.start + 1:]
        return out
    if text[1] in "uU":
        code = int(text[2:], 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return "\ufffd"
        return chr(code)
    return " "


def decode(text):
    """Undo Ganeti's SafeEncode for display: escapes -> text, breaks -> ' '."""
    if "\\" not in text:
        return text
    return " ".join(_regexes().escape(_unescape, text).translate(_BLANK).split())


class Finding:
    """One ERROR or WARNING line of verify.

    `code` is None without --error-codes, `item_type`/`item` None when the
    line names none (item `None`, `cluster : msg`, or an untyped warning).
    """

    __slots__ = ("severity", "code", "item_type", "item", "message", "section")

    def __init__(self, severity, code, item_type, item, message, section=None):
        self.severity = severity
        self.code = code
        self.item_type = item_type
        self.item = item
        self.message = message
        self.section = section

    def to_list(self):
        return [self.severity, self.code, self.item_type, self.item,
                self.message, self.section]

    def __eq__(self, other):
        return isinstance(other, Finding) and self.to_list() == other.to_list()

    def __repr__(self):
        return "Finding(%r)" % (self.to_list(),)


class Report:
    """Everything one verify run said, as plain data.

    findings: ERROR/WARNING Findings in output order; notes: NOTICE, INFO and
    other informational bullets; sections: section titles; jobs: submitted
    job ids; failed_jobs: N of "N job(s) failed"; job_errors: what stderr
    says about each failed/lost job (its line and the lines after it);
    unrecognised: stdout lines of no known shape; stderr: the other
    non-harmless stderr lines; failure: (kind, text) when verify could not
    run; waited_for_locks: stderr said a job waited.
    Beyond the limits above, `more` counts the findings not stored by
    "SEVERITY:CODE" (CODE empty without one), `dropped` the other lines
    not stored by list name.
    """

    __slots__ = ("findings", "notes", "sections", "jobs", "failed_jobs",
                 "job_errors", "unrecognised", "stderr", "failure",
                 "waited_for_locks", "exit_code", "more", "dropped")

    def __init__(self, exit_code=None):
        self.findings = []
        self.notes = []
        self.sections = []
        self.jobs = []
        self.failed_jobs = 0
        self.job_errors = []
        self.unrecognised = []
        self.stderr = []
        self.failure = None
        self.waited_for_locks = False
        self.exit_code = exit_code
        self.more = {}
        self.dropped = {}

    def add(self, key, value):
        """Append to list `key` within the limits; the value, or None."""
        items = getattr(self, key)
        if len(items) < (MAX_FINDINGS if key == "findings" else MAX_LINES):
            items.append(value)
            return value
        if key == "findings":
            tally, key = self.more, _tally(value)
        else:
            tally = self.dropped
        tally[key] = tally.get(key, 0) + 1
        return None

    def to_data(self, budget=MAX_BYTES):
        """A JSON-ready dict (for the cache) of at most about `budget`
        bytes as JSON: the lists are kept in the order of what tells most
        (stderr, job errors, findings, notes, the rest) until the budget is
        spent; what does not fit is counted in `more` and `dropped`.
        A finding names its section by its index in `sections`.
        """
        import json
        left = [budget - 65536]  # the job ids, scalars and counters

        def take(value):
            cost = len(json.dumps(value)) + 2
            if cost > left[0]:
                return False
            left[0] -= cost
            return True

        data = {key: getattr(self, key) for key in (
            "jobs", "failed_jobs", "waited_for_locks", "exit_code")}
        data["failure"] = list(self.failure) if self.failure else None
        take(data["failure"])
        more, dropped = dict(self.more), dict(self.dropped)
        kept = {}
        for key in ("stderr", "job_errors"):
            kept[key] = self._kept(key, getattr(self, key), take, dropped)
        sections, index, findings = [], {}, []
        for f in self.findings:
            row = f.to_list()
            if f.section is not None and f.section not in index:
                if take(f.section):
                    index[f.section] = len(sections)
                    sections.append(f.section)
            row[5] = index.get(f.section)
            if take(row):
                findings.append(row)
            else:
                tally = _tally(f)
                more[tally] = more.get(tally, 0) + 1
        for title in self.sections:
            if title not in index and take(title):
                index[title] = len(sections)
                sections.append(title)
        for key in ("notes", "unrecognised"):
            kept[key] = self._kept(key, getattr(self, key), take, dropped)
        if len(sections) < len(self.sections):
            dropped["sections"] = dropped.get("sections", 0) + (
                len(self.sections) - len(sections))
        data.update(kept, findings=findings, sections=sections, more=more,
                    dropped=dropped)
        return data

    @staticmethod
    def _kept(key, items, take, dropped):
        kept = []
        for item in items:
            if not take(item):
                dropped[key] = dropped.get(key, 0) + len(items) - len(kept)
                break
            kept.append(item)
        return kept

    @classmethod
    def from_data(cls, data):
        """The inverse of to_data(); ValueError when `data` is not what
        to_data() makes (a cache of another shape must not be misread)."""
        if not isinstance(data, dict):
            raise ValueError("not a dict")
        report = cls(_optional(data.get("exit_code"), int))
        for key in ("notes", "sections", "job_errors", "unrecognised", "stderr"):
            setattr(report, key, _list(data.get(key, []), str))
        report.jobs = _list(data.get("jobs", []), int)
        report.failed_jobs = _typed(data.get("failed_jobs", 0), int)
        report.waited_for_locks = _typed(data.get("waited_for_locks", False), bool)
        for key in ("more", "dropped"):
            tally = _typed(data.get(key, {}), dict)
            _list(list(tally.values()), int)
            setattr(report, key, tally)
        failure = _optional(data.get("failure"), list)
        if failure is not None:
            report.failure = tuple(_list(failure, str))
            if len(failure) != 2:
                raise ValueError("failure is not [kind, text]")
        for row in _list(data.get("findings", []), list):
            if len(row) != 6:
                raise ValueError("a finding is not 6 fields")
            severity, code, item_type, item, message, section = row
            section = _optional(section, int)
            report.findings.append(Finding(
                _typed(severity, str), _optional(code, str),
                _optional(item_type, str), _optional(item, str),
                _typed(message, str),
                None if section is None else report.sections[section]
                if 0 <= section < len(report.sections) else None))
        return report


def _tally(finding):
    """'SEVERITY:CODE' to count a finding not stored (CODE empty when it is
    not a known one: the counters stay few)."""
    return "%s:%s" % (finding.severity,
                      finding.code if finding.code in CODES else "")


def _typed(value, kind):
    if type(value) is not kind:  # bool is not an int here
        raise ValueError("%r is not %s" % (type(value).__name__, kind.__name__))
    return value


def _optional(value, kind):
    return None if value is None else _typed(value, kind)


def _list(value, kind):
    for item in _typed(value, list):
        _typed(item, kind)
    return value


def parse(stdout, stderr="", exit_code=None):
    """Parse one run's stdout, stderr and exit code into a Report."""
    report = Report(exit_code)
    _parse_stdout(report, stdout)
    _parse_stderr(report, stderr)
    return report


def _parse_stdout(report, stdout):
    add = report.add
    section = None
    last = None  # the finding a hook-output line continues
    rx = _regexes()
    match, finding_like = rx.line, rx.finding_like
    for line in stdout.split("\n"):
        line = line[:LONG_LINE].rstrip()
        if not line:
            continue
        group = match(line).group
        severity = group("sev")
        if severity is not None:
            code = group("code")
            if code is not None:
                item = group("citem")
                last = Finding(severity, code, group("ctype") or None,
                               None if item in ("None", "") else _cut(item),
                               _cut(group("cmsg")), section)
            elif group("ptype") is not None:
                last = Finding(severity, None, group("ptype"),
                               _cut(group("pitem") or "") or None,
                               _cut(group("pmsg")), section)
            else:
                last = Finding(severity, None, None, None,
                               _cut(group("smsg")), section)
            last = add("findings", last)
        elif (group("cont") is not None and last is not None
              and not (group("cont").startswith("- ")
                       and finding_like(group("cont")))):
            if len(last.message) < MAX_LINE:
                last.message = "%s %s" % (last.message, _cut(group("cont")))
        elif group("ntag") is not None:
            add("notes", "%s: %s" % (group("ntag"), _cut(group("nmsg"))))
            last = None
        elif group("bullet") is not None:
            text = _cut(group("bullet"))
            if finding_like(text):
                last = _unrecognised(report, text, section)
            else:
                add("notes", text)
                last = None
        elif group("section") is not None:
            section = _cut(group("section"))
            add("sections", section)
            last = None
        elif group("jobs") is not None:
            for job in group("jobs").split(","):
                add("jobs", int(job))
            last = None
        elif group("failed") is not None:
            report.failed_jobs += int(group("failed"))
            last = None
        elif group("waiting") is not None:
            last = None
        else:  # unknown shape, hook output with no finding before it, or
            text = group("other") or group("cont")  # an indented "- ERROR"
            if text and text.startswith("- "):
                text = text[2:]
            last = _unrecognised(report, text, section) if text else None


def _cut(text):
    """decode() at most MAX_LINE characters of a field."""
    return decode(text[:MAX_LINE])


def _unrecognised(report, line, section):
    """Keep an unknown line; one that looks like a problem is a finding."""
    text = _cut(line.strip())
    m = _regexes().finding_like(text)
    if m is None:
        report.add("unrecognised", text)
        return None
    severity = WARNING if m.group(1) == WARNING else ERROR
    return report.add("findings", Finding(severity, None, None, None, text,
                                          section))


def _parse_stderr(report, stderr):
    """A job's error (Ganeti's FormatError text, over several lines) runs
    until the next recognised line; the other lines tell why verify could
    not run, if they match one of the _FAILURES."""
    rx = _regexes()
    lines, job = [], None
    for line in stderr.split("\n"):
        line = line[:MAX_LINE].strip()
        if not line:
            continue
        if rx.harmless(line):
            report.waited_for_locks = True
            job = None
        elif rx.job(line):
            job = [decode(line)]
            report.add("job_errors", job)
        elif job is not None:
            if sum(len(part) for part in job) < MAX_LINE:
                job.append(decode(line))
        else:
            lines.append(decode(line))
    report.job_errors = [" ".join(job) for job in report.job_errors]
    text = "\n".join(lines)
    for line in lines:
        report.add("stderr", line)
    for kind, search in rx.failures:
        m = search(text)
        if m is not None:
            report.failure = (kind, _failure_text(kind, lines, text, m))
            return
    if report.exit_code == 2 and not report.findings:
        report.failure = (USAGE, lines[-1] if lines else "exit code 2")


def _failure_text(kind, lines, text, match):
    """The stderr line that tells most about the failure."""
    if kind in (CRASHED, USAGE):  # the exception, or the error after Usage:
        return lines[-1]
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    if kind == NO_DAEMON and end >= 0:  # "Cannot communicate ..." + "Is it
        end = text.find("\n", end + 1)  # running ...?", "... Error:" + why
    return (text[start:] if end < 0 else text[start:end]).replace("\n", " ")
