"""The "KVM instance parameters" check: runtime files against the config.

Runtime files are in the formats of Ganeti 2.6 to 3.1 (tests/data/
kvm_parameters: 3.0.2 recorded on the real cluster, the others written
from each version's hv_kvm source).  Configurations are written with the
shape of Ganeti's config.data (objects.py: cluster.hvparams[hv],
cluster.os_hvp[os][hv], cluster.beparams["default"], instances by UUID);
confd is a UDP stand-in written from Ganeti's server (fake_confd).
Instances are real processes with `-name <instance>` and Ganeti's pid
files in a temp run dir.
"""

import copy
import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from fake_confd import FakeConfd
from support import ROOT, needs_root, run_agent, run_script
from ganeti_cmk import confd, ganeti
from ganeti_cmk.checks import kvm_parameters as kp
from ganeti_cmk.config import Config
from ganeti_cmk.localcheck import CRIT, OK, UNKNOWN, WARN
from ganeti_cmk.words import SUMMARY_MAX

SERVICE = "KVM instance parameters"
DATA = os.path.join(ROOT, "tests", "data", "kvm_parameters")
KEY = b"0123456789abcdef0123456789abcdef01234567\n"
NODE = "node1.example.com"
UUID = "23cf0d4c-e0cd-4fb8-a250-c69aebc0a827"
NOW = 1800000000.0


def recorded(version):
    with open(os.path.join(DATA, "runtime-%s.json" % version)) as f:
        return json.load(f)


def runtime_of(data, mtime=NOW - 86400):
    return ganeti.KvmRuntime(data[0], data[1], data[2],
                             data[3] if len(data) > 3 else [], mtime)


def cluster_config(instances, cluster_hv=None, os_hvp=None, cluster_be=None,
                   cluster_mtime=NOW - 7200):
    """A configuration shaped like config.data (Ganeti 3.0)."""
    hv = dict(recorded("3.0.2")[2])  # the cluster's defaults it started with
    hv.update(cluster_hv or {})
    return {
        "version": 3000000,
        "cluster": {"cluster_name": "cluster1.example.com", "serial_no": 12,
                    "mtime": cluster_mtime, "ctime": NOW - 10 ** 6,
                    "hvparams": {"kvm": hv, "fake": {"migration_mode": "live"}},
                    "os_hvp": os_hvp or {},
                    "beparams": {"default": dict({"maxmem": 128, "minmem": 128,
                                                  "vcpus": 1, "auto_balance": True,
                                                  "always_failover": False,
                                                  "spindle_use": 1},
                                                 **(cluster_be or {}))},
                    "enabled_hypervisors": ["kvm"]},
        "nodes": {"n-1": {"name": NODE, "uuid": "n-1", "primary_ip": "192.0.2.1",
                          "master_candidate": True}},
        "disks": {},
        "instances": {i.get("uuid", "u-" + i["name"]): dict(
            {"os": "noop+default", "hypervisor": "kvm", "hvparams": {},
             "beparams": {}, "mtime": NOW - 3600, "admin_state": "up",
             "primary_node": "n-1", "disks": [], "nics": [],
             "serial_no": 3}, **i) for i in instances},
    }


def instance_config(config, name):
    return ganeti.config_instances(config)[name]


# --- comparing: pure ------------------------------------------------------

@pytest.mark.parametrize("a,b", [
    (True, "True"), (False, "false"), (1, 1.0), (1, "1"), (38400, "38400"),
    ("", None), ("qemu64,+ssse3", "qemu64,+ssse3"), ({"a": 1}, {"a": 1})])
def test_values_are_compared_after_normalising(a, b):
    assert kp.normalise(a) == kp.normalise(b)


@pytest.mark.parametrize("a,b", [
    (True, False), (1, 2), ("ro", "ro quiet"), ("", "host"), (0, False),
    ("1", True), ("nan", "inf")])
def test_different_values_stay_different(a, b):
    assert kp.normalise(a) != kp.normalise(b)


def test_disk_discard_default_is_ignore_as_ganeti_31_upgrades_it():
    config = cluster_config([{"name": "inst1.ganeti.test", "uuid": UUID}],
                            cluster_hv={"disk_discard": "ignore"})
    changes, _ = kp.compare(runtime_of(recorded("3.0.2")),
                            instance_config(config, "inst1.ganeti.test"))
    assert changes == []


@pytest.mark.parametrize("version", ["2.6", "2.16", "3.0.2", "3.1"])
def test_every_recorded_format_matches_its_own_config(version):
    data = recorded(version)
    config = cluster_config([{"name": "inst1.ganeti.test", "uuid": UUID,
                              "hvparams": dict(data[2]),
                              "beparams": {"maxmem": kp._integer(str(data[0][data[0].index("-m") + 1])),
                                           "vcpus": kp._integer(data[0][data[0].index("-smp") + 1])}}])
    changes, ignored = kp.compare(runtime_of(data), instance_config(config, "inst1.ganeti.test"))
    assert (changes, ignored) == ([], [])


