"""Ganeti daemons: does this node run the Ganeti daemons its role needs?

Probe: the node's role from ssconf (master, master candidate, regular,
offline, or an orphan that has ssconf files but is not in the node list),
which daemons Ganeti starts for that role (as daemon-util and the watcher
decide), and whether each runs: under systemd (when it manages
ganeti.target) its unit is active; else its pid file names a live process
of that daemon (not a zombie, not a reused pid), as `daemon-util check`
asks.  Where ganeti-mond runs it must also answer an HTTP request.
Evaluate: OK listing what runs, CRIT naming each missing daemon with the
command that starts it, WARN for a master daemon left running on a node
that is not the master, and for an orphan.  The same facts become the
host's Checkmk labels (ganeti/cluster, ganeti/role, ganeti/nodegroup).
"""

import os

from .. import ganeti, procfs
from ..localcheck import CRIT, OK, UNKNOWN, WARN, Metric, NotApplicable, Result, worst
from ..runner import Check, SharedSettings
from ..safefile import describe, read_file
from ..words import fit, format_duration, some

SERVICE = "Ganeti daemons"
SECTION = "daemons"

DEFAULTS = {
    "daemon_util": "/usr/lib/ganeti/daemon-util",
    "daemon_dir": "/usr/sbin",
    "systemctl": "/usr/bin/systemctl",
    "systemctl_timeout": "10s",
    "mond": "auto",
    "mond_port": "1815",
    "mond_timeout": "2s",
}

NODED, CONFD, WCONFD, RAPI, LUXID, KVMD, MOND, METAD = (
    "ganeti-noded", "ganeti-confd", "ganeti-wconfd", "ganeti-rapi",
    "ganeti-luxid", "ganeti-kvmd", "ganeti-mond", "ganeti-metad")
# daemon-util's start order; metad is started on demand (by noded), never by it.
DAEMONS = (NODED, CONFD, WCONFD, RAPI, LUXID, KVMD, MOND, METAD)
MASTER_ONLY = (WCONFD, RAPI, LUXID)  # they exit at once on any other node
PID_FILE_MAX = 64
COMM_MAX = 15  # the kernel's limit for /proc/PID/comm

# Label values of the roles ganeti.node_role() tells apart.
ROLE_LABELS = {ganeti.MASTER: "master", ganeti.CANDIDATE: "candidate",
               ganeti.REGULAR: "regular", ganeti.OFFLINE: "offline",
               ganeti.NOT_LISTED: "orphan"}


class Settings(SharedSettings):
    """`[daemons]` and the paths, typed."""

    def __init__(self, config):
        SharedSettings.__init__(self, config, "proc",
                                "run_dir", "state_dir", "data_dir", "node_name")
        self.systemd_dir = config.get_path("paths", "systemd_system_dir")
        self.daemon_util = config.get_path(SECTION, "daemon_util")
        self.daemon_dir = config.get_path(SECTION, "daemon_dir")
        self.systemctl = config.get_path(SECTION, "systemctl")
        self.systemctl_timeout = config.get_duration(SECTION, "systemctl_timeout", minimum=1)
        self.mond = config.get_choice(SECTION, "mond", ("auto", "yes", "no"))
        self.mond_port = config.get_number(SECTION, "mond_port", minimum=1, integer=True)
        if self.mond_port > 65535:
            config.problem("[%s] mond_port: %d is not a port, using %s"
                           % (SECTION, self.mond_port, DEFAULTS["mond_port"]))
            self.mond_port = int(DEFAULTS["mond_port"])
        self.mond_timeout = config.get_duration(SECTION, "mond_timeout", minimum=0.1)


class Status:
    """Whether one daemon runs: `running` True, False, or None (cannot
    tell, `why` says why); `stale` is the pid file left by a dead one."""

    __slots__ = ("running", "why", "pid", "stale")

    def __init__(self, running, why="", pid=None, stale=None):
        self.running = running
        self.why = why
        self.pid = pid
        self.stale = stale

    def __repr__(self):
        return "Status(%r, %r)" % (self.running, self.why)


class Probe:
    """What one look at this node found."""

    __slots__ = ("role", "expected", "status", "systemd", "mond", "errors")

    def __init__(self, role, expected=(), status=None, systemd=False):
        self.role = role                # ganeti.NodeRole
        self.expected = list(expected)  # the daemons the role needs, in start order
        self.status = status or {}      # daemon -> Status
        self.systemd = systemd          # systemd manages Ganeti here
        self.mond = None                # None (not asked), or (answered, text)
        self.errors = []


# --- probe -------------------------------------------------------------------

