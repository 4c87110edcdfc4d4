from __future__ import annotations

from types import ModuleType

from tests.unit.ansible.plugins import load_filter


def load_plugin() -> ModuleType:
    return load_filter("sovereign_hosts.py")


def test_entries_use_facts_then_ip_ansible_host_and_skip_the_rest() -> None:
    hostvars = {
        "gw01.dc.example": {"ansible_default_ipv4": {"address": "10.0.0.5"}},
        "gpu01": {"ansible_host": "10.0.0.6", "ansible_default_ipv4": {}},
        "search01": {"ansible_host": "search01.dc.example"},
        "reg01": {"ansible_host": "fd00::7"},
        "obs01": {},
    }
    entries = load_plugin().hosts_entries(list(hostvars), hostvars)
    assert entries == [
        {"ip": "10.0.0.5", "names": ["gw01.dc.example", "gw01"]},
        {"ip": "10.0.0.6", "names": ["gpu01"]},
        {"ip": "fd00::7", "names": ["reg01"]},
    ]


def test_registers_the_filter() -> None:
    assert set(load_plugin().FilterModule().filters()) == {"sovereign_hosts_entries"}
