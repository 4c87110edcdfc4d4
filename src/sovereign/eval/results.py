"""The result file: one JSON document per run, written atomically to the results directory.

The schema (``"schema": "sovereign-eval-result/1"``) is described field by field
in docs/eval.md. Outputs are stored bounded (``--max-output-chars``) with the
SHA-256 of the whole answer, so two runs can be told apart even where the stored
text is cut. Result files are read back (as baselines) as untrusted input:
bounded in size and checked field by field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sovereign.eval.atomic import write_atomic
from sovereign.eval.dataset import Dataset
from sovereign.eval.errors import ResultFileError
from sovereign.eval.inspect_run import Outcome

SCHEMA = "sovereign-eval-result/1"
MAX_RESULT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_OUTPUT_CHARS = 2000
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def accuracy_block(scores: list[tuple[str, int]]) -> dict[str, Any]:
    """Items, correct answers and accuracy, overall and per category, of (category, score) pairs."""
    items = len(scores)
    correct = sum(score for _, score in scores)
    per_items = Counter(category for category, _ in scores)
    per_correct = Counter(category for category, score in scores if score)
    return {
        "items": items,
        "correct": correct,
        "accuracy": correct / items if items else 0.0,
        "by_category": {
            category: {
                "items": per_items[category],
                "correct": per_correct[category],
                "accuracy": per_correct[category] / per_items[category],
            }
            for category in sorted(per_items)
        },
    }


def reproducibility_block(
    dataset: Dataset, runs: list[dict[str, Outcome]], min_required: float
) -> tuple[dict[str, Any] | None, dict[str, bool]]:
    """The fraction of items answered identically (same output, same score) in every run."""
    if len(runs) < 2:
        return None, {}
    identical = {
        item.id: len({(run[item.id].output, run[item.id].score) for run in runs}) == 1
        for item in dataset.items
    }
    count = sum(identical.values())
    fraction = count / len(identical)
    return {
        "runs": len(runs),
        "items": len(identical),
        "identical_items": count,
        "fraction": fraction,
        "min_required": min_required,
        "passed": fraction >= min_required,
    }, identical


def item_records(
    dataset: Dataset,
    first: dict[str, Outcome],
    identical: dict[str, bool],
    max_output_chars: int,
) -> list[dict[str, Any]]:
    records = []
    for item in dataset.items:
        outcome = first[item.id]
        records.append(
            {
                "id": item.id,
                "category": item.category,
                "scorer": item.scorer,
                "score": outcome.score,
                "output": outcome.output[:max_output_chars],
                "output_truncated": len(outcome.output) > max_output_chars,
                "output_chars": len(outcome.output),
                "output_sha256": hashlib.sha256(outcome.output.encode("utf-8")).hexdigest(),
                "stop_reason": outcome.stop_reason,
                "identical_across_runs": identical.get(item.id),
            }
        )
    return records


def result_file_name(document: dict[str, Any]) -> str:
    """``<dataset>--<model>--<finished, UTC>--<run id>.json``, safe as one path component."""
    stamp = parse_iso(document["finished_at"]).strftime("%Y%m%dT%H%M%SZ")
    parts = [
        document["dataset"]["name"],
        document["model"]["name"],
        stamp,
        document["run_id"][:12],
    ]
    return "--".join(SAFE_NAME.sub("_", part)[:80] for part in parts) + ".json"


def dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


def write_result(directory: Path, document: dict[str, Any]) -> Path:
    """Write the result as a new file in ``directory``; returns its path."""
    path = directory / result_file_name(document)
    write_atomic(path, dump(document))
    return path


@dataclass(frozen=True)
class LoadedResult:
    """A result file read back: the fields a comparison needs, checked, and the document."""

    path: Path
    document: dict[str, Any]
    dataset_name: str
    dataset_sha256: str
    model: str
    scores: dict[str, int]
    categories: dict[str, str]
    finished_at: datetime

    @property
    def correct(self) -> int:
        return sum(self.scores.values())

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.scores)


def _field(document: Any, path: Path, *keys: str) -> Any:
    value = document
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise ResultFileError(f"{path}: missing field {'.'.join(keys[: depth + 1])}")
        value = value[key]
    return value


def _string(document: Any, path: Path, *keys: str) -> str:
    value = _field(document, path, *keys)
    if not isinstance(value, str) or not value:
        raise ResultFileError(f"{path}: field {'.'.join(keys)} must be a non-empty string")
    return value


def load_result(path: Path) -> LoadedResult:
    """Read a result file (a baseline, or a candidate); ResultFileError naming the field."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RESULT_BYTES + 1)
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read the result file: {exc.strerror}") from exc
    if len(data) > MAX_RESULT_BYTES:
        raise ResultFileError(f"{path}: larger than {MAX_RESULT_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ResultFileError(f"{path}: not JSON") from exc
    if not isinstance(document, dict):
        raise ResultFileError(f"{path}: not a result file (expected a JSON object)")
    if document.get("schema") != SCHEMA:
        raise ResultFileError(
            f"{path}: schema {document.get('schema')!r} is not {SCHEMA!r}: not a result "
            "file of this runner"
        )
    sha256 = _string(document, path, "dataset", "sha256")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ResultFileError(f"{path}: field dataset.sha256 is not a SHA-256 hex digest")
    try:
        finished_at = parse_iso(_string(document, path, "finished_at"))
    except ValueError as exc:
        raise ResultFileError(f"{path}: field finished_at is not an ISO 8601 time") from exc
    if finished_at.tzinfo is None:
        raise ResultFileError(f"{path}: field finished_at has no time zone")
    items = _field(document, path, "items")
    if not isinstance(items, list) or not items:
        raise ResultFileError(f"{path}: field items must be a non-empty list")
    scores: dict[str, int] = {}
    categories: dict[str, str] = {}
    for index, record in enumerate(items):
        where = f"{path}: items[{index}]"
        if not isinstance(record, dict):
            raise ResultFileError(f"{where}: expected an object")
        item_id, category, score = record.get("id"), record.get("category"), record.get("score")
        if not isinstance(item_id, str) or not item_id:
            raise ResultFileError(f"{where}.id: expected a non-empty string")
        if item_id in scores:
            raise ResultFileError(f"{where}.id: duplicate id {item_id!r}")
        if not isinstance(category, str):
            raise ResultFileError(f"{where}.category: expected a string")
        if isinstance(score, bool) or score not in (0, 1):
            raise ResultFileError(f"{where}.score: expected 0 or 1, got {score!r}")
        scores[item_id] = int(score)
        categories[item_id] = category
    return LoadedResult(
        path=path,
        document=document,
        dataset_name=_string(document, path, "dataset", "name"),
        dataset_sha256=sha256,
        model=_string(document, path, "model", "name"),
        scores=scores,
        categories=categories,
        finished_at=finished_at,
    )
