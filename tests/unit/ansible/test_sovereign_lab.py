from __future__ import annotations

from types import ModuleType

from tests.unit.ansible.plugins import load_filter


def load_plugin() -> ModuleType:
    return load_filter("sovereign_lab.py")


def test_a_line_names_the_address_and_the_platform_groups() -> None:
    groups = {
        "all": ["lab-gw", "lab-ca"],
        "gateway": ["lab-gw"],
        "search": ["lab-gw"],
        "pki_ca": ["lab-ca"],
    }
    hostvars = {"lab-gw": {"ansible_default_ipv4": {"address": "172.18.0.3"}}, "lab-ca": {}}
    line = load_plugin().lab_line("lab-gw", hostvars, groups)
    assert line.split() == ["lab-gw", "172.18.0.3", "gateway,", "search"]
    assert load_plugin().lab_line("lab-ca", hostvars, groups).split() == [
        "lab-ca",
        "address",
        "unknown",
        "pki_ca",
    ]
