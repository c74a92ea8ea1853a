"""Readers for /sys: kernel modules and attribute files.

Every reader takes the sysfs root (normally "/sys") so tests can point it
at a tree of their own.  An attribute is read like any file the checks did
not write (safefile): a regular file, never through a foreign link, at
most a page.
"""

import os

from .safefile import read_file

PAGE = 4096  # a sysfs attribute holds at most a page


def attribute(path):
    """The text of a sysfs attribute file, stripped; None if it is absent.

    Other OSErrors (permission, not a regular file) propagate.
    """
    try:
        return read_file(path, PAGE).decode("utf-8", "replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def modules(sys_root):
    """The names in /sys/module: loaded modules and built-in ones that
    have parameters (/proc/modules lists only the loadable ones)."""
    try:
        return set(os.listdir(os.path.join(sys_root, "module")))
    except OSError:
        return set()


def module_parameter(sys_root, module, name):
    """A module parameter's text (`nested` -> 'Y'), or None."""
    return attribute(os.path.join(sys_root, "module", module, "parameters", name))
