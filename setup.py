"""pip install . : the ganeti_cmk library, the `ganeti-cmk` command and one
command per registered check (ganeti_<name>, as the built checks are named)."""

import ast
import re

from setuptools import find_packages, setup

with open("lib/ganeti_cmk/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)
with open("lib/ganeti_cmk/checks/__init__.py", encoding="utf-8") as f:
    NAMES = ast.literal_eval(re.search(r"^NAMES = (\(.*?\))", f.read(),
                                       re.M | re.S).group(1))

setup(
    name="ganeti-cmk",
    version=VERSION,
    description="Checkmk local checks for Ganeti nodes running KVM instances",
    license="GPL-2.0-or-later",
    python_requires=">=3.9",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    entry_points={"console_scripts": ["ganeti-cmk = ganeti_cmk.cli:main"] + [
        "ganeti_%s = ganeti_cmk.checks:main_%s" % (name, name) for name in NAMES]},
)