@pytest.mark.parametrize("version", ["2.6", "2.16", "3.0.2", "3.1"])
def test_every_recorded_format_shows_a_changed_cpu_type_and_vcpus(version):
    data = recorded(version)
    config = cluster_config([{"name": "inst1.ganeti.test", "uuid": UUID,
                              "hvparams": {"cpu_type": "host", "kernel_args": "ro quiet"},
                              "beparams": {"vcpus": 4}}])
    changes, _ = kp.compare(runtime_of(data), instance_config(config, "inst1.ganeti.test"))
    by_key = {c.key: c for c in changes}
    # A 2.6 runtime has no cpu_type: its qemu runs without -cpu, as with
    # the default "", and a soft reboot re-executes that command.
    assert by_key["cpu_type"].old == data[2].get("cpu_type", "")
    assert by_key["cpu_type"].unrecorded == (version == "2.6")
    assert by_key["kernel_args"].old == "ro" and by_key["kernel_args"].new == "ro quiet"
    assert by_key["kernel_args"].level == "instance"
    assert by_key["vcpus"].backend and by_key["vcpus"].new == 4
    assert by_key["vcpus"].old == kp._integer(data[0][data[0].index("-smp") + 1])


def test_fill_order_cluster_then_os_then_instance():
    config = cluster_config(
        [{"name": "a", "os": "debootstrap+default", "hvparams": {"cpu_type": "host"}},
         {"name": "b", "os": "debootstrap+default"},
         {"name": "c", "os": "other+x"}],
        cluster_hv={"cpu_type": "qemu64", "vhost_net": True, "kernel_args": "quiet"},
        os_hvp={"debootstrap+default": {"kvm": {"cpu_type": "kvm64",
                                                "vhost_net": False}}})
    levels = {name: {k: instance_config(config, name).hv[k] for k in
                     ("cpu_type", "vhost_net", "kernel_args")} for name in "abc"}
    assert levels["a"] == {"cpu_type": ("host", "instance"), "vhost_net": (False, "OS"),
                           "kernel_args": ("quiet", "cluster")}
    assert levels["b"]["cpu_type"] == ("kvm64", "OS")
    assert levels["c"] == {"cpu_type": ("qemu64", "cluster"), "vhost_net": (True, "cluster"),
                           "kernel_args": ("quiet", "cluster")}


def test_use_time_parameters_are_never_pending():
    changed = {"keymap": "de", "vnc_password_file": "/etc/pw", "spice_password_file": "/x",
               "security_model": "user", "security_domain": "kvm",
               "migration_port": 9000, "migration_bandwidth": 100,
               "migration_downtime": 50, "migration_mode": "non-live",
               "migration_caps": "x-rdma-pin-all", "user_shutdown": True}
    assert set(changed) == set(kp.USE_TIME)
    config = cluster_config([{"name": "i", "hvparams": changed}])
    changes, ignored = kp.compare(runtime_of(recorded("3.0.2")), instance_config(config, "i"))
    assert changes == [] and sorted(ignored) == sorted(changed)


def test_keys_only_in_the_runtime_or_unknown_keys_only_in_the_config_are_not_pending():
    data = copy.deepcopy(recorded("3.0.2"))
    data[2]["removed_in_a_newer_ganeti"] = "x"
    config = cluster_config([{"name": "i", "hvparams": {"added_in_a_newer_ganeti": 1}}])
    changes, _ = kp.compare(runtime_of(data), instance_config(config, "i"))
    assert changes == []


def test_a_key_an_old_runtime_lacks_runs_as_its_default_until_a_hard_restart():
    # The talk's open question: instances started before Ganeti had
    # cpu_type, still running after `gnt-cluster modify -H kvm:cpu_type=host`.
    # Their saved command has no -cpu; a soft reboot re-executes it.
    data = recorded("2.6")
    own = {"name": "i", "hvparams": dict(data[2]), "beparams": {"maxmem": 512}}
    at_defaults = cluster_config([own])
    assert kp.compare(runtime_of(data), instance_config(at_defaults, "i")) == ([], [])
    config = cluster_config([own], cluster_hv={"cpu_type": "host",
                                               "user_shutdown": True})
    i = judged("i", config, data)
    assert [(c.key, c.old, c.new, c.level) for c in i.changes] == [
        ("cpu_type", "", "host", "cluster")]
    assert i.ignored == ["user_shutdown"]
    r = kp.evaluate(probe_of(i), settings(), NOW)
    assert r.state == WARN and 'i (cpu_type "" -> host)' in r.summary
    assert ("i: cpu_type: running \"\", configured host (cluster level); not in "
            "its runtime file (started by a Ganeti without this parameter), so "
            "it runs as with the default") in r.details


