"""Canonical JSON and the writer's fast path agree."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sovereign.audit import record as fmt
from tests.unit.audit.conftest import request


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert fmt.canonical_json({"b": [1, 2.5, None], "a": "é\n"}) == '{"a":"é\\n","b":[1,2.5,null]}'
    with pytest.raises(ValueError):
        fmt.canonical_json({"x": float("inf")})


@pytest.mark.parametrize("chain", ["internal", "un-classified_2"])
def test_the_fast_record_line_equals_the_generic_seal(chain: str) -> None:
    record = fmt.canonical_json(request(7, chain))
    digest, line = fmt.record_line(chain, 12, "ab" * 32, "2025-03-14T09:30:00.000000Z", record)
    entry = json.loads(line)
    assert fmt.seal({k: v for k, v in entry.items() if k != "hash"}) == (digest, line)
    assert fmt.parse_line(line.encode()) == entry
    assert entry["record"] == request(7, chain)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda line: line.replace('"seq":12', '"seq":13'), "hash does not match"),
        (lambda line: line.replace(",", ", ", 1), "not in canonical form"),
        (lambda line: line[:-1], "not a JSON entry"),
        (lambda line: line.replace('"seq":12', '"seq":"12"'), "'seq' is missing"),
        (lambda line: "[1]", "not a JSON object"),
    ],
)
def test_parse_line_names_what_is_wrong(edit: Callable[[str], str], message: str) -> None:
    record = fmt.canonical_json({"a": 1})
    _, line = fmt.record_line("internal", 12, fmt.GENESIS, "2025-03-14T09:30:00.000000Z", record)
    with pytest.raises(fmt.EntryFormatError, match=message):
        fmt.parse_line(edit(line).encode())