def kvmd_wanted(data_dir, node):
    """Whether ganeti-kvmd stays up here: it exits at once unless KVM is an
    enabled hypervisor, the cluster enables user shutdown and this node is
    VM capable (its start, src/Ganeti/Kvmd.hs, reads these from ssconf)."""
    if "kvm" not in ganeti.read_ssconf_list(data_dir, "hypervisor_list"):
        return False
    if (ganeti.read_ssconf(data_dir, "enabled_user_shutdown") or "").strip() != "True":
        return False
    return ganeti.read_ssconf_pairs(data_dir, "node_vm_capable", "=").get(node) == "True"


def expected_daemons(role, mond, kvmd):
    """The daemons Ganeti starts and keeps for `role` (a ganeti role).

    daemon-util start-all starts all of them everywhere and the watcher
    (StartNodeDaemons) restarts noded, confd, mond and kvmd on every node;
    confd runs on every node (serving nothing where there is no config);
    wconfd, luxid and rapi exit on any node but the master.  Nothing is
    expected of an offline node or an orphan.
    """
    if role not in (ganeti.MASTER, ganeti.CANDIDATE, ganeti.REGULAR):
        return []
    names = [NODED, CONFD]
    if role == ganeti.MASTER:
        names += list(MASTER_ONLY)
    if kvmd:
        names.append(KVMD)
    if mond:
        names.append(MOND)
    return names


def pid_status(proc, run_dir, name, owners, hidden=False):
    """The Status of daemon `name` from `<run_dir>/<name>.pid`.

    `hidden`: /proc hides other users' processes from us (hidepid), so a
    pid that seems gone may just be invisible: cannot tell, not "stopped".
    """
    path = os.path.join(run_dir, name + ".pid")
    try:
        text = read_file(path, PID_FILE_MAX, owners=owners)
    except FileNotFoundError:
        return Status(False, "no pid file")
    except PermissionError as e:
        return Status(None, "cannot read %s (run the check as root)" % describe(e))
    except OSError as e:
        return Status(None, "its pid file is refused: %s" % describe(e))
    try:
        pid = int(text.strip())
    except ValueError:
        pid = 0
    if pid <= 0:
        return Status(False, "its pid file %s holds no process id" % path, stale=path)
    try:
        state = procfs.state(proc, pid)
        comm = procfs.comm(proc, pid)
        stranger = procfs.foreign_uid(proc, pid, owners)
    except PermissionError:
        return Status(None, "cannot look at pid %d (run the check as root)" % pid)
    if (state is None or comm is None) and hidden:
        return Status(None, "cannot see pid %d: %s hides other users' processes "
                      "(hidepid); run the check as root" % (pid, proc))
    if state is None or comm is None:
        return Status(False, "its pid file names pid %d, which is not running" % pid,
                      pid, path)
    if state in ("Z", "X"):
        return Status(False, "its pid file names pid %d, which has exited (a zombie)"
                      % pid, pid, path)
    if comm != name[:COMM_MAX]:
        return Status(False, "its pid file names pid %d, which is another process "
                      "(%s): the pid was reused" % (pid, comm), pid, path)
    if stranger is not None:  # any user can name a process like a daemon
        return Status(False, "its pid file names pid %d, a process of uid %d, which "
                      "is neither root nor a Ganeti user: the pid was reused"
                      % (pid, stranger), pid, path)
    return Status(True, pid=pid)


def systemd_status(systemctl, timeout, state_dir, names):
    """{daemon: Status} from systemd when it manages Ganeti here, else None.

    As daemon-util decides: systemd is used when it knows ganeti.target
    (LoadState=loaded).  One bounded `systemctl show` for all units.
    """
    from ..command import run_bounded
    units = ["ganeti.target"] + [n + ".service" for n in names]
    try:
        code, timed_out, ((out, _), (err, _)) = run_bounded(
            [systemctl, "show", "--property=Id,LoadState,ActiveState,SubState"]
            + units, timeout, _tmpdir(state_dir), limits=(1 << 16, 4096))
    except OSError as e:
        raise RuntimeError("cannot run %s: %s" % (systemctl, describe(e)))
    if timed_out or code != 0:
        raise RuntimeError("%s show %s" % (systemctl, "timed out after %s" % format_duration(
            timeout) if timed_out else "exited %s: %s" % (code, err.decode(
                "utf-8", "replace").strip()[:200])))
    shown = {}
    for block in out.decode("utf-8", "replace").split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            shown[props["Id"]] = props
    if shown.get("ganeti.target", {}).get("LoadState") != "loaded":
        return None
    found = {}
    for name in names:
        props = shown.get(name + ".service", {})
        active = props.get("ActiveState")
        if active == "active":
            found[name] = Status(True)
        elif active is None:
            found[name] = Status(None, "systemctl show did not report %s.service" % name)
        else:
            found[name] = Status(False, "its unit is %s (%s)" % (
                active, props.get("SubState") or "?"))
    return found


