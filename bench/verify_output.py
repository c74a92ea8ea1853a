#!/usr/bin/env python3
"""Generated `gnt-cluster verify --error-codes` output, and the parser's speed.

    verify_output.py SIZE...   time ganeti_cmk.verify.parse() on outputs with
                               SIZE findings each; prints one JSON object

bench/run.py runs this under the nodes' python3 (stdlib and lib/ only) and
uses generate() for the cached results of the Ganeti verify check.
"""

import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from ganeti_cmk import verify  # noqa: E402

STAMP = "Tue Nov 14 22:13:09 2023"
PER_SECTION = 40  # findings between two section headers
SECTIONS = ("Verifying node status", "Verifying instance status",
            "Verifying orphan volumes", "Verifying N+1 Memory redundancy")
# (severity, code, item type, item, message); {n} is the finding's number,
# {m} one of 50 nodes.  One in seven carries an escape (SafeEncode's \n).
FINDINGS = (
    ("ERROR", "ENODEDRBD", "node", "node{m}.example.com",
     "drbd minor {m} of disk 7a6b5c4d-3e2f-1a0b-9c8d-{n:012d} (attached in "
     "instance 'web{n}.example.com') is not active"),
    ("ERROR", "EINSTANCEDOWN", "instance", "web{n}.example.com",
     "instance not running on its primary node node{m}.example.com"),
    ("WARNING", "ENODEORPHANLV", "node", "node{m}.example.com",
     "volume xenvg/{n:08x}-1b2c.disk0_data is unknown"),
    ("WARNING", "EINSTANCEPOLICY", "instance", "db{n}.example.com",
     "instance does not meet policy: memory-size value 32768 is not in "
     "range [128, 16384]"),
    ("ERROR", "ENODESSH", "node", "node{m}.example.com",
     "ssh communication with node 'node{n}.example.com': ssh problem: "
     "Permission denied (publickey).\\n"),
    ("ERROR", "ECLUSTERCFG", "cluster", "None",
     "instance web{n}.example.com: disk/0 has invalid size: 0"),
    ("WARNING", "ENODEN1", "node", "node{m}.example.com",
     "not enough memory to accomodate instance failovers should node "
     "node{n}.example.com fail (8192MiB needed, 4096MiB available)"),
)


def generate(findings):
    """Verify's stdout with exactly `findings` ERROR/WARNING lines."""
    lines = ["Submitted jobs 27, 28", "Waiting for job 27 ...",
             "%s * Verifying cluster config" % STAMP, "Waiting for job 28 ..."]
    for n in range(findings):
        if n % PER_SECTION == 0:
            lines.append("%s * %s" % (STAMP, SECTIONS[n // PER_SECTION % len(SECTIONS)]))
        severity, code, kind, item, message = FINDINGS[n % len(FINDINGS)]
        values = {"n": n, "m": n % 50}
        lines.append("%s   - %s:%s:%s:%s:%s" % (
            STAMP, severity, code, kind, item.format(**values),
            message.format(**values)))
    lines += ["%s * Other Notes" % STAMP,
              "%s   - NOTICE: 1 non-redundant instance(s) found." % STAMP]
    return "\n".join(lines) + "\n"


def parse_once(text, findings):
    """Seconds for one parse; fails if the parser missed a finding."""
    start = time.perf_counter()
    report = verify.parse(text, "", 1)
    seconds = time.perf_counter() - start
    parsed = len(report.findings) + sum(report.more.values())  # stored + counted
    if parsed != findings or report.unrecognised:
        raise SystemExit("parsed %d findings of %d, %d unrecognised lines"
                         % (parsed, findings, len(report.unrecognised)))
    return seconds


def main(sizes):
    # The first parse in a process compiles the regular expressions, as
    # every background refresh does once: timed on its own, then excluded.
    result = {"first_parse": parse_once(generate(10), 10), "sizes": []}
    for findings in sizes:
        text = generate(findings)
        reps = max(5, min(1000, 100000 // findings))
        times = [parse_once(text, findings) for _ in range(reps)]
        result["sizes"].append({
            "findings": findings, "lines": text.count("\n"),
            "bytes": len(text.encode()), "runs": reps,
            "median": statistics.median(times), "min": min(times)})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]]))
