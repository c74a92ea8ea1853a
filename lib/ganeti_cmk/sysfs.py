"""Readers for /sys: kernel modules and attribute files.

Every reader takes the sysfs root (normally "/sys") so tests can point it
at a tree of their own.  An attribute is read like any file the checks did
not write (safefile): a regular file, never through a foreign link, at
most a page (its size comes from the kernel, not assumed).
"""

import os

from .safefile import read_file

def attribute(path):
    """The text of a sysfs attribute file, stripped; None if it is absent.

    At most a page, the size sysfs gives every attribute (64 KiB on some
    ppc64el and arm64 kernels, not 4 KiB).  Other OSErrors (permission,
    not a regular file) propagate.
    """
    try:
        return read_file(path, os.sysconf("SC_PAGE_SIZE")).decode(
            "utf-8", "replace").strip()
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
