"""The filters that read the inventory through ``sovereign.inventory``.

- ``sovereign_inventory_problems``: every problem of an inventory, as text
  (``playbooks/validate.yml``, the first play of every entry playbook).
- ``sovereign_serving_*``, ``sovereign_gateway_models``,
  ``sovereign_catalog``, ``sovereign_eval_runtime``: the serving manifest
  (``sovereign.inventory.serving``) and the release table
  (``sovereign.inventory.releases``) turned into the inputs of ``model_sync``,
  ``vllm``, the gateway and the evaluation runner
  (``playbooks/vars/serving.yml``, ``playbooks/control_plane.yml``,
  ``playbooks/governance_plane.yml``); roles never read either themselves.
- ``sovereign_flow_rules``, ``sovereign_flow_probes``: a host's inbound allow
  list for the ``network_policy`` role (``playbooks/foundation.yml``) and the
  connections ``playbooks/check_flows.yml`` tries
  (``sovereign.inventory.flows``).
- ``sovereign_scrape_targets``: what the ``prometheus`` role scrapes and
  probes (``playbooks/observability.yml``, ``sovereign.inventory.monitoring``).
- ``sovereign_upgrade_*``: the checked plan of a canary upgrade, the canary
  nodes' manifest and the pins a promotion records (``playbooks/upgrade.yml``,
  ``sovereign.inventory.upgrade``).
- ``sovereign_refresh_*``, ``sovereign_serving_tuned``: the checked plan of a
  hardware refresh, its sweep's manifests, the choice, the latency gate and
  the tuning record (``playbooks/hardware_refresh.yml``,
  ``sovereign.inventory.refresh``).

Ansible loads this file by path (``filter_plugins`` in ansible.cfg) and it
imports the installed package by name: Ansible runs from the project's
virtualenv, where ``make venv`` installed it. An ``InventoryError`` becomes an
``AnsibleFilterError`` that names the filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

try:
    from sovereign.inventory import (
        InventoryError,
        RoleSpec,
        SpecError,
        flows,
        load_role_specs,
        monitoring,
        refresh,
        releases,
        serving,
        upgrade,
        validate_inventory,
    )
except ImportError as exc:  # pragma: no cover - depends on how Ansible was started
    raise ImportError(
        "the sovereign package is not installed for the Python that runs Ansible: "
        "run ansible-playbook from the project's virtualenv (`make venv`, then "
        ".venv/bin/ansible-playbook, or activate .venv)"
    ) from exc

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined

_FACT_UNDEFINED = re.compile(r"'ansible_(facts|default_ipv[46]|[a-z0-9]+_ipv[46])' is undefined")


def _materialize(value: Any) -> Any:
    """A plain copy of ``value``: ansible-core templates nested values lazily,
    on access, so walking them here surfaces every templating error now."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Mapping):
        return {key: _materialize(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_materialize(item) for item in value]
    return value


def _is_checked(name: str, prefixes: tuple[str, ...], special: set[str]) -> bool:
    return name in special or name.startswith(prefixes)


def inventory_problems(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    ansible_version: str,
    roles_paths: Iterable[str],
    root: str,
) -> list[str]:
    """Return one line per problem; an empty list when the inventory is sound.

    ``root`` is the repository's root (relative paths of the release table).
    """
    from sovereign.inventory import layout
    from sovereign.inventory.argspec import PLAY_ROLE, load_play_spec
    from sovereign.inventory.validate import CATALOG

    specs: dict[str, RoleSpec] = {}
    for roles_path in roles_paths:
        path = Path(roles_path)
        if not path.is_dir():
            continue
        try:
            for name, spec in load_role_specs(path).items():
                specs.setdefault(name, spec)
        except SpecError as exc:
            raise AnsibleFilterError(f"sovereign_inventory_problems: {exc}") from exc
    if specs:
        try:
            specs[PLAY_ROLE] = load_play_spec(Path(root))
        except SpecError as exc:
            raise AnsibleFilterError(f"sovereign_inventory_problems: {exc}") from exc
    if not specs:
        raise AnsibleFilterError(
            "sovereign_inventory_problems: no role with meta/argument_specs.yml found in "
            + ", ".join(roles_paths)
        )
    prefixes = tuple(spec.prefix for spec in specs.values())
    special = (
        set(layout.RENAMED_VARIABLES)
        | set(layout.REMOVED_VARIABLES)
        | {serving.VARIABLE, serving.PINS, serving.CANDIDATE, releases.VARIABLE, CATALOG}
    )
    hosts: dict[str, dict[str, Any]] = {}
    template_problems: list[str] = []
    unresolved: set[str] = set()
    for host in groups.get("all", []):
        host_vars = hostvars[host]
        values: dict[str, Any] = {}
        for name in list(host_vars.keys()):
            if not _is_checked(name, prefixes, special):
                continue
            try:
                values[name] = _materialize(host_vars[name])
            except Exception as exc:  # noqa: BLE001 - any templating error is reported as such
                if _FACT_UNDEFINED.search(str(exc)):
                    # Depends on facts not gathered yet (this play contacts no
                    # host): the role's argument spec checks it when it runs.
                    continue
                template_problems.append(f"{name}: cannot be templated on {host}: {exc}")
                unresolved.add(name)
        hosts[host] = values
    problems = validate_inventory(hosts, groups, ansible_version, specs, Path(root))
    # A variable that failed to template is reported once, as such, not
    # again as "required and not set".
    return template_problems + [
        str(problem) for problem in problems if problem.message.split(":", 1)[0] not in unresolved
    ]


def _wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return function(*args)
        except InventoryError as exc:
            raise AnsibleFilterError(f"{name}: {exc}") from exc

    return call


def _catalog(entries: object, table: object, root: str) -> list[dict[str, str]]:
    return releases.catalog(entries, table, Path(root))


_DERIVED: dict[str, Callable[..., Any]] = {
    "sovereign_serving_models": serving.model_sync_models,
    "sovereign_serving_pinned": serving.apply_pins,
    "sovereign_serving_tuned": serving.apply_tuning,
    "sovereign_serving_instances": serving.vllm_instances,
    "sovereign_serving_runtime": serving.runtime,
    "sovereign_serving_units": serving.units,
    "sovereign_serving_active": serving.active_releases,
    "sovereign_serving_backends": serving.host_backends,
    "sovereign_gateway_models": serving.gateway_models,
    "sovereign_eval_runtime": serving.eval_runtime,
    "sovereign_catalog": _catalog,
    "sovereign_flow_rules": flows.host_rules,
    "sovereign_flow_probes": flows.probes,
    "sovereign_scrape_targets": monitoring.scrape_targets,
    "sovereign_upgrade_plan": upgrade.plan,
    "sovereign_upgrade_candidate_manifest": upgrade.candidate_manifest,
    "sovereign_upgrade_pins": upgrade.pins,
    "sovereign_upgrade_slo_verdict": upgrade.slo_verdict,
    "sovereign_upgrade_query_values": upgrade.query_values,
    "sovereign_upgrade_eval_summary": upgrade.eval_summary,
    "sovereign_refresh_plan": refresh.plan,
    "sovereign_refresh_manifest": refresh.manifest_for,
    "sovereign_refresh_choose": refresh.choose_all,
    "sovereign_refresh_settings": refresh.settings_of,
    "sovereign_refresh_latency_verdict": refresh.latency_verdict,
    "sovereign_refresh_record": refresh.record,
}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        table: dict[str, Any] = {"sovereign_inventory_problems": inventory_problems}
        table.update({name: _wrap(name, function) for name, function in _DERIVED.items()})
        return table
