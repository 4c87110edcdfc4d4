"""The textfile-collector file, read back with prometheus_client's own parser."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sovereign.eval.metrics import RunMetrics, write_textfile

ROOT = Path(__file__).resolve().parents[3]
METRICS = (
    "sovereign_eval_gate_passed",
    "sovereign_eval_accuracy",
    "sovereign_eval_baseline_accuracy",
    "sovereign_eval_last_run_timestamp_seconds",
)


def read_back(path: Path) -> dict[tuple[str, str, str], float]:
    values = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family.name
        for sample in family.samples:
            assert set(sample.labels) == {"dataset", "model"}
            values[sample.name, sample.labels["dataset"], sample.labels["model"]] = sample.value
    return values


def test_a_gated_run_writes_the_four_series(tmp_path: Path) -> None:
    path = tmp_path / "node-exporter" / "sovereign_eval.prom"
    run = RunMetrics("tiny_qa", "sovereign-tiny", 0.5, 1767323045.0, False, 1.0)
    assert write_textfile(path, run) == []
    assert read_back(path) == {
        ("sovereign_eval_gate_passed", "tiny_qa", "sovereign-tiny"): 0.0,
        ("sovereign_eval_accuracy", "tiny_qa", "sovereign-tiny"): 0.5,
        ("sovereign_eval_baseline_accuracy", "tiny_qa", "sovereign-tiny"): 1.0,
        ("sovereign_eval_last_run_timestamp_seconds", "tiny_qa", "sovereign-tiny"): 1767323045.0,
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["sovereign_eval.prom"]


def test_runs_of_other_pairs_are_kept_and_a_pair_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "sovereign_eval.prom"
    write_textfile(path, RunMetrics("tiny_qa", "a", 0.5, 100.0, False, 1.0))
    write_textfile(path, RunMetrics("tiny_qa", "b", 1.0, 200.0, True, 1.0))
    # a run of "a" without a gate: its stale gate and baseline series go
    write_textfile(path, RunMetrics("tiny_qa", "a", 0.9, 300.0))
    assert read_back(path) == {
        ("sovereign_eval_accuracy", "tiny_qa", "a"): 0.9,
        ("sovereign_eval_last_run_timestamp_seconds", "tiny_qa", "a"): 300.0,
        ("sovereign_eval_gate_passed", "tiny_qa", "b"): 1.0,
        ("sovereign_eval_accuracy", "tiny_qa", "b"): 1.0,
        ("sovereign_eval_baseline_accuracy", "tiny_qa", "b"): 1.0,
        ("sovereign_eval_last_run_timestamp_seconds", "tiny_qa", "b"): 200.0,
    }


def test_label_values_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "sovereign_eval.prom"
    nasty = 'we"ird\\model\nname'
    write_textfile(path, RunMetrics("set", nasty, 1.0, 1.0, True))
    assert 'model="we\\"ird\\\\model\\nname"' in path.read_text()
    assert ("sovereign_eval_gate_passed", "set", nasty) in read_back(path)
    write_textfile(path, RunMetrics("set", "plain", 1.0, 2.0))
    assert ("sovereign_eval_accuracy", "set", nasty) in read_back(path)


def test_a_broken_textfile_is_rewritten_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "sovereign_eval.prom"
    path.write_text('sovereign_eval_accuracy{dataset="x" 1\n')
    warnings = write_textfile(path, RunMetrics("set", "m", 1.0, 1.0))
    assert len(warnings) == 1 and "not a valid textfile" in warnings[0]
    assert set(read_back(path)) == {
        ("sovereign_eval_accuracy", "set", "m"),
        ("sovereign_eval_last_run_timestamp_seconds", "set", "m"),
    }


def test_the_names_and_labels_are_those_the_alert_rules_use() -> None:
    # the rule templates live in the prometheus role (files/prometheus/rules before)
    paths = sorted((ROOT / "roles").glob("*/templates/rules/*.yml.j2"))
    paths += sorted((ROOT / "files").glob("prometheus/rules/*.yml.j2"))
    rules = "".join(path.read_text() for path in paths)
    tests = (ROOT / "tests/prometheus/sovereign-alerts.test.yml").read_text()
    used = set(re.findall(r"sovereign_eval_[a-z_]+", rules + tests))
    assert {"sovereign_eval_gate_passed", "sovereign_eval_last_run_timestamp_seconds"} <= used
    assert used <= set(METRICS), used - set(METRICS)
    for series in re.findall(r"'(sovereign_eval_[a-z_]+)\{([^}]*)\}'", tests):
        labels = {pair.split("=")[0].strip() for pair in series[1].split(",")}
        assert {"dataset", "model"} <= labels
        assert labels - {"dataset", "model"} <= {"job", "instance"}, "added by the scrape"
