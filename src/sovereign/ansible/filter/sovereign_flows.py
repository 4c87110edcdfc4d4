"""Filters of the flow matrix (``sovereign.inventory.flows``).

``sovereign_flow_rules``: a host's inbound allow list, which
``playbooks/foundation.yml`` passes to the ``network_policy`` role
(``inventory_hostname | sovereign_flow_rules(hostvars, groups)``).
``sovereign_flow_probes``: per host, the connections
``playbooks/check_flows.yml`` tries and whether each must work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

try:
    from sovereign.inventory import InventoryError, flows
except ImportError as exc:  # pragma: no cover - depends on how Ansible was started
    raise ImportError(
        "the sovereign package is not installed for the Python that runs Ansible: "
        "run ansible-playbook from the project's virtualenv (`make venv`, then "
        ".venv/bin/ansible-playbook, or activate .venv)"
    ) from exc

from ansible.errors import AnsibleFilterError


def flow_rules(
    host: str,
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
) -> list[dict[str, Any]]:
    try:
        return flows.host_rules(host, hostvars, groups)
    except InventoryError as exc:
        raise AnsibleFilterError(f"sovereign_flow_rules: {exc}") from exc


def flow_probes(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
) -> dict[str, list[dict[str, Any]]]:
    try:
        return flows.probes(hostvars, groups)
    except InventoryError as exc:
        raise AnsibleFilterError(f"sovereign_flow_probes: {exc}") from exc


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"sovereign_flow_rules": flow_rules, "sovereign_flow_probes": flow_probes}
