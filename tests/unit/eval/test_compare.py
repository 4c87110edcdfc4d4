"""Paired comparison, bootstrap confidence interval and the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sovereign.eval import compare as paired
from sovereign.eval.compare import BootstrapSettings, paired_bootstrap_ci
from sovereign.eval.errors import ResultFileError, UsageError
from sovereign.eval.results import SCHEMA, LoadedResult, load_result
from sovereign.eval.runner import compare_files

DIGEST = "a" * 64
FAST = BootstrapSettings(samples=2000)


def result_file(
    path: Path,
    scores: list[int],
    *,
    digest: str = DIGEST,
    threshold: float = 0.05,
    reproducibility: dict[str, Any] | None = None,
    model: str = "m",
) -> Path:
    document = {
        "schema": SCHEMA,
        "run_id": path.stem,
        "finished_at": "2026-01-02T03:04:05.000Z",
        "dataset": {
            "name": "set",
            "sha256": digest,
            "gate": {"regression_threshold": threshold, "min_reproducibility": 0.9},
        },
        "model": {"name": model, "digest": None},
        "score": {"accuracy": sum(scores) / len(scores)},
        "reproducibility": reproducibility,
        "items": [
            {"id": f"q{n:03d}", "category": "c", "score": score} for n, score in enumerate(scores)
        ],
    }
    path.write_text(json.dumps(document))
    return path


def loaded(tmp_path: Path, name: str, scores: list[int], **options: Any) -> LoadedResult:
    return load_result(result_file(tmp_path / f"{name}.json", scores, **options))


def test_bootstrap_is_seeded_and_matches_a_plain_resampling() -> None:
    differences = [0] * 15 + [-1] * 4 + [1]
    low, high = paired_bootstrap_ci(differences, FAST)
    assert (low, high) == paired_bootstrap_ci(differences, FAST), "same seed, same interval"
    # the same computation written plainly
    rng = np.random.default_rng(0)
    values = np.asarray(differences, dtype=float)
    means = values[rng.integers(0, 20, size=(2000, 20))].mean(axis=1)
    assert (low, high) == tuple(np.quantile(means, [0.025, 0.975]))
    assert low < -0.15 < high  # around the mean difference
    assert high - low == pytest.approx(0.4)  # about 4 standard errors of 0.1


def test_another_seed_resamples_differently() -> None:
    differences = [k / 7 - 1 for k in range(15)]
    assert paired_bootstrap_ci(differences, BootstrapSettings(2000, seed=1)) != (
        paired_bootstrap_ci(differences, FAST)
    )


def test_bootstrap_in_chunks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    differences = [0, 1, -1, 0, 0, -1, 1, 1, 0, -1] * 7
    whole = paired_bootstrap_ci(differences, FAST)
    monkeypatch.setattr(paired, "BOOTSTRAP_CHUNK_CELLS", 70 * 3)
    assert paired_bootstrap_ci(differences, FAST) == whole


def test_no_difference_gives_a_zero_interval() -> None:
    assert paired_bootstrap_ci([0] * 20, FAST) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("baseline", "candidate", "threshold", "passed"),
    [
        (20, 20, 0.05, True),
        (20, 19, 0.05, True),  # -0.05 exactly: the threshold itself passes
        (20, 18, 0.05, False),
        (19, 18, 0.05, True),
        (10, 20, 0.05, True),
        (20, 10, 0.5, True),
        (20, 10, 0.49, False),
        (20, 20, 0.0, True),
        (20, 19, 0.0, False),
    ],
)
def test_accuracy_gate(baseline: int, candidate: int, threshold: float, passed: bool) -> None:
    check = paired.accuracy_check(baseline, candidate, 20, threshold)
    assert check["passed"] is passed
    assert check["difference"] == pytest.approx((candidate - baseline) / 20)


def test_the_threshold_edge_is_exact_where_floats_are_not() -> None:
    # 0.85 - 0.9 is -0.05000000000000004 in floating point: a float gate would fail it
    assert 0.85 - 0.9 < -0.05
    assert paired.accuracy_check(90, 85, 100, 0.05)["passed"] is True
    assert paired.accuracy_check(90, 84, 100, 0.05)["passed"] is False
    assert paired.accuracy_check(1000, 970, 1000, 0.03)["passed"] is True


def test_compare_good_and_worse(tmp_path: Path) -> None:
    good = loaded(tmp_path, "good", [1] * 20)
    worse = loaded(tmp_path, "worse", [1, 0] * 10)
    comparison, check = paired.compare(worse, good, threshold=0.05, bootstrap=FAST)
    assert check["passed"] is False and check["difference"] == -0.5
    assert comparison["baseline_accuracy"] == 1.0 and comparison["candidate_accuracy"] == 0.5
    assert comparison["lost"] == [f"q{n:03d}" for n in range(1, 20, 2)]
    assert comparison["gained"] == []
    assert comparison["per_item"][1] == {
        "id": "q001",
        "baseline": 1,
        "candidate": 0,
        "difference": -1,
    }
    ci = comparison["ci"]
    assert ci["low"] < -0.5 < ci["high"] < 0 and ci["excludes_zero"] is True
    assert ci["bootstrap_samples"] == 2000 and ci["seed"] == 0 and ci["level"] == 0.95
    _, same = paired.compare(good, good, threshold=0.05, bootstrap=FAST)
    assert same["passed"] is True and same["difference"] == 0.0


def test_a_baseline_of_other_dataset_bytes_is_refused(tmp_path: Path) -> None:
    candidate = loaded(tmp_path, "candidate", [1] * 20)
    other = loaded(tmp_path, "other", [1] * 20, digest="b" * 64)
    with pytest.raises(ResultFileError) as caught:
        paired.compare(candidate, other, threshold=0.05, bootstrap=FAST)
    message = str(caught.value)
    assert message.startswith("refusing to compare:")
    assert "a" * 64 in message and "b" * 64 in message and "same dataset bytes" in message


def test_same_digest_with_other_items_is_refused(tmp_path: Path) -> None:
    candidate = loaded(tmp_path, "candidate", [1] * 20)
    shorter = loaded(tmp_path, "shorter", [1] * 19)
    with pytest.raises(ResultFileError, match="not the same item ids"):
        paired.compare(candidate, shorter, threshold=0.05, bootstrap=FAST)


def test_compare_files_uses_the_recorded_threshold_unless_told(tmp_path: Path) -> None:
    baseline = loaded(tmp_path, "baseline", [1] * 20)
    lenient = loaded(tmp_path, "lenient", [1] * 17 + [0] * 3, threshold=0.2)
    report = compare_files(
        lenient, baseline, threshold=None, min_reproducibility=None, bootstrap=FAST, textfile=None
    )
    assert report.gate["passed"] is True
    assert report.gate["checks"][0]["regression_threshold"] == 0.2
    report = compare_files(
        lenient, baseline, threshold=0.1, min_reproducibility=None, bootstrap=FAST, textfile=None
    )
    assert report.gate["passed"] is False


def test_compare_files_checks_the_candidates_reproducibility(tmp_path: Path) -> None:
    baseline = loaded(tmp_path, "baseline", [1] * 20)
    figure = {"runs": 3, "items": 20, "identical_items": 17, "fraction": 0.85}
    flaky = loaded(tmp_path, "flaky", [1] * 20, reproducibility=figure)
    report = compare_files(
        flaky, baseline, threshold=None, min_reproducibility=None, bootstrap=FAST, textfile=None
    )
    assert [check["passed"] for check in report.gate["checks"]] == [True, False]
    assert report.gate["passed"] is False
    report = compare_files(
        flaky, baseline, threshold=None, min_reproducibility=0.85, bootstrap=FAST, textfile=None
    )
    assert report.gate["passed"] is True


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"samples": 10}, "--bootstrap-samples must be between 100 and 1000000"),
        ({"confidence": 1.0}, "--confidence must be at least 0.5 and below 1"),
        ({"confidence": 0.2}, "--confidence must be at least 0.5 and below 1"),
    ],
)
def test_bad_bootstrap_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        BootstrapSettings(**settings)


def test_gate_of_no_checks_is_none() -> None:
    assert paired.gate([]) is None
