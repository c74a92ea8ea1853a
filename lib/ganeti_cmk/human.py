"""A readable table of Results for people at a terminal (`--human`, status)."""

import shutil
import time

from .localcheck import sanitize
from .words import ago

COLOURS = {0: "\033[32m", 1: "\033[33m", 2: "\033[31m", 3: "\033[35m"}
RESET = "\033[0m"
INDENT = " " * 11
MIN_WIDTH = 40  # detail text per line, however narrow the terminal


def render_human(results, colour=False, now=None, labels=None):
    """State, service and summary aligned; details indented below; the
    host labels, if any, on a last line.

    On a terminal (`colour`) long details are wrapped to its width, every
    word kept; elsewhere (a pipe, a file) each stays on one line.
    """
    if not results:
        return ""
    now = time.time() if now is None else now
    width = max(len(sanitize(r.service)) for r in results)
    wrap = None
    if colour:
        columns = shutil.get_terminal_size((100, 24)).columns
        wrap = max(columns - len(INDENT), MIN_WIDTH)
    lines = []
    for r in results:
        state = "%-7s" % r.state.name
        if colour:
            state = COLOURS[r.state] + state + RESET
        service = sanitize(r.service)
        if r.host:
            service = "%s [%s]" % (service, sanitize(r.host))
        lines.append("%s  %-*s  %s" % (state, width, service, sanitize(r.summary)))
        details = list(r.details)
        if r.cached_at is not None:
            details.insert(0, "(a cached result, made %s)" % ago(now - r.cached_at))
        for detail in details:
            lines.extend(INDENT + line for line in _wrapped(sanitize(detail), wrap))
        if r.metrics:
            lines.append(INDENT + "metrics: " + " ".join(m.render() for m in r.metrics))
    if labels:
        lines.append("host labels: " + ", ".join(
            "%s=%s" % (sanitize(k), sanitize(v)) for k, v in sorted(labels.items())))
    return "\n".join(lines) + "\n"


def _wrapped(text, width):
    """`text` in lines of at most `width` characters (continuation lines
    indented by two), nothing dropped; one line when width is None."""
    if width is None or len(text) <= width:
        return [text]
    import textwrap  # only on a terminal with long details
    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)


def render_not_applicable(service, reason):
    """The line for a check that has nothing to do here."""
    return "-        %s: not monitored here: %s\n" % (sanitize(service), sanitize(reason))