def test_memory_from_m_as_number_or_text():
    for value in (2048, "2048", "2048M"):
        data = copy.deepcopy(recorded("3.0.2"))
        data[0][data[0].index("-m") + 1] = value
        config = cluster_config([{"name": "i", "beparams": {"maxmem": 4096}}])
        changes, _ = kp.compare(runtime_of(data), instance_config(config, "i"))
        assert [(c.key, c.old, c.new, c.backend) for c in changes] == [
            ("maxmem", 2048, 4096, True)]


def test_cluster_beparams_fill_the_instance():
    config = cluster_config([{"name": "i"}], cluster_be={"vcpus": 2})
    changes, _ = kp.compare(runtime_of(recorded("3.0.2")), instance_config(config, "i"))
    assert [(c.key, c.level) for c in changes] == [("vcpus", "cluster")]


def test_use_chroot_counts_as_the_saved_command_carries_chroot():
    config = cluster_config([{"name": "i", "hvparams": {"use_chroot": True}}])
    changes, ignored = kp.compare(runtime_of(recorded("3.0.2")), instance_config(config, "i"))
    assert [(c.key, c.old, c.new) for c in changes] == [("use_chroot", False, True)]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@hsettings(max_examples=200, deadline=None)
@given(cmd=st.lists(st.sampled_from(["-m", "-smp", "-uuid", "x"]) | JSON, max_size=8),
       hv=st.dictionaries(st.sampled_from(sorted(recorded("3.0.2")[2])) | st.text(max_size=4),
                          JSON, max_size=8),
       instance=st.dictionaries(st.sampled_from(["name", "os", "hypervisor", "hvparams",
                                                 "beparams", "mtime"]), JSON, max_size=6),
       cluster=st.dictionaries(st.sampled_from(["hvparams", "os_hvp", "beparams", "mtime"]),
                               JSON, max_size=4))
def test_any_runtime_and_config_give_a_verdict_or_a_named_error(cmd, hv, instance, cluster):
    i = kp.Instance("i", 1)
    i.runtime = ganeti.KvmRuntime(cmd, [], hv, [], None)
    try:
        i.config = ganeti.instance_config(cluster, "u", dict(instance, name="i"))
    except ValueError:
        return
    kp.judge(i)
    r = kp.evaluate(probe_of(i), settings(), NOW)
    assert r.state in (OK, WARN) and r.summary


# --- evaluate: pure -------------------------------------------------------

def settings(**values):
    text = "[kvm_parameters]\n" + "".join("%s = %s\n" % kv for kv in values.items())
    return kp.Settings(kp.CHECK.config(text=text))


def judged(name, config, data=None, runtime_mtime=NOW - 86400):
    i = kp.Instance(name, 4242)
    i.runtime = runtime_of(data or recorded("3.0.2"), runtime_mtime)
    i.config = instance_config(config, name)
    kp.judge(i)
    return i


def probe_of(*instances, source=kp.SOURCE_CONFIG):
    found = kp.Probe()
    found.instances = list(instances)
    found.source = source
    return found


def test_all_current():
    config = cluster_config([{"name": "web1"}, {"name": "db3"}])
    r = kp.evaluate(probe_of(judged("web1", config), judged("db3", config)),
                    settings(), NOW)
    assert r.state == OK
    assert r.summary == "all 2 instances run with their current parameters"
    assert [m.render() for m in r.metrics] == ["kvm_params_pending=0",
                                               "kvm_params_instances=2"]


def test_pending_names_instance_parameters_and_the_remedy():
    data = copy.deepcopy(recorded("3.0.2"))
    data[2]["cpu_type"] = "qemu64,+ssse3"
    config = cluster_config([{"name": "web1", "hvparams": {"cpu_type": "host"}},
                             {"name": "db3"}],
                            os_hvp={"noop+default": {"kvm": {"vhost_net": True}}})
    web1 = judged("web1", config, data)
    db3 = judged("db3", config)
    r = kp.evaluate(probe_of(web1, db3), settings(), NOW)
    assert r.state == WARN
    assert r.summary == (
        "2 of 2 instances run with parameters changed since they started: "
        "web1 (cpu_type qemu64,+ssse3 -> host; vhost_net false -> true), "
        "db3 (vhost_net false -> true): restart them with `gnt-instance reboot "
        "--type=hard` (or shutdown and startup); a live migration or a soft "
        "reboot keeps the old parameters")
    assert "web1: cpu_type: running qemu64,+ssse3, configured host (instance level)" in r.details
    assert "db3: vhost_net: running false, configured true (OS level)" in r.details
    assert [m.render() for m in r.metrics] == ["kvm_params_pending=2",
                                               "kvm_params_instances=2"]


