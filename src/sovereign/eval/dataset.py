"""Evaluation datasets: JSONL task files, validated strictly before anything runs.

One JSON object per line, exactly these fields::

    {"id": "sec-01", "category": "security", "input": "Q: ...\\nA:",
     "target": "90 days", "scorer": "exact"}

``input`` is the raw prompt sent to ``/v1/completions``; ``scorer`` says how the
output is checked against ``target`` (see :mod:`sovereign.eval.scoring`). A
``json_schema`` item's target is a JSON schema (an object); every other target is
a string. Sizes are bounded (line length, item count, field lengths) so a file
that is not a dataset fails here, with every problem named by file, line and
field, before a single request is sent.

A dataset may have a gate sidecar beside it, ``<stem>.gate.yml``, holding
``regression_threshold`` and ``min_reproducibility``; absent keys (or an absent
file) take the defaults below.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sovereign.eval.errors import DatasetError

SCORERS = ("exact", "includes", "regex", "json_schema")
FIELDS = ("id", "category", "input", "target", "scorer")

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_ITEMS = 5000
MAX_INPUT_CHARS = 32 * 1024
MAX_TARGET_CHARS = 4096
MAX_PROBLEMS = 50
MAX_SIDECAR_BYTES = 64 * 1024
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
CATEGORY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

DEFAULT_REGRESSION_THRESHOLD = 0.05
DEFAULT_MIN_REPRODUCIBILITY = 0.90
SIDECAR_SUFFIX = ".gate.yml"
SIDECAR_KEYS = ("regression_threshold", "min_reproducibility")


@dataclass(frozen=True)
class Item:
    """One question of a dataset, with its scorer ready to apply."""

    id: str
    category: str
    input: str
    target: str | dict[str, Any]
    scorer: str
    line: int
    # The compiled form of the target: a regex pattern or a JSON schema validator.
    check: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GateSettings:
    """The dataset's gate: what drop in accuracy fails, what reproducibility is asked for."""

    regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD
    min_reproducibility: float = DEFAULT_MIN_REPRODUCIBILITY
    source: str = "default"


@dataclass(frozen=True)
class Dataset:
    """A validated dataset and the digest of the exact bytes it was read from."""

    path: Path
    name: str
    sha256: str
    items: tuple[Item, ...]
    gate: GateSettings

    @property
    def categories(self) -> Counter[str]:
        return Counter(item.category for item in self.items)

    @property
    def scorers(self) -> Counter[str]:
        return Counter(item.scorer for item in self.items)


class _Problems:
    """Every problem of a file, named by file:line and field, up to a bound."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.dropped = 0

    def add(self, line: int | None, message: str) -> None:
        if len(self.lines) >= MAX_PROBLEMS:
            self.dropped += 1
            return
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        self.lines.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        lines = list(self.lines)
        if self.dropped:
            lines.append(f"{self.path}: ... and {self.dropped} more problem(s)")
        raise DatasetError("\n".join(lines))


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise ValueError(f"duplicate key {key!r}")
        record[key] = value
    return record


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_validator(schema: dict[str, Any]) -> Any:
    """A validator for ``schema``; ValueError with jsonschema's reason when it is not one."""
    try:
        import jsonschema
        import jsonschema.exceptions
        import jsonschema.validators
    except ImportError as exc:  # the eval extra carries it
        raise ValueError("needs the jsonschema package: pip install 'sovereign[eval]'") from exc
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
        raise ValueError(f"not a valid JSON schema at {where}: {exc.message[:200]}") from exc
    return cls(schema)


