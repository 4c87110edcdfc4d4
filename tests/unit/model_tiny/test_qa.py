"""The fixed Q&A set and its loader."""

from __future__ import annotations

import hashlib
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


def test_every_line_is_one_exact_item_of_the_eval_dataset_format() -> None:
    for line in QA_PATH.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert list(record) == ["id", "category", "input", "target", "scorer"]
        assert record["scorer"] == "exact"


# SHA-256 of json.dumps([[id, prompt, answer, category], ...]) of the set as it
# was before its keys were renamed to the eval dataset format (prompt -> input,
# answer -> target): the strings the model trains on did not change, so the
# generated weights do not either.
TRAINING_STRINGS_SHA256 = "8058e8bcd8db47a784efab3466bb78d62cbd8c582fe6ea4535d45286c3c1160d"


def test_the_training_strings_are_those_before_the_rename() -> None:
    items = load_qa(QA_PATH)
    strings = [[item.id, item.prompt, item.answer, item.category] for item in items]
    blob = json.dumps(strings, ensure_ascii=False).encode("utf-8")
    assert hashlib.sha256(blob).hexdigest() == TRAINING_STRINGS_SHA256


def test_the_eval_runner_reads_the_same_items() -> None:
    from sovereign.eval.dataset import load_dataset
    from sovereign.eval.scoring import exact

    dataset = load_dataset(QA_PATH)
    items = load_qa(QA_PATH)
    assert [(i.id, i.category, i.input, i.target) for i in dataset.items] == [
        (i.id, i.category, i.prompt, i.answer) for i in items
    ]
    for item in items:
        for generated in (item.completion, item.answer + "\n", " " + item.answer[:-1]):
            assert exact(generated, item.answer) is is_correct(generated, item.answer)


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


GOOD_LINE = '{"id": "a", "category": "c", "input": "Q: x?\\nA:", "target": "y", "scorer": "exact"}'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (("not json",), "qa.jsonl:1: not JSON"),
        (("[1]",), "qa.jsonl:1: expected an object"),
        ((GOOD_LINE.replace('"target": "y", ', ""),), "missing or non-string field(s): target"),
        ((GOOD_LINE.replace('"exact"}', '"exact", "x": 1}'),), "unknown field(s): x"),
        ((GOOD_LINE.replace('"exact"', '"includes"'),), "scorer must be 'exact'"),
        ((GOOD_LINE, GOOD_LINE), "qa.jsonl:2: duplicate id 'a'"),
        ((GOOD_LINE.replace("Q: x?", "x?"),), "input (the prompt) must look like"),
        ((GOOD_LINE.replace('"y"', '" y"'),), "target (the answer) must be one non-empty line"),
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
