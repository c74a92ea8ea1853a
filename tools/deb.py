#!/usr/bin/env python3
"""Build the Debian package OUTDIR/ganeti-cmk_<version>_all.deb (make deb).

    tools/deb.py OUTDIR

debian/ is ordinary debhelper packaging; this script adds what a checkout
does not hold and dpkg-buildpackage needs:

- debian/changelog for the one version, __version__ in
  lib/ganeti_cmk/__init__.py, followed by $DEB_VERSION_SUFFIX if set
  (e.g. DEB_VERSION_SUFFIX=+site1 for a local rebuild that must upgrade
  the plain version), dated $SOURCE_DATE_EPOCH (default: the last
  commit's time, as tools/build.py does), so that the same tree gives the
  same bytes;
- a copy of the tree in a temporary directory, because dpkg-buildpackage
  writes into the source tree and its parent: the checkout stays clean.
  Every file of the copy is dated $SOURCE_DATE_EPOCH too (dpkg-deb only
  lowers later times to it; a checkout's files are as old as the checkout).

Needs dpkg-dev and debhelper (`make deb` installs them).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build import ROOT, source_date_epoch, version  # noqa: E402

PACKAGE = "ganeti-cmk"
# a native package's version: no "-" (that would be a Debian revision)
VERSION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~]*\Z")
# what a checkout holds besides the sources (.gitignore), and the build's own
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache",
    ".hypothesis", ".ganeti-cmk-test-*", "*.deb")


def maintainer(control):
    """The Maintainer field of debian/control."""
    with open(control, encoding="utf-8") as f:
        return re.search(r"^Maintainer:\s*(.+)$", f.read(), re.M).group(1)


def changelog(deb_version, epoch, who):
    """A one-entry debian/changelog for this build."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    return ("%s (%s) unstable; urgency=medium\n\n"
            "  * ganeti-cmk %s, built from its source tree.\n\n"
            " -- %s  %s\n" % (PACKAGE, deb_version, deb_version, who, date))


def build(outdir):
    deb_version = version() + os.environ.get("DEB_VERSION_SUFFIX", "")
    if not VERSION_RE.match(deb_version):
        raise SystemExit("version %r is not a version of a native Debian package "
                         "(digits first, then letters, digits, . + ~)" % deb_version)
    epoch = source_date_epoch()
    env = {k: v for k, v in os.environ.items()  # not the caller's make's
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONPATH")}
    env.update(SOURCE_DATE_EPOCH=str(epoch), LC_ALL="C.UTF-8", TZ="UTC")
    name = "%s_%s_all.deb" % (PACKAGE, deb_version)
    with tempfile.TemporaryDirectory(prefix="ganeti-cmk-deb.") as tmp:
        src = os.path.join(tmp, PACKAGE)
        shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
        for top, dirs, files in os.walk(src):  # not when it was checked out
            for entry in dirs + files:
                os.utime(os.path.join(top, entry), (epoch, epoch), follow_symlinks=False)
        with open(os.path.join(src, "debian", "changelog"), "w", encoding="utf-8") as f:
            f.write(changelog(deb_version, epoch,
                              maintainer(os.path.join(src, "debian", "control"))))
        subprocess.run(["dpkg-buildpackage", "--build=binary", "--no-sign"],
                       cwd=src, env=env, check=True, timeout=600)
        os.makedirs(outdir, exist_ok=True)
        path = os.path.join(outdir, name)
        shutil.copyfile(os.path.join(tmp, name), path + ".tmp")
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)
    return path


def main(argv):
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    try:
        path = build(argv[0])
    except subprocess.CalledProcessError as e:
        return "dpkg-buildpackage failed (exit %d)" % e.returncode
    print("%s (%d bytes)" % (path, os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
