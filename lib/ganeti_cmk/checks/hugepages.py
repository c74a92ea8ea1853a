"""Hugepages: can this node back the instances that use mem_path?

Ganeti's `mem_path` hypervisor parameter makes qemu take the guest's memory
from a hugetlbfs mount (`-mem-path <dir> -mem-prealloc`): the whole memory
at start, or the start (the failover, the migration) fails.  Probe: the
mem_path of the cluster default (ssconf) and of the instances running here
(their runtime hvparams, their memory from the runtime's `-m`), the mounts
(/proc/self/mounts), the hugepage pools (/sys/kernel/mm/hugepages) and
Hugepagesize (/proc/meminfo).  Evaluate: CRIT when a mem_path is not a
mounted hugetlbfs; `[hugepages] short_state` when the free pages of its
size do not cover the largest such instance (or their sum, `[hugepages]
reserve = sum`), as another one like it may be moved or failed over here.
"""

import os

from .. import ganeti, procfs, sysfs
from ..localcheck import (CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable, Result,
                          State, worst)
from ..runner import Check, SharedSettings
from ..safefile import describe
from ..words import fit, plural, some

SERVICE = "Hugepages"
SECTION = "hugepages"
POOL_FILES = ("nr_hugepages", "free_hugepages", "resv_hugepages", "surplus_hugepages")
UNITS_KB = {"k": 1, "m": 1024, "g": 1024 * 1024}

DEFAULTS = {
    "reserve": "largest",
    "short_state": "crit",
}


def memory_mib(cmd):
    """The guest memory in MiB from a qemu command line's `-m` (Ganeti
    writes the number of MiB; qemu also takes `size=N[,...]` and a unit
    suffix), or None."""
    value = None
    for i, arg in enumerate(cmd[:-1]):
        if arg == "-m":
            value = cmd[i + 1]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    text = value.split(",", 1)[0]
    if text.startswith("size="):
        text = text[5:]
    text = text.strip().lower()
    factor = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1 << 20}.get(text[-1:], None)
    if factor is not None:
        text = text[:-1]
    else:
        factor = 1
    if not text.isdigit():
        return None
    return int(int(text) * factor)


def page_kb(text):
    """A hugetlbfs `pagesize=` option ('2M', '1G', '2048k') in kB, or None."""
    text = text.strip().lower()
    unit = text[-1:]
    if unit in UNITS_KB and text[:-1].isdigit():
        return int(text[:-1]) * UNITS_KB[unit]
    return int(text) // 1024 if text.isdigit() else None


def mount_of(path, mounts):
    """The (mount point, fs type, options) holding `path` (a resolved
    path): the longest mount point above it, the last mounted one there."""
    found = None
    for mount in mounts:
        point = mount[0]
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if found is None or len(point) >= len(found[0]):
                found = mount
    return found


class Use:
    """One mem_path and who uses it."""

    __slots__ = ("path", "users", "exists", "fstype", "mount_point", "page_kb")

    def __init__(self, path, users=(), exists=True, fstype="hugetlbfs",
                 mount_point=None, page_kb=2048):
        self.path = path
        self.users = list(users)      # instance names, "the cluster default"
        self.exists = exists
        self.fstype = fstype
        self.mount_point = mount_point or path
        self.page_kb = page_kb


class Probe:
    """What the node showed."""

    __slots__ = ("in_cluster", "instances", "memory", "uses", "unknown",
                 "default_kb", "pools", "errors", "sys_root", "config_read",
                 "coming", "mounts_read")

    def __init__(self, **fields):
        self.in_cluster = True
        self.instances = []     # instances running here
        self.memory = {}        # instance with mem_path: MiB (None: unknown)
        self.uses = []          # Use per mem_path
        self.unknown = {}       # instance: why its hvparams are not known
        self.default_kb = 2048  # Hugepagesize
        self.pools = {}         # page kB: {nr_hugepages: n, ...}
        self.errors = []
        self.sys_root = "/sys"
        self.config_read = False  # config.data (master candidates) read
        self.coming = {}          # instance not running here: why it may come
        self.mounts_read = True   # False: no mount table, no fstype is known
        for key, value in fields.items():
            setattr(self, key, value)


CLUSTER_DEFAULT = "the cluster default"