def test_backend_parameters_say_they_need_a_restart():
    config = cluster_config([{"name": "i", "beparams": {"vcpus": 2, "maxmem": 256}}])
    r = kp.evaluate(probe_of(judged("i", config)), settings(), NOW)
    assert "i (maxmem 128 -> 256; vcpus 1 -> 2)" in r.summary
    assert ("i: vcpus: running 1, configured 2 (instance level); a backend "
            "parameter, applied only by a restart") in r.details


def test_age_from_the_newest_of_the_level_and_the_runtime():
    config = cluster_config([{"name": "i", "hvparams": {"kernel_args": "x"},
                              "mtime": NOW - 8 * 86400}])
    assert judged("i", config).since == NOW - 86400  # started after the change
    old_start = judged("i", config, runtime_mtime=NOW - 30 * 86400)
    assert old_start.since == NOW - 8 * 86400
    assert kp.evaluate(probe_of(old_start), settings(), NOW).state == CRIT
    assert kp.evaluate(probe_of(old_start), settings(crit_after="9d"), NOW).state == WARN
    fresh = kp.evaluate(probe_of(judged("i", config)),
                        settings(warn_count=0, warn_after="2d"), NOW)
    assert fresh.state == OK and fresh.summary.endswith("(WARN after 2 d)")


def test_cluster_level_changes_age_with_the_cluster():
    config = cluster_config([{"name": "i", "mtime": NOW - 15 * 86400}],
                            cluster_hv={"cpu_type": "host"}, cluster_mtime=NOW - 10 * 86400)
    i = judged("i", config, runtime_mtime=NOW - 20 * 86400)
    assert i.since == NOW - 10 * 86400


def test_an_override_removed_an_hour_ago_is_not_pending_since_the_start():
    # `gnt-instance modify -H kernel_args=default` an hour ago: the value
    # now comes from the cluster (unchanged for a month), but the change
    # was made on the instance; the start 20 days ago is not when it began.
    data = copy.deepcopy(recorded("3.0.2"))
    data[2]["kernel_args"] = "ro console=ttyS0"
    config = cluster_config([{"name": "i", "mtime": NOW - 3600}],
                            cluster_mtime=NOW - 30 * 86400)
    i = judged("i", config, data, runtime_mtime=NOW - 20 * 86400)
    assert [(c.key, c.level) for c in i.changes] == [("kernel_args", "cluster")]
    assert i.since == NOW - 3600
    assert kp.evaluate(probe_of(i), settings(), NOW).state == WARN


def test_unknown_age_is_warn_never_crit_nor_ok():
    config = cluster_config([{"name": "i", "hvparams": {"kernel_args": "x"}}])
    config["instances"]["u-i"]["mtime"] = None
    i = judged("i", config)
    assert i.since is None
    r = kp.evaluate(probe_of(i), settings(warn_count=0, warn_after="1d", crit_after="1d"), NOW)
    assert r.state == WARN
    assert "pending since an unknown time" in r.details[0]


def test_count_levels():
    config = cluster_config([{"name": n, "hvparams": {"kernel_args": "x"}}
                             for n in ("a", "b", "c")])
    found = probe_of(*[judged(n, config) for n in "abc"])
    assert kp.evaluate(found, settings(crit_count=3, crit_after="30d"), NOW).state == CRIT
    assert kp.evaluate(found, settings(crit_count=4, crit_after="30d"), NOW).state == WARN
    assert kp.evaluate(found, settings(warn_count=4, warn_after="2d", crit_after="30d"),
                       NOW).state == OK


def test_warn_count_above_crit_count_is_a_config_problem():
    config = kp.CHECK.config(text="[kvm_parameters]\nwarn_count = 5\ncrit_count = 2\n")
    s = kp.Settings(config)
    assert s.warn_count == 2
    assert config.problems == ["[kvm_parameters] warn_count: 5 is more than "
                               "crit_count (2), using 2"]


def test_an_instance_that_cannot_be_judged_is_named_and_the_others_judged():
    config = cluster_config([{"name": "web1", "hvparams": {"kernel_args": "x"}}])
    broken = kp.Instance("bad", 77)
    broken.error = "its runtime file is unusable: nested too deep"
    r = kp.evaluate(probe_of(judged("web1", config), broken), settings(), NOW)
    assert r.state == UNKNOWN
    assert r.summary.startswith("1 of 2 instances runs with parameters changed")
    assert r.summary.endswith("; cannot judge 1 instance: bad (its runtime file "
                              "is unusable: nested too deep)")


def test_a_crit_stays_crit_beside_an_unknown_instance():
    config = cluster_config([{"name": "web1", "hvparams": {"kernel_args": "x"}}])
    broken = kp.Instance("bad", 77)
    broken.error = "it has no runtime file"
    r = kp.evaluate(probe_of(judged("web1", config), broken), settings(crit_count=1), NOW)
    assert r.state == CRIT


