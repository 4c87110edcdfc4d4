"""Filters that turn the serving manifest into the serving roles' inputs.

``playbooks/data_plane.yml`` passes ``sovereign_serving`` (the inventory's
serving manifest, see ``sovereign.inventory.serving``) through these to
``model_sync`` and ``vllm``; roles never read the manifest themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from sovereign.inventory import InventoryError, serving
except ImportError:  # pragma: no cover - depends on how Ansible was started
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from sovereign.inventory import InventoryError, serving

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
