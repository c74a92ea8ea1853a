"""Output model (State, Metric, Result) and the Checkmk local-check renderer.

Everything that reaches stdout goes through `render_local`, which turns each
Result into exactly one valid local-check line.  Text is treated as untrusted:
control characters (newlines, tabs, carriage returns, ...) never survive, so
no input can start a second line or fake a service.
"""

__all__ = ["State", "OK", "WARN", "CRIT", "UNKNOWN", "Metric", "Result",
           "Problem", "NotApplicable", "worst", "sanitize", "render_local",
           "valid_host", "render_nagios", "format_number", "render_labels"]


class State(int):
    """A Checkmk state (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN).

    Ordered as Checkmk orders "worst of": OK < WARN < UNKNOWN < CRIT, so
    `max(states)` and `worst()` give CRIT over UNKNOWN, unlike the numbers.
    """

    _NAMES = ("OK", "WARN", "CRIT", "UNKNOWN")
    _RANK = (0, 1, 3, 2)

    def __new__(cls, value):
        value = int(value)
        if value not in (0, 1, 2, 3):
            raise ValueError("state must be 0, 1, 2 or 3, not %r" % value)
        return super().__new__(cls, value)

    @property
    def name(self):
        return self._NAMES[self]

    @property
    def rank(self):
        return self._RANK[self]

    def __lt__(self, other):
        return self.rank < State(other).rank

    def __le__(self, other):
        return self.rank <= State(other).rank

    def __gt__(self, other):
        return self.rank > State(other).rank

    def __ge__(self, other):
        return self.rank >= State(other).rank

    def __repr__(self):
        return "State.%s" % self.name

    __str__ = __repr__

    @classmethod
    def from_name(cls, text):
        """'ok', 'warn', 'crit', 'unknown' (any case; 'critical', 'warning' too)."""
        key = text.strip().upper()
        key = {"WARNING": "WARN", "CRITICAL": "CRIT"}.get(key, key)
        return cls(cls._NAMES.index(key))


OK, WARN, CRIT, UNKNOWN = State(0), State(1), State(2), State(3)


def worst(states, default=OK):
    """The worst of `states` in Checkmk's order (CRIT beats UNKNOWN)."""
    return max((State(s) for s in states), key=lambda s: s.rank, default=default)


class Problem(tuple):
    """Something a check reports: a State and what to say; a (state, text)
    pair, so it unpacks and sorts like one."""

    __slots__ = ()

    def __new__(cls, state, text):
        return tuple.__new__(cls, (State(state), text))

    @property
    def state(self):
        return self[0]

    @property
    def text(self):
        return self[1]

    def __repr__(self):
        return "Problem(%s, %r)" % (self.state.name, self.text)


class NotApplicable(Exception):
    """Raised by a check that has nothing to monitor on this host.

    The runner prints nothing on stdout (the service lives elsewhere) and
    the reason on stderr, which the agent discards.
    """


class CannotTell(Exception):
    """Raised by a check that cannot decide (what it needs did not answer
    in time): its service is one UNKNOWN line with this text, which says
    what failed and what to do."""


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_METRIC_CHARS = _ALNUM | {"_"}
_HOST_CHARS = _ALNUM | set("._-")


class Metric:
    """One perfdata entry: name=value;warn;crit;min;max."""

    __slots__ = ("name", "value", "warn", "crit", "min", "max")

    def __init__(self, name, value, warn=None, crit=None, min=None, max=None):
        if not name or not set(name) <= _METRIC_CHARS:
            raise ValueError("invalid metric name %r" % name)
        self.name = name
        self.value = value
        self.warn = warn
        self.crit = crit
        self.min = min
        self.max = max

    def render(self):
        fields = [self.value, self.warn, self.crit, self.min, self.max]
        while fields[-1] is None:
            fields.pop()
        return "%s=%s" % (self.name, ";".join(
            "" if f is None else format_number(f) for f in fields))

    def __repr__(self):
        return "Metric(%s)" % self.render()


class Result:
    """One Checkmk service: state, name, summary, details and metrics.

    `host` set means the line is piggybacked to that host.  `cached_at`
    set (a time.time()) means the result was not made by this run but
    read from a cache, made then: `status` and `--human` say so.
    """

    __slots__ = ("state", "service", "summary", "details", "metrics", "host",
                 "cached_at")

    def __init__(self, state, service, summary, details=(), metrics=(),
                 host=None, cached_at=None):
        self.state = State(state)
        self.service = service
        self.summary = summary
        self.details = list(details)
        self.metrics = list(metrics)
        self.host = host
        self.cached_at = cached_at

    def __repr__(self):
        return "Result(%s, %r, %r)" % (self.state.name, self.service,
                                       self.summary)


