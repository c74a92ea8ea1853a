"""DRBD check: every state, names from Ganeti's run dir, timers, bad input.

/proc/drbd comes from recorded fixtures (tests/data/drbd/, written from
DRBD's drbd_proc.c and Ganeti's test data), Ganeti's run dir and the
state dir are real trees in tmp_path, the qemu under a Secondary disk is
a real process.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support import ROOT, assert_valid_output, needs_root, run_agent
from ganeti_cmk.checks import drbd as check
from ganeti_cmk.localcheck import render_local
from ganeti_cmk.runner import Context, run_check

DATA = os.path.join(ROOT, "tests", "data", "drbd")
FORMS = ("all-states-8.4.txt", "all-states-8.3.txt", "all-states-st.txt")
NODE = "DRBD"

# minor: (state, words the summary says) for every all-states fixture
EXPECTED = {
    0: ("0", "replicating (drbd0: Connected, Primary/Secondary, UpToDate/UpToDate)"),
    1: ("0", "replicating (drbd1: Connected, Secondary/Primary, UpToDate/UpToDate)"),
    3: ("1", "resyncing (SyncSource, this node sends): 68.0% done, 328 MiB left, "
             "finish in about 5 s (DRBD's estimate)"),
    4: ("1", "resyncing (SyncTarget, this node receives): 2.4% done, 15 GiB left, "
             "finish in about 4.1 min"),
    5: ("1", "resync paused (PausedSyncT, this node receives)"),
    6: ("1", "512 MiB out of sync although Connected and no resync running (online "
             "verify found a divergence): disconnect and reconnect the device to resync it"),
    7: ("1", "not connected (WFConnection) for 0 s: the peer node is down or "
             "unreachable (CRIT after 15 min)"),
    8: ("1", "StandAlone for 0 s: not replicating (Ganeti disconnects a disk for "
             "moments when it migrates or replaces disks; CRIT after 30 s)"),
    9: ("2", "local disk Diskless: this node holds no copy of the data"),
    10: ("2", "peer disk Diskless: the peer holds no copy of the data"),
    11: ("2", "local disk Outdated and no resync running: this copy is stale; "
              "StandAlone for 0 s"),
    12: ("2", "local disk Outdated and no resync running: this copy is stale; not "
              "connected (WFConnection)"),
    13: ("2", "local disk Inconsistent and no resync running: this copy is unusable"),
    14: ("1", "Primary/Primary for 0 s (a live migration? CRIT after 1 h)"),
    15: ("0", "online verify running (VerifyS): 12.5% done"),
    16: ("2", "local disk Failed: I/O error on the backing storage"),
    17: ("1", "replication suspended by congestion (Ahead): 128 MiB out of sync"),
    18: ("1", "not connected (Unconnected) for 0 s"),
    19: ("1", "not connected (NetworkFailure) for 0 s"),
    20: ("1", "not connected (BrokenPipe) for 0 s"),
    21: ("1", "not connected (Timeout) for 0 s"),
    22: ("1", "resync paused (PausedSyncS, this node sends)"),
    23: ("1", "starting a resync (WFBitMapT, this node receives)"),
    24: ("0", "replicating (drbd24: Connected, Secondary/Secondary, UpToDate/UpToDate)"),
    25: ("1", "resyncing (SyncTarget, this node receives): 0.8% done, 1016 MiB left, stalled"),
    26: ("1", "peer disk Consistent: not known to be up to date"),
}


def fixture(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


class Node:
    """A node's files in a tmp tree: /proc/drbd, run dir, data dir, /sys."""

    def __init__(self, root, proc_text=None):
        self.root = root
        self.proc_drbd = root / "proc_drbd"
        self.run = root / "run"
        self.data = root / "data"
        self.sys = root / "sys"
        self.state = root / "state"
        (self.sys / "module").mkdir(parents=True)
        self.data.mkdir()
        self.run.mkdir()
        if proc_text is not None:
            self.proc_drbd.write_text(proc_text)

    def cache(self, minor, text):
        directory = self.run / "bdev-cache"
        directory.mkdir(exist_ok=True)
        (directory / ("bdev_drbd%d" % minor)).write_bytes(
            text if isinstance(text, bytes) else text.encode())

    def link(self, instance, index, minor):
        directory = self.run / "instance-disks"
        directory.mkdir(exist_ok=True)
        os.symlink("/dev/drbd%d" % minor, str(directory / ("%s:%d" % (instance, index))))

    def config(self, **keys):
        keys.setdefault("proc_drbd", str(self.proc_drbd))
        return ("[drbd]\n%s[paths]\nganeti_run_dir = %s\nganeti_data_dir = %s\n"
                "sys = %s\nstate_dir = %s\n" % (
                    "".join("%s = %s\n" % item for item in keys.items()),
                    self.run, self.data, self.sys, self.state))

    def state_file(self):
        return self.state / "drbd.json"


