"""KSM: is kernel samepage merging in the state the operator expects, and
what does it save?

Probe: the files of /sys/kernel/mm/ksm (run, the pages_* counters,
full_scans and, on newer kernels, ksm_zero_pages and general_profit).
Evaluate: WARN when `run` is not what `[ksm] expect` says, with the command
that changes it; the memory saved is (pages_sharing + ksm_zero_pages) x
page size, the kernel's own formula.  Optionally WARN when general_profit
has stayed at or below zero for `[ksm] unprofitable_after` (kept in a small
state file, timed on the boot clock, so wall-clock jumps do not matter).
"""

import os

from .. import procfs, sysfs
from ..jsonc import loads
from ..localcheck import OK, UNKNOWN, WARN, Metric, Result, worst
from ..runner import Check, SharedSettings
from ..safefile import describe, read_file
from ..statefile import read, write_atomically
from ..words import format_duration

SERVICE = "KSM"
SECTION = "ksm"
KSM_DIR = ("kernel", "mm", "ksm")
COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
            "full_scans")
OPTIONAL = ("ksm_zero_pages", "general_profit")
RUN_WORDS = {0: "stopped", 1: "running", 2: "stopped and unmerged"}
EXPECTED_RUN = {"on": (1,), "off": (0, 2)}  # run values that meet [ksm] expect
STATE_FILE = "ksm.json"
STATE_MAX = 4096
GAP_MAX = 3600  # s without a look: the loss streak is not known to go on

DEFAULTS = {
    "expect": "on",
    "unprofitable_after": "0",
}


class Probe:
    """The KSM files as numbers: run, counters, optional ones (None when
    this kernel lacks them), the page size."""

    __slots__ = ("ksm_dir", "present", "run", "counters", "page_size", "errors")

    def __init__(self, ksm_dir, run=None, counters=None, page_size=4096):
        self.ksm_dir = ksm_dir
        self.present = True
        self.run = run
        self.counters = dict(counters or {})
        self.page_size = page_size
        self.errors = []

    def value(self, name):
        return self.counters.get(name)

    @property
    def saved_bytes(self):
        sharing = self.value("pages_sharing")
        if sharing is None:
            return None
        return (sharing + (self.value("ksm_zero_pages") or 0)) * self.page_size


def probe(sys_root):
    """Read /sys/kernel/mm/ksm; never raises OSError (errors are listed)."""
    ksm_dir = os.path.join(sys_root, *KSM_DIR)
    p = Probe(ksm_dir, page_size=os.sysconf("SC_PAGE_SIZE"))
    if not os.path.isdir(ksm_dir):
        p.present = False
        return p
    for name in ("run",) + COUNTERS + OPTIONAL:
        path = os.path.join(ksm_dir, name)
        try:
            text = sysfs.attribute(path)
        except OSError as e:
            p.errors.append(describe(e))
            continue
        if text is None:
            if name not in OPTIONAL:
                p.errors.append("%s: missing" % path)
            continue
        try:
            number = int(text)
        except ValueError:
            p.errors.append("%s: %r is not a number" % (path, text[:40]))
            continue
        if name == "run":
            p.run = number
        else:
            p.counters[name] = number
    return p


def size(nbytes):
    """Bytes as '1.5 GiB', '12 MiB', '0 B' (negative too)."""
    value = float(nbytes)
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                         ("KiB", 1 << 10)):
        if abs(value) >= factor:
            value /= factor
            return ("%.0f %s" if abs(value) >= 10 else "%.1f %s") % (value, unit)
    return "%d B" % value


# --- how long KSM has cost more than it saved ---------------------------

class Streak:
    """Since when (boot clock, this boot) general_profit has been <= 0.

    `since` None means it is not; `note` says why the streak could not be
    kept (the state file cannot be written), for the details.
    """

    __slots__ = ("since", "note")

    def __init__(self, since=None, note=None):
        self.since = since
        self.note = note


