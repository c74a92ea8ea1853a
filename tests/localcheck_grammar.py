"""A strict validator of Checkmk local-check output, for the tests.

Stricter than Checkmk's own parser (2.2 to 2.5): what passes here is read
the same way by every one of them.  See ../../shared/DESIGN.md for the facts.
"""

import re

LINE = re.compile(
    r'(?P<state>[0123P]) '
    r'(?P<service>"[^"\'\s][^"\']*[^"\'\s]"|"[^"\'\s]"|[^ "\']+) '
    r'(?P<perf>-|[^ ]+)'
    r'(?: (?P<text>\S.*))?\Z')
METRIC = re.compile(
    r'(?P<name>[A-Za-z0-9_]+)=(?P<value>-?\d+(?:\.\d+)?)'
    r'(?:;(?P<warn>-?\d+(?:\.\d+)?)?(?:;(?P<crit>-?\d+(?:\.\d+)?)?'
    r'(?:;(?P<min>-?\d+(?:\.\d+)?)?(?:;(?P<max>-?\d+(?:\.\d+)?)?)?)?)?)?\Z')
PIGGYBACK = re.compile(r'<<<<(?:[A-Za-z0-9][A-Za-z0-9._-]*)?>>>>\Z')
SECTION = "<<<local:sep(0)>>>"
LABELS = "<<<labels:sep(0)>>>"


def parse_line(line):
    """Check one local-check line; return its fields as a dict."""
    assert "\t" not in line and "\r" not in line and "\n" not in line, repr(line)
    assert all(ch >= " " and ch != "\x7f" for ch in line), repr(line)
    assert line == line.strip(), "leading/trailing blanks: %r" % line
    m = LINE.match(line)
    assert m, "not a local-check line: %r" % line
    assert "  " not in line[:m.end("perf")], "double space in %r" % line
    assert m.group("text"), "no summary text: %r" % line
    service = m.group("service").strip('"')
    assert service.strip() == service and "  " not in service, repr(line)
    metrics = {}
    if m.group("perf") != "-":
        for entry in m.group("perf").split("|"):
            mm = METRIC.match(entry)
            assert mm, "bad perfdata entry %r in %r" % (entry, line)
            assert mm.group("name") not in metrics, "duplicate metric %r" % entry
            metrics[mm.group("name")] = float(mm.group("value"))
    summary, _, details = m.group("text").partition("\\n")
    assert summary.strip(), "empty summary: %r" % line
    return {"state": m.group("state"), "service": service, "metrics": metrics,
            "summary": summary, "details": details.split("\\n") if details else []}


def parse_labels(line):
    """Check one line of Checkmk's `labels` section: a JSON object of
    non-empty single-line strings (as cmk/plugins/collection/agent_based/
    labels.py reads it); return it."""
    import json
    labels = json.loads(line)
    assert isinstance(labels, dict) and labels, "labels must be a JSON object: %r" % line
    for key, value in labels.items():
        for text in (key, value):
            assert isinstance(text, str) and text.strip() == text and text, repr(line)
            assert all(ch >= " " and ch != "\x7f" for ch in text), repr(line)
    assert ":" not in "".join(labels), "a colon in a label key: %r" % line
    return labels


def labels_of(text):
    """The host labels of a valid output: {host: {key: value}}."""
    return parse_output(text, with_labels=True)[1]


def parse_output(text, with_labels=False):
    """Validate a whole local check output; return {host: {service: fields}}
    (with `with_labels` also {host: {label: value}}).

    Host None is the monitored host itself; piggyback blocks must be closed
    and followed by the local section header again.  A host's labels are
    one `<<<labels:sep(0)>>>` section with one JSON object line, followed
    by the local section header again.
    """
    assert text == "" or text.endswith("\n"), "output must end with a newline"
    hosts = {None: {}}
    labels = {}
    host = None
    lines = text.split("\n")[:-1] if text else []
    expect_section = False
    in_labels = False
    for i, line in enumerate(lines):
        if line == LABELS:
            assert not expect_section and not in_labels, "misplaced %r" % line
            assert host not in labels, "a second labels section at line %d" % i
            in_labels = True
            continue
        if in_labels:
            assert host not in labels, "more than one labels line at line %d" % i
            labels[host] = parse_labels(line)
            expect_section, in_labels = True, False
            continue
        if PIGGYBACK.match(line):
            name = line[4:-4] or None
            assert (name is None) == (host is not None), "unbalanced %r" % line
            host = name
            hosts.setdefault(host, {})
            expect_section = True
            continue
        if line == SECTION:
            assert expect_section, "stray section header at line %d" % i
            expect_section = False
            continue
        assert not expect_section, "piggyback marker without section header"
        fields = parse_line(line)
        assert fields["service"] not in hosts[host], \
            "duplicate service %r" % fields["service"]
        hosts[host][fields["service"]] = fields
    assert host is None, "piggyback block not closed"
    assert not in_labels, "labels section without its line"
    assert not expect_section, "output ends without <<<local:sep(0)>>>"
    return (hosts, labels) if with_labels else hosts


def assert_valid_output(text):
    """Fail unless `text` is valid local-check output; return parse_output()."""
    return parse_output(text)
