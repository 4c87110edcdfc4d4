"""The fixed Q&A set and its loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovereign.model.tiny.errors import QASetError
from sovereign.model.tiny.qa import format_prompt, is_correct, load_qa

from .conftest import QA_PATH


def test_shipped_set_is_valid_and_small() -> None:
    items = load_qa(QA_PATH)
    assert 16 <= len(items) <= 24
    assert len({item.category for item in items}) >= 4
    assert len({item.answer for item in items}) == len(items), "answers must differ"
    for item in items:
        assert item.prompt == format_prompt(item.prompt[3:-3])
        assert item.completion == " " + item.answer


def test_every_line_is_one_object_with_the_four_fields() -> None:
    for line in QA_PATH.read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {"id", "prompt", "answer", "category"}


def test_format_prompt() -> None:
    assert format_prompt("Who?") == "Q: Who?\nA:"


@pytest.mark.parametrize(
    ("generated", "answer", "expected"),
    [(" 90 days", "90 days", True), ("90 days\n", "90 days", True), ("90 day", "90 days", False)],
)
def test_is_correct_is_exact_after_strip(generated: str, answer: str, expected: bool) -> None:
    assert is_correct(generated, answer) is expected


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD_LINE = '{"id": "a", "prompt": "Q: x?\\nA:", "answer": "y", "category": "c"}'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (("not json",), "qa.jsonl:1: not JSON"),
        (("[1]",), "qa.jsonl:1: expected an object"),
        (('{"id": "a", "prompt": "Q: x?\\nA:", "category": "c"}',), "missing or non-string"),
        ((GOOD_LINE.replace('"c"}', '"c", "x": 1}'),), "unknown field(s): x"),
        ((GOOD_LINE, GOOD_LINE), "qa.jsonl:2: duplicate id 'a'"),
        ((GOOD_LINE.replace("Q: x?", "x?"),), "prompt must look like"),
        ((GOOD_LINE.replace('"y"', '" y"'),), "answer must be one non-empty line"),
        (("",), "the Q&A set is empty"),
    ],
)
def test_bad_sets_name_file_and_line(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    with pytest.raises(QASetError, match="qa.jsonl") as caught:
        load_qa(write(tmp_path, *lines))
    assert message in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QASetError, match="cannot read the Q&A set"):
        load_qa(tmp_path / "absent.jsonl")
