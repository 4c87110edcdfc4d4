"""The Grafana dashboards (files/prometheus/dashboards): each is a
Grafana dashboard document, every query in it is accepted by a real
Prometheus (Debian's, on loopback, with the platform's rules loaded), and
every recorded series it reads is one the rules record."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import prometheus_server
from tests.unit.observability.test_alert_rules import ROOT, render_rules

DASHBOARDS = ROOT / "files" / "prometheus" / "dashboards"
NAMES = ("cluster-health", "incident-timeline")
# Grafana's variables, as "everything" for the query check.
VARIABLES = {"$model": ".*", "$tier": ".*"}


def _dashboard(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text())
    return document


def _queries(document: dict[str, Any]) -> list[str]:
    queries = [
        target["expr"] for panel in document["panels"] for target in panel.get("targets", [])
    ]
    queries += [item["expr"] for item in document["annotations"]["list"] if "expr" in item]
    return queries


def _recorded(rules_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in rules_dir.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port, with the rendered rules."""
    if prometheus_server.binary() is None:
        pytest.skip(prometheus_server.MISSING_REASON)
    work = tmp_path_factory.mktemp("prometheus")
    rules = render_rules(work)
    config = {
        "global": {"evaluation_interval": "15s"},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [],
    }
    with prometheus_server.running(work, config) as url:
        yield url


@pytest.mark.parametrize("name", NAMES)
def test_each_dashboard_is_a_grafana_document(name: str) -> None:
    document = _dashboard(name)
    assert document["uid"] == f"sovereign-{name}"
    assert document["title"].startswith("Sovereign: ")
    variables = {item["name"] for item in document["templating"]["list"]}
    assert "datasource" in variables
    panels = [panel for panel in document["panels"] if panel["type"] != "row"]
    assert len(panels) >= 8
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_real_prometheus_loads_every_rule(prometheus: str) -> None:
    answer = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()
    rules = [rule for group in answer["data"]["groups"] for rule in group["rules"]]
    assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules
    alerts = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert {"TargetDown", "AuditWriteFailing", "VllmNotGenerating"} <= alerts
    assert len(alerts) >= 19


@pytest.mark.parametrize("name", NAMES)
def test_every_dashboard_query_is_accepted_by_prometheus(prometheus: str, name: str) -> None:
    for query in _queries(_dashboard(name)):
        for variable, value in VARIABLES.items():
            query = query.replace(variable, value)
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10)
        assert answer.status_code == 200, f"{query}: {answer.text}"
        assert answer.json()["status"] == "success", query


@pytest.mark.parametrize("name", NAMES)
def test_every_recorded_series_a_dashboard_reads_is_recorded(name: str, tmp_path: Path) -> None:
    """A query for a series nobody records is valid and always empty: the
    names are checked against the rules instead."""
    recorded = _recorded(Path(render_rules(tmp_path)[0]).parent)
    used: set[str] = set()
    for query in _queries(_dashboard(name)):
        used.update(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", query))
    assert used, "the dashboard reads no recorded series"
    assert used - recorded == set(), "recorded series no rule records"
