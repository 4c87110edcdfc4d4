"""One evaluation run from start to finish, and the comparison of two result files.

A run checks everything it was given before it sends a question (dataset,
baseline, runtime file, secret files, token, the model being served), asks every
item through Inspect AI, scores, compares with the baseline, then writes the
result file and the metrics. An error before the result file is written leaves
nothing behind.
"""

from __future__ import annotations

import os
import platform
import uuid
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sovereign.eval import compare as paired
from sovereign.eval.connection import Connection, TokenSource, get_json, printable
from sovereign.eval.dataset import Dataset
from sovereign.eval.errors import BackendError, UsageError, WriteError
from sovereign.eval.inspect_run import Generation, inspect_version, run_inspect
from sovereign.eval.metrics import RunMetrics, write_textfile
from sovereign.eval.results import (
    DEFAULT_MAX_OUTPUT_CHARS,
    SCHEMA,
    LoadedResult,
    accuracy_block,
    iso,
    item_records,
    parse_iso,
    reproducibility_block,
    utc_now,
    write_result,
)
from sovereign.eval.runtime import gather, load_runtime_file

MAX_SERVED_FIELD_CHARS = 512


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs, checked by the CLI."""

    dataset: Dataset
    connection: Connection
    model: str
    generation: Generation
    repeat: int = 1
    out_dir: Path = Path("/var/lib/sovereign/eval/results")
    baseline: LoadedResult | None = None
    threshold: float | None = None
    min_reproducibility: float | None = None
    bootstrap: paired.BootstrapSettings = field(default_factory=paired.BootstrapSettings)
    model_digest: str | None = None
    runtime_file: Path | None = None
    probe_local: bool = True
    textfile: Path | None = None
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    inspect_log_dir: Path | None = None


@dataclass(frozen=True)
class RunReport:
    document: dict[str, Any]
    path: Path
    warnings: list[str]

    @property
    def gate_failed(self) -> bool:
        gate = self.document["gate"]
        return gate is not None and not gate["passed"]


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def version_url(base_url: str) -> str:
    """vLLM's ``/version`` beside the API root: ``http://node:8000/v1`` -> ``.../version``."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/version", "", ""))