def format_number(value):
    """A plain decimal number as Checkmk's perfdata parser wants it."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("perfdata value must be finite, not %r" % value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = "%.6f" % value
    return text.rstrip("0").rstrip(".") or "0"


# C0 and C1 controls, DEL and Unicode line/paragraph separators become a
# space; a backslash becomes "/".  (str.translate: no regex import needed.)
_SAFE = dict.fromkeys(list(range(0x20)) + list(range(0x7f, 0xa0)) + [0x2028, 0x2029], " ")
_SAFE[ord("\\")] = "/"
MAX_TEXT = 1000
MAX_SERVICE = 100
MAX_DETAILS = 200


def sanitize(text, limit=MAX_TEXT):
    """Untrusted text made safe for one output line.

    Control characters become spaces, runs of blanks one space, backslashes
    become '/' (Checkmk would read a literal backslash-n as a line break),
    and the text is cut to `limit` characters with an ellipsis.
    """
    text = str(text)
    if not text.isascii():  # lone surrogates (undecodable names) crash print()
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    text = " ".join(text.translate(_SAFE).split())
    if len(text) > limit:
        text = text[:limit - 3].rstrip() + "..."
    return text


def _service_name(name):
    name = sanitize(name, MAX_SERVICE).replace('"', "").replace("'", "")
    name = " ".join(name.split()) or "Unnamed service"
    return '"%s"' % name if " " in name else name


def _text(result):
    summary = sanitize(result.summary) or result.state.name
    details = [sanitize(d) for d in result.details]
    details = [d for d in details if d]
    if len(details) > MAX_DETAILS:
        more = len(details) - MAX_DETAILS + 1
        details = details[:MAX_DETAILS - 1] + ["... and %d more" % more]
    return "\\n".join([summary] + details)


def _perfdata(result):
    return "|".join(m.render() for m in result.metrics) or "-"


def render_line(result):
    """One local-check line for one Result (no newline)."""
    return "%d %s %s %s" % (result.state, _service_name(result.service),
                            _perfdata(result), _text(result))


def valid_host(name):
    """A host name Checkmk accepts in a piggyback marker."""
    return bool(name) and name[0] in _ALNUM and set(name) <= _HOST_CHARS


LABELS_SECTION = "<<<labels:sep(0)>>>"
LOCAL_SECTION = "<<<local:sep(0)>>>"
MAX_LABEL = 250


def render_labels(labels):
    """Checkmk host labels as lines: the `labels` section with one JSON
    object of {key: value} strings, then the local section again.

    Checkmk's own `labels` section (any agent output may carry it) reads
    each line as a JSON object and makes every item a host label at service
    discovery.  Keys and values are sanitized text; empty ones are left out.
    """
    from .jsonc import dumps_strings
    clean = {}
    for key, value in labels.items():
        key, value = sanitize(key, MAX_LABEL), sanitize(value, MAX_LABEL)
        if key and value:
            clean[key] = value
    if not clean:
        return []
    return [LABELS_SECTION, dumps_strings(clean), LOCAL_SECTION]


def render_local(results, labels=None):
    """The lines of a local check's output: its own lines, then its host
    labels (if any), then piggyback blocks.

    After a labels section or a piggyback block `<<<local:sep(0)>>>` is
    printed again, or every later local check's lines would be lost.
    """
    own = [render_line(r) for r in results if r.host is None]
    lines = list(own)
    if labels:
        lines += render_labels(labels)
    by_host = {}
    for r in results:
        if r.host is not None and valid_host(r.host):
            by_host.setdefault(r.host.lower(), []).append(render_line(r))
    for host in sorted(by_host):
        lines += ["<<<<%s>>>>" % host, LOCAL_SECTION] + by_host[host]
        lines += ["<<<<>>>>", LOCAL_SECTION]
    return lines


def render_nagios(results):
    """One Nagios plugin line for all results, and the exit code."""
    own = [r for r in results if r.host is None] or list(results)
    state = worst(r.state for r in own)
    label = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[state]
    summary = "; ".join(
        "%s: %s" % (sanitize(r.service), sanitize(r.summary)) if len(own) > 1
        else sanitize(r.summary) for r in own)
    perf = " ".join(m.render() for r in own for m in r.metrics)
    line = "%s - %s" % (label, summary)
    if perf:
        line += " | " + perf
    return line, int(state)
