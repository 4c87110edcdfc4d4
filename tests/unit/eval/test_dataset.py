"""Dataset validation: the shipped set, every kind of bad line, the gate sidecar."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sovereign.eval import dataset as ds
from sovereign.eval.dataset import load_dataset, parse_dataset
from sovereign.eval.errors import DatasetError

from .fakeserver import TINY_QA


def line(**fields: Any) -> str:
    record: dict[str, Any] = {
        "id": "a-1",
        "category": "c",
        "input": "Q: x?\nA:",
        "target": "y",
        "scorer": "exact",
    }
    record.update(fields)
    return json.dumps({key: value for key, value in record.items() if value is not ...})


def write(tmp_path: Path, *lines: str, name: str = "set.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{text}\n" for text in lines), encoding="utf-8")
    return path


def test_the_shipped_tiny_qa_set() -> None:
    dataset = load_dataset(TINY_QA)
    assert dataset.name == "tiny_qa"
    assert len(dataset.items) == 20
    assert dataset.sha256 == hashlib.sha256(TINY_QA.read_bytes()).hexdigest()
    assert dataset.scorers == {"exact": 20}
    assert (
        dataset.items[0].input == "Q: How many days until an Aldermoor Bank password expires?\nA:"
    )
    assert dataset.items[0].target == "90 days"
    assert dataset.items[0].line == 1
    # the sidecar beside it holds the defaults, written down
    assert dataset.gate.regression_threshold == 0.05
    assert dataset.gate.min_reproducibility == 0.9
    assert dataset.gate.source.endswith("files/eval/tiny_qa.gate.yml")


def test_every_scorer_kind_loads(tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    path = write(
        tmp_path,
        line(id="e"),
        line(id="i", scorer="includes"),
        line(id="r", scorer="regex", target=r"^\s*\d+ days$"),
        line(id="j", scorer="json_schema", target=schema),
    )
    dataset = load_dataset(path)
    assert [item.scorer for item in dataset.items] == ["exact", "includes", "regex", "json_schema"]
    assert dataset.items[2].check.pattern == r"^\s*\d+ days$"
    assert dataset.items[3].target == schema
    assert dataset.gate == ds.GateSettings()  # no sidecar: defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", ":1: not JSON: Expecting value"),
        ("[1, 2]", ":1: expected an object with fields id, category, input, target, scorer"),
        ("   ", ":1: blank line"),
        (line(target=...), ":1: missing field 'target'"),
        (line(taget="y"), ":1: unknown field 'taget'; did you mean 'target'?"),
        (line(id=7), ":1: field 'id': expected a string, got 7"),
        (line(id="has space"), ":1: field 'id': 'has space' must be 1-128 letters"),
        (line(id="x" * 129), ":1: field 'id':"),
        (line(category="a/b"), ":1: field 'category': 'a/b' must be 1-64"),
        (line(input=" \n"), ":1: field 'input': must not be empty"),
        (line(input="x" * (ds.MAX_INPUT_CHARS + 1)), ":1: field 'input': 32769 characters"),
        (
            line(scorer="exakt"),
            ":1: field 'scorer': unknown scorer 'exakt' (one of exact, "
            "includes, regex, json_schema); did you mean 'exact'?",
        ),
        (line(target=""), ":1: field 'target': must not be empty"),
        (line(target=["y"]), ":1: field 'target': a exact target must be a string"),
        (line(target="x" * (ds.MAX_TARGET_CHARS + 1)), ":1: field 'target': 4097 characters"),
        (
            line(scorer="regex", target="(unclosed"),
            ":1: field 'target': regex does not compile: "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            line(scorer="json_schema", target="{}"),
            ":1: field 'target': a json_schema target must be an object",
        ),
        (
            line(scorer="json_schema", target={"type": "nonsense"}),
            ":1: field 'target': not a valid JSON schema at type",
        ),
        ('{"id": "a", "id": "b"}', ":1: not JSON: duplicate key 'id'"),
        ('{"id": NaN}', ":1: not JSON: NaN is not valid JSON"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    assert f"{path}{message}" in str(caught.value)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, line(id="a"), line(id="a"), line(id="b", scorer="nope"), "{")
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    assert str(caught.value).splitlines() == [
        f"{path}:2: field 'id': duplicate id 'a' (first on line 1)",
        f"{path}:3: field 'scorer': unknown scorer 'nope' (one of exact, includes, regex, "
        "json_schema)",
        f"{path}:4: not JSON: Expecting property name enclosed in double quotes",
    ]


def test_the_problem_list_is_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, *(["nope"] * (ds.MAX_PROBLEMS + 7)))
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == ds.MAX_PROBLEMS + 1
    assert lines[-1] == f"{path}: ... and 7 more problem(s)"


def test_sizes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long_line = line(input="Q: " + "x" * ds.MAX_LINE_BYTES)
    with pytest.raises(DatasetError, match=rf":1: line is \d+ bytes, over {ds.MAX_LINE_BYTES}"):
        load_dataset(write(tmp_path, long_line))
    monkeypatch.setattr(ds, "MAX_ITEMS", 3)
    with pytest.raises(DatasetError, match="4 lines, more than 3 items"):
        load_dataset(write(tmp_path, *(line(id=f"i{n}") for n in range(4))))
    monkeypatch.setattr(ds, "MAX_FILE_BYTES", 100)
    with pytest.raises(DatasetError, match="the dataset is larger than 100 bytes"):
        load_dataset(write(tmp_path, line(id="a"), line(id="b")))


def test_empty_unreadable_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="the dataset is empty"):
        load_dataset(write(tmp_path))
    with pytest.raises(DatasetError, match="cannot read the dataset: No such file"):
        load_dataset(tmp_path / "absent.jsonl")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(line(target="caf\u00e9").encode("utf-8").replace(b"\\u00e9", b"\xe9") + b"\n")
    with pytest.raises(DatasetError, match=":1: not UTF-8"):
        load_dataset(path)


def test_parse_is_on_bytes_and_keeps_the_last_line_without_newline(tmp_path: Path) -> None:
    items = parse_dataset(tmp_path / "x.jsonl", (line(id="a") + "\n" + line(id="b")).encode())
    assert [item.id for item in items] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("regression_threshold: 0.1\n", ds.GateSettings(0.1, 0.9, "")),
        ("min_reproducibility: 1\n", ds.GateSettings(0.05, 1.0, "")),
        ("regression_threshold: 0\nmin_reproducibility: 0.5\n", ds.GateSettings(0.0, 0.5, "")),
        ("---\n", ds.GateSettings(0.05, 0.9, "")),
    ],
)
def test_gate_sidecar(tmp_path: Path, text: str, expected: ds.GateSettings) -> None:
    (tmp_path / "set.gate.yml").write_text(text)
    gate = load_dataset(write(tmp_path, line())).gate
    assert (gate.regression_threshold, gate.min_reproducibility) == (
        expected.regression_threshold,
        expected.min_reproducibility,
    )
    assert gate.source == str(tmp_path / "set.gate.yml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threshold: 0.1\n", "unknown key 'threshold'; did you mean 'regression_threshold'?"),
        ("regression_threshold: 5\n", "regression_threshold: 5.0 is outside 0 <= x <= 1"),
        ("regression_threshold: '0.1'\n", "regression_threshold: expected a number"),
        ("regression_threshold: true\n", "regression_threshold: expected a number"),
        ("min_reproducibility: 0\n", "min_reproducibility: 0.0 is outside 0 < x <= 1"),
        ("- 1\n", "expected a mapping"),
        ("a: [\n", "not YAML"),
    ],
)
def test_bad_gate_sidecars(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "set.gate.yml").write_text(text)
    with pytest.raises(DatasetError) as caught:
        load_dataset(write(tmp_path, line()))
    assert str(caught.value).startswith(f"{tmp_path / 'set.gate.yml'}: ")
    assert message in str(caught.value)