def read_pool(sys_root, kb):
    """{nr_hugepages: n, free_hugepages: n, ...} of one page size; {} when
    the kernel has no such pool."""
    pool = {}
    directory = os.path.join(sys_root, "kernel", "mm", "hugepages", "hugepages-%dkB" % kb)
    for name in POOL_FILES:
        text = sysfs.attribute(os.path.join(directory, name))
        if text is not None and text.isdigit():
            pool[name] = int(text)
    return pool


def _configured(p, data_dir, node, runtimes, paths):
    """Add the instances config.data (master candidates) gives this node
    that do not run here: down with this node as primary, with it as
    secondary (they can fail over here), or on disks no node holds (they
    can migrate here); their memory is maxmem."""
    configured, why = ganeti.configured_here(data_dir, node)
    if why:
        p.unknown[ganeti.CONFIG_DATA] = why
    if configured is None:
        return
    p.config_read = True
    for inst in configured:
        mem_path = inst.hvparams.get("mem_path")
        if inst.name in runtimes or not (isinstance(mem_path, str) and mem_path):
            continue
        paths.setdefault(mem_path, []).append(inst.name)
        memory = inst.beparams.get("maxmem", inst.beparams.get("memory"))
        p.memory[inst.name] = memory if isinstance(memory, int) \
            and not isinstance(memory, bool) else None
        p.coming[inst.name] = inst.relation


def probe(proc, sys_root, data_dir, run_dir, node_name):
    """Look at mem_paths, mounts and pools; OSError for what cannot be
    read is listed (PermissionError propagates: not root).  `node_name`
    is a function, called only in a cluster."""
    p = Probe(sys_root=sys_root)
    paths = {}  # mem_path -> users
    p.in_cluster = ganeti.read_ssconf(data_dir, "master_node") is not None
    if p.in_cluster:
        default = ganeti.cluster_hvparams(data_dir).get("mem_path")
        if isinstance(default, str) and default:
            paths.setdefault(default, []).append(CLUSTER_DEFAULT)
    runtimes, p.unknown = ganeti.running_kvm_runtimes(proc, run_dir)
    p.instances = sorted(set(runtimes) | set(p.unknown))
    for name, runtime in sorted(runtimes.items()):
        mem_path = runtime.hvparams.get("mem_path")
        if isinstance(mem_path, str) and mem_path:
            paths.setdefault(mem_path, []).append(name)
            p.memory[name] = memory_mib(runtime.cmd)
    if p.in_cluster:
        _configured(p, data_dir, node_name(), runtimes, paths)
    try:
        p.default_kb = procfs.meminfo(proc).get("Hugepagesize") or None
    except OSError as e:
        p.default_kb = None
        p.errors.append("%s/meminfo: %s" % (proc, describe(e)))
    try:
        mounts = procfs.mounts(proc)
    except OSError as e:
        mounts = []
        p.mounts_read = False
        p.errors.append("%s/self/mounts: %s" % (proc, describe(e)))
    for path, users in sorted(paths.items()):
        real = os.path.realpath(path)
        use = Use(path, users, exists=os.path.isdir(real))
        mount = mount_of(real, mounts) if use.exists else None
        use.fstype = mount[1] if mount else None
        use.mount_point = mount[0] if mount else None
        use.page_kb = p.default_kb
        if mount and mount[1] == "hugetlbfs" and mount[2].get("pagesize"):
            use.page_kb = page_kb(mount[2]["pagesize"]) or p.default_kb
        p.uses.append(use)
    for kb in {u.page_kb for u in p.uses if u.fstype == "hugetlbfs"} | {p.default_kb}:
        if kb:
            try:
                p.pools[kb] = read_pool(sys_root, kb)
            except OSError as e:
                p.errors.append(describe(e))
    return p


# --- evaluate -------------------------------------------------------------

def page_text(kb):
    if kb is None:
        return "hugepages of unknown size"
    return "%s hugepages" % ("%d GiB" % (kb >> 20) if kb >= 1 << 20 and not kb % (1 << 20)
                             else "%d MiB" % (kb >> 10) if kb >= 1024 and not kb % 1024
                             else "%d kB" % kb)


