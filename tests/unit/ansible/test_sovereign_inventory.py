"""The filter plugin, called in-process the way Ansible calls it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.unit.ansible.plugins import load_filter

ROOT = Path(__file__).resolve().parents[3]

GROUPS = {
    "all": ["admin"],
    "pki_ca": ["admin"],
    "gpu_nodes": ["admin"],
    "registry": ["admin"],
    "search": ["admin"],
    "gateway": ["admin"],
    "observability": ["admin"],
}


def load_plugin() -> ModuleType:
    return load_filter("sovereign_inventory.py")


class LazyVars:
    """Stands in for Ansible's HostVarsVars: values are templated on access."""

    def __init__(self, values: dict[str, Any], broken: set[str] | None = None) -> None:
        self._values = values
        self._broken = broken or set()
        self.read: list[str] = []

    def keys(self) -> Iterator[str]:
        return iter(self._values)

    def __getitem__(self, name: str) -> Any:
        self.read.append(name)
        if name in self._broken:
            raise ValueError("'undefined_thing' is undefined")
        return self._values[name]


def write_role(roles: Path) -> None:
    meta = roles / "common" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text(
        "argument_specs: {main: {options: {common_packages: {type: list, elements: str}}}}",
        encoding="utf-8",
    )


def test_registers_every_inventory_filter() -> None:
    plugin = load_plugin()
    assert set(plugin.FilterModule().filters()) == {
        "sovereign_inventory_problems",
        "sovereign_serving_models",
        "sovereign_serving_instances",
        "sovereign_serving_runtime",
        "sovereign_serving_units",
        "sovereign_serving_active",
        "sovereign_serving_backends",
        "sovereign_gateway_models",
        "sovereign_catalog",
        "sovereign_flow_rules",
        "sovereign_flow_probes",
        "sovereign_scrape_targets",
        "sovereign_eval_runtime",
        "sovereign_serving_pinned",
        "sovereign_serving_tuned",
        "sovereign_upgrade_plan",
        "sovereign_upgrade_candidate_manifest",
        "sovereign_upgrade_pins",
        "sovereign_upgrade_slo_verdict",
        "sovereign_upgrade_query_values",
        "sovereign_upgrade_eval_summary",
        "sovereign_refresh_plan",
        "sovereign_refresh_manifest",
        "sovereign_refresh_choose",
        "sovereign_refresh_settings",
        "sovereign_refresh_latency_verdict",
        "sovereign_refresh_record",
    }


def test_upgrade_plan_errors_name_the_filter() -> None:
    plan = load_plugin().FilterModule().filters()["sovereign_upgrade_plan"]
    with pytest.raises(AnsibleFilterError, match=r"^sovereign_upgrade_plan: .*'nope' is no group"):
        plan({}, {"gpu_nodes": []}, {}, "/", {"group": "nope"})


def test_flow_filters_name_themselves_in_errors() -> None:
    flow_rules = load_plugin().FilterModule().filters()["sovereign_flow_rules"]
    hostvars = {"gpu1": {"sovereign_controller_networks": ["10.0.0.1/8"]}}
    with pytest.raises(AnsibleFilterError, match=r"^sovereign_flow_rules: .*10\.0\.0\.1/8"):
        flow_rules("gpu1", hostvars, {"all": ["gpu1"], "gpu_nodes": ["gpu1"]})


def test_reports_problems_and_templates_only_role_variables(tmp_path: Path) -> None:
    write_role(tmp_path)
    host = LazyVars(
        {"common_packages": "vim", "ansible_facts": {}, "other": 1, "sovereign_releases": {}}
    )
    problems = load_plugin().inventory_problems(
        {"admin": host},
        GROUPS,
        "2.19.14",
        [str(tmp_path / "missing"), str(tmp_path)],
        str(ROOT),
    )
    assert problems == [
        "common_packages: expected a list, got a string ('vim'); "
        "write it as a YAML list: [vim] [hosts: admin]"
    ]
    assert host.read == ["common_packages", "sovereign_releases"]


def test_a_variable_that_cannot_be_templated_is_a_problem(tmp_path: Path) -> None:
    write_role(tmp_path)
    host = LazyVars(
        {"common_packages": "{{ undefined_thing }}", "sovereign_releases": {}},
        broken={"common_packages"},
    )
    problems = load_plugin().inventory_problems(
        {"admin": host}, GROUPS, "2.19.14", [str(tmp_path)], str(ROOT)
    )
    assert problems == [
        "common_packages: cannot be templated on admin: 'undefined_thing' is undefined"
    ]


def test_nested_lazy_values_are_templated_inside_the_check(tmp_path: Path) -> None:
    class LazyList(list[Any]):
        def __iter__(self) -> Any:
            raise ValueError("'vault_secret' is undefined")

    meta = tmp_path / "reg" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text(
        "argument_specs: {main: {options: {reg_users: {type: list, required: true}}}}",
        encoding="utf-8",
    )
    host = LazyVars({"reg_users": LazyList([1]), "sovereign_releases": {}})
    problems = load_plugin().inventory_problems(
        {"admin": host}, GROUPS, "2.19.14", [str(tmp_path)], str(ROOT)
    )
    assert problems == ["reg_users: cannot be templated on admin: 'vault_secret' is undefined"]


def test_no_roles_found_is_an_ansible_error(tmp_path: Path) -> None:
    with pytest.raises(AnsibleFilterError, match="no role with meta/argument_specs.yml found"):
        load_plugin().inventory_problems({}, GROUPS, "2.19.14", [str(tmp_path)], str(ROOT))


def test_a_malformed_spec_is_an_ansible_error(tmp_path: Path) -> None:
    meta = tmp_path / "bad" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text("argument_specs: [", encoding="utf-8")
    with pytest.raises(AnsibleFilterError, match="is not valid YAML"):
        load_plugin().inventory_problems({}, GROUPS, "2.19.14", [str(tmp_path)], str(ROOT))
