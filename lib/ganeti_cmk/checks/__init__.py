"""The checks of the suite, one module each; ALL lists them in output order."""

import importlib

ALL = ("kvm_device", "kvm_binary", "cluster_verify")


def load_all():
    """The CHECK objects of every check module that is present."""
    checks = []
    for name in ALL:
        try:
            module = importlib.import_module("ganeti_cmk.checks." + name)
        except ModuleNotFoundError as e:
            if e.name != "ganeti_cmk.checks." + name:
                raise
            continue
        checks.append(module.CHECK)
    return checks
