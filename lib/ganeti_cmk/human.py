"""A readable table of Results for people at a terminal (`--human`, status)."""

import shutil

from .localcheck import sanitize

COLOURS = {0: "\033[32m", 1: "\033[33m", 2: "\033[31m", 3: "\033[35m"}
RESET = "\033[0m"


def render_human(results, colour=False, labels=None):
    """State, service and summary aligned; details indented below; the
    host labels, if any, on a last line."""
    if not results:
        return ""
    width = max(len(sanitize(r.service)) for r in results)
    columns = shutil.get_terminal_size((100, 24)).columns
    lines = []
    for r in results:
        state = "%-7s" % r.state.name
        if colour:
            state = COLOURS[r.state] + state + RESET
        service = sanitize(r.service)
        if r.host:
            service = "%s [%s]" % (service, sanitize(r.host))
        lines.append("%s  %-*s  %s" % (state, width, service, sanitize(r.summary)))
        for detail in r.details:
            lines.append(" " * 11 + sanitize(detail)[:max(columns - 11, 40)])
        if r.metrics:
            lines.append(" " * 11 + "metrics: " + " ".join(m.render() for m in r.metrics))
    if labels:
        lines.append("host labels: " + ", ".join(
            "%s=%s" % (sanitize(k), sanitize(v)) for k, v in sorted(labels.items())))
    return "\n".join(lines) + "\n"
