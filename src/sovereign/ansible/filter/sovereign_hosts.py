"""Filter ``sovereign_hosts_entries``: /etc/hosts entries for inventory hosts.

``playbooks/foundation.yml`` passes the result to the common role, so every
host knows every other by inventory name even before the site's DNS has
them. The address is the host's default IPv4 fact, else ``ansible_host``
when that is an IP address; a host with neither is left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any


def _address(variables: Mapping[str, Any]) -> str | None:
    facts = variables.get("ansible_default_ipv4")
    if isinstance(facts, Mapping) and facts.get("address"):
        return str(facts["address"])
    host = variables.get("ansible_host")
    if isinstance(host, str):
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return None
    return None


def hosts_entries(
    hosts: Iterable[str], hostvars: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One ``{ip, names}`` entry per host with a known address, in inventory order."""
    entries: list[dict[str, Any]] = []
    for host in hosts:
        address = _address(hostvars[host])
        if address is None:
            continue
        names = [host]
        short = host.split(".", 1)[0]
        if short != host:
            names.append(short)
        entries.append({"ip": address, "names": names})
    return entries


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"sovereign_hosts_entries": hosts_entries}
