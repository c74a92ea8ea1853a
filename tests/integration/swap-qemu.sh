#!/bin/bash
# Replaces the installed qemu binary the way a package upgrade does: a new file written next
# to it and renamed over it, so running instances keep the old inode (" (deleted)").
#   swap-qemu.sh upgrade   install a copy whose embedded version literal is changed (same
#                          length: the last digits become 9s), as a newer build would be;
#                          prints "OLD<TAB>NEW" (the two versions as qemu --version words them)
#   swap-qemu.sh restore   put the original bytes back, again by copy and rename
# The original is kept in $IT_KEEP until restored; cluster-down.sh restores it after a kill.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
  upgrade)
    mkdir -p "$IT_KEEP"
    bak=$IT_KEEP/qemu-system-x86_64.orig
    [ -f "$bak" ] || cp -p "$QEMU" "$bak"
    cp -p "$bak" "$QEMU.it-new"
    /usr/bin/python3 - "$QEMU.it-new" <<'EOF'
import re, sys
path = sys.argv[1]
data = open(path, "rb").read()
m = re.search(rb"QEMU emulator version ([0-9][0-9A-Za-z.+~_-]*) \(([^()\x00-\x1f]+)\)", data)
if not m:
    sys.exit("no version literal in %s" % path)

def bump(text):  # the last run of digits becomes 9s (8s if it already is): same length
    d = re.findall(rb"[0-9]+", text)[-1]
    new = (b"8" if set(d) == {ord("9")} else b"9") * len(d)
    i = text.rindex(d)
    return text[:i] + new + text[i + len(d):]

old = m.group(0)
new = b"QEMU emulator version %s (%s)" % (bump(m.group(1)), bump(m.group(2)))
assert len(new) == len(old)
with open(path, "r+b") as f:
    f.seek(m.start())
    f.write(new)
print("%s\t%s" % (old[22:].decode(), new[22:].decode()))
EOF
    mv -f "$QEMU.it-new" "$QEMU"
    ;;
  restore)
    qemu_restore
    ;;
  *)
    echo "usage: $0 upgrade|restore" >&2
    exit 2
    ;;
esac
