"""The runner every check shares: command line, config, deadline, errors.

In agent mode (no output option given) only local-check lines reach stdout
and the exit code is always 0: an exception or a passed deadline becomes one
UNKNOWN line for the check's service.  `--nagios` prints one line and exits
with the worst state; `--human` prints a readable table.
"""

import sys

try:  # the C module: `signal` itself imports enum, which costs start-up time
    import _signal as signal
except ImportError:  # pragma: no cover - other Python implementations
    import signal

from . import __version__
from .config import DEFAULTS, Config, parse_duration
from .localcheck import (MAX_TEXT, UNKNOWN, WARN, CannotTell, NotApplicable,
                         Result, render_local, render_nagios, worst)
from .words import format_duration


class Check:
    """What a check module exports as CHECK.

    `module` is the module's name ('kvm_binary'): the executable is
    `ganeti_<module>` and its config section `[<module>]`, whose keys and
    defaults are `defaults`.  `settings(config)` turns the config into the
    check's typed settings once per run (ctx.settings); `run(ctx)` returns
    a list of Results (or raises NotApplicable); `add_arguments(parser)`
    adds check-specific options.
    """

    def __init__(self, module, service, description, run, settings=None,
                 defaults=None, add_arguments=None, epilog=""):
        self.module = module
        self.name = "ganeti_" + module
        self.section = module
        self.service = service
        self.description = description
        self.run = run
        self.settings = settings
        self.defaults = defaults or {}
        self.add_arguments = add_arguments
        self.epilog = epilog

    def config(self, path=None, text=None):
        """The Config as this check reads it: the shared keys and its own."""
        from .checks import NAMES
        defaults = dict(DEFAULTS)
        if self.defaults:
            defaults[self.section] = self.defaults
        return Config(path, text, defaults, NAMES)


# The shared keys a check's Settings may take, by attribute name.
SHARED = {"proc": ("paths", "proc"), "sys": ("paths", "sys"),
          "data_dir": ("paths", "ganeti_data_dir"),
          "run_dir": ("paths", "ganeti_run_dir"),
          "state_dir": ("paths", "state_dir"),
          "node_name": ("ganeti", "node_name")}


class SharedSettings:
    """The base of a check's Settings: the shared keys it names (SHARED),
    typed once, and the config file's path.  Only the keys a check names
    are read, so a bad one is reported by the checks that use it."""

    def __init__(self, config, *shared):
        self.config_path = config.path
        for name in shared:
            section, key = SHARED[name]
            setattr(self, name, config.get_str(section, key) if section == "ganeti"
                    else config.get_path(section, key))

    def node(self):
        """This node's name as Ganeti knows it, looked up only when called:
        `[ganeti] node_name`, else the FQDN (ganeti.node_name)."""
        from .ganeti import node_name
        return node_name(self.node_name, self.state_dir)


def duration_levels(config, section, warn="warn_after", crit="crit_after"):
    """The (warn, crit) durations of `section`: a warn level above the crit
    level is a config problem, and then equals it."""
    warn_after = config.get_duration(section, warn)
    crit_after = config.get_duration(section, crit)
    if warn_after > crit_after:
        config.problem("[%s] %s: %s is longer than %s (%s), using %s" % (
            section, warn, format_duration(warn_after), crit,
            format_duration(crit_after), format_duration(crit_after)))
        warn_after = crit_after
    return warn_after, crit_after


class DeadlineExceeded(Exception):
    pass


class Context:
    """What a check gets: the config, its settings, the options, a logger.

    A check may set `labels` ({key: value}) to give its host Checkmk host
    labels; they are printed in agent mode only (and listed by --human).
    """

    def __init__(self, config, args=None, verbose=0, debug=False):
        self.config = config
        self.settings = None
        self.args = args
        self.verbose = verbose
        self.debug = debug
        self.not_applicable = None  # why the check has nothing to do here
        self.labels = None  # Checkmk host labels for this host, if any

    def log(self, message, level=1):
        """Write to stderr with -v (level 1) or -vv (level 2)."""
        if self.verbose >= level:
            sys.stderr.write("ganeti-cmk: %s\n" % message)