def _tmpdir(state_dir):
    return state_dir if os.path.isdir(state_dir) else None


def http_status(address, port, timeout):
    """The HTTP status code of `GET /` at address:port, or an error text.

    The whole exchange is bounded by `timeout`: a server that accepts and
    never answers, or answers a byte at a time, is cut off when it is up.
    """
    import socket
    import time
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % address.encode("ascii"))
            data = b""
            while b"\n" not in data and len(data) < 4096:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except socket.timeout:
        return "no answer within %s" % format_duration(timeout)
    except OSError as e:
        return (e.strerror or str(e)).lower()
    fields = data.split(b"\n", 1)[0].split()
    if len(fields) >= 2 and fields[0].startswith(b"HTTP/") and fields[1].isdigit():
        return int(fields[1])
    return "not an HTTP answer" if data else "the connection was closed without an answer"


def ask_mond(addresses, port, timeout):
    """(answered, text): the first of `addresses` where mond answers."""
    tried = []
    for address in addresses:
        status = http_status(address, port, timeout)
        if isinstance(status, int):
            return True, "answers on %s:%d with HTTP %d" % (address, port, status), status
        tried.append("%s: %s" % (address, status))
    return False, "; ".join(tried), None


def probe(s, role):
    """Look at every daemon of this node; a Probe."""
    mond = s.mond == "yes" or (s.mond == "auto" and os.path.exists(
        os.path.join(s.daemon_dir, MOND)))
    kvmd = role.role in (ganeti.MASTER, ganeti.CANDIDATE, ganeti.REGULAR) \
        and kvmd_wanted(s.data_dir, role.node)
    found = Probe(role, expected_daemons(role.role, mond, kvmd))
    status = None
    if os.path.isdir(s.systemd_dir) and os.path.exists(s.systemctl):
        status = systemd_status(s.systemctl, s.systemctl_timeout, s.state_dir, DAEMONS)
    found.systemd = status is not None
    if status is None:
        owners = ganeti.owners()
        hidden = os.geteuid() != 0 and procfs.others_hidden(s.proc)
        status = {n: pid_status(s.proc, s.run_dir, n, owners, hidden) for n in DAEMONS}
    found.status = status
    if MOND in found.expected and status[MOND].running:
        addresses = ["127.0.0.1"]
        own = ganeti.read_ssconf_pairs(s.data_dir, "node_primary_ips").get(role.node)
        if own and own not in addresses:
            addresses.append(own)
        found.mond = ask_mond(addresses, s.mond_port, s.mond_timeout)
    return found


# --- evaluate ----------------------------------------------------------------

def start_command(s, found, name):
    """The command that starts `name` on this node ('<daemon>' for any)."""
    if found.systemd:
        return "systemctl start %s.service" % name
    return "%s start %s" % (s.daemon_util, name)


def stop_command(s, found, name):
    if found.systemd:
        return "systemctl stop %s.service" % name
    return "%s stop %s" % (s.daemon_util, name)


def missing_text(s, found, missing):
    """'ganeti-confd not running, start it: ...' with the remedy; for
    several daemons one command pattern.  daemon-util (start-stop-daemon)
    refuses to start over a pid file that is not root's: stale ones are
    named for removal first."""
    stale = [found.status[n].stale for n in missing if found.status[n].stale]
    first = "remove the stale %s first (rm %s), then " % (
        "pid file" if len(stale) == 1 else "pid files", " ".join(stale)) if stale else ""
    if len(missing) == 1:
        return "%s not running, %sstart it: %s" % (
            missing[0], first, start_command(s, found, missing[0]))
    return "%d daemons not running: %s, %sstart each: %s" % (
        len(missing), ", ".join(missing), first, start_command(s, found, "<daemon>"))


def role_text(role):
    cluster = role.cluster or "?"
    return {ganeti.MASTER: "master of %s" % cluster,
            ganeti.CANDIDATE: "master candidate in %s" % cluster,
            ganeti.REGULAR: "node in %s" % cluster,
            ganeti.OFFLINE: "offline node in %s" % cluster}.get(role.role, cluster)


