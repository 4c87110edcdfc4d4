"""Identity asserted by the SSO proxy in headers, believed only from the proxy.

``X-Sovereign-User``, ``X-Sovereign-Groups`` (comma-separated) and
``X-Sovereign-Team`` are read only when the TCP peer address is inside one of
the configured proxy networks. From any other peer they are ignored (a bearer
JWT is then required), and they are never forwarded upstream. The peer is the
socket's address: the server must not rewrite it from X-Forwarded-For.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from sovereign.gateway.identity import Principal, parse_groups

USER_HEADER = "x-sovereign-user"
GROUPS_HEADER = "x-sovereign-groups"
TEAM_HEADER = "x-sovereign-team"
IDENTITY_HEADERS = frozenset({USER_HEADER, GROUPS_HEADER, TEAM_HEADER})
_MAX_VALUE = 1024


class TrustedProxies:
    """The proxy networks; remembers its answer per peer address."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(item, strict=False) for item in cidrs)
        self._seen: dict[str, bool] = {}

    def trusts(self, host: str | None) -> bool:
        if host is None or not self._networks:
            return False
        known = self._seen.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            trusted = False  # a unix socket or a test client's made-up name
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            trusted = any(address in network for network in self._networks)
        if len(self._seen) < 65536:
            self._seen[host] = trusted
        return trusted


def principal_from_headers(headers: Mapping[str, str]) -> Principal | None:
    """The proxy's assertion, or None when it sent no user."""
    user = headers.get(USER_HEADER, "").strip()
    if not user or len(user) > _MAX_VALUE:
        return None
    team = headers.get(TEAM_HEADER, "").strip()[:_MAX_VALUE] or None
    groups = parse_groups(headers.get(GROUPS_HEADER, "")[: _MAX_VALUE * 8].split(","))
    return Principal(user, groups, team, "trusted_header")
