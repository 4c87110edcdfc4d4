from __future__ import annotations

import pytest

from sovereign.model.errors import BadReferenceError
from sovereign.model.reference import Reference, parse_reference, require_digest

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reg.example:5000/models/llama:v1", Reference("reg.example:5000", "models/llama", "v1")),
        (f"localhost/m@{DIGEST}", Reference("localhost", "m", None, DIGEST)),
        (f"127.0.0.1:5000/a/b:t@{DIGEST}", Reference("127.0.0.1:5000", "a/b", "t", DIGEST)),
    ],
)
def test_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert str(parse_reference(text)) == text


@pytest.mark.parametrize(
    "text", ["llama", "models/llama", "reg.example/Models", "reg.example/m@sha256:xyz", "r.x/m:"]
)
def test_bad_references(text: str) -> None:
    with pytest.raises(BadReferenceError):
        parse_reference(text)


def test_tag_is_refused_where_a_digest_is_needed() -> None:
    with pytest.raises(BadReferenceError, match="tags can move"):
        require_digest(parse_reference("reg.example/m:latest"))
