"""DRBD on the real cluster: no DRBD here (this kernel has no drbd module),
so what is real is Ganeti's configuration, which decides "not a DRBD node"
against "drbd module not loaded"."""

import pytest

from realcluster import DATA_DIR, in_ns
from ganeti_cmk import ganeti

pytestmark = pytest.mark.integration


def _templates_from_gnt_cluster_info():
    info = in_ns("gnt-cluster", "info").stdout
    lines = [line for line in info.splitlines()
             if line.strip().startswith("enabled disk templates:")]
    assert len(lines) == 1, info
    return [word.strip() for word in lines[0].split(":", 1)[1].split(",")]


def test_enabled_disk_templates_are_the_ones_ganeti_reports(cluster):
    assert ganeti.enabled_disk_templates(DATA_DIR) == _templates_from_gnt_cluster_info()


def test_no_drbd_cluster_is_not_applicable_unless_required(check, tmp_path):
    assert "drbd" not in _templates_from_gnt_cluster_info()
    missing = str(tmp_path / "no-proc-drbd")
    assert check("ganeti_drbd", sections={"drbd": {"proc_drbd": missing}}) == {}
    services = check("ganeti_drbd", sections={"drbd": {"proc_drbd": missing,
                                                       "require_module": "yes"}})
    assert services["DRBD"]["state"] == "2"
    assert services["DRBD"]["summary"] == ("drbd module not loaded: modprobe drbd "
                                           "([drbd] require_module = yes)")
