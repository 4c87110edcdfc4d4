"""Access lists and the reader's principals: bounded, checked, never empty."""

from __future__ import annotations

import pytest

from sovereign.retrieval.acl import Acl, principals_of
from sovereign.retrieval.errors import AclError, QueryError


def test_an_acl_is_sorted_deduplicated_and_prefixed() -> None:
    acl = Acl.of(users=["bob", "bob"], groups=["risk-officers", "analysts"])
    assert acl.principals == ("group:analysts", "group:risk-officers", "user:bob")


@pytest.mark.parametrize(
    ("users", "groups", "match"),
    [
        ([], [], "empty access list"),
        (["bob smith"], [], "invalid name"),
        ([], ["x" * 200], "invalid name"),
        ([], ["a'; DROP"], "invalid name"),
        ([f"u{i}" for i in range(300)], [], "more than 256"),
        ([5], [], "invalid name"),
    ],
)
def test_invalid_acls_are_refused(users: list[str], groups: list[str], match: str) -> None:
    with pytest.raises(AclError, match=match):
        Acl.of(users, groups)


def test_a_reader_holds_its_user_and_its_groups() -> None:
    assert principals_of("alice", ["analysts"]) == {"user:alice", "group:analysts"}
    # Names no access list can hold grant nothing: left out, not refused.
    assert principals_of("", ["Risk Officers", "analysts"]) == {"group:analysts"}
    assert principals_of("a b", []) == frozenset()
    with pytest.raises(QueryError):
        principals_of("alice", [f"g{i}" for i in range(300)])
