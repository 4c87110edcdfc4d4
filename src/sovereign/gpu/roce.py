"""RoCE's lossless settings of a GPU node, checked and turned into commands.

The ``roce`` role renders what this module returns: one oneshot script
(``sovereign-roce-apply``, run at boot and whenever the settings change)
with, per NIC, the MTU, PFC on the RoCE priority only (CNPs travel on
their own priority, which the switch serves strictly and never pauses),
DSCP trust (DSCP-to-priority entries in the DCB app table: mlx5 trusts
DSCP as soon as one is there), ECN as notification and reaction point on
the RoCE priority, the CNP's 802.1p priority and DSCP, RDMA-CM's default
type of service and a check that the GID index the jobs use is a RoCE v2
GID. Upstream tools only (iproute2's ``dcb``, sysfs, configfs): no vendor
stack is needed, and every command is one a reviewer can read.

Every value is checked before anything is rendered, with an error naming
the interface and the key, so a wrong inventory fails before the first
task; nothing from the inventory reaches a command line unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# Linux interface names (IFNAMSIZ - 1) and RDMA device names.
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
_RDMA_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
# Jumbo frames a RoCE fabric uses: RoCE's own MTU is the largest of 256 ...
# 4096 that fits, so 4200 (4096 + headers) and 9000 are the usual values.
MTU_MIN = 1500
MTU_MAX = 9216
# RoCE v2 ECN codepoint in the type of service: ECT(0).
ECN_ECT0 = 2

DEFAULTS: dict[str, Any] = {
    "mtu": 4200,
    # The RoCE traffic class: PFC and ECN on it (NVIDIA's and most
    # switch vendors' convention: priority 3, DSCP 26).
    "priority": 3,
    "dscp": 26,
    # Congestion notification packets: strict priority 6, DSCP 48.
    "cnp_priority": 6,
    "cnp_dscp": 48,
    "gid_index": 3,
    "rdma_port": 1,
}
KEYS = {"name", "rdma_device", "address", "mtu", "priority", "dscp", "cnp_priority", "cnp_dscp"} | {
    "gid_index",
    "rdma_port",
    "peer",
}


class RoceSettingsError(ValueError):
    """An inventory's RoCE settings that cannot be applied as given."""


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RoceSettingsError(
            f"{where} must be an integer from {low} to {high}, not {value!r:.40}"
        )
    if not low <= value <= high:
        raise RoceSettingsError(f"{where} must be from {low} to {high}, not {value}")
    return value


def _name(value: object, where: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise RoceSettingsError(f"{where} is not a valid name: {value!r:.40}")
    return value


def nic_settings(nic: object, index: int, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """One NIC's settings, defaults filled in and every value checked."""
    where = f"roce_interfaces[{index}]"
    if not isinstance(nic, Mapping):
        raise RoceSettingsError(f"{where} must be a mapping with name and rdma_device")
    unknown = sorted(set(nic) - KEYS)
    if unknown:
        raise RoceSettingsError(f"{where} has unknown keys: {', '.join(map(str, unknown))[:200]}")
    merged = {**DEFAULTS, **dict(defaults), **dict(nic)}
    name = _name(merged.get("name"), f"{where}.name", _IFNAME)
    where = f"roce_interfaces[{index}] ({name})"
    settings: dict[str, Any] = {
        "name": name,
        "rdma_device": _name(merged.get("rdma_device"), f"{where}.rdma_device", _RDMA_DEVICE),
        "mtu": _int(merged["mtu"], f"{where}.mtu", MTU_MIN, MTU_MAX),
        "priority": _int(merged["priority"], f"{where}.priority", 0, 7),
        "dscp": _int(merged["dscp"], f"{where}.dscp", 0, 63),
        "cnp_priority": _int(merged["cnp_priority"], f"{where}.cnp_priority", 0, 7),
        "cnp_dscp": _int(merged["cnp_dscp"], f"{where}.cnp_dscp", 0, 63),
        "gid_index": _int(merged["gid_index"], f"{where}.gid_index", 0, 255),
        "rdma_port": _int(merged["rdma_port"], f"{where}.rdma_port", 1, 2),
    }
    if settings["priority"] == settings["cnp_priority"]:
        raise RoceSettingsError(
            f"{where}: priority and cnp_priority are both {settings['priority']}: "
            "CNPs need their own"
        )
    if settings["dscp"] == settings["cnp_dscp"]:
        raise RoceSettingsError(f"{where}: dscp and cnp_dscp are both {settings['dscp']}")
    address = merged.get("address")
    if address is not None:
        if not isinstance(address, str) or not re.match(r"^[0-9a-fA-F:.]{2,39}/\d{1,3}$", address):
            raise RoceSettingsError(
                f"{where}.address must be an address with its prefix length, not {address!r:.40}"
            )
        settings["address"] = address
    peer = merged.get("peer")
    if peer is not None:
        settings["peer"] = _name(peer, f"{where}.peer", _IFNAME)
    # RDMA-CM's type of service: the RoCE DSCP with ECN capable transport.
    settings["tos"] = settings["dscp"] << 2 | ECN_ECT0
    settings["pfc"] = " ".join(
        f"{prio}:{'on' if prio == settings['priority'] else 'off'}" for prio in range(8)
    )
    settings["dscp_prio"] = (
        f"{settings['dscp']}:{settings['priority']} "
        f"{settings['cnp_dscp']}:{settings['cnp_priority']}"
    )
    return settings


def plan(interfaces: object, defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every NIC's settings; names and RDMA devices must be unique."""
    if not isinstance(interfaces, Sequence) or isinstance(interfaces, str):
        raise RoceSettingsError("roce_interfaces must be a list of NICs")
    if len(interfaces) > 32:
        raise RoceSettingsError(f"roce_interfaces lists {len(interfaces)} NICs; at most 32")
    settings = [nic_settings(nic, index, defaults or {}) for index, nic in enumerate(interfaces)]
    for key in ("name", "rdma_device"):
        seen: set[str] = set()
        for nic in settings:
            if nic[key] in seen:
                raise RoceSettingsError(f"roce_interfaces: {key} {nic[key]} is listed twice")
            seen.add(nic[key])
    return settings