def _read_state(path):
    """The saved streak as a dict, or {} when there is none or it is
    corrupt (it is then rewritten)."""
    try:
        state = loads(read(path, STATE_MAX).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value == value else None


def track_streak(path, unprofitable, boot_id, now):
    """Update the state file at `path` and return the Streak.

    `now` is the boot clock (seconds since boot, never jumps).  The streak
    restarts after a reboot (another boot id), when the saved times lie
    outside this boot (before it began or in its future: a corrupt file),
    and after more than GAP_MAX without a look.
    """
    state = _read_state(path)
    since, last = _number(state.get("since")), _number(state.get("last"))
    same_boot = state.get("boot_id") == boot_id and boot_id is not None
    if not unprofitable:
        if state:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                return Streak(None, "cannot remove %s" % describe(e))
        return Streak()
    if not (same_boot and since is not None and last is not None
            and 0 <= since <= last <= now and now - last <= GAP_MAX):
        since = now
    import json  # writing only: reading needs jsonc alone
    try:
        write_atomically(path, json.dumps({"boot_id": boot_id, "since": since,
                                           "last": now}))
    except OSError as e:
        return Streak(None, "cannot keep the time KSM has been unprofitable "
                      "in %s: %s" % (path, describe(e)))
    return Streak(since)


def boot_id(proc):
    """This boot's id (/proc/sys/kernel/random/boot_id), or None."""
    try:
        return read_file(os.path.join(proc, "sys", "kernel", "random", "boot_id"),
                         64).decode("ascii", "replace").strip() or None
    except OSError:
        return None


# --- evaluate -------------------------------------------------------------

def _metrics(p):
    metrics = []
    if p.saved_bytes is not None:
        metrics.append(Metric("ksm_saved_bytes", p.saved_bytes, min=0))
    if p.value("general_profit") is not None:
        metrics.append(Metric("ksm_general_profit_bytes", p.value("general_profit")))
    for name in COUNTERS + ("ksm_zero_pages",):
        if p.value(name) is not None:
            metric = name if name.startswith("ksm_") else "ksm_" + name
            metrics.append(Metric(metric, p.value(name), min=0))
    return metrics


def _details(p):
    details = ["%s: run=%s" % (p.ksm_dir, p.run)]
    details += ["%s: %d" % (name, p.value(name)) for name in COUNTERS + OPTIONAL
                if p.value(name) is not None]
    missing = [name for name in OPTIONAL if p.value(name) is None]
    if missing:
        details.append("this kernel has no %s" % " or ".join(missing))
    details.append("page size: %d bytes; saved = (pages_sharing + ksm_zero_pages) "
                   "x page size" % p.page_size)
    shared, sharing = p.value("pages_shared"), p.value("pages_sharing")
    if shared and sharing is not None:
        details.append("sharing ratio (pages_sharing / pages_shared): %.1f"
                       % (sharing / shared))
    return details + p.errors


def _savings(p):
    parts = []
    if p.saved_bytes is not None:
        parts.append("saves %s" % size(p.saved_bytes))
    profit = p.value("general_profit")
    if profit is not None:
        parts.append("general profit %s" % size(profit))
    return ", ".join(parts)


def _run_word(run):
    return RUN_WORDS.get(run, "in the unknown run state %s" % run)


def evaluate(p, expect, unprofitable_after, streak, now):
    """The one Result for a Probe, `expect` ('on', 'off', 'any') and the
    Streak of unprofitable looks (`now` on the same boot clock)."""
    run_file = os.path.join(p.ksm_dir, "run")
    if not p.present:
        state = WARN if expect == "on" else OK
        return Result(state, SERVICE, "KSM is not available: this kernel has no "
                      "%s (built without CONFIG_KSM)%s" % (
                          p.ksm_dir, "; expected on ([ksm] expect = on): use a "
                          "kernel with KSM or set [ksm] expect = off"
                          if state == WARN else ""))
    details, metrics = _details(p), _metrics(p)
    if p.run is None:
        return Result(UNKNOWN, SERVICE, "cannot read KSM's state: %s"
                      % "; ".join(p.errors), details, metrics)
    savings = _savings(p)
    summary = "KSM is %s" % _run_word(p.run)
    state = OK
    expected = EXPECTED_RUN.get(expect)
    if expected is not None and p.run not in expected:
        state = WARN
        if expect == "on":
            summary += (", expected running: 'echo 1 > %s' (and make it "
                        "permanent, e.g. in sysfs.conf), or set [ksm] expect = "
                        "off or any" % run_file)
        else:
            summary += (", expected off: 'echo 2 > %s' stops it and unmerges "
                        "(0 stops and keeps merged pages), or set [ksm] expect = "
                        "on or any" % run_file)
    if savings:
        summary += ", " + savings
    if p.run == 1 and unprofitable_after and streak.since is not None:
        lasted = now - streak.since
        if lasted >= unprofitable_after:
            state = WARN
            summary += ("; KSM has cost more than it saved for %s (general "
                        "profit %s, warn after %s, [ksm] unprofitable_after): "
                        "few mergeable pages; 'echo 2 > %s' stops it" % (
                            format_duration(lasted), size(p.value("general_profit")),
                            format_duration(unprofitable_after), run_file))
        else:
            details.append("general profit has been <= 0 for %s"
                           % format_duration(lasted))
    if streak.note:
        details.insert(0, streak.note)
        state = worst([state, WARN])
        summary += " (cannot keep the unprofitable time, see details)"
    return Result(state, SERVICE, summary, details, metrics)


class Settings(SharedSettings):
    """`[ksm]` and the paths, typed."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "state_dir", "sys", "proc")
        self.expect = config.get_choice(SECTION, "expect", ("on", "off", "any"))
        self.unprofitable_after = config.get_duration(SECTION, "unprofitable_after")


def run(ctx):
    s = ctx.settings
    p = probe(s.sys)
    ctx.log("KSM: present=%s run=%s counters=%s" % (p.present, p.run, p.counters))
    streak = Streak()
    now = procfs.boot_time()
    if s.unprofitable_after and p.present:
        profit = p.value("general_profit")
        streak = track_streak(os.path.join(s.state_dir, STATE_FILE),
                              p.run == 1 and profit is not None and profit <= 0,
                              boot_id(s.proc), now)
    return [evaluate(p, s.expect, s.unprofitable_after, streak, now)]


CHECK = Check(
    "ksm", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: is KSM (kernel samepage merging) running "
    "as expected on this node, and how much memory does it save?",
    epilog="States: OK KSM as expected ([ksm] expect); WARN when it is not, "
    "or (optionally) when it has cost\nmore than it saved for [ksm] "
    "unprofitable_after; UNKNOWN when its state cannot be read.")
