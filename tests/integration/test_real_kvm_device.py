"""KVM device on the machine's real /dev/kvm, run as on the cluster's node."""

import pytest

pytestmark = pytest.mark.integration


def test_real_dev_kvm_is_ok_with_api_version_12(check):
    services = check("ganeti_kvm_device")
    assert list(services) == ["KVM device"]
    result = services["KVM device"]
    assert result["state"] == "0", result
    assert "/dev/kvm usable" in result["summary"]
    assert "KVM API version 12" in result["summary"], result["summary"]
