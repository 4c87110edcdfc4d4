"""sovereign.gpu.roce: the roce role's NIC settings, defaults filled in and
every bad value refused with the NIC and the key named."""

from __future__ import annotations

from typing import Any

import pytest

from sovereign.gpu import roce

NIC = {"name": "ens1f0np0", "rdma_device": "mlx5_0"}


def test_defaults_follow_the_usual_roce_fabric() -> None:
    [nic] = roce.plan([NIC])
    assert nic["mtu"] == 4200
    assert (nic["priority"], nic["dscp"], nic["cnp_priority"], nic["cnp_dscp"]) == (3, 26, 6, 48)
    # DSCP 26 with ECT(0): RDMA-CM's type of service 106.
    assert nic["tos"] == 106
    assert nic["pfc"] == "0:off 1:off 2:off 3:on 4:off 5:off 6:off 7:off"
    assert nic["dscp_prio"] == "26:3 48:6"
    assert nic["gid_index"] == 3


def test_site_defaults_then_the_nic_own_values() -> None:
    nics = roce.plan(
        [NIC, {"name": "ens2f0np0", "rdma_device": "mlx5_1", "mtu": 4200}],
        {"mtu": 9000, "priority": 4},
    )
    assert [nic["mtu"] for nic in nics] == [9000, 4200]
    assert nics[0]["pfc"].split()[4] == "4:on"


@pytest.mark.parametrize(
    ("nics", "defaults", "message"),
    [
        ("ens1f0", {}, "must be a list"),
        ([{"rdma_device": "mlx5_0"}], {}, r"roce_interfaces\[0\].name is not a valid name"),
        ([{**NIC, "name": "eth0; reboot"}], {}, "not a valid name"),
        ([{**NIC, "mtu": 65000}], {}, r"\(ens1f0np0\).mtu must be from 1500 to 9216"),
        ([{**NIC, "mtu": "9000"}], {}, "mtu must be an integer"),
        ([NIC], {"priority": 8}, "priority must be from 0 to 7"),
        ([NIC], {"priority": 6}, "CNPs need their own"),
        ([{**NIC, "dscp": 48}], {}, "dscp and cnp_dscp are both 48"),
        ([{**NIC, "speed": 400}], {}, "unknown keys: speed"),
        ([NIC, {**NIC, "rdma_device": "mlx5_1"}], {}, "name ens1f0np0 is listed twice"),
        ([NIC, {**NIC, "name": "ens2"}], {}, "rdma_device mlx5_0 is listed twice"),
        ([{**NIC, "address": "10.0.0.1"}], {}, "address must be an address with its prefix length"),
        ([{**NIC, "gid_index": True}], {}, "gid_index must be an integer"),
    ],
)
def test_bad_settings_are_refused_by_name(
    nics: Any, defaults: dict[str, Any], message: str
) -> None:
    with pytest.raises(roce.RoceSettingsError, match=message):
        roce.plan(nics, defaults)


def test_count_is_bounded() -> None:
    nics = [{"name": f"ens{i}", "rdma_device": f"mlx5_{i}"} for i in range(33)]
    with pytest.raises(roce.RoceSettingsError, match="at most 32"):
        roce.plan(nics)
