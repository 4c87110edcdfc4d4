"""Filter ``sovereign_lab_line``: one line of the lab summary per host."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Groups that only structure an inventory, not what a host runs.
_STRUCTURAL = {"all", "ungrouped"}


def lab_line(
    host: str,
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
) -> str:
    """``host  address  groups`` for the summary ``make lab`` prints."""
    facts = hostvars[host].get("ansible_default_ipv4") or {}
    address = facts.get("address", "address unknown") if isinstance(facts, Mapping) else "?"
    member_of = sorted(
        name for name, members in groups.items() if name not in _STRUCTURAL and host in members
    )
    return f"  {host:<16} {address:<15} {', '.join(member_of)}".rstrip()


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"sovereign_lab_line": lab_line}