def _check_item(record: dict[str, Any], number: int, problems: _Problems) -> Item | None:
    """The item of one line, or None after naming its problems."""
    before = len(problems.lines) + problems.dropped
    for key in record:
        if key not in FIELDS:
            problems.add(number, f"unknown field {key!r}{_did_you_mean(key, FIELDS)}")
    for key in FIELDS:
        if key not in record:
            problems.add(number, f"missing field {key!r}")
    for key in ("id", "category", "input", "scorer"):
        if key in record and not isinstance(record[key], str):
            problems.add(number, f"field {key!r}: expected a string, got {_short(record[key])}")
    if len(problems.lines) + problems.dropped > before:
        return None

    item_id, category, text, scorer = (
        record["id"],
        record["category"],
        record["input"],
        record["scorer"],
    )
    target = record["target"]
    if not ID_PATTERN.fullmatch(item_id):
        problems.add(
            number,
            f"field 'id': {_short(item_id)} must be 1-128 letters, digits or ._:- "
            "and start with a letter or digit",
        )
    if not CATEGORY_PATTERN.fullmatch(category):
        problems.add(
            number,
            f"field 'category': {_short(category)} must be 1-64 letters, digits or ._- "
            "and start with a letter or digit",
        )
    if not text.strip():
        problems.add(number, "field 'input': must not be empty")
    elif len(text) > MAX_INPUT_CHARS:
        problems.add(number, f"field 'input': {len(text)} characters, over {MAX_INPUT_CHARS}")
    if scorer not in SCORERS:
        problems.add(
            number,
            f"field 'scorer': unknown scorer {_short(scorer)} "
            f"(one of {', '.join(SCORERS)}){_did_you_mean(scorer, SCORERS)}",
        )
        return None

    check: Any = None
    if scorer == "json_schema":
        if not isinstance(target, dict):
            problems.add(
                number,
                f"field 'target': a json_schema target must be an object (the schema), "
                f"got {_short(target)}",
            )
            return None
        try:
            check = _schema_validator(target)
        except ValueError as exc:
            problems.add(number, f"field 'target': {exc}")
            return None
    else:
        if not isinstance(target, str):
            problems.add(
                number, f"field 'target': a {scorer} target must be a string, got {_short(target)}"
            )
            return None
        if not target.strip():
            problems.add(number, "field 'target': must not be empty")
            return None
        if len(target) > MAX_TARGET_CHARS:
            problems.add(
                number, f"field 'target': {len(target)} characters, over {MAX_TARGET_CHARS}"
            )
            return None
        if scorer == "regex":
            try:
                check = re.compile(target)
            except re.error as exc:
                problems.add(
                    number,
                    f"field 'target': regex does not compile: {exc.msg} at position {exc.pos}",
                )
                return None
    if len(problems.lines) + problems.dropped > before:
        return None
    return Item(item_id, category, text, target, scorer, number, check)


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    if len(data) > limit:
        raise DatasetError(f"{path}: the {what} is larger than {limit} bytes")
    return data


def parse_dataset(path: Path, data: bytes) -> tuple[Item, ...]:
    """Validate the bytes of a dataset; DatasetError naming every problem (file:line: field)."""
    problems = _Problems(path)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    if len(lines) > MAX_ITEMS:
        raise DatasetError(f"{path}: {len(lines)} lines, more than {MAX_ITEMS} items")
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            problems.add(number, f"line is {len(raw)} bytes, over {MAX_LINE_BYTES}")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.add(number, f"not UTF-8 (byte {exc.start})")
            continue
        if not text.strip():
            problems.add(number, "blank line (one JSON object per line, nothing else)")
            continue
        try:
            record = json.loads(
                text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant
            )
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            problems.add(number, f"not JSON: {reason}")
            continue
        if not isinstance(record, dict):
            problems.add(number, f"expected an object with fields {', '.join(FIELDS)}")
            continue
        item = _check_item(record, number, problems)
        if item is None:
            continue
        if item.id in first_line:
            problems.add(
                number,
                f"field 'id': duplicate id {item.id!r} (first on line {first_line[item.id]})",
            )
            continue
        first_line[item.id] = number
        items.append(item)
    if not lines:
        problems.add(None, "the dataset is empty")
    problems.raise_if_any()
    return tuple(items)


def _fraction_setting(path: Path, key: str, value: object, *, zero_ok: bool) -> float:
    low = "0 <=" if zero_ok else "0 <"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f"{path}: {key}: expected a number ({low} x <= 1), got {value!r}")
    number = float(value)
    if not (0.0 <= number <= 1.0) or (number == 0.0 and not zero_ok):
        raise DatasetError(f"{path}: {key}: {number} is outside {low} x <= 1")
    return number


def sidecar_path(path: Path) -> Path:
    """Where the gate settings of ``path`` live: ``<stem>.gate.yml`` beside it."""
    return path.with_name(path.stem + SIDECAR_SUFFIX)


def load_gate_settings(dataset_path: Path) -> GateSettings:
    """The dataset's gate sidecar, or the defaults when it has none."""
    path = sidecar_path(dataset_path)
    if not path.exists():
        return GateSettings()
    data = _read_bounded(path, MAX_SIDECAR_BYTES, "gate settings")
    try:
        settings = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: not YAML: {str(exc)[:200]}") from exc
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise DatasetError(f"{path}: expected a mapping with keys {', '.join(SIDECAR_KEYS)}")
    for key in settings:
        if key not in SIDECAR_KEYS:
            raise DatasetError(
                f"{path}: unknown key {key!r}{_did_you_mean(str(key), SIDECAR_KEYS)}"
            )
    threshold = _fraction_setting(
        path,
        "regression_threshold",
        settings.get("regression_threshold", DEFAULT_REGRESSION_THRESHOLD),
        zero_ok=True,
    )
    reproducibility = _fraction_setting(
        path,
        "min_reproducibility",
        settings.get("min_reproducibility", DEFAULT_MIN_REPRODUCIBILITY),
        zero_ok=False,
    )
    return GateSettings(threshold, reproducibility, str(path))


def load_dataset(path: Path) -> Dataset:
    """Read, digest and validate a dataset and its gate sidecar."""
    data = _read_bounded(path, MAX_FILE_BYTES, "dataset")
    items = parse_dataset(path, data)
    return Dataset(
        path=path,
        name=path.stem,
        sha256=hashlib.sha256(data).hexdigest(),
        items=items,
        gate=load_gate_settings(path),
    )
