"""Paired comparison of a candidate run with a baseline run, and the gate.

Both runs must have scored the same dataset bytes (same SHA-256): then every item
has a baseline score b_i and a candidate score c_i (each 0 or 1) and the
comparison is paired, item by item: d_i = c_i - b_i.

* accuracy of each run: the mean of its scores;
* difference: candidate accuracy - baseline accuracy = mean(d_i), in absolute
  accuracy points (0.05 = 5 percentage points);
* confidence interval: paired bootstrap of mean(d_i): resample the n items with
  replacement B times (numpy, fixed seed), take the percentiles of the B means.

The gate fails when the accuracy drops by more than the threshold::

    candidate_accuracy - baseline_accuracy < -regression_threshold

computed exactly (integer counts, the threshold as its decimal), so a drop of
exactly the threshold passes. The confidence interval is reported next to it
(and whether it excludes 0), not used to decide: with a few dozen items it spans
several points, and a gate on its bound would fail or pass on noise.

With ``--repeat`` the candidate's reproducibility (the fraction of items answered
identically in every run) is a second check of the gate, against
``min_reproducibility``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from sovereign.eval.errors import ResultFileError, UsageError
from sovereign.eval.results import LoadedResult

DEFAULT_BOOTSTRAP_SAMPLES = 10_000
DEFAULT_BOOTSTRAP_SEED = 0
DEFAULT_CONFIDENCE = 0.95
# Resampled means are computed this many cells (rows x items) at a time.
BOOTSTRAP_CHUNK_CELLS = 1 << 20


@dataclass(frozen=True)
class BootstrapSettings:
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES
    seed: int = DEFAULT_BOOTSTRAP_SEED
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self) -> None:
        if not 100 <= self.samples <= 1_000_000:
            raise UsageError("--bootstrap-samples must be between 100 and 1000000")
        if not 0.5 <= self.confidence < 1.0:
            raise UsageError("--confidence must be at least 0.5 and below 1")


def paired_bootstrap_ci(
    differences: list[int] | list[float], settings: BootstrapSettings
) -> tuple[float, float]:
    """The percentile confidence interval of the mean of ``differences`` (paired bootstrap)."""
    values = np.asarray(differences, dtype=np.float64)
    n = values.size
    if n == 0:
        raise ValueError("no differences to resample")
    rng = np.random.default_rng(settings.seed)
    means = np.empty(settings.samples, dtype=np.float64)
    rows = max(1, BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, settings.samples, rows):
        stop = min(start + rows, settings.samples)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[picks].mean(axis=1)
    tail = (1.0 - settings.confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def exact_fraction(value: float) -> Fraction:
    """A threshold as the decimal it was written as (0.05 is 1/20, not the float)."""
    return Fraction(repr(value))


def accuracy_check(
    baseline_correct: int, candidate_correct: int, items: int, threshold: float
) -> dict[str, Any]:
    """The accuracy check of the gate: fail when candidate - baseline < -threshold."""
    difference = Fraction(candidate_correct - baseline_correct, items)
    return {
        "name": "accuracy",
        "rule": "fail when candidate_accuracy - baseline_accuracy < -regression_threshold",
        "regression_threshold": threshold,
        "baseline_accuracy": baseline_correct / items,
        "candidate_accuracy": candidate_correct / items,
        "difference": float(difference),
        "passed": difference >= -exact_fraction(threshold),
    }


def reproducibility_check(reproducibility: dict[str, Any], min_required: float) -> dict[str, Any]:
    fraction = Fraction(reproducibility["identical_items"], reproducibility["items"])
    return {
        "name": "reproducibility",
        "rule": "fail when the fraction of items identical in every run < min_reproducibility",
        "runs": reproducibility["runs"],
        "fraction": float(fraction),
        "min_reproducibility": min_required,
        "passed": fraction >= exact_fraction(min_required),
    }


def gate(checks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The gate of a run: passed when every check passed; None when nothing was checked."""
    if not checks:
        return None
    return {"passed": all(check["passed"] for check in checks), "checks": checks}


def compare(
    candidate: LoadedResult,
    baseline: LoadedResult,
    *,
    threshold: float,
    bootstrap: BootstrapSettings,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The comparison block and the accuracy check; ResultFileError if they are not paired."""
    if candidate.dataset_sha256 != baseline.dataset_sha256:
        raise ResultFileError(
            f"refusing to compare: {candidate.path} scored dataset {candidate.dataset_name} "
            f"with sha256 {candidate.dataset_sha256}, {baseline.path} scored "
            f"{baseline.dataset_name} with sha256 {baseline.dataset_sha256}; a paired "
            "comparison needs a baseline run on the same dataset bytes (run the baseline "
            "model again on this dataset)"
        )
    if set(candidate.scores) != set(baseline.scores):
        raise ResultFileError(
            f"refusing to compare: {candidate.path} and {baseline.path} name the same dataset "
            "digest but not the same item ids (a result file was edited)"
        )
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold} is outside 0 <= x <= 1")
    ids = list(candidate.scores)
    differences = [candidate.scores[i] - baseline.scores[i] for i in ids]
    low, high = paired_bootstrap_ci(differences, bootstrap)
    check = accuracy_check(baseline.correct, candidate.correct, len(ids), threshold)
    comparison = {
        "baseline": {
            "path": str(baseline.path),
            "run_id": baseline.document.get("run_id"),
            "model": baseline.model,
            "model_digest": (baseline.document.get("model") or {}).get("digest"),
            "finished_at": baseline.document.get("finished_at"),
        },
        "items": len(ids),
        "baseline_correct": baseline.correct,
        "candidate_correct": candidate.correct,
        "baseline_accuracy": baseline.accuracy,
        "candidate_accuracy": candidate.accuracy,
        "difference": check["difference"],
        "ci": {
            "method": "paired bootstrap, percentile",
            "level": bootstrap.confidence,
            "low": low,
            "high": high,
            "bootstrap_samples": bootstrap.samples,
            "seed": bootstrap.seed,
            "excludes_zero": low > 0.0 or high < 0.0,
        },
        "gained": [i for i, d in zip(ids, differences, strict=True) if d > 0],
        "lost": [i for i, d in zip(ids, differences, strict=True) if d < 0],
        "per_item": [
            {
                "id": i,
                "baseline": baseline.scores[i],
                "candidate": candidate.scores[i],
                "difference": d,
            }
            for i, d in zip(ids, differences, strict=True)
        ],
    }
    return comparison, check
