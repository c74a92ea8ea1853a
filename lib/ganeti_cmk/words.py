"""Words for summaries: counts, durations, short lists, levels, fitting.

Shared by every check so that every summary reads alike: `plural(2,
"error")`, `format_duration(5400)` ("1.5 h"), `format_bytes(1536)`
("1.5 KiB"), `some(names, 10)` ("a, b, 3 more"), `levels(value, warn,
crit)` with Checkmk's "(warn/crit at 5/10)" wording, and `fit()`, which
shortens the lists in a summary until it fits without ever cutting the
counts or the remedy.  A leaf: imports nothing.
"""

# What a summary may take, leaving room for the runner's config note
# (" (config problem, see details)") within localcheck.MAX_TEXT.
SUMMARY_MAX = 960


def plural(count, one, many=None):
    """'1 error', '2 errors'; `many` for irregular words ('2 processes')."""
    return "%d %s" % (count, one if count == 1 else many or one + "s")


def format_duration(seconds):
    """Seconds as a short human duration: '45 s', '12 min', '2 h', '3 d'."""
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            value = seconds / size
            return ("%.0f %s" if value >= 10 or value == int(value)
                    else "%.1f %s") % (value, unit)
    return "%.0f s" % seconds


def format_bytes(size):
    """Bytes as a short binary size: '512 B', '4 KiB', '1.5 GiB'.

    The unit is chosen for the rounded value, so an amount just under a
    unit reads '1.0 MiB', not '1024 KiB'.
    """
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1023.5:
            break
        value, unit = value / 1024, bigger
    if unit == "B" or abs(value) >= 9.95 or value == int(value):
        return "%.0f %s" % (value, unit)
    return "%.1f %s" % (value, unit)


def ago(age):
    """'5.2 min ago'; an age below zero (a clock stepped back) as 'now'."""
    return "%s ago" % format_duration(max(0.0, age))


def some(items, limit):
    """'a, b, c, 4 more': at most `limit` of `items` (None: all)."""
    items = list(items)
    if limit is None or len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit] + ["%d more" % (len(items) - limit)])


def levels(value, warn, crit, render=str):
    """(state number, text) of `value` against upper levels.

    A value equal to a level breaches it (as Checkmk does); None means no
    such level.  The text is '' when OK, else ' (warn/crit at W/C)'.
    """
    state = 0
    if crit is not None and value >= crit:
        state = 2
    elif warn is not None and value >= warn:
        state = 1
    if state == 0:
        return 0, ""
    return state, " (warn/crit at %s/%s)" % (
        "-" if warn is None else render(warn), "-" if crit is None else render(crit))


def fit(build, limits=(10, 3, 1, 0), limit=SUMMARY_MAX):
    """The first of build(n) for n in `limits` that is at most `limit`
    characters, else the last one cut (with '...').

    `build(n)` writes the summary naming at most n items per list; the
    counts and the remedy are its fixed part, so fewer names must make it
    fit.
    """
    text = ""
    for n in limits:
        text = build(n)
        if len(text) <= limit:
            return text
    return text[:limit - 3].rstrip() + "..."
