from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

PLUGIN = Path(__file__).resolve().parents[3] / "src/sovereign/ansible/filter/sovereign_lab.py"


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sovereign_lab_plugin", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