def run_here(node, **keys):
    """Run the check in this process as the agent would; {service: fields},
    or None when it does not apply."""
    ctx = Context(check.CHECK.config(text=node.config(**keys)), debug=True)
    results = run_check(check.CHECK, ctx)
    if results is None:
        return None
    lines = render_local(results)
    return assert_valid_output("".join(line + "\n" for line in lines))[None]


def by_minor(services):
    found = {}
    for name, fields in services.items():
        if name.startswith("DRBD minor "):
            found[int(name.split()[-1])] = fields
    return found


# --- every state, in every form -------------------------------------------

@pytest.mark.parametrize("form", FORMS)
def test_every_state_in_every_form(tmp_path, form):
    services = run_here(Node(tmp_path, fixture(form)))
    minors = by_minor(services)
    assert sorted(minors) == sorted(EXPECTED)  # Unconfigured minor 2: no service
    for minor, (state, words) in EXPECTED.items():
        assert minors[minor]["state"] == state, (minor, minors[minor]["summary"])
        assert words in minors[minor]["summary"], (minor, minors[minor]["summary"])
        assert "no Ganeti instance known for it on this node" in minors[minor]["summary"]
    node = services[NODE]
    assert node["state"] == "0"  # device problems are their own services' alarms
    assert node["summary"].startswith("22 of 26 DRBD devices not OK, see their "
                                      "services: DRBD minor 9 (CRIT), DRBD minor 10 (CRIT)")
    assert node["metrics"]["drbd_devices"] == 26 and node["metrics"]["drbd_crit"] == 6


def test_metrics_per_device(tmp_path):
    minors = by_minor(run_here(Node(tmp_path, fixture(FORMS[0]))))
    assert minors[6]["metrics"] == {"drbd_oos_bytes": 512 << 20}
    assert minors[3]["metrics"] == {"drbd_oos_bytes": 335872 * 1024, "drbd_sync_percent": 68}
    assert "drbd_sync_percent" not in minors[15]["metrics"]  # verify, not resync


def test_resync_ok_while_progressing_but_not_paused_or_stalled(tmp_path):
    minors = by_minor(run_here(Node(tmp_path, fixture(FORMS[0])), resync_state="ok"))
    assert minors[3]["state"] == "0" and minors[4]["state"] == "0"
    assert minors[23]["state"] == "1"  # the handshake before it moves no data
    assert minors[5]["state"] == "1" and minors[22]["state"] == "1"
    assert minors[25]["state"] == "1" and "stalled" in minors[25]["summary"]


def test_summary_mode_folds_everything_into_one_service(tmp_path):
    services = run_here(Node(tmp_path, fixture(FORMS[0])), services="summary")
    assert list(services) == [NODE]
    node = services[NODE]
    assert node["state"] == "2"
    assert node["summary"].startswith(
        "22 of 26 DRBD devices not OK: minor 9: local disk Diskless: this node "
        "holds no copy of the data")
    assert node["metrics"] == {"drbd_devices": 26, "drbd_ok": 4, "drbd_warn": 16,
                               "drbd_crit": 6, "drbd_unknown": 0, "drbd_resyncing": 6,
                               "drbd_oos_bytes": node["metrics"]["drbd_oos_bytes"]}
    assert len(node["summary"]) <= 960


def test_all_replicating(tmp_path):
    text = "\n".join(fixture(FORMS[0]).split("\n")[:6]) + "\n"
    node = Node(tmp_path, text)
    node.cache(0, "web1.example.com primary disk/0\n")
    node.cache(1, "db1.example.com secondary disk/1\n")
    services = run_here(node)
    assert services[NODE]["summary"] == (
        "2 DRBD devices replicating (1 Primary here, 1 Secondary), DRBD 8.4.11")
    assert services["DRBD web1.example.com disk/0"]["state"] == "0"
    assert services["DRBD db1.example.com disk/1"]["state"] == "0"