def test_summary_fits_and_keeps_counts_and_remedy():
    config = cluster_config([{"name": "instance-%03d.a-long-domain.example.com" % n,
                              "hvparams": {"kernel_args": "x" * 300, "cpu_type": "y" * 80,
                                           "kvm_extra": "-z", "vga": "std"}}
                             for n in range(60)])
    found = probe_of(*[judged("instance-%03d.a-long-domain.example.com" % n, config)
                       for n in range(60)])
    r = kp.evaluate(found, settings(), NOW)
    assert len(r.summary) <= SUMMARY_MAX
    assert r.summary.startswith("60 of 60 instances run with parameters changed")
    assert r.summary.endswith(kp.REMEDY % "them")
    assert sum(1 for d in r.details if d.endswith("(instance level)")) == 240


def test_no_source_is_unknown_and_says_overrides_cannot_be_seen():
    i = kp.Instance("web1", 1)
    data = copy.deepcopy(recorded("3.0.2"))
    data[2]["cpu_type"] = "qemu64"
    i.runtime = runtime_of(data)
    found = probe_of(i, source=None)
    found.source_error = "neither config.data nor ganeti-confd could be read"
    found.notes = ["confd: no answer"]
    found.cluster_hv = {"cpu_type": "", "kvm_path": "/usr/bin/kvm", "keymap": "de"}
    r = kp.evaluate(found, settings(), NOW)
    assert r.state == UNKNOWN
    assert r.summary == ("cannot tell whether 1 instance runs with changed "
                         "parameters: neither config.data nor ganeti-confd could "
                         "be read; confd: no answer; ssconf_hvparams_kvm has only "
                         "the cluster defaults, instance and OS overrides cannot be seen")
    assert r.details == ["web1 differs from the cluster defaults in cpu_type (an "
                         "instance or OS override may explain it)"]
    assert [m.name for m in r.metrics] == ["kvm_params_instances"]


def test_no_source_summary_fits_with_ten_ipv6_candidates_refusing():
    peers = ["2001:db8:ffff:ffff:ffff:ffff:ffff:%x" % n for n in range(10)]
    confd_note = ("confd: no complete answer from confd at %s (port 1814) within 2 s; "
                  % ", ".join(peers) + "; ".join("%s: Connection refused" % p
                                                 for p in peers[:4]))
    found = probe_of(*[kp.Instance("instance-%d" % n, n + 1) for n in range(3)], source=None)
    found.source_error = ("neither config.data (only on the master and master "
                          "candidates) nor ganeti-confd could be read")
    found.notes = ["config.data not used: /var/lib/ganeti/config.data: larger than 64 MiB",
                   confd_note]
    found.cluster_hv = {"cpu_type": ""}
    r = kp.evaluate(found, settings(), NOW)
    assert r.state == UNKNOWN and len(r.summary) <= SUMMARY_MAX
    assert r.summary.startswith("cannot tell whether 3 instances run with changed "
                                "parameters: neither config.data")
    assert r.summary.endswith("instance and OS overrides cannot be seen")
    assert confd_note in r.details  # what the summary leaves out


# --- config.data ----------------------------------------------------------

def test_config_data_refusals(tmp_path):
    path = tmp_path / "config.data"
    path.write_text("x" * 2000)
    with pytest.raises(OSError, match="larger than"):
        ganeti.read_config_data(str(tmp_path), 1000)
    with pytest.raises(ValueError, match="not JSON"):
        ganeti.read_config_data(str(tmp_path), 4000)
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError):
        ganeti.read_config_data(str(tmp_path), 1 << 20)
    path.write_text('{"cluster": [], "instances": {}}')
    with pytest.raises(ValueError, match="not a Ganeti configuration"):
        ganeti.read_config_data(str(tmp_path), 4000)
    path.unlink()
    os.symlink("/etc/passwd", str(path))
    with pytest.raises(OSError):
        ganeti.read_config_data(str(tmp_path), 1 << 20)


@needs_root
def test_config_data_of_a_stranger_is_refused(tmp_path):
    path = tmp_path / "config.data"
    path.write_text(json.dumps(cluster_config([])))
    os.chown(str(path), 65534, 65534)
    with pytest.raises(OSError, match="owned by uid 65534"):
        ganeti.read_config_data(str(tmp_path), 1 << 20)


def test_a_broken_instance_object_is_named_not_fatal():
    config = cluster_config([{"name": "ok"}])
    config["instances"]["u-broken"] = ["not", "an", "instance"]
    found = ganeti.config_instances(config)
    assert isinstance(found["ok"], ganeti.InstanceConfig)
    assert isinstance(found["(uuid u-broken)"], ValueError)


