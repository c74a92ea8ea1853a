"""ganeti-cmk: Checkmk local checks for Ganeti nodes running KVM instances."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _forget_the_current_directory():
    """Never import a module from the current directory: it is whoever ran
    the check's (root in a user's directory), and a `json.py` there would
    run as root.  Python puts it first on sys.path for `-c` ('') and `-m`
    (the directory); the built checks and the installed command never do,
    this covers running from a checkout."""
    try:
        here = _os.getcwd()
    except OSError:  # removed meanwhile
        here = None
    _sys.path[:] = [p for p in _sys.path if p not in ("", ".", here)]


_forget_the_current_directory()
