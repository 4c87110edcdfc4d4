"""Filters that turn the serving manifests and the release table into role inputs.

``playbooks/data_plane.yml`` passes ``sovereign_serving`` (the inventory's
serving manifest, see ``sovereign.inventory.serving``) with
``sovereign_releases`` (the release table, ``sovereign.inventory.releases``)
through these to ``model_sync`` and ``vllm``; ``playbooks/control_plane.yml``
turns the catalog into its publish list and ``playbooks/governance_plane.yml``
derives the gateway's model table from every serving node's manifest. Roles
never read the manifest or the table themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from sovereign.inventory import InventoryError, releases, serving
except ImportError as exc:  # pragma: no cover - depends on how Ansible was started
    raise ImportError(
        "the sovereign package is not installed for the Python that runs Ansible: "
        "run ansible-playbook from the project's virtualenv (`make venv`, then "
        ".venv/bin/ansible-playbook, or activate .venv)"
    ) from exc

from ansible.errors import AnsibleFilterError


def _wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return function(*args)
        except InventoryError as exc:
            raise AnsibleFilterError(f"{name}: {exc}") from exc

    return call


def _catalog(entries: object, table: object, root: str) -> list[dict[str, str]]:
    return releases.catalog(entries, table, Path(root))


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "sovereign_serving_models": _wrap(
                "sovereign_serving_models", serving.model_sync_models
            ),
            "sovereign_serving_instances": _wrap(
                "sovereign_serving_instances", serving.vllm_instances
            ),
            "sovereign_serving_runtime": _wrap("sovereign_serving_runtime", serving.runtime),
            "sovereign_serving_units": _wrap("sovereign_serving_units", serving.units),
            "sovereign_gateway_models": _wrap("sovereign_gateway_models", serving.gateway_models),
            "sovereign_catalog": _wrap("sovereign_catalog", _catalog),
            "sovereign_serving_active": _wrap("sovereign_serving_active", serving.active_releases),
            "sovereign_serving_backends": _wrap(
                "sovereign_serving_backends", serving.host_backends
            ),
        }