def _pages(mib, kb):
    return -(-mib * 1024 // kb)


def _metrics(p, needed):
    metrics = []
    for kb in sorted(p.pools):
        pool = p.pools[kb]
        if not pool:
            continue
        prefix = "hugepages_" if kb == p.default_kb else "hugepages_%dkb_" % kb
        for name, key in (("total", "nr_hugepages"), ("free", "free_hugepages"),
                          ("reserved", "resv_hugepages"), ("surplus", "surplus_hugepages")):
            if key in pool:
                metrics.append(Metric(prefix + name, pool[key], min=0))
        if needed.get(kb) is not None:
            metrics.append(Metric(prefix + "needed", needed[kb][0], min=0))
    return metrics


def _pool_text(kb, pool):
    return "%s: %d total, %d free, %d reserved, %d surplus" % (
        page_text(kb), pool.get("nr_hugepages", 0), pool.get("free_hugepages", 0),
        pool.get("resv_hugepages", 0), pool.get("surplus_hugepages", 0))


def _not_mounted(use, limit):
    users = "used by %s" % some(use.users, limit)
    if not use.exists:
        return "mem_path %s (%s) does not exist: mount a hugetlbfs there" % (
            use.path, users)
    return ("mem_path %s (%s) is on %s (%s), not a hugetlbfs: guest memory "
            "would not come from hugepages; mount a hugetlbfs there" % (
                use.path, users, use.fstype or "no file system", use.mount_point))


def evaluate(p, reserve, short_state):
    """The one Result for a Probe; `reserve` 'largest' or 'sum'."""
    if not p.in_cluster and not p.instances:
        raise NotApplicable("this node is not in a Ganeti cluster and runs no "
                            "KVM instance")
    details = ["instances running here: %s" % (", ".join(p.instances) or "none")]
    details += ["mem_path %s: used by %s; %s" % (
        u.path, ", ".join(u.users), "hugetlbfs at %s, %s" % (u.mount_point, page_text(
            u.page_kb)) if u.fstype == "hugetlbfs" else "not a hugetlbfs"
        if p.mounts_read or not u.exists else "mount not known")
        for u in p.uses]
    details += [_pool_text(kb, pool) for kb, pool in sorted(p.pools.items()) if pool]
    details += ["%s (from config.data, %s)" % item for item in sorted(p.coming.items())]
    details += ["%s: not known: %s" % item for item in sorted(p.unknown.items())]
    details += p.errors
    if p.config_read:
        details.append("config.data read: instances with this node as primary or "
                       "secondary, or that can migrate here, are included "
                       "(memory: maxmem)")
    elif p.in_cluster:
        details.append("no config.data (not a master candidate): only instances "
                       "running here size the reserve")
    problems = []  # (State, build(n) -> text naming at most n items per list)
    needed = {}    # page kB -> (pages, text of whom)
    for use in p.uses:
        # Without the mount table only a missing directory is known wrong.
        if use.fstype != "hugetlbfs" and (p.mounts_read or not use.exists):
            problems.append((CRIT, lambda n, use=use: _not_mounted(use, n)))
    by_size = {}
    for use in p.uses:
        if use.fstype == "hugetlbfs":
            for user in use.users:
                if user != CLUSTER_DEFAULT:
                    by_size.setdefault(use.page_kb, []).append(user)
    unsized = sorted(name for names in by_size.values() for name in names
                     if p.memory.get(name) is None)
    for kb, names in sorted(by_size.items()):
        sized = sorted((p.memory[n], n) for n in names if p.memory.get(n) is not None)
        if not sized or kb is None or kb not in p.pools:
            continue  # nothing to size, or the pool not read (p.errors)
        # Instances that can migrate to any node of the group are not all
        # added up (they will not all come here): the largest must fit.
        fixed = [(m, n) for m, n in sized if p.coming.get(n) != ganeti.MIGRATE_HERE]
        if reserve == "sum" and fixed and sum(m for m, _ in fixed) >= max(sized)[0]:
            mib = sum(m for m, _ in fixed)
            names_ = sorted(n for _, n in fixed)

            def whom(limit, names_=names_, mib=mib):
                return "the %s using it (%s; %d MiB)" % (
                    plural(len(names_), "instance"), some(names_, limit), mib)
        else:
            mib, name = max(sized)

            def whom(limit, name=name, mib=mib):
                return "the largest instance using it (%s, %d MiB)" % (name, mib)
        pages = _pages(mib, kb)
        needed[kb] = (pages, whom)
        pool = p.pools.get(kb, {})
        free, resv = pool.get("free_hugepages", 0), pool.get("resv_hugepages", 0)
        available = free - resv
        details.append("%s needed for another instance like %s: %d, available "
                       "(free - reserved): %d" % (page_text(kb), whom(None), pages,
                                                   available))
        if available < pages:
            problems.append((short_state, lambda n, kb=kb, whom=whom, pages=pages,
                             pool=pool, free=free, resv=resv: (
                "%d %s available (%d free, %d reserved) do not cover %s, %d pages, "
                "should it move or fail over here: add %d (echo %d > %s)" % (
                    free - resv, page_text(kb), free, resv, whom(n), pages,
                    pages - free + resv, pool.get("nr_hugepages", 0) + pages - free + resv,
                    os.path.join(p.sys_root, "kernel", "mm", "hugepages",
                                 "hugepages-%dkB" % kb, "nr_hugepages")))))
    unsure = sorted(p.unknown) + unsized
    metrics = _metrics(p, needed)
    if problems:
        return Result(worst(s for s, _ in problems), SERVICE, fit(lambda n: "; ".join(b(n) for _, b in problems)),
                      details, metrics)
    if unsure:
        return Result(WARN, SERVICE, fit(lambda n: "cannot tell what %s need%s: "
                                         "hvparams or memory unknown (see details)" % (
                                             some(unsure, n),
                                             "s" if len(unsure) == 1 else "")),
                      details, metrics)
    if p.errors and p.uses:
        return Result(UNKNOWN, SERVICE, "cannot read: %s" % "; ".join(p.errors),
                      details, metrics)
    if not p.uses:
        count = len(p.instances)
        cluster = " and not the cluster default" if p.in_cluster else ""
        return Result(OK, SERVICE, fit(lambda n: "not used: %s%s uses mem_path" % (
            "no instance here" if not count else "none of the %s here (%s)" % (
                plural(count, "instance"), some(p.instances, n)), cluster)),
            details, metrics)
    parts = []
    for use in p.uses:
        pool = p.pools.get(use.page_kb, {})
        parts.append("mem_path %s is a hugetlbfs (%s, %d of %d free)" % (
            use.path, page_text(use.page_kb), pool.get("free_hugepages", 0),
            pool.get("nr_hugepages", 0)))

    def build(n):
        if not needed:
            return "; ".join(parts) + "; no instance using it runs here to size a reserve"
        return "; ".join(parts) + "; they cover " + " and ".join(
            "%s (%d pages)" % (whom(min(n, 3)), pages) for pages, whom in needed.values())
    return Result(OK, SERVICE, fit(build), details, metrics)


class Settings(SharedSettings):
    """`[hugepages]` and the paths."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "data_dir",
                                "node_name", "proc", "run_dir", "state_dir", "sys")
        self.reserve = config.get_choice(SECTION, "reserve", ("largest", "sum"))
        self.short_state = State.from_name(
            config.get_choice(SECTION, "short_state", ("warn", "crit")))


def run(ctx):
    s = ctx.settings
    try:
        p = probe(s.proc, s.sys, s.data_dir, s.run_dir,
                  s.node)
    except PermissionError as e:
        return [Result(UNKNOWN, SERVICE, "cannot read %s: permission denied: run "
                       "the check as root" % (e.filename or e))]
    ctx.log("hugepages: uses=%s pools=%s unknown=%s" % (
        [(u.path, u.users, u.fstype, u.page_kb) for u in p.uses], p.pools, p.unknown))
    return [evaluate(p, s.reserve, s.short_state)]


CHECK = Check(
    "hugepages", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: is every mem_path a mounted hugetlbfs, "
    "and are there enough free hugepages for another instance like those "
    "running here?",
    epilog="States: OK covered, or mem_path not used; CRIT a mem_path is not a "
    "mounted hugetlbfs;\n[hugepages] short_state (crit) when the free "
    "hugepages do not cover the reserve; WARN when an instance's needs are "
    "unknown.")
