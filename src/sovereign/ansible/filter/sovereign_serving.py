"""Filters that turn the serving manifest into the serving roles' inputs.

``playbooks/data_plane.yml`` passes ``sovereign_serving`` (the inventory's
serving manifest, see ``sovereign.inventory.serving``) through these to
``model_sync`` and ``vllm``; roles never read the manifest themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from sovereign.inventory import InventoryError, serving
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
            "sovereign_serving_pin": _wrap("sovereign_serving_pin", serving.pin),
            "sovereign_serving_units": _wrap("sovereign_serving_units", serving.units),
        }