# --- confd ----------------------------------------------------------------

@pytest.fixture
def fake_confd():
    servers = []

    def start(config, **kwargs):
        server = FakeConfd(KEY, config, **kwargs)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


def test_confd_config_query(fake_confd):
    server = fake_confd(cluster_config([{"name": "web1", "uuid": UUID}]))
    values, serial = confd.config_values(
        KEY, ["127.0.0.1"], ["/cluster/beparams/default", "/instances/%s/name" % UUID,
                             "/instances/no-such-uuid"], server.port, 2)
    assert values == {"/cluster/beparams/default": cluster_config([])["cluster"]["beparams"]["default"],
                      "/instances/%s/name" % UUID: "web1", "/instances/no-such-uuid": None}
    assert serial == 7
    assert {r["type"] for r in server.requests} == {10}


@pytest.mark.parametrize("mode,why", [
    ("silent", "is ganeti-confd running there"),
    ("garbage", "not a signed confd answer"),
    ("badsig", "bad signature"),
    ("wrongsalt", "a question we did not ask"),
    ("nonascii", "bad signature"),
    ("surrogate", "not a signed confd answer"),
    ("nested", "signed answer is not JSON")])
def test_confd_misbehaving_is_an_error_saying_why(fake_confd, mode, why):
    server = fake_confd(cluster_config([]), mode=mode)
    with pytest.raises(confd.ConfdError, match=why):
        confd.config_values(KEY, ["127.0.0.1"], ["/cluster/mtime"], server.port, 0.5)


def test_confd_nobody_listening_fails_at_once():
    started = time.monotonic()
    with pytest.raises(confd.ConfdError, match="Connection refused"):
        confd.config_values(KEY, ["127.0.0.1"], ["/cluster/mtime"], 9, 30)
    assert time.monotonic() - started < 25  # not the timeout


def test_confd_takes_the_newest_configuration(fake_confd):
    old = fake_confd(cluster_config([], cluster_mtime=1), serial=5)
    fake_confd(cluster_config([], cluster_mtime=2), serial=9, address="127.0.0.2",
               port=old.port)
    values, serial = confd.config_values(KEY, ["127.0.0.1", "127.0.0.2"],
                                         ["/cluster/mtime"], old.port, 2)
    assert (values, serial) == ({"/cluster/mtime": 2}, 9)


def test_confd_answer_of_one_peer_is_enough_when_another_is_silent(fake_confd):
    good = fake_confd(cluster_config([], cluster_mtime=1), serial=5)
    fake_confd(cluster_config([]), mode="silent", address="127.0.0.2", port=good.port)
    values, _ = confd.config_values(KEY, ["127.0.0.2", "127.0.0.1"],
                                    ["/cluster/mtime"], good.port, 0.5)
    assert values == {"/cluster/mtime": 1}


def test_confd_over_ipv6(fake_confd):
    try:
        server = fake_confd(cluster_config([], cluster_mtime=3), address="::1")
    except OSError as e:
        pytest.skip("no IPv6 loopback here: %s" % e)
    values, _ = confd.config_values(KEY, ["::1"], ["/cluster/mtime"], server.port, 2)
    assert values == {"/cluster/mtime": 3}


def test_confd_peer_that_is_no_ip_address_is_never_looked_up():
    # ssconf_master_candidates_ips holds addresses; a name there would make
    # connect() ask the resolver, which may hang past every timeout.
    with pytest.raises(confd.ConfdError, match="confd.example.invalid: not an IP address"):
        confd.config_values(KEY, ["confd.example.invalid"], ["/cluster/mtime"], 1814, 0.5)


def test_confd_flood_of_garbage_is_remembered_once():
    # A peer (or someone spoofing its address) sending datagram after
    # datagram must not grow the list of problems without bound.
    import socket
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        ours.setblocking(False)
        theirs.setblocking(False)
        for _ in range(2000):
            try:
                theirs.send(b"plj0{not json")
            except BlockingIOError:  # our receive buffer is full
                break
        problems = []
        got = confd._receive(KEY, {ours: "192.0.2.1"}, {"salt": None}, 0.5, problems)
    finally:
        ours.close()
        theirs.close()
    assert got == {}
    assert problems == ["answer from 192.0.2.1 ignored: not a signed confd answer"]


def test_pointer_escapes():
    assert confd.pointer("cluster", "os_hvp", "a/b~c") == "/cluster/os_hvp/a~1b~0c"


# --- end to end: the check as the agent runs it ---------------------------

