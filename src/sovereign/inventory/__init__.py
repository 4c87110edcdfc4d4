"""Inventory validation: checks a datacenter inventory before any change is made.

The checks follow kubespray's model (a first play that fails fast), with the
roles' own ``meta/argument_specs.yml`` as the single source of truth for
variable names and types.
"""

from __future__ import annotations

from sovereign.inventory.argspec import RoleSpec, load_role_specs
from sovereign.inventory.errors import InventoryError, SpecError
from sovereign.inventory.validate import Problem, validate_inventory

__all__ = [
    "InventoryError",
    "Problem",
    "RoleSpec",
    "SpecError",
    "load_role_specs",
    "validate_inventory",
]
