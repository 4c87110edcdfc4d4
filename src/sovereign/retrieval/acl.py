"""Access lists: who may read a document, carried into each of its chunks.

A principal is ``user:<login>`` or ``group:<name>``. The gateway's verified
identity (user and groups) becomes the set of principals a search is
filtered by; a chunk is visible when the two sets meet. Names are bounded
and limited to a safe alphabet, so no client-controlled string reaches a
query, a log or the audit record unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sovereign.retrieval.errors import AclError, QueryError

# Logins and group names as identity providers issue them (LDAP uid, AD
# sAMAccountName, OIDC groups claim values), without spaces or quotes.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MAX_ENTRIES = 256


@dataclass(frozen=True)
class Acl:
    """The users and groups that may read a document."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, users: Iterable[str] = (), groups: Iterable[str] = (), where: str = "acl") -> Acl:
        """A checked access list: non-empty, bounded, every name valid; sorted, no duplicates."""
        checked_users = _names(users, f"{where}.users")
        checked_groups = _names(groups, f"{where}.groups")
        if not checked_users and not checked_groups:
            raise AclError(f"{where}: empty access list; name at least one user or group")
        if len(checked_users) + len(checked_groups) > MAX_ENTRIES:
            raise AclError(f"{where}: more than {MAX_ENTRIES} users and groups")
        return cls(users=checked_users, groups=checked_groups)

    @property
    def principals(self) -> tuple[str, ...]:
        """``user:<login>`` and ``group:<name>`` entries, sorted."""
        return tuple(
            sorted([f"user:{u}" for u in self.users] + [f"group:{g}" for g in self.groups])
        )


def _names(values: Iterable[str], where: str) -> tuple[str, ...]:
    out = set()
    for value in values:
        if not isinstance(value, str) or not NAME.match(value):
            raise AclError(f"{where}: invalid name {str(value)[:64]!r} (letters, digits, . _ @ -)")
        out.add(value)
    return tuple(sorted(out))


def principals_of(user: str, groups: Iterable[str]) -> frozenset[str]:
    """The principals a reader holds: its user and its groups.

    A name no access list can hold (outside the alphabet above, or too long)
    can grant nothing, so it is left out rather than refused: the reader
    still gets what its other names allow. More than MAX_ENTRIES groups is
    refused (400): the identity is not one this service can filter by."""
    groups = list(groups)
    if len(groups) > MAX_ENTRIES:
        raise QueryError(f"the reader holds more than {MAX_ENTRIES} groups")
    held = {f"group:{g}" for g in groups if isinstance(g, str) and NAME.match(g)}
    if isinstance(user, str) and NAME.match(user):
        held.add(f"user:{user}")
    return frozenset(held)