class FakeNode:
    """A node's Ganeti files in a temp dir, and instances as real processes
    whose argv carries `-name <instance>` (as qemu's does)."""

    def __init__(self, root, role="candidate"):
        self.data_dir = root / "lib"
        self.run_dir = root / "run"
        self.conf_dir = self.run_dir / "kvm-hypervisor" / "conf"
        self.pid_dir = self.run_dir / "kvm-hypervisor" / "pid"
        for d in (self.data_dir, self.conf_dir, self.pid_dir):
            d.mkdir(parents=True)
        candidates = NODE if role in ("master", "candidate") else "node9.example.com"
        self.ssconf(master_node=NODE if role == "master" else "node9.example.com",
                    node_list="%s\nnode9.example.com" % NODE,
                    master_candidates=candidates,
                    master_candidates_ips="127.0.0.1",
                    hvparams_kvm="kvm_path=/usr/bin/kvm\ncpu_type=\nkeymap=")
        (self.data_dir / "hmac.key").write_bytes(KEY)
        self.procs = []

    def ssconf(self, **values):
        for key, value in values.items():
            (self.data_dir / ("ssconf_" + key)).write_text(value + "\n")

    def write_config(self, config):
        (self.data_dir / "config.data").write_text(json.dumps(config))

    def start(self, name, runtime=None):
        """A process named `name`; its pid file and (if given) runtime."""
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                              "-name", name], stdin=subprocess.DEVNULL)
        self.procs.append(p)
        (self.pid_dir / name).write_text("%d\n" % p.pid)
        if runtime is not None:
            (self.conf_dir / (name + ".runtime")).write_text(
                runtime if isinstance(runtime, str) else json.dumps(runtime))
        return p

    def config_text(self, **section):
        return ("[paths]\nganeti_data_dir = %s\nganeti_run_dir = %s\n"
                "[ganeti]\nnode_name = %s\n[kvm_parameters]\n%s" % (
                    self.data_dir, self.run_dir, NODE,
                    "".join("%s = %s\n" % kv for kv in section.items())))

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def fake_node(tmp_path):
    nodes = []

    def make(role="candidate"):
        nodes.append(FakeNode(tmp_path / ("node%d" % len(nodes)), role))
        return nodes[-1]
    yield make
    for n in nodes:
        n.stop()


def runtime_for(name, uuid, **hvparams):
    data = copy.deepcopy(recorded("3.0.2"))
    data[0] = [a.replace("inst1.ganeti.test", name) if isinstance(a, str) else a
               for a in data[0][:-1]] + [uuid]
    data[2].update(hvparams)
    return data


def check(node, tmp_path, **section):
    services = run_agent("ganeti_kvm_parameters", tmp_path, node.config_text(**section))
    assert list(services) == [SERVICE]
    return services[SERVICE]


def test_agent_with_config_data_and_hostile_runtime_files(fake_node, tmp_path):
    node = fake_node()
    node.write_config(cluster_config([
        {"name": "web1", "uuid": "u-web1", "hvparams": {"cpu_type": "host"}},
        {"name": "db3", "uuid": "u-db3"}, {"name": "notjson"}, {"name": "deep"},
        {"name": "shape"}, {"name": "link"}, {"name": "fifo"}]))
    node.start("web1", runtime_for("web1", "u-web1", cpu_type="qemu64,+ssse3"))
    node.start("db3", runtime_for("db3", "u-db3"))
    node.start("notjson", "this is not JSON")
    node.start("deep", "[" * 200000 + "]" * 200000)
    node.start("shape", json.dumps({"kvm_cmd": []}))
    node.start("link")
    os.symlink(str(node.conf_dir / "db3.runtime"), str(node.conf_dir / "link.runtime"))
    node.start("fifo")
    os.mkfifo(str(node.conf_dir / "fifo.runtime"))
    node.start("gone")  # runs, but has no runtime file
    # a pid file whose pid now belongs to another process: not an instance
    (node.pid_dir / "reused").write_text("%d\n" % node.procs[0].pid)
    out = check(node, tmp_path)
    assert out["state"] == "3"
    assert out["summary"].startswith(
        "1 of 8 instances runs with parameters changed since they started: "
        "web1 (cpu_type qemu64,+ssse3 -> host): restart it with")
    assert "cannot judge 6 instances: " in out["summary"]
    for name, why in (("deep", "nested too deep"), ("notjson", "unusable"),
                      ("shape", "not a KVM runtime file"), ("link", "refused"),
                      ("fifo", "refused"), ("gone", "it has no runtime file")):
        assert any(d.startswith(name + ": not judged: ") and why in d
                   for d in out["details"]), (name, out["details"])
    assert "db3: runs with its current parameters" in out["details"]
    assert any(d.startswith("reused: the pid file names pid") for d in out["details"])
    assert out["metrics"] == {"kvm_params_pending": 1, "kvm_params_instances": 8}


