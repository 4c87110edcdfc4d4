"""Scorers: each rule, on answers that pass and answers that do not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sovereign.eval import scoring
from sovereign.eval.dataset import Item, load_dataset


def item(scorer: str, target: str | dict[str, Any], tmp_path: Path) -> Item:
    record = {"id": "a", "category": "c", "input": "Q: x?\nA:", "target": target, "scorer": scorer}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (loaded,) = load_dataset(path).items
    return loaded


@pytest.mark.parametrize(
    ("scorer", "target", "output", "expected"),
    [
        ("exact", "90 days", " 90 days", 1),
        ("exact", "90 days", "90 days\n", 1),
        ("exact", "90 days", " 90 days.", 0),
        ("exact", "90 days", " 90 Days", 0),
        ("exact", "90 days", " 90 days and more", 0),
        ("includes", "90 days", "It is 90 days.", 1),
        ("includes", "90 days", "It is 90 Days.", 0),
        ("includes", "90 days", "", 0),
        ("regex", r"\b(90|ninety) days\b", " ninety days", 1),
        ("regex", r"^\s*90 days\s*$", " 90 days\n", 1),
        ("regex", r"^\s*90 days\s*$", " 90 days, I think", 0),
        ("regex", "(?i)ORANGE", "orange", 1),
    ],
)
def test_text_scorers(tmp_path: Path, scorer: str, target: str, output: str, expected: int) -> None:
    assert scoring.score(item(scorer, target, tmp_path), output) == expected


SCHEMA = {
    "type": "object",
    "required": ["days"],
    "properties": {"days": {"type": "integer", "minimum": 1}},
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"days": 90}', 1),
        (' \n{"days": 90}\n', 1),
        ('{"days": 0}', 0),
        ('{"days": "90"}', 0),
        ('{"days": 90, "extra": true}', 0),
        ('```json\n{"days": 90}\n```', 0),
        ('{"days": 90} trailing', 0),
        ("NaN", 0),
        ("[" * 100_000, 0),
        ("", 0),
    ],
)
def test_json_schema_scorer(tmp_path: Path, output: str, expected: int) -> None:
    assert scoring.score(item("json_schema", SCHEMA, tmp_path), output) == expected


def test_exact_is_the_tiny_models_rubric() -> None:
    from sovereign.model.tiny.qa import is_correct

    for generated, answer in [(" a", "a"), ("a ", " a"), ("a b", "a  b"), ("", "a")]:
        assert scoring.exact(generated, answer) is is_correct(generated, answer)


def test_an_unknown_scorer_is_a_bug() -> None:
    bogus = Item("a", "c", "x", "y", "fuzzy", 1, re.compile("y"))
    with pytest.raises(ValueError, match="unknown scorer 'fuzzy'"):
        scoring.score(bogus, "y")
