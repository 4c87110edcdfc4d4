"""Exceptions of the inventory validator."""

from __future__ import annotations


class InventoryError(Exception):
    """The inventory is wrong; the message names what and how to fix it."""


class SpecError(Exception):
    """A role's meta/argument_specs.yml cannot be read or is malformed."""