def test_agent_regular_node_asks_confd(fake_node, fake_confd, tmp_path):
    node = fake_node(role="regular")
    config = cluster_config([{"name": "web1", "uuid": "u-web1",
                              "hvparams": {"kernel_args": "ro quiet"}, "beparams": {"vcpus": 2}}])
    node.write_config(cluster_config([]))  # a stale copy: must not be used
    server = fake_confd(config)
    node.start("web1", runtime_for("web1", "u-web1"))
    out = check(node, tmp_path, confd_port=server.port)
    assert out["state"] == "1"
    assert out["summary"].startswith("1 of 1 instance runs with parameters changed since "
                                     "they started: web1 (kernel_args ro -> ro quiet; "
                                     "vcpus 1 -> 2): restart it")
    assert "current parameters from ganeti-confd" in out["details"]
    assert {r["query"] for r in server.requests} >= {"/instances/u-web1", "/cluster/hvparams"}


def test_agent_confd_silent_is_unknown_with_the_reason(fake_node, fake_confd, tmp_path):
    node = fake_node(role="regular")
    server = fake_confd(cluster_config([]), mode="silent")
    node.start("web1", runtime_for("web1", "u-web1", cpu_type="qemu64"))
    out = check(node, tmp_path, confd_port=server.port, confd_timeout="0.3s")
    assert out["state"] == "3"
    assert out["summary"].startswith(
        "cannot tell whether 1 instance runs with changed parameters: neither "
        "config.data (only on the master and master candidates: this node is a "
        "regular node) nor ganeti-confd could be read; confd: no complete answer "
        "from confd at 127.0.0.1 (port %d) within 0.3 s" % server.port)
    assert out["summary"].endswith("instance and OS overrides cannot be seen")
    assert out["details"] == ["web1 differs from the cluster defaults in cpu_type "
                              "(an instance or OS override may explain it)"]


def test_agent_confd_wait_ends_before_the_checks_deadline(fake_node, fake_confd, tmp_path):
    # confd_timeout longer than the check's deadline: the check still says
    # that confd did not answer, not merely that it ran out of time.
    node = fake_node(role="regular")
    server = fake_confd(cluster_config([]), mode="silent")
    node.start("web1", runtime_for("web1", "u-web1"))
    text = node.config_text(confd_port=server.port, confd_timeout="60s")
    services = run_agent("ganeti_kvm_parameters", tmp_path,
                         text + "[general]\ndeadline = 4s\n")
    out = services[SERVICE]
    assert out["state"] == "3"
    assert "ganeti-confd could be read; confd: no complete answer from confd at " \
        "127.0.0.1 (port %d) within " % server.port in out["summary"], out


def test_agent_huge_config_is_refused_with_the_reason(fake_node, tmp_path):
    node = fake_node()
    config = cluster_config([{"name": "web1", "uuid": "u-web1"}])
    config["cluster"]["padding"] = "x" * (2 << 20)
    node.write_config(config)
    node.start("web1", runtime_for("web1", "u-web1"))
    out = check(node, tmp_path, source="config", config_max_size=1)
    assert out["state"] == "3"
    assert "config.data not used: %s: larger than 1 MiB" % (
        node.data_dir / "config.data") in out["summary"]


def test_agent_no_instances_needs_no_configuration(fake_node, tmp_path):
    node = fake_node(role="regular")
    out = check(node, tmp_path, confd_port=9)
    assert (out["state"], out["summary"]) == ("0", "no KVM instances running on this node")


def test_agent_outside_a_cluster_prints_nothing(tmp_path):
    proc = run_script("ganeti_kvm_parameters", tmp_path=tmp_path,
                      config_text="[paths]\nganeti_data_dir = %s\n" % tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "")
    assert "not in a Ganeti cluster" in proc.stderr


def test_agent_hostile_instance_names_give_valid_lines_and_keep_the_remedy(fake_node, tmp_path):
    # Names Ganeti would never write, in pid files and -name: quotes, a
    # backslash-n, bytes that are not UTF-8, 240 characters.
    node = fake_node()
    names = ['q"uote\\nx', "bad\udcff\udcfe", "l" * 240] + ["w%02d" % n for n in range(20)]
    node.write_config(cluster_config([{"name": n, "uuid": "u-%d" % i,
                                       "hvparams": {"kernel_args": "x" * 100}}
                                      for i, n in enumerate(names)]))
    for i, n in enumerate(names):
        node.start(n, runtime_for(n, "u-%d" % i))
    out = check(node, tmp_path)
    # The name that is not UTF-8 cannot be matched to its runtime file
    # (names are compared as /proc shows them, U+FFFD): not judged, not OK.
    assert out["state"] == "3", out
    assert len(out["summary"]) <= SUMMARY_MAX
    assert out["summary"].startswith("22 of 23 instances run with parameters changed")
    assert (kp.REMEDY % "them") + "; cannot judge 1 instance" in out["summary"]
    assert out["metrics"] == {"kvm_params_pending": 22, "kvm_params_instances": 23}
