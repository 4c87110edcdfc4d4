"""Result files: records, the reproducibility figure, atomic writes, strict reading back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sovereign.eval import results
from sovereign.eval.atomic import write_atomic
from sovereign.eval.dataset import load_dataset
from sovereign.eval.errors import ResultFileError, WriteError
from sovereign.eval.inspect_run import Outcome
from sovereign.eval.results import (
    SCHEMA,
    accuracy_block,
    item_records,
    load_result,
    reproducibility_block,
    result_file_name,
)

from .fakeserver import TINY_QA

DATASET = load_dataset(TINY_QA)


def runs_with(differing: int, runs: int = 3) -> list[dict[str, Outcome]]:
    """``runs`` runs in which the first ``differing`` items answer differently each time."""
    return [
        {
            item.id: Outcome(f" answer {run if index < differing else 0}", 1, "stop")
            for index, item in enumerate(DATASET.items)
        }
        for run in range(runs)
    ]


@pytest.mark.parametrize(
    ("differing", "fraction", "passed"),
    [(0, 1.0, True), (2, 0.9, True), (3, 0.85, False), (20, 0.0, False)],
)
def test_reproducibility_figure(differing: int, fraction: float, passed: bool) -> None:
    block, identical = reproducibility_block(DATASET, runs_with(differing), 0.9)
    assert block == {
        "runs": 3,
        "items": 20,
        "identical_items": 20 - differing,
        "fraction": fraction,
        "min_required": 0.9,
        "passed": passed,
    }
    assert [item.id for item in DATASET.items if not identical[item.id]] == [
        item.id for item in DATASET.items[:differing]
    ]


def test_a_changed_score_with_the_same_output_is_not_identical() -> None:
    runs = runs_with(0, runs=2)
    first = DATASET.items[0].id
    runs[1][first] = Outcome(runs[0][first].output, 0, "stop")
    block, identical = reproducibility_block(DATASET, runs, 0.9)
    assert block is not None and block["identical_items"] == 19 and not identical[first]


def test_one_run_has_no_reproducibility_figure() -> None:
    assert reproducibility_block(DATASET, runs_with(0, runs=1), 0.9) == (None, {})


def test_accuracy_block_by_category() -> None:
    block = accuracy_block([("a", 1), ("a", 0), ("b", 1), ("a", 1)])
    assert block == {
        "items": 4,
        "correct": 3,
        "accuracy": 0.75,
        "by_category": {
            "a": {"items": 3, "correct": 2, "accuracy": 2 / 3},
            "b": {"items": 1, "correct": 1, "accuracy": 1.0},
        },
    }


def test_item_records_bound_the_output_and_keep_its_digest() -> None:
    first = {item.id: Outcome("é" * 50, 0, "max_tokens") for item in DATASET.items}
    (record, *_) = item_records(DATASET, first, {}, max_output_chars=8)
    assert record["output"] == "é" * 8
    assert record["output_truncated"] is True and record["output_chars"] == 50
    assert record["output_sha256"] == __import__("hashlib").sha256(("é" * 50).encode()).hexdigest()
    assert record["identical_across_runs"] is None and record["stop_reason"] == "max_tokens"


def test_result_file_name_is_one_safe_path_component() -> None:
    document = {
        "finished_at": "2026-03-04T05:06:07.890Z",
        "dataset": {"name": "tiny_qa"},
        "model": {"name": "org/model name:v1"},
        "run_id": "0123456789abcdef",
    }
    assert result_file_name(document) == (
        "tiny_qa--org_model_name_v1--20260304T050607Z--0123456789ab.json"
    )


def test_atomic_write_replaces_whole_and_leaves_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "result.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["result.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_failure_is_a_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(WriteError, match="cannot write"):
        write_atomic(blocker / "result.json", b"x")


def good_document() -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": "r",
        "finished_at": "2026-01-02T03:04:05.000Z",
        "dataset": {"name": "set", "sha256": "c" * 64},
        "model": {"name": "m"},
        "items": [
            {"id": "a", "category": "x", "score": 1},
            {"id": "b", "category": "x", "score": 0},
        ],
    }


def test_load_result(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(good_document()))
    loaded = load_result(path)
    assert loaded.scores == {"a": 1, "b": 0}
    assert loaded.accuracy == 0.5 and loaded.correct == 1
    assert loaded.dataset_sha256 == "c" * 64 and loaded.model == "m"
    assert loaded.finished_at.timestamp() == 1767323045.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema="other/1"), "schema 'other/1' is not 'sovereign-eval-result/1'"),
        (lambda d: d["dataset"].pop("sha256"), "missing field dataset.sha256"),
        (lambda d: d.pop("dataset"), "missing field dataset"),
        (lambda d: d["dataset"].update(sha256="xyz"), "dataset.sha256 is not a SHA-256"),
        (lambda d: d["model"].update(name=""), "model.name must be a non-empty string"),
        (lambda d: d.update(finished_at="yesterday"), "finished_at is not an ISO 8601 time"),
        (lambda d: d.update(finished_at="2026-01-02T03:04:05"), "finished_at has no time zone"),
        (lambda d: d.update(items=[]), "items must be a non-empty list"),
        (lambda d: d["items"].append("x"), "items[2]: expected an object"),
        (lambda d: d["items"][1].update(id="a"), "items[1].id: duplicate id 'a'"),
        (lambda d: d["items"][0].update(score=0.5), "items[0].score: expected 0 or 1, got 0.5"),
        (lambda d: d["items"][0].update(score=True), "items[0].score: expected 0 or 1, got True"),
        (lambda d: d["items"][0].pop("category"), "items[0].category: expected a string"),
    ],
)
def test_bad_result_files_are_named(tmp_path: Path, change: Any, message: str) -> None:
    document = good_document()
    change(document)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ResultFileError) as caught:
        load_result(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_result_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(good_document()))
    monkeypatch.setattr(results, "MAX_RESULT_BYTES", 100)
    with pytest.raises(ResultFileError, match="larger than 100 bytes"):
        load_result(path)
    with pytest.raises(ResultFileError, match="cannot read the result file"):
        load_result(tmp_path / "absent.json")
    path.write_text("[]")
    with pytest.raises(ResultFileError, match="expected a JSON object"):
        load_result(path)
