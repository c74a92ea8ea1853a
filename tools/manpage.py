#!/usr/bin/env python3
"""Man pages made from the programs' own --help (stdlib only).

    tools/manpage.py [--include FILE] OUTDIR SECTION:PROGRAM...

Runs every PROGRAM (with this Python) with --help, and for every
subcommand of an argparse "positional arguments" list also with
SUBCOMMAND --help, and writes OUTDIR/<name>.<SECTION> in roff (man(7)):
NAME (the program's name and the first sentence of its description),
SYNOPSIS (the usage lines), DESCRIPTION (the rest of the description and
the epilog), OPTIONS (one tagged paragraph per option), COMMANDS, then
the roff of --include FILE, then SEE ALSO naming the other pages.  So
what a program says about itself is written once, in its --help.

The page is dated $SOURCE_DATE_EPOCH (default: 0) and --help runs with
COLUMNS=80 and LC_ALL=C.UTF-8: the same programs give the same bytes.
--source names the package and version in every page's header.
"""

import argparse
import os
import re
import subprocess
import sys
import time

ITEM = re.compile(r"^(\s+)(\S.*?)(?:\s{2,}(\S.*))?$")  # "  -v, --verbose  help"
HEADING = re.compile(r"^(\S[^:]*):$")


def run_help(program, *args):
    """The text of `PROGRAM ARGS... --help` (exit 0), for 80 columns."""
    env = dict(os.environ, COLUMNS="80", LC_ALL="C.UTF-8")
    proc = subprocess.run([sys.executable, program] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, timeout=60)
    if proc.returncode != 0:
        raise SystemExit("%s %s: exit %d: %s" % (program, " ".join(args),
                                                  proc.returncode, proc.stderr))
    return proc.stdout


def blocks(text):
    """Paragraphs: lists of lines, split at blank lines."""
    found, current = [], []
    for line in text.rstrip().splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def items(lines):
    """An argparse list ("  -x, --xx  help", continuation lines indented to
    the help's column, a long term alone on its line with the help below)
    as [(indent, term, help)]."""
    found = []
    help_col = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        match = ITEM.match(line)
        if found and (match is None  # an unindented line: part of the last
                      or help_col is not None and indent >= help_col
                      or help_col is None and indent > found[-1][0]
                      and not match.group(3)):
            old_indent, term, text = found[-1]
            found[-1] = (old_indent, term, (text + " " + line.strip()).strip())
            if match is not None:
                help_col = help_col or indent
            continue
        found.append((indent, match.group(2), match.group(3) or ""))
        help_col = line.index(match.group(3)) if match.group(3) else None
    return found


def parse(text):
    """--help text -> {"usage": [lines], "prose": [paragraphs],
    "lists": [(heading, items)]}."""
    parsed = {"usage": [], "prose": [], "lists": []}
    for block in blocks(text):
        if not parsed["usage"] and block[0].startswith("usage: "):
            # continuation lines stay aligned under the first's arguments
            parsed["usage"] = [line[len("usage: "):] for line in block]
        elif HEADING.match(block[0]) and len(block) > 1 and block[1][:1] == " ":
            parsed["lists"].append((HEADING.match(block[0]).group(1),
                                    items(block[1:])))
        else:
            parsed["prose"].append(" ".join(line.strip() for line in block))
    return parsed


def escape(text, dashes=False):
    """Text for roff: backslashes, and "-" as a minus where an option
    starts (or everywhere, with dashes)."""
    text = text.replace("\\", "\\e")
    if dashes:
        return text.replace("-", "\\-")
    return re.sub(r"(?<![\w-])-+", lambda m: "\\-" * len(m.group(0)), text)


def line(text):
    """A roff text line: a leading . or ' would be a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def split_name(name, description):
    """NAME line text: the first sentence of the description, without a
    leading "<name> <version>:"."""
    first = re.split(r"(?<=[.?!])\s", description, maxsplit=1)[0]
    first = re.sub(r"^%s(?: \S+)?:\s*" % re.escape(name), "", first)
    return first.rstrip(".")


def options_roff(entries):
    out = []
    for _indent, term, text in entries:
        out += [".TP", line("\\fB%s\\fR" % escape(term, dashes=True))]
        if text:
            out.append(line(escape(text)))
    return out


def page(name, section, program, source, date, include, see_also):
    """The roff of one page."""
    main = parse(run_help(program, "--help"))
    description = main["prose"][0] if main["prose"] else name
    out = ['.TH "%s" "%s" "%s" "%s" "%s"'
           % (name.upper(), section, date, source, "ganeti-cmk")]
    out += [".SH NAME", line("%s \\- %s" % (escape(name, dashes=True),
                                          escape(split_name(name, description))))]
    subcommands = []
    for heading, entries in main["lists"]:
        if heading == "positional arguments":
            subcommands += [(term, text) for indent, term, text in entries if indent > 2]
    subs = [(sub, text, parse(run_help(program, sub, "--help")))
            for sub, text in subcommands]
    out += [".SH SYNOPSIS", ".nf"]
    for usage in [main["usage"]] + [p["usage"] for _, _, p in subs]:
        out += [line(escape(u, dashes=True)) for u in usage]
    out += [".fi", ".SH DESCRIPTION"]
    for i, paragraph in enumerate(main["prose"]):
        out += ([".PP"] if i else []) + [line(escape(paragraph))]
    for heading, entries in main["lists"]:
        if heading == "positional arguments" and subs:
            continue
        if heading == "optional arguments":  # Python < 3.10 says so
            heading = "options"
        out += [".SH %s" % escape(heading.upper(), dashes=True)] + options_roff(entries)
    if subs:
        out.append(".SH COMMANDS")
        for sub, text, parsed in subs:
            out += [".SS %s" % escape(sub, dashes=True)]
            out.append(line(escape((parsed["prose"] or [text])[0])))
            for _heading, entries in parsed["lists"]:
                out += [".RS"] + options_roff(entries) + [".RE"]
            for paragraph in parsed["prose"][1:]:
                out += [".PP", line(escape(paragraph))]
    if include:
        out.append(include.rstrip("\n"))
    if see_also:
        out += [".SH SEE ALSO", ",\n".join("\\fB%s\\fR(%s)" % (escape(n, dashes=True), s)
                                         for n, s in see_also)]
    return "\n".join(out) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--include", help="roff to add before SEE ALSO")
    parser.add_argument("--source", default="",
                        help='the header\'s source, e.g. "ganeti-cmk 0.1.0"')
    parser.add_argument("outdir")
    parser.add_argument("pages", nargs="+", metavar="SECTION:PROGRAM")
    args = parser.parse_args(argv)
    include = ""
    if args.include:
        with open(args.include, encoding="utf-8") as f:
            include = f.read()
    date = time.strftime("%Y-%m-%d", time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH") or 0)))
    pages = []
    for spec in args.pages:
        section, _, program = spec.partition(":")
        if not section.isdigit() or not program:
            parser.error("%r is not SECTION:PROGRAM" % spec)
        pages.append((os.path.basename(program), section, program))
    os.makedirs(args.outdir, exist_ok=True)
    for name, section, program in pages:
        see_also = sorted((n, s) for n, s, _ in pages if n != name)
        path = os.path.join(args.outdir, "%s.%s" % (name, section))
        with open(path, "w", encoding="utf-8") as f:
            f.write(page(name, section, program, args.source, date, include, see_also))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