def test_unknown_states_are_unknown_with_the_raw_text(tmp_path):
    node = Node(tmp_path, fixture("unknown-states.txt"))
    _save_state(node, {"6:standalone": time.time() - 3600})
    minors = by_minor(run_here(node))
    assert minors[0]["state"] == "0"
    for minor, word in ((3, "cs:TOO_LARGE"), (4, "ro:Tertiary"), (5, "ds:Sparkling")):
        assert minors[minor]["state"] == "3"
        assert minors[minor]["summary"].startswith("unknown DRBD state %s: %d: cs:" % (word, minor))
    # a known CRIT is not hidden behind an unknown word
    assert minors[6]["state"] == "2" and "ds:Frozen" in minors[6]["summary"]


def test_torn_file_gives_unknown_for_the_torn_minors_only(tmp_path):
    minors = by_minor(run_here(Node(tmp_path, fixture("torn.txt"))))
    assert minors[0]["state"] == "3" and "appears twice" in minors[0]["summary"]
    assert minors[1]["state"] == "3" and "cs:Connected ro:Seco" in minors[1]["summary"]
    assert minors[2]["state"] == "3" and "oos:4x96" in minors[2]["summary"]
    assert minors[3]["state"] == "1" and "5.0% done" in minors[3]["summary"]
    assert minors[0]["metrics"] == {}  # which of the two is now is unknown


def test_drbd9_is_unknown(tmp_path):
    services = run_here(Node(tmp_path, fixture("drbd9.txt")))
    assert services == {NODE: services[NODE]}
    assert services[NODE]["state"] == "3"
    assert services[NODE]["summary"].startswith("DRBD 9 is not supported by Ganeti")


def test_module_loaded_without_devices(tmp_path):
    services = run_here(Node(tmp_path, fixture("no-devices.txt")))
    assert services[NODE]["state"] == "0"
    assert services[NODE]["summary"] == "no DRBD devices in use (DRBD 8.4.11)"


def test_garbage_is_unknown(tmp_path):
    services = run_here(Node(tmp_path, "hello world\n"))
    assert services[NODE]["state"] == "3"
    assert services[NODE]["summary"].startswith("cannot read %s: no version line" % (
        tmp_path / "proc_drbd"))


# --- names from Ganeti's run dir ---------------------------------------------

