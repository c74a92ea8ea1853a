"""Hugepages and KSM on the real cluster's node: the running instance is
found through Ganeti's own pid and runtime files and config.data."""

import pytest

pytestmark = pytest.mark.integration


def test_real_instance_without_mem_path_is_not_used(check, cluster):
    result = check("ganeti_hugepages")["Hugepages"]
    assert result["state"] == "0", result
    assert result["summary"] == (
        "not used: none of the 1 instance here (%s) and not the cluster default "
        "uses mem_path" % cluster.instance)
    assert any("config.data read" in d for d in result["details"]), result["details"]


def test_real_ksm_is_reported_on_the_node(check, cluster):
    result = check("ganeti_ksm", sections={"ksm": {"expect": "any"}})["KSM"]
    assert result["state"] == "0", result
    assert result["summary"].startswith("KSM is ")
    assert "ksm_saved_bytes" in result["metrics"]