def _on_alarm(signum, frame):
    raise DeadlineExceeded()


DEFAULT_DEADLINE = parse_duration(DEFAULTS["general"]["deadline"])


def arm_deadline(seconds):
    """(Re)arm the deadline `seconds` from now (0 disarms it)."""
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _on_alarm if seconds else signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, seconds)


def time_left(default):
    """Seconds until the armed deadline; `default` when none is armed."""
    if hasattr(signal, "getitimer"):
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        if left:
            return left
    return default


def extend_deadline(seconds):
    """Move a running check's deadline to `seconds` from now.

    For work that knowingly runs long under its own timeout (a foreground
    gnt-cluster verify); does nothing when no deadline is armed.
    """
    if hasattr(signal, "getitimer") and signal.getitimer(signal.ITIMER_REAL)[0]:
        signal.setitimer(signal.ITIMER_REAL, seconds)


def run_check(check, ctx):
    """Run one check under the deadline; never raises except with --debug.

    Returns the Results, or None when the check does not apply here (the
    reason is then in ctx.not_applicable).
    """
    deadline = ctx.config.get_duration("general", "deadline", minimum=1)
    arm_deadline(deadline)
    try:
        if check.settings is not None:
            ctx.settings = check.settings(ctx.config)
        results = list(check.run(ctx))
    except NotApplicable as e:
        ctx.not_applicable = str(e)
        return None
    except CannotTell as e:
        results = [Result(UNKNOWN, check.service, str(e))]
    except DeadlineExceeded:
        if ctx.debug:
            raise
        results = [Result(UNKNOWN, check.service,
                          "check did not finish within the deadline of %s "
                          "([general] deadline); run it by hand with -v to see "
                          "where it hangs" % format_duration(deadline))]
    except Exception as e:  # errors are data: one UNKNOWN line, never a crash
        if ctx.debug:
            raise
        if ctx.verbose:
            import traceback
            traceback.print_exc(file=sys.stderr)
        results = [Result(UNKNOWN, check.service,
                          "check failed: %s: %s (run %s --debug for the "
                          "traceback)" % (type(e).__name__, e, check.name))]
    finally:
        arm_deadline(0)
    return _with_config_problems(unique(results), ctx.config)


def unique(results):
    """The Results with every (host, service) once: Checkmk would silently
    keep only the last line of a name.  A repeat is a bug in the check; it
    is folded into the first, which takes the worse state and says so."""
    seen, kept = {}, []
    for r in results:
        key = (r.host and r.host.lower(), r.service)
        first = seen.get(key)
        if first is None:
            seen[key] = r
            kept.append(r)
            continue
        first.state = worst([first.state, r.state])
        first.details.append("another result for this service (a bug, please "
                             "report it): %s %s" % (r.state.name, r.summary))
    return kept


CONFIG_NOTE = " (config problem, see details)"


def _with_config_problems(results, config):
    """Make bad config values visible: at least WARN, and say which key.

    The problems go into the summary when they fit, else a short note
    there and the problems first in the details: checks fit their
    summaries to words.SUMMARY_MAX, which leaves room for that note.
    """
    if not config.problems:
        return results
    note = "config problem: " + "; ".join(config.problems)
    for r in results:
        if r.host is None:
            r.state = worst([r.state, WARN])
            if len(r.summary) + len(note) + 3 <= MAX_TEXT:
                r.summary = "%s (%s)" % (r.summary, note)
            else:
                r.summary += CONFIG_NOTE
                r.details.insert(0, note)
    return results


def parse_args(check, argv):
    import argparse
    parser = argparse.ArgumentParser(
        prog=check.name, description=check.description,
        epilog=check.epilog + "\nWithout an output option the check prints "
        "Checkmk local-check lines and exits 0, as the agent needs.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--nagios", action="store_true",
                        help="print one Nagios plugin line and exit with the "
                        "worst state (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN)")
    output.add_argument("--human", action="store_true",
                        help="print a readable table (colour on a terminal)")
    if check.add_arguments:
        check.add_arguments(parser)
    return parser.parse_args(argv)


