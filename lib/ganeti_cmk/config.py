"""The configuration: `$MK_CONFDIR/ganeti_cmk.cfg`, INI, defaults in code.

A missing file means defaults.  A bad value never crashes: the getter returns
the default and records a problem ("[kvm_binary] crit_after: 'x' is not a
duration, using 7d"), which the runner shows in the check's output.  The
shared sections' defaults are here; each check brings its own section's
(`Check.defaults`).  A leaf module: it imports nothing of the project.
"""

import os

# The keys every check shares, with their defaults (as written in the file).
# The README documents each; `ganeti_cmk.cfg.example` shows each.
DEFAULTS = {
    "general": {
        "deadline": "30s",
    },
    "paths": {
        "dev_kvm": "/dev/kvm",
        "proc": "/proc",
        "sys": "/sys",
        "ganeti_data_dir": "/var/lib/ganeti",
        "ganeti_run_dir": "/var/run/ganeti",
        "gnt_cluster": "/usr/sbin/gnt-cluster",
        "gnt_job": "/usr/sbin/gnt-job",
        "systemd_run": "/usr/bin/systemd-run",
        "systemd_system_dir": "/run/systemd/system",
        "state_dir": "$MK_VARDIR/ganeti_cmk",
    },
    "ganeti": {
        "node_name": "",
    },
}
MAX_CONFIG = 1 << 20  # bytes: a config file is a few kB

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TRUE_WORDS = {"1", "yes", "true", "on"}
FALSE_WORDS = {"0", "no", "false", "off"}


def confdir():
    return os.environ.get("MK_CONFDIR") or "/etc/check_mk"


def vardir():
    return os.environ.get("MK_VARDIR") or "/var/lib/check_mk_agent"


def default_path():
    return os.path.join(confdir(), "ganeti_cmk.cfg")


MAX_DURATION = 10 * 365 * 86400  # longer is a typo, and overflows timers


def parse_duration(text):
    """'90', '90s', '10m', '2h', '7d', '1w' or '1h30m' -> seconds (float).

    Plain digits and units only: no sign, exponent, nan or inf; at most ten
    years.
    """
    text = text.strip().lower().replace(" ", "")
    total, number = 0.0, ""
    plain = text.replace(".", "", 1).isdigit()  # a bare number: seconds
    for char in text + ("s" if plain else ""):
        if char.isdigit() or char == ".":
            number += char
        elif char in DURATION_UNITS and number and number.count(".") <= 1 \
                and number != ".":
            total += float(number) * DURATION_UNITS[char]
            number = ""
        else:
            raise ValueError(text)
    if not text or number or total > MAX_DURATION:
        raise ValueError(text)
    return total


COMMENT_PREFIXES = ("#", ";")


def _inline_comment(line):
    """Where an inline comment starts (None: nowhere), found as configparser
    finds it: prefixes are searched in rounds, one occurrence each, and the
    first round with one after white space decides."""
    found = {prefix: -1 for prefix in COMMENT_PREFIXES}
    while found:
        start, searching = None, {}
        for prefix, index in found.items():
            index = line.find(prefix, index + 1)
            if index < 0:
                continue
            searching[prefix] = index
            if index == 0 or line[index - 1].isspace():
                start = index if start is None else min(start, index)
        if start is not None:
            return start
        found = searching
    return None


def parse_ini(text):
    """{section: {key: value}} from INI text, read as configparser reads it.

    The dialect of ConfigParser(interpolation=None,
    inline_comment_prefixes=("#", ";")): `key = value` or `key: value`,
    keys lower-cased, values stripped, indented lines continue a value,
    whole-line and (after a blank) inline comments, duplicates are errors;
    [DEFAULT] is a section like any other; a section name ends at the
    line's last "]", as in Python 3.11 and later.  Our own reader because importing
    configparser (and with it re and enum) costs every check almost half of
    Python's start-up time, every minute; tests/test_config.py holds it to
    configparser's results.  Raises ValueError naming the line.
    """
    sections, section, key, key_indent, blanks = {}, None, None, 0, []
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.strip().startswith(COMMENT_PREFIXES):
            continue
        value = raw[:_inline_comment(raw)].strip()
        if not value:
            if key is not None:
                blanks.append("")
            continue
        indent = len(raw) - len(raw.lstrip())
        if section is not None and key is not None and indent > key_indent:
            section[key] += "\n".join([""] + blanks + [value])
            blanks = []
            continue
        blanks = []
        if value.startswith("[") and value.find("]", 2) > 0:
            name = value[1:value.rindex("]")]
            if name in sections:
                raise ValueError("line %d: section [%s] again" % (number, name))
            section = sections[name] = {}
            key = None
            continue
        if section is None:
            raise ValueError("line %d: no [section] before it" % number)
        cut = min((i for i in (value.find("="), value.find(":")) if i >= 0),
                  default=-1)
        key = value[:cut].strip().lower() if cut >= 0 else ""
        if not key:
            raise ValueError("line %d: not 'key = value'" % number)
        if key in section:
            raise ValueError("line %d: key %r again" % (number, key))
        section[key] = value[cut + 1:].strip()
        key_indent = indent
    return sections