def served_model(connection: Connection, tokens: TokenSource, model: str) -> dict[str, Any] | None:
    """The model's entry in ``GET /models``; UsageError when the endpoint does not serve it."""
    status, document = get_json(connection, tokens, connection.url + "/models")
    if status != 200 or document is None:
        return None  # an endpoint without /models: the completions will tell
    entries = document.get("data")
    if not isinstance(entries, list):
        raise BackendError(f"{connection.url}/models: the answer has no data list")
    names = [e.get("id") for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("id") == model:
            return {
                key: printable(entry[key], MAX_SERVED_FIELD_CHARS)
                for key in ("id", "root", "owned_by")
                if isinstance(entry.get(key), str)
            }
    shown = ", ".join(printable(str(name), 80) for name in names[:20]) or "none"
    raise UsageError(
        f"{connection.url} does not serve model {model!r} to this account (served: {shown})"
    )


def backend_version(connection: Connection, tokens: TokenSource) -> dict[str, Any] | None:
    """vLLM's ``GET /version`` answer, or None where there is none (the gateway)."""
    try:
        status, document = get_json(
            connection, tokens, version_url(connection.url), refusal_is_error=False
        )
    except BackendError:
        return None
    return document if status == 200 else None


def gate_settings(request: RunRequest) -> tuple[float, float, str]:
    """Threshold and reproducibility asked for, and where they came from."""
    gate = request.dataset.gate
    threshold = request.threshold if request.threshold is not None else gate.regression_threshold
    minimum = (
        request.min_reproducibility
        if request.min_reproducibility is not None
        else gate.min_reproducibility
    )
    given = request.threshold is not None or request.min_reproducibility is not None
    return threshold, minimum, "command line" if given else gate.source


def check_baseline(dataset: Dataset, baseline: LoadedResult) -> None:
    """Refuse, before any question is sent, a baseline of other dataset bytes."""
    if baseline.dataset_sha256 != dataset.sha256:
        raise UsageError(
            f"refusing the baseline {baseline.path}: it scored dataset {baseline.dataset_name} "
            f"with sha256 {baseline.dataset_sha256}, {dataset.path} has sha256 "
            f"{dataset.sha256}; a paired comparison needs the same dataset bytes (run the "
            "baseline model again on this dataset)"
        )


def check_writable(path: Path, what: str) -> None:
    """UsageError unless ``path`` (a directory, existing or to be made) can be written."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{what} {path}: cannot write there ({existing} is not a writable directory)"
        )


def execute(request: RunRequest) -> RunReport:
    """Run the evaluation, compare, write the result and the metrics.

    Everything local is checked before the first request: the baseline's
    dataset, the runtime file, where the result and the metrics go.
    """
    dataset, connection = request.dataset, request.connection
    if request.baseline is not None:
        check_baseline(dataset, request.baseline)
    threshold, min_reproducibility, gate_source = gate_settings(request)
    runtime_values = load_runtime_file(request.runtime_file) if request.runtime_file else None
    check_writable(request.out_dir, "--out")
    if request.textfile is not None:
        check_writable(request.textfile.parent, "--textfile")
    tokens = connection.token_source()
    tokens.bearer()  # fail now, not after the first question, when no token can be had
    served = served_model(connection, tokens, request.model)
    runtime = gather(
        model_digest=request.model_digest,
        runtime_file=request.runtime_file,
        runtime_values=runtime_values,
        backend_version=backend_version(connection, tokens),
        probe_local=request.probe_local,
    )

    started = utc_now()
    runs = run_inspect(
        dataset,
        connection,
        request.model,
        request.generation,
        repeat=request.repeat,
        log_dir=request.inspect_log_dir,
    )
    finished = utc_now()

    first = runs[0]
    reproducibility, identical = reproducibility_block(dataset, runs, min_reproducibility)
    score = accuracy_block([(item.category, first[item.id].score) for item in dataset.items])
    checks: list[dict[str, Any]] = []
    comparison: dict[str, Any] | None = None
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": uuid.uuid4().hex,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.path),
            "sha256": dataset.sha256,
            "items": len(dataset.items),
            "categories": dict(sorted(dataset.categories.items())),
            "gate": {
                "regression_threshold": threshold,
                "min_reproducibility": min_reproducibility,
                "source": gate_source,
            },
        },
        "model": {
            "name": request.model,
            "digest": runtime.values.pop("model_digest"),
            "digest_source": runtime.sources.pop("model_digest", None),
            "served": served,
        },
        "endpoint": {
            "base_url": connection.url,
            "auth": connection.tokens.grant,
            "cacert": str(connection.cacert) if connection.cacert else None,
            "resolve": [f"{host}:{port}:{address}" for host, port, address in connection.resolve],
            "model_version": connection.model_version,
        },
        "runtime": runtime.as_json(),
        "generation": {
            "api": "completions",
            "temperature": request.generation.temperature,
            "max_tokens": request.generation.max_tokens,
            "seed": request.generation.seed,
            "repeat": request.repeat,
            "retries": request.generation.retries,
            "concurrency": request.generation.concurrency,
            "timeout_s": connection.timeout_s,
            "max_response_bytes": connection.max_response_bytes,
            "max_output_chars": request.max_output_chars,
        },
        "tools": {
            "inspect_ai": inspect_version(),
            "sovereign": _package_version("sovereign"),
            "python": platform.python_version(),
        },
        "score": score,
        "reproducibility": reproducibility,
        "comparison": None,
        "gate": None,
        "items": item_records(dataset, first, identical, request.max_output_chars),
    }
    if request.baseline is not None:
        candidate = LoadedResult(
            path=Path("(this run)"),
            document=document,
            dataset_name=dataset.name,
            dataset_sha256=dataset.sha256,
            model=request.model,
            scores={item.id: first[item.id].score for item in dataset.items},
            categories={item.id: item.category for item in dataset.items},
            finished_at=finished,
        )
        comparison, check = paired.compare(
            candidate, request.baseline, threshold=threshold, bootstrap=request.bootstrap
        )
        checks.append(check)
    if reproducibility is not None:
        checks.append(paired.reproducibility_check(reproducibility, min_reproducibility))
    document["comparison"] = comparison
    document["gate"] = paired.gate(checks)

    path = write_result(request.out_dir, document)
    warnings: list[str] = []
    if request.textfile is not None:
        try:
            warnings = write_textfile(request.textfile, run_metrics(document))
        except WriteError as exc:
            raise WriteError(f"the result is in {path}, but the metrics are not: {exc}") from exc
    return RunReport(document, path, warnings)


def run_metrics(document: dict[str, Any]) -> RunMetrics:
    """What a result document exports to Prometheus."""
    gate = document.get("gate")
    comparison = document.get("comparison")
    return RunMetrics(
        dataset=document["dataset"]["name"],
        model=document["model"]["name"],
        accuracy=document["score"]["accuracy"],
        finished_unix=parse_iso(document["finished_at"]).timestamp(),
        gate_passed=gate["passed"] if gate is not None else None,
        baseline_accuracy=comparison["baseline_accuracy"] if comparison is not None else None,
    )


@dataclass(frozen=True)
class CompareReport:
    comparison: dict[str, Any]
    gate: dict[str, Any]
    warnings: list[str]


def compare_files(
    candidate: LoadedResult,
    baseline: LoadedResult,
    *,
    threshold: float | None,
    min_reproducibility: float | None,
    bootstrap: paired.BootstrapSettings,
    textfile: Path | None,
) -> CompareReport:
    """Compare two result files; the gate uses the candidate's recorded settings by default."""
    recorded = candidate.document.get("dataset", {}).get("gate", {})
    if threshold is None:
        threshold = _recorded_fraction(candidate, recorded, "regression_threshold")
    comparison, check = paired.compare(
        candidate, baseline, threshold=threshold, bootstrap=bootstrap
    )
    checks = [check]
    reproducibility = candidate.document.get("reproducibility")
    if isinstance(reproducibility, dict):
        if min_reproducibility is None:
            min_reproducibility = _recorded_fraction(candidate, recorded, "min_reproducibility")
        try:
            checks.append(paired.reproducibility_check(reproducibility, min_reproducibility))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise UsageError(f"{candidate.path}: field reproducibility is malformed") from exc
    gate = paired.gate(checks)
    assert gate is not None
    warnings: list[str] = []
    if textfile is not None:
        warnings = write_textfile(
            textfile,
            RunMetrics(
                dataset=candidate.dataset_name,
                model=candidate.model,
                accuracy=candidate.accuracy,
                finished_unix=candidate.finished_at.timestamp(),
                gate_passed=gate["passed"],
                baseline_accuracy=baseline.accuracy,
            ),
        )
    return CompareReport(comparison, gate, warnings)


def _recorded_fraction(candidate: LoadedResult, recorded: Any, key: str) -> float:
    value = recorded.get(key) if isinstance(recorded, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise UsageError(
            f"{candidate.path}: field dataset.gate.{key} is missing or not in 0..1: "
            f"give --{key.replace('_', '-').replace('regression-', '')}"
        )
    return float(value)
