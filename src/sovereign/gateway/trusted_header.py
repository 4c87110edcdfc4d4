"""Identity asserted by the SSO proxy in headers, believed only from the proxy.

``X-Sovereign-User``, ``X-Sovereign-Groups`` (comma-separated) and
``X-Sovereign-Team`` are read only when the TCP peer address is inside one of
the configured proxy networks and, where ``shared_secret_file`` is set, the
request carries the proxy's secret in ``X-Sovereign-Proxy-Auth`` (compared in
constant time): proxy trust then does not rest on an address alone. From any
other peer the identity headers are ignored (a bearer JWT is then required);
from a trusted peer without the right secret they are refused. They are never
forwarded upstream. The peer is the socket's address: the server must not
rewrite it from X-Forwarded-For.

An assertion is refused, never repaired: a header sent twice (which copy
would the proxy have meant?), a user or team over 256 characters, a groups
header over ``MAX_GROUPS_HEADER`` bytes or with more than 256 groups, or any
value with control characters.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers

from sovereign.gateway.errors import AuthenticationError
from sovereign.gateway.identity import Principal, identity_text, parse_groups

USER_HEADER = "x-sovereign-user"
GROUPS_HEADER = "x-sovereign-groups"
TEAM_HEADER = "x-sovereign-team"
PROXY_AUTH_HEADER = "x-sovereign-proxy-auth"
IDENTITY_HEADERS = frozenset({USER_HEADER, GROUPS_HEADER, TEAM_HEADER})
MAX_GROUPS_HEADER = 8192


class TrustedProxies:
    """The proxy networks; remembers its answer per peer address."""

    def __init__(self, cidrs: Iterable[str], secret: bytes | None = None) -> None:
        self._networks = tuple(ipaddress.ip_network(item, strict=False) for item in cidrs)
        self._seen: dict[str, bool] = {}
        self.secret = secret

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

    def check_secret(self, headers: Headers) -> None:
        """Refuse an assertion without the proxy's secret, where one is configured."""
        if self.secret is None:
            return
        sent = headers.getlist(PROXY_AUTH_HEADER)
        if len(sent) != 1 or not hmac.compare_digest(sent[0].encode("latin-1"), self.secret):
            raise AuthenticationError(
                "identity headers from the proxy's address without the proxy's secret "
                f"({PROXY_AUTH_HEADER})",
                code="proxy_auth_failed",
            )


def _one(headers: Headers, name: str) -> str | None:
    values = headers.getlist(name)
    if len(values) > 1:
        raise AuthenticationError(
            f"{name} was sent {len(values)} times: an identity is asserted once",
            code="duplicate_identity_header",
        )
    return values[0].strip() if values else None


_IDENTITY_RAW = frozenset(name.encode("ascii") for name in IDENTITY_HEADERS)


def asserts_identity(headers: Headers) -> bool:
    """Whether any identity header was sent (one pass over the raw headers)."""
    return any(name in _IDENTITY_RAW for name, _ in headers.raw)


def principal_from_headers(headers: Headers) -> Principal | None:
    """The proxy's assertion, or None when it sent no user."""
    user = _one(headers, USER_HEADER)
    groups = _one(headers, GROUPS_HEADER) or ""
    team = _one(headers, TEAM_HEADER)
    if not user:
        return None
    if len(groups) > MAX_GROUPS_HEADER:
        raise AuthenticationError(
            f"{GROUPS_HEADER} of {len(groups)} bytes is over the limit of {MAX_GROUPS_HEADER}",
            code="invalid_identity",
        )
    return Principal(
        identity_text(user, USER_HEADER),
        parse_groups(groups.split(","), GROUPS_HEADER),
        identity_text(team, TEAM_HEADER) if team else None,
        "trusted_header",
    )