class Config:
    """Typed, forgiving access to the INI file, with problems recorded.

    `defaults` are {section: {key: default}} of the keys the running check
    knows (DEFAULTS plus its own); `sections` names every section of the
    suite, so a section no check knows is reported as a typo.
    """

    def __init__(self, path=None, text=None, defaults=None, sections=None):
        self.path = path or default_path()
        self.defaults = DEFAULTS if defaults is None else defaults
        self.problems = []
        self._sections = {}
        self._checked = set()
        if text is None:
            text = self._read()
        if text is not None:
            self._parse(text)
        known = set(self.defaults) | set(sections or ())
        for name in sorted(set(self._sections) - known):
            self.problem("[%s]: unknown section, ignored" % name)

    def _read(self):
        """The file's text, None when there is none or it is refused.

        Read as every file the checks did not write: a link only if root
        owns it, never a FIFO or device, never more than MAX_CONFIG bytes,
        owned by root (or the user the check runs as).
        """
        from .safefile import describe, read_file  # safefile imports no project module
        try:
            data = read_file(self.path, MAX_CONFIG, follow_trusted_links=True)
        except FileNotFoundError:
            return None
        except OSError as e:
            self.problems.append("cannot read %s, using defaults" % describe(e))
            return None
        return data.decode("utf-8", "replace")

    def _parse(self, text):
        try:
            self._sections = parse_ini(text)
        except ValueError as e:
            self.problems.append("%s is not valid INI (%s), using defaults"
                                 % (self.path, e))

    def problem(self, text):
        """Record a config problem (shown in the check's output)."""
        if text not in self.problems:
            self.problems.append(text)

    def _raw(self, section, key):
        if section not in self._checked:
            self._checked.add(section)
            known = self.defaults.get(section, {})
            for unknown in sorted(set(self._sections.get(section, ())) - set(known)):
                self.problem("[%s] %s: unknown key, ignored" % (section, unknown))
        default = self.defaults[section][key]
        value = self._sections.get(section, {}).get(key)
        return default, value

    def _typed(self, section, key, convert, kind):
        default, value = self._raw(section, key)
        if value is not None:
            try:
                return convert(value)
            except ValueError:
                self.problem("[%s] %s: %r is not %s, using %s"
                              % (section, key, value, kind, default or "''"))
        return convert(default)

    def get_str(self, section, key):
        return self._typed(section, key, lambda v: v.strip(), "text")

    def get_path(self, section, key):
        """A path; $MK_VARDIR and $MK_CONFDIR are expanded."""
        def convert(value):
            value = value.strip().replace("$MK_VARDIR", vardir())
            value = value.replace("$MK_CONFDIR", confdir())
            if not value.startswith("/"):
                raise ValueError(value)
            return os.path.normpath(value)
        return self._typed(section, key, convert, "an absolute path")

    def get_number(self, section, key, minimum=None, integer=False):
        """A number (a whole one with `integer`), at least `minimum`."""
        def convert(value):
            number = int(value.strip()) if integer else float(value.strip())
            if number != number or number in (float("inf"), float("-inf")) \
                    or (minimum is not None and number < minimum):
                raise ValueError(value)
            return number
        kind = "a whole number" if integer else "a number"
        if minimum is not None:
            kind += " >= %s" % minimum
        return self._typed(section, key, convert, kind)

    def get_duration(self, section, key, minimum=0):
        def convert(value):
            seconds = parse_duration(value)
            if seconds < minimum:
                raise ValueError(value)
            return seconds
        return self._typed(section, key, convert,
                           "a duration (like 90s, 10m, 2h, 7d)")

    def get_bool(self, section, key):
        def convert(value):
            word = value.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError(value)
        return self._typed(section, key, convert, "yes or no")

    def get_choice(self, section, key, choices):
        """One of the words in `choices`."""
        def convert(value):
            word = value.strip().lower()
            if word not in choices:
                raise ValueError(value)
            return word
        return self._typed(section, key, convert, "one of " + ", ".join(choices))

    def get_list(self, section, key):
        """Whitespace- or comma-separated words."""
        return self._typed(section, key,
                           lambda v: v.replace(",", " ").split(), "a list")