def add_common_arguments(parser):
    parser.add_argument("--version", action="version",
                        version="%(prog)s " + __version__)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what the check does to stderr (-vv: more)")
    parser.add_argument("--debug", action="store_true",
                        help="let exceptions through with a traceback")
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $MK_CONFDIR/ganeti_cmk.cfg, "
                        "MK_CONFDIR defaults to /etc/check_mk)")


def guard_std_fds():
    """Put /dev/null on stdin, stdout or stderr if it is closed (`>&-`):
    else the first file the check opens would become its stdout."""
    import os
    for fd, name in ((0, None), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            if os.open(os.devnull, os.O_RDWR) != fd:  # pragma: no cover
                raise OSError("cannot put %s on fd %d" % (os.devnull, fd))
            if name and getattr(sys, name) is None:  # Python found it closed
                # safe: an fd, the /dev/null just opened, not a path
                setattr(sys, name, open(fd, "w", closefd=False))


def write(text):
    """Write `text` to stdout as UTF-8, whatever the locale's encoding
    (Checkmk reads UTF-8; an ASCII locale must not turn a name with an
    umlaut into an error).  Undecodable names show as U+FFFD.

    A stdout that cannot take it (a full disk, EIO) is said on stderr and
    then ignored, as a reader that went away is (BrokenPipeError): the
    exit code must still be the check's (agent mode 0), not a traceback's.
    """
    try:
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # a stdout replaced by text only (tests)
            sys.stdout.write(text)
        else:
            buffer.write(text.encode("utf-8", "replace"))
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        quiet_stdout()
        sys.stderr.write("ganeti-cmk: cannot write to stdout: %s\n" % e)


def quiet_stdout():
    """After a broken pipe: nothing more reaches stdout, and the flush at
    exit does not complain on stderr."""
    import os
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    except OSError:  # pragma: no cover
        pass


def main(check, argv=None):
    """Entry point of a check script; returns the exit code."""
    guard_std_fds()
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        args = parse_args(check, argv)
    else:  # the agent's call: skip argparse, it costs start-up time
        args = None
    debug = bool(args and args.debug)
    try:
        arm_deadline(DEFAULT_DEADLINE)  # reading the config is covered too
        ctx = Context(check.config(args and args.config), args,
                      verbose=args.verbose if args else 0, debug=debug)
        results = run_check(check, ctx)
        if results is None:
            return not_applicable(check, ctx.not_applicable, args)
        return emit(results, args, ctx.labels)
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except Exception as e:  # last resort: the agent must still get a line
        if debug:
            raise
        return emit([Result(UNKNOWN, check.service, "check failed: %s: %s"
                            % (type(e).__name__, e))], args)


def not_applicable(check, reason, args):
    """Where the check has nothing to do.  Agent mode: stdout stays empty
    (the service lives elsewhere), the reason goes to stderr, which the
    agent discards.  --nagios: one OK line saying why, exit 0, as Nagios
    plugins do when there is nothing to check (no output at all would
    read "(No output returned from plugin)").  --human: one line."""
    if args and args.nagios:
        line, code = render_nagios([Result(0, check.service, "not applicable "
                                           "here: " + reason)])
        write(line + "\n")
        return code
    if args and args.human:
        from .human import render_not_applicable
        write(render_not_applicable(check.service, reason))
        return 0
    sys.stderr.write("%s: %s\n" % (check.service, reason))
    return 0


def emit(results, args, labels=None):
    """Print the results (and host labels) in the chosen format; return the
    exit code.  Labels are Checkmk's: a Nagios line has no place for them."""
    if args and args.nagios:
        line, code = render_nagios(results)
        write(line + "\n")
        return code
    if args and args.human:
        from .human import render_human
        write(render_human(results, sys.stdout.isatty(), labels=labels))
        return 0
    lines = render_local(results, labels)
    if lines:
        write("\n".join(lines) + "\n")
    return 0

