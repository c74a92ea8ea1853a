"""The `ganeti-cmk` command: `status` (every check in one process, for a
quick look), `run CHECK` (one check, with the check's own options) and
`checks` (the registry).  `python3 -m ganeti_cmk` is the same command."""

import json
import sys

from . import __version__
from .checks import NAMES, load, load_all
from .human import render_human, render_not_applicable
from .localcheck import OK, Result, render_local, render_nagios, worst
from .runner import (Context, add_common_arguments, guard_std_fds, quiet_stdout,
                     run_check, write)
from .runner import main as run_main


def parse_args(argv):
    import argparse
    parser = argparse.ArgumentParser(
        prog="ganeti-cmk",
        description="ganeti-cmk %s: Checkmk local checks for Ganeti/KVM "
        "nodes." % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    status = sub.add_parser(
        "status", help="run every check now and show the results",
        description="Run every check of the suite in this process and print "
        "the results. The exit code is the worst state (0 OK, 1 WARN, "
        "2 CRIT, 3 UNKNOWN).")
    add_common_arguments(status)
    status.add_argument("--format", choices=("human", "local", "nagios", "json"),
                        default="human", help="output format (default: human)")
    sub.add_parser("checks", help="list the checks and their services")
    run = sub.add_parser("run", help="run one check (add --help after its "
                         "name for its options)")
    run.add_argument("check", choices=NAMES + tuple("ganeti_" + n for n in NAMES),
                     metavar="CHECK", help="one of: %s" % ", ".join(NAMES))
    run.add_argument("options", nargs="...", help="the check's options")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        parser.exit(2)
    return args


def status(args):
    results, skipped, labels = [], [], {}
    for check in load_all():
        # a Config each: a check shows only the problems of keys it read
        ctx = Context(check.config(args.config), args, verbose=args.verbose,
                      debug=args.debug)
        found = run_check(check, ctx)
        if found is None:
            skipped.append((check, ctx.not_applicable))
        else:
            results.extend(found)
            labels.update(ctx.labels or {})
    own = [r for r in results if r.host is None]
    code = int(worst((r.state for r in own), default=OK))
    if args.format == "local":
        write("".join(line + "\n" for line in render_local(results, labels)))
    elif args.format == "nagios":
        line, code = render_nagios(results or [Result(OK, "ganeti-cmk", "nothing to check")])
        write(line + "\n")
    elif args.format == "json":
        write(json.dumps([as_json(r) for r in results] + [
            {"state": None, "state_name": None, "service": check.service,
             "not_applicable": reason, "summary": None, "details": [], "host": None,
             "metrics": {}, "cached_at": None}
            for check, reason in skipped], indent=2) + "\n")
    else:
        write(render_human(results, sys.stdout.isatty(), labels=labels) + "".join(
            render_not_applicable(check.service, reason) for check, reason in skipped))
    return code


def as_json(result):
    """A Result for `status --format json`; `cached_at` (a Unix time) says
    that it was read from a cache made then, not made by this run."""
    return {"state": int(result.state), "state_name": result.state.name,
            "service": result.service, "summary": result.summary,
            "details": result.details, "host": result.host,
            "metrics": {m.name: m.value for m in result.metrics},
            "cached_at": result.cached_at}


def main(argv=None):
    guard_std_fds()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        return run_main(load(args.check), args.options)
    if args.command == "checks":
        for check in load_all():
            print("%-24s %-22s %s" % (check.name, check.service, check.description))
        return 0
    try:
        return status(args)
    except BrokenPipeError:
        quiet_stdout()
        return 0


if __name__ == "__main__":
    sys.exit(main())
