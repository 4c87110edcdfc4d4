"""The evaluation's Prometheus metrics, as a node_exporter textfile-collector file.

Four gauges, labelled ``dataset`` and ``model`` (the names the alert rules in
files/prometheus/rules/sovereign-alerts.yml.j2 and their tests use):

``sovereign_eval_gate_passed``
    1 when the last run passed its gate, 0 when it failed; absent when the last
    run had no gate (no baseline and no ``--repeat``).
``sovereign_eval_accuracy``
    the last run's accuracy (0..1).
``sovereign_eval_baseline_accuracy``
    the accuracy of the baseline it was compared with; absent without one.
``sovereign_eval_last_run_timestamp_seconds``
    when the last run finished (Unix time).

One file holds every (dataset, model) pair the host evaluates: a run replaces
the series of its own pair and keeps the others. The file is rewritten
atomically, under an exclusive lock on its directory so two runs finishing
together do not lose each other's series. The text is produced by
prometheus_client, which escapes label values.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sovereign.eval.atomic import write_atomic
from sovereign.eval.errors import WriteError

DEFAULT_TEXTFILE = Path("/var/lib/prometheus/node-exporter/sovereign_eval.prom")
LABELS = ("dataset", "model")
GATE_PASSED = "sovereign_eval_gate_passed"
ACCURACY = "sovereign_eval_accuracy"
BASELINE_ACCURACY = "sovereign_eval_baseline_accuracy"
LAST_RUN = "sovereign_eval_last_run_timestamp_seconds"
HELP = {
    GATE_PASSED: "1 when the last evaluation run passed its gate, 0 when it failed.",
    ACCURACY: "Accuracy (0..1) of the last evaluation run.",
    BASELINE_ACCURACY: "Accuracy (0..1) of the baseline the last run was compared with.",
    LAST_RUN: "Unix time at which the last evaluation run finished.",
}
MAX_TEXTFILE_BYTES = 1024 * 1024

Key = tuple[str, str, str]  # (metric, dataset, model)


@dataclass(frozen=True)
class RunMetrics:
    """The values one run exports."""

    dataset: str
    model: str
    accuracy: float
    finished_unix: float
    gate_passed: bool | None = None
    baseline_accuracy: float | None = None

    def series(self) -> dict[Key, float]:
        values: dict[Key, float] = {
            (ACCURACY, self.dataset, self.model): self.accuracy,
            (LAST_RUN, self.dataset, self.model): self.finished_unix,
        }
        if self.gate_passed is not None:
            values[GATE_PASSED, self.dataset, self.model] = 1.0 if self.gate_passed else 0.0
        if self.baseline_accuracy is not None:
            values[BASELINE_ACCURACY, self.dataset, self.model] = self.baseline_accuracy
        return values


def parse_textfile(text: str) -> dict[Key, float]:
    """The series of our four gauges in a textfile (other metrics are not ours: dropped)."""
    series: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in HELP and set(sample.labels) == set(LABELS):
                series[sample.name, sample.labels["dataset"], sample.labels["model"]] = sample.value
    return series


def render(series: dict[Key, float]) -> bytes:
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, LABELS, registry=registry) for name, text in HELP.items()}
    for (name, dataset, model), value in sorted(series.items()):
        gauges[name].labels(dataset=dataset, model=model).set(value)
    return generate_latest(registry)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise WriteError(
            f"{directory}: cannot open the textfile directory: {exc.strerror}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_textfile(path: Path, run: RunMetrics) -> list[str]:
    """Replace ``run``'s series in the textfile at ``path``; returns warnings to print."""
    warnings: list[str] = []
    with _locked(path.parent):
        kept: dict[Key, float] = {}
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_TEXTFILE_BYTES + 1)
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise WriteError(f"{path}: cannot read the textfile: {exc.strerror}") from exc
        if len(data) > MAX_TEXTFILE_BYTES:
            warnings.append(f"{path}: larger than {MAX_TEXTFILE_BYTES} bytes: rewritten")
        elif data:
            try:
                kept = parse_textfile(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                warnings.append(f"{path}: not a valid textfile ({exc}): rewritten")
        kept = {key: value for key, value in kept.items() if key[1:] != (run.dataset, run.model)}
        kept.update(run.series())
        write_atomic(path, render(kept))
    return warnings
