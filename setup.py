"""pip install . : the ganeti_cmk library and the `ganeti-cmk` command."""

import glob
import re

from setuptools import find_packages, setup

with open("lib/ganeti_cmk/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="ganeti-cmk",
    version=VERSION,
    description="Checkmk local checks for Ganeti nodes running KVM instances",
    license="GPL-2.0-or-later",
    python_requires=">=3.9",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    scripts=sorted(glob.glob("checks/ganeti_*")),  # the same set tools/build.py builds
    entry_points={"console_scripts": ["ganeti-cmk = ganeti_cmk.cli:main"]},
)
