"""The registry: every check of the suite, one module each, in output order.

NAMES is the only list of checks.  The built executables (`ganeti_<name>`),
`ganeti-cmk status` and `ganeti-cmk run`, pip's console scripts, the
bench, the tests and the docs' lists all derive from it.  Each module
exports CHECK (a runner.Check); its config section is named like the module.
"""


NAMES = ("kvm_device", "kvm_binary", "kvm_parameters", "daemons", "cluster_verify",
         "cluster_state", "capacity", "drbd", "ksm", "vhost_net", "hugepages")


def load(name):
    """The CHECK of one check module, by module name ('kvm_binary') or
    executable name ('ganeti_kvm_binary'); KeyError for another name."""
    if name.startswith("ganeti_") and name[7:] in NAMES:
        name = name[7:]
    if name not in NAMES:
        raise KeyError(name)
    import importlib  # not at the top: an entry script imports its check itself
    return importlib.import_module("ganeti_cmk.checks." + name).CHECK


def load_all():
    """The CHECK of every registered check, in NAMES order."""
    return [load(name) for name in NAMES]


def __getattr__(attribute):
    """main_<name>: the console-script entry point of check <name>."""
    if attribute.startswith("main_") and attribute[5:] in NAMES:
        def main():
            import sys
            from ..runner import main as run
            sys.exit(run(load(attribute[5:])))
        return main
    raise AttributeError(attribute)


def all_defaults():
    """{section: {key: default}} of every key of the suite: the shared
    sections' and each check's own (for the docs, the example config and
    their tests)."""
    from ..config import DEFAULTS
    defaults = dict(DEFAULTS)
    for check in load_all():
        if check.defaults:
            defaults[check.section] = check.defaults
    return defaults