def test_names_come_from_bdev_cache_and_roles_from_proc(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.cache(0, "web1.example.com secondary disk/0\n")  # stale word: it is Primary
    node.cache(8, "db2.example.com primary disk/1\n")
    node.link("mail.example.com", 0, 3)     # no cache entry: the link names it
    node.cache(2, "gone.example.com primary disk/0\n")  # minor not configured
    services = run_here(node)
    web1 = services["DRBD web1.example.com disk/0"]
    assert web1["state"] == "0" and "Primary/Secondary" in web1["summary"]
    assert services["DRBD db2.example.com disk/1"]["summary"].startswith("StandAlone")
    assert services["DRBD mail.example.com disk/0"]["summary"].startswith("resyncing")
    assert "DRBD minor 0" not in services and "DRBD minor 3" not in services
    assert not any("gone" in name for name in services)
    assert "bdev-cache still names minors that are not configured: 2" in \
        " ".join(services[NODE]["details"])


def test_hostile_and_broken_bdev_cache_entries_name_by_minor(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.cache(0, 'evil" 2 x primary disk/0\n')
    node.cache(1, "Web1.Example.com secondary disk/0\n")   # Ganeti writes lower case
    node.cache(3, "a" * 120 + " primary disk/0\n")          # too long for a service
    node.cache(4, "dup.example.com primary disk/0\n")
    node.cache(5, "dup.example.com secondary disk/0\n")
    node.cache(6, b"\xff\xfe\x00 primary disk/0\n")
    node.cache(7, "x.example.com primary disk/0\n1 \"DRBD fake\" - injected\n")
    node.cache(9, "")
    node.cache(10, "ok.example.com primary ../../etc\n")
    (node.run / "bdev-cache" / "bdev_drbd11").mkdir()
    node.cache(12, "z" * 2000)
    services = run_here(node)
    minors = by_minor(services)
    for minor in (0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12):
        assert minor in minors, minor
    assert not any("evil" in name or "fake" in name or "dup" in name for name in services)
    assert "claimed by minors 4, 5" in " ".join(minors[4]["details"])
    assert "it is " + "a" * 120 + " disk/0" in minors[3]["summary"]
    assert "not read" in " ".join(minors[11]["details"])


def test_same_name_in_link_and_cache_is_one_service(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.cache(0, "web1.example.com primary disk/0\n")
    node.link("web1.example.com", 0, 0)
    node.link("web1.example.com", 1, 99)  # a device that is not configured
    node.link("bad name", 0, 1)
    os.symlink("/dev/sda", str(node.run / "instance-disks" / "other.example.com:0"))
    services = run_here(node)
    assert "DRBD web1.example.com disk/0" in services
    assert "DRBD minor 1" in services and "DRBD web1.example.com disk/1" not in services


# --- the instance's qemu on this node ------------------------------------------

@pytest.fixture
def qemu():
    """A real process whose command line says -name web1.example.com."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                "-name", "web1.example.com,debug-threads=on"])
    yield process
    process.kill()
    process.wait()


def _pid_file(node, instance, pid):
    directory = node.run / "kvm-hypervisor" / "pid"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / instance).write_text("%d\n" % pid)


def test_secondary_under_a_running_qemu_is_crit(tmp_path, qemu):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.cache(1, "web1.example.com primary disk/0\n")   # minor 1 is Secondary
    node.cache(0, "db1.example.com primary disk/0\n")    # Primary: fine anyway
    _pid_file(node, "web1.example.com", qemu.pid)
    _pid_file(node, "db1.example.com", qemu.pid)          # -name differs: not db1
    services = run_here(node)
    web1 = services["DRBD web1.example.com disk/0"]
    assert web1["state"] == "2"
    assert web1["summary"].startswith(
        "Secondary here although web1.example.com's qemu runs on this node (pid %d): "
        "the instance cannot write this disk" % qemu.pid)
    assert services["DRBD db1.example.com disk/0"]["state"] == "0"


def test_secondary_with_a_stale_pid_file_is_ok(tmp_path, qemu):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.cache(1, "db1.example.com secondary disk/0\n")
    _pid_file(node, "db1.example.com", qemu.pid)  # the pid runs web1, not db1
    assert run_here(node)["DRBD db1.example.com disk/0"]["state"] == "0"


# --- grace times across runs ---------------------------------------------------

def test_update_timers():
    now = 10000.0
    first = check.update_timers({}, {"7:disconnected"}, now)
    assert first == {"last": now, "since": {"7:disconnected": now}}
    later = check.update_timers(first, {"7:disconnected"}, now + 60)
    assert later["since"] == {"7:disconnected": now}
    gone = check.update_timers(later, set(), now + 120)
    assert gone["since"] == {}
    kept = check.update_timers(later, set(), now + 120, unsure={"7"})
    assert kept["since"] == {"7:disconnected": now}


def test_a_clock_going_back_never_extends_a_grace():
    saved = {"last": 5000.0, "since": {"7:disconnected": 4000.0}}  # held 1000 s
    stepped_back = check.update_timers(saved, {"7:disconnected"}, 1000.0)
    assert 1000.0 - stepped_back["since"]["7:disconnected"] == 1000.0
    future = check.update_timers({"last": 0.0, "since": {"7:disconnected": 9e9}},
                                 {"7:disconnected"}, 1000.0)
    assert future["since"]["7:disconnected"] == 1000.0


def _save_state(node, since, last=None):
    node.state.mkdir(exist_ok=True)
    node.state_file().write_text(json.dumps({"last": last or time.time(), "since": since}))


def test_disconnected_turns_crit_after_the_grace(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    first = by_minor(run_here(node))
    assert first[7]["state"] == "1"
    saved = json.loads(node.state_file().read_text())
    assert set(saved["since"]) == {"%d:disconnected" % m for m in (7, 12, 18, 19, 20, 21)} | {
        "14:dual_primary", "8:standalone", "11:standalone"}
    _save_state(node, {"7:disconnected": time.time() - 16 * 60,
                       "14:dual_primary": time.time() - 2 * 3600})
    minors = by_minor(run_here(node))
    assert minors[7]["state"] == "2"
    assert minors[7]["summary"].startswith("not connected (WFConnection) for 16 min: the "
                                           "peer node is down or unreachable: check it "
                                           "and the replication network")
    assert minors[14]["state"] == "2"
    assert minors[14]["summary"].startswith("Primary/Primary for 2.0 h: Ganeti uses dual "
                                            "primary only during a live migration")
    assert minors[18]["state"] == "1"  # its own timer just started


def test_clock_stepped_back_keeps_the_crit(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    now = time.time()
    _save_state(node, {"7:disconnected": now + 3600 - 20 * 60}, last=now + 3600)
    assert by_minor(run_here(node))[7]["state"] == "2"


def test_a_corrupt_state_file_heals(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.state.mkdir()
    node.state_file().write_text('{"since": {"7:disconnected": "yesterday"}')
    services = run_here(node)
    assert by_minor(services)[7]["state"] == "1"
    assert any("timers start again" in d for d in services[NODE]["details"])
    assert "7:disconnected" in json.loads(node.state_file().read_text())["since"]


def test_state_file_goes_when_nothing_is_timed(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    run_here(node)
    assert node.state_file().exists()
    node.proc_drbd.write_text("\n".join(fixture(FORMS[0]).split("\n")[:6]) + "\n")
    run_here(node)
    assert not node.state_file().exists()


def test_unwritable_state_dir_says_grace_cannot_run_out(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.state.write_text("a file, not a directory")
    services = run_here(node)
    assert services[NODE]["state"] == "1"
    assert "grace times cannot run out" in services[NODE]["summary"]


# --- no /proc/drbd ----------------------------------------------------------------

def test_not_a_drbd_node_prints_nothing(tmp_path):
    node = Node(tmp_path)
    assert run_here(node) is None
    proc = run_agent("ganeti_drbd", tmp_path, node.config())
    assert proc == {}


def _config_data(node, templates):
    node.data.joinpath("config.data").write_text(json.dumps(
        {"cluster": {"enabled_disk_templates": templates}, "instances": {}}))


def test_module_missing_where_the_cluster_enables_drbd(tmp_path):
    node = Node(tmp_path)
    _config_data(node, ["plain", "drbd"])
    services = run_agent("ganeti_drbd", tmp_path, node.config())
    assert services[NODE]["state"] == "2"
    assert services[NODE]["summary"] == ("drbd module not loaded: modprobe drbd (the "
                                         "cluster enables the drbd disk template)")


def test_module_missing_where_the_cluster_does_not_use_drbd(tmp_path):
    node = Node(tmp_path)
    _config_data(node, ["plain", "file"])
    assert run_here(node) is None
    node.cache(4, "web1.example.com primary disk/0\n")
    services = run_here(node)
    assert services[NODE]["state"] == "2"
    assert "Ganeti's bdev-cache lists DRBD minor 4" in services[NODE]["summary"]
    assert run_here(node, require_module="no") is None


def test_require_module_yes(tmp_path):
    node = Node(tmp_path)
    assert run_here(node, require_module="yes")[NODE]["state"] == "2"


def test_module_loaded_but_proc_file_missing(tmp_path):
    node = Node(tmp_path)
    (node.sys / "module" / "drbd").mkdir()
    services = run_here(node)
    assert services[NODE]["state"] == "3"
    assert "check [drbd] proc_drbd" in services[NODE]["summary"]


def test_broken_config_data_is_not_a_reason_to_alarm(tmp_path):
    node = Node(tmp_path)
    node.data.joinpath("config.data").write_text("{not json")
    ctx = Context(check.CHECK.config(text=node.config()))
    assert run_check(check.CHECK, ctx) is None
    assert "is not a Ganeti configuration" in ctx.not_applicable


# --- as the agent runs it ------------------------------------------------------------

def test_agent_run_end_to_end(tmp_path):
    node = Node(tmp_path, fixture(FORMS[1]))
    node.cache(9, "web1.example.com secondary disk/0\n")
    services = run_agent("ganeti_drbd", tmp_path, node.config())
    assert services["DRBD web1.example.com disk/0"]["state"] == "2"
    assert services[NODE]["state"] == "0"
    assert len(services) == 1 + len(EXPECTED)


def test_bad_config_values_fall_back_and_say_so(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    services = run_here(node, services="some", disconnected_grace="soon")
    assert services[NODE]["state"] == "1"
    assert "[drbd] services: 'some' is not one of per-device, summary" in \
        services[NODE]["summary"] + " ".join(services[NODE]["details"])
    assert "DRBD minor 0" in services  # per-device, the default


def _many_minors(count):
    lines = ["version: 8.4.11 (api:1/proto:86-101)", "srcversion: 0"]
    for minor in range(count):
        lines += ["%d: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----" % minor,
                  "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:%d"
                  % (minor % 7 == 0)]
    return "\n".join(lines) + "\n"


def test_five_thousand_minors(tmp_path):
    node = Node(tmp_path, _many_minors(5000))
    services = run_agent("ganeti_drbd", tmp_path, node.config())
    assert len(services) == 5001
    assert services[NODE]["summary"].startswith("715 of 5000 DRBD devices not OK")
    summary = run_agent("ganeti_drbd", tmp_path, node.config(services="summary"))
    assert list(summary) == [NODE] and summary[NODE]["metrics"]["drbd_warn"] == 715


@needs_root
def test_unreadable_bdev_cache_as_another_user_is_unknown():
    with tempfile.TemporaryDirectory() as tmp:  # pytest's tmp_path is root's only
        os.chmod(tmp, 0o755)
        _unreadable_bdev_cache(Path(tmp))


def _unreadable_bdev_cache(tmp_path):
    node = Node(tmp_path, fixture(FORMS[0]))
    node.cache(0, "web1.example.com primary disk/0\n")
    os.chmod(str(node.run / "bdev-cache"), 0o700)
    for path in (node.run, node.sys, node.data, node.sys / "module", node.proc_drbd):
        os.chmod(str(path), 0o755 if path.is_dir() else 0o644)
    os.chown(str(node.proc_drbd), 65534, 65534)
    services = run_agent("ganeti_drbd", tmp_path, node.config(), user=65534)
    assert services[NODE]["state"] == "3"
    assert "cannot read Ganeti's bdev-cache" in services[NODE]["summary"]
    assert "run the check as root" in services[NODE]["summary"]
    assert "DRBD minor 0" in services


# --- anything at all -------------------------------------------------------------------

PIECES = st.sampled_from(list(" \n:/0123456789%()KM.") + [
    "cs:", "ro:", "ds:", "oos:", "sync'ed:", "finish:", " 1: cs:", " 2: cs:",
    "Connected", "StandAlone", "WFConnection", "Primary", "Secondary",
    "UpToDate", "Diskless", "version: 8.4.11 ", "\"", "\\n", "\u2028"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(PIECES, max_size=80).map("".join),
       names=st.lists(st.binary(max_size=60), max_size=4))
def test_any_proc_drbd_and_any_bdev_cache_give_valid_unique_lines(text, names):
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(Path(tmp), text)
        for minor, name in enumerate(names):
            node.cache(minor + 1, name)
        for mode in ("per-device", "summary"):
            services = run_here(node, services=mode)
            assert services is not None and NODE in services
            for name in services:
                assert name == NODE or name.startswith("DRBD ")


@needs_root
def test_a_state_file_of_another_user_is_refused(tmp_path):
    # Read like any file the check did not write: another user's file could
    # otherwise start a grace long ago and fake a CRIT, or hide one.
    node = Node(tmp_path, fixture(FORMS[0]))
    node.state.mkdir()
    node.state_file().write_text(json.dumps({"last": 0, "since": {}}))
    os.chown(str(node.state_file()), 65534, 65534)
    services = run_here(node)
    assert any("unreadable" in d and "owned by uid 65534" in d
               for d in services[NODE]["details"])


@needs_root
def test_cluster_configuration_unreadable_as_another_user_is_unknown():
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        node = Node(Path(tmp))
        _config_data(node, ["drbd"])
        os.chmod(str(node.data / "config.data"), 0o600)
        for path in (node.root, node.run, node.sys, node.data, node.sys / "module"):
            os.chmod(str(path), 0o755)
        services = run_agent("ganeti_drbd", Path(tmp), node.config(), user=65534)
        assert services[NODE]["state"] == "3"
        assert services[NODE]["summary"].endswith("run the check as root")


NAMES = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda name, role, disk: ("%s %s %s\n" % (name, role, disk)).encode(
        "utf-8", "surrogateescape"),
        st.text(max_size=40), st.sampled_from(["primary", "secondary", "x"]),
        st.sampled_from(["disk/0", "disk/1", "not_visible", "disk/x", "../x"])),
    st.sampled_from([b"web1.example.com primary disk/0\n",
                     b"web1.example.com secondary disk/0\n"]))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.dictionaries(st.integers(0, 27), NAMES, max_size=12))
def test_any_bdev_cache_keeps_every_device_with_one_valid_name(names):
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(Path(tmp), fixture(FORMS[0]))
        for minor, content in names.items():
            node.cache(minor, content)
        services = run_here(node)  # the grammar refuses a repeated service
        assert len(services) == 1 + len(EXPECTED)
        for name in services:
            assert name == NODE or name.startswith("DRBD minor ") or \
                name.split()[2] in ("disk/0", "disk/1", "not_visible")


def test_timers_run_beside_an_unknown_word_and_survive_a_torn_read(tmp_path):
    waiting = ("version: 8.4.11 (api:1/proto:86-101)\n"
               " 7: cs:WFConnection ro:Primary/Unknown ds:Glowing/DUnknown C r-----\n"
               "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n")
    node = Node(tmp_path, waiting)
    _save_state(node, {"7:disconnected": time.time() - 20 * 60})
    minor = by_minor(run_here(node))[7]
    assert minor["state"] == "2"  # CRIT after the grace, beside the UNKNOWN word
    assert "ds:Glowing" in minor["summary"] and "for 20 min" in minor["summary"]
    node.proc_drbd.write_text(waiting.replace("ro:Primary/Unknown ds:Glowing/DUnknown", "ro:Pri"))
    assert by_minor(run_here(node))[7]["state"] == "3"
    assert "7:disconnected" in json.loads(node.state_file().read_text())["since"]


def _one_device(first_line, rest="", minor=5):
    """/proc/drbd with one device: its status line, counters, sync lines."""
    return ("version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 0\n"
            "%2d: %s\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 "
            "wo:f %s\n" % (minor, first_line, rest or "oos:0"))


def test_divergence_found_by_a_running_online_verify_is_not_ok(tmp_path):
    # Online verify counts what it finds in oos: a verify of a large disk
    # runs for hours, and a divergence found (or left from the last verify)
    # must not hide behind "verify running" until it ends.
    node = Node(tmp_path, _one_device(
        "cs:VerifyT ro:Secondary/Primary ds:UpToDate/UpToDate C r-----",
        "oos:8192\n\t[==>.................] verified: 15.0% (917504/1048576)K\n"
        "\tfinish: 0:00:14 speed: 65,536 (65,536) want: 102,400 K/sec"))
    minor = by_minor(run_here(node))[5]
    assert minor["state"] == "1"
    assert minor["summary"].startswith(
        "8 MiB out of sync found by the running online verify (VerifyT): when it "
        "ends, disconnect and reconnect the device to resync it")
    clean = Node(tmp_path / "clean", _one_device(
        "cs:VerifyS ro:Primary/Secondary ds:UpToDate/UpToDate C r-----"))
    assert by_minor(run_here(clean))[5]["state"] == "0"


@pytest.mark.parametrize("cs", ["WFSyncUUID", "WFBitMapT", "StartingSyncT"])
def test_resync_ok_does_not_cover_a_resync_that_never_starts(tmp_path, cs):
    # resync_state = ok is for a resync that progresses; a device stuck in
    # the handshake before it (a known DRBD 8.3 hang in WFSyncUUID) moves no
    # data while its local copy is Outdated: it must not be OK for ever.
    node = Node(tmp_path, _one_device(
        "cs:%s ro:Secondary/Primary ds:Outdated/UpToDate C r-----" % cs))
    minor = by_minor(run_here(node, resync_state="ok"))[5]
    assert minor["state"] == "1"
    assert minor["summary"].startswith("starting a resync (%s, this node receives)" % cs)


def test_behind_is_congestion_not_a_stale_disk(tmp_path):
    # DRBD keeps a Behind node's disk Outdated (or Inconsistent) until the
    # resync that follows the congestion (drbd_state.c sanitize_state): the
    # documented WARN, not the CRIT of an Outdated copy nobody resyncs.
    node = Node(tmp_path, _one_device(
        "cs:Behind ro:Secondary/Primary ds:Outdated/UpToDate A r-----", "oos:131072"))
    minor = by_minor(run_here(node))[5]
    assert minor["state"] == "1"
    assert minor["summary"].startswith(
        "replication suspended by congestion (Behind): 128 MiB out of sync (drbd5:")


class _CountedMinor(int):
    """A minor number that counts how often it is compared."""
    comparisons = 0
    __hash__ = int.__hash__

    def __eq__(self, other):
        _CountedMinor.comparisons += 1
        return int(self) == other


def test_naming_thousands_of_minors_is_not_quadratic(tmp_path, monkeypatch):
    # Every configured minor is looked up in the bdev-cache listing: a list
    # there costs minors x entries comparisons (25 million for 5000 minors,
    # seconds of CPU every minute); a set costs about one each.
    count = 3000
    minors = [_CountedMinor(m) for m in range(count)]
    monkeypatch.setattr(check.ganeti, "bdev_cache_minors", lambda run_dir: list(minors))
    monkeypatch.setattr(check.ganeti, "read_bdev_cache", lambda run_dir, minor: None)
    devices = [check.drbd.Device(m) for m in range(count)]
    _CountedMinor.comparisons = 0
    check.find_owners(str(tmp_path), devices, check.Probe())
    assert _CountedMinor.comparisons < 10 * count


def test_a_quiet_run_imports_no_json(tmp_path):
    # Every node runs this every minute: json (like re) is start-up time,
    # needed only while something is timed (the state file).
    node = Node(tmp_path, "\n".join(fixture(FORMS[0]).split("\n")[:6]) + "\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "ganeti_cmk.cfg").write_text(node.config())
    code = ("import sys; sys.path.insert(0, %r); from ganeti_cmk.runner import main; "
            "from ganeti_cmk.checks.drbd import CHECK; main(CHECK); "
            "sys.stderr.write('imported: %%s' %% sorted({'json', 're'} & set(sys.modules)))"
            % os.path.join(ROOT, "lib"))
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                               "MK_CONFDIR": str(tmp_path / "etc"),
                               "MK_VARDIR": str(tmp_path / "var")})
    assert_valid_output(proc.stdout)
    assert "2 DRBD devices replicating" in proc.stdout
    assert proc.stderr.endswith("imported: []"), proc.stderr


def test_two_links_to_one_minor_name_it_by_minor(tmp_path):
    # A stale link (left by a crash) and a live one to the same device:
    # which instance it is is unknown, so it is not guessed.
    node = Node(tmp_path, fixture(FORMS[0]))
    node.link("web1.example.com", 0, 1)
    node.link("old.example.com", 0, 1)
    services = run_here(node)
    assert "DRBD minor 1" in services
    assert not any("web1" in name or "old." in name for name in services)
    assert "old.example.com:0, web1.example.com:0" in " ".join(
        services["DRBD minor 1"]["details"])


@needs_root
def test_a_link_of_another_user_names_nothing(tmp_path):
    # Ganeti's node daemon (root) makes these links; one made by another
    # user is nobody's word for which instance a device is.
    node = Node(tmp_path, fixture(FORMS[0]))
    node.link("web1.example.com", 0, 1)
    node.link("db1.example.com", 0, 3)
    os.lchown(str(node.run / "instance-disks" / "db1.example.com:0"), 65534, 65534)
    services = run_here(node)
    assert "DRBD web1.example.com disk/0" in services
    assert "DRBD minor 3" in services and "DRBD db1.example.com disk/0" not in services


STANDALONE = "cs:StandAlone ro:Primary/Unknown ds:UpToDate/DUnknown   r-----"


def test_standalone_for_a_moment_is_what_every_migration_does(tmp_path):
    # Ganeti disconnects (StandAlone) and reconnects every DRBD disk twice in
    # each live migration and when it replaces disks: a run that lands in
    # that moment must not page "possible split brain".
    node = Node(tmp_path, _one_device(STANDALONE))
    first = by_minor(run_here(node))[5]
    assert first["state"] == "1"
    assert first["summary"].startswith(
        "StandAlone for 0 s: not replicating (Ganeti disconnects a disk for "
        "moments when it migrates or replaces disks; CRIT after 30 s)")
    assert "5:standalone" in json.loads(node.state_file().read_text())["since"]


def test_standalone_that_lasts_is_crit(tmp_path):
    node = Node(tmp_path, _one_device(STANDALONE))
    _save_state(node, {"5:standalone": time.time() - 60})
    minor = by_minor(run_here(node))[5]
    assert minor["state"] == "2"
    assert minor["summary"].startswith(
        "StandAlone: not replicating; possible split brain: check the kernel log (dmesg)")
    at_once = Node(tmp_path / "at-once", _one_device(STANDALONE))
    assert by_minor(run_here(at_once, standalone_grace="0s"))[5]["state"] == "2"


def test_the_state_file_is_read_as_the_checks_own_file(tmp_path):
    # A second hard link means someone else holds a name for it (and could
    # have written it): the timers in it are nobody's word, as statefile.read
    # says for every check's state file.
    node = Node(tmp_path, fixture(FORMS[0]))
    _save_state(node, {"7:disconnected": time.time() - 20 * 60})
    os.link(str(node.state_file()), str(tmp_path / "second-name"))
    services = run_here(node)
    assert by_minor(services)[7]["state"] == "1"
    assert any("timers start again" in d for d in services[NODE]["details"])