def evaluate(found, s):
    """The Result of one Probe."""
    role, status = found.role, found.status
    missing = [n for n in found.expected if status[n].running is False]
    unknown = [n for n in found.expected if status[n].running is None]
    running = [n for n in DAEMONS if status[n].running]
    stray = [n for n in MASTER_ONLY if status[n].running and not role.is_master]
    problems = []  # (state, text)
    details = []
    orphan = role.role == ganeti.NOT_LISTED
    if orphan:
        problems.append((WARN, "orphan node: configured for cluster %s but not a "
                         "member (%s is not in ssconf_node_list of the master %s); "
                         "re-add it on the master (gnt-node add --readd %s) or "
                         "remove Ganeti from it (%s stop-all, then move the "
                         "ssconf_* files out of %s)" % (
                             role.cluster or "?", role.node, role.master or "?",
                             role.node, s.daemon_util, s.data_dir)))
    if missing:
        problems.append((CRIT, missing_text(s, found, missing)))
    for name in missing:
        details.append("%s: %s; start it: %s" % (name, status[name].why,
                                                 start_command(s, found, name)))
    if found.mond is not None and not found.mond[0]:
        problems.append((CRIT, "%s runs but does not answer on port %d, restart "
                         "it: %s, then %s" % (MOND, s.mond_port, stop_command(s, found, MOND),
                                              start_command(s, found, MOND))))
        details.append("%s: %s" % (MOND, found.mond[1]))
    elif found.mond is not None and found.mond[2] != 200:
        problems.append((WARN, "%s %s" % (MOND, found.mond[1])))
    for name in unknown:
        problems.append((UNKNOWN, "cannot tell whether %s runs: %s" % (
            name, status[name].why)))
    for name in stray:
        problems.append((WARN, "%s runs but this node is not the master (%s is), "
                         "left behind by a master failover? Stop it: %s" % (
                             name, role.master or "?", stop_command(s, found, name))))
    state = worst((p[0] for p in problems), default=OK)
    where = role_text(role)

    def build(n):
        if problems:  # an orphan's first problem says where it is
            text = "; ".join(text for _, text in problems)
            return text if orphan else "%s (%s)" % (text, where)
        if not found.expected:
            extra = " (%s run)" % some(running, n) if running else ""
            return "%s: no Ganeti daemon expected%s" % (where, extra)
        on_demand = [d for d in running if d not in found.expected]
        extra = " (and %s)" % ", ".join(on_demand) if on_demand else ""
        return "%s: %s run%s" % (where, some(found.expected, n), extra)

    details += ["running: %s" % (", ".join(
        "%s%s" % (n, " (pid %d)" % status[n].pid if status[n].pid else "")
        for n in running) or "no Ganeti daemon")]
    details.append("expected for this role: %s" % (", ".join(found.expected) or "none"))
    if found.mond is not None and found.mond[0]:
        details.append("%s %s" % (MOND, found.mond[1]))
    details.append("checked %s" % ("systemd units (systemd manages ganeti.target)"
                                   if found.systemd else "pid files in %s" % s.run_dir))
    for name in DAEMONS:
        if name not in found.expected and status[name].running is False \
                and status[name].stale:
            details.append("%s (not expected here): %s" % (name, status[name].why))
    metrics = [Metric("ganeti_daemons_expected", len(found.expected), min=0),
               Metric("ganeti_daemons_missing", len(missing), None, 1, min=0)]
    return Result(state, SERVICE, fit(build), details, metrics)


def labels(role, data_dir, state_dir, log):
    """The host's Checkmk labels from its role."""
    found = {"ganeti/cluster": role.cluster or "", "ganeti/role": ROLE_LABELS[role.role]}
    if role.role != ganeti.NOT_LISTED:
        try:
            found["ganeti/nodegroup"] = ganeti.node_group(data_dir, role.node,
                                                          state_dir) or ""
        except (OSError, ValueError) as e:
            log("no node group label: %s" % e)
    return found


def run(ctx):
    s = ctx.settings
    role = ganeti.node_role(s.data_dir, s.node)
    if role.role == ganeti.NOT_IN_CLUSTER:
        raise NotApplicable("this node is not in a Ganeti cluster (no %s)"
                            % os.path.join(s.data_dir, "ssconf_master_node"))
    ctx.labels = labels(role, s.data_dir, s.state_dir, ctx.log)
    found = probe(s, role)
    ctx.log("%s; expected %s; %s" % (role, found.expected, found.status))
    return [evaluate(found, s)]


CHECK = Check(
    "daemons", SERVICE, run=run, settings=Settings, defaults=DEFAULTS,
    description="Checkmk local check: does this node run the Ganeti daemons "
    "its role (master, master candidate, node) needs, and does ganeti-mond "
    "answer? Also gives the host the labels ganeti/cluster, ganeti/role and "
    "ganeti/nodegroup.",
    epilog="States: OK every daemon the role needs runs; CRIT one is missing "
    "(with the command that starts it) or\nganeti-mond does not answer; WARN "
    "a master daemon runs on a node that is not the master, or\nthe node is an "
    "orphan; UNKNOWN a pid file cannot be read.  Nothing on a host outside a "
    "cluster.")
