"""Scrape targets from the inventory: every replica, exporter and TLS endpoint, no typing."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sovereign.inventory import InventoryError, flows, monitoring

GROUPS = {
    "all": ["admin", "gw", "gpu1", "obs"],
    "pki_ca": ["admin"],
    "registry": ["admin"],
    "identity_provider": ["admin"],
    "gateway": ["gw"],
    "gpu_nodes": ["gpu1"],
    "search": ["gpu1"],
    "observability": ["obs"],
    "ungrouped": [],
}

REPO = Path(__file__).resolve().parents[3]


def manifest(replicas: int) -> dict[str, Any]:
    return {
        "deployments": [
            {
                "name": "llama",
                "release": "llama-2026-10",
                "runtime": "cu128",
                "hardware_profile": "h100-80gb",
                "tiers": ["general", "restricted"],
                "replicas": replicas,
                "gpus_per_replica": 4,
                "port": 8000,
            }
        ]
    }


def hostvars() -> dict[str, dict[str, Any]]:
    variables: dict[str, dict[str, Any]] = {name: {} for name in GROUPS["all"]}
    variables["gpu1"]["sovereign_serving"] = manifest(2)
    variables["gw"]["gateway_metrics_address"] = "10.0.0.2"
    variables["admin"]["model_registry_debug_bind_address"] = "10.0.0.1"
    return variables


def targets(job: dict[str, list[dict[str, Any]]], name: str) -> list[str]:
    return [address for group in job[name] for address in group["targets"]]


def test_every_replica_exporter_and_endpoint_is_a_target(table: dict[str, Any], root: Path) -> None:
    jobs = monitoring.scrape_targets(hostvars(), GROUPS, table, str(root))
    assert list(jobs) == list(monitoring.JOBS)
    assert targets(jobs, "node") == ["admin:9100", "gw:9100", "gpu1:9100", "obs:9100"]
    assert targets(jobs, "vllm") == ["gpu1:8000", "gpu1:8001"]
    assert jobs["vllm"][1]["labels"] == {
        "instance": "gpu1:8001",
        "host": "gpu1",
        "deployment": "llama",
        "tier": "general,restricted",
    }
    assert targets(jobs, "gateway") == ["gw:9464"]
    assert targets(jobs, "redis") == ["gw:9121"]
    assert targets(jobs, "registry") == ["admin:5001"]
    assert targets(jobs, "prometheus") == ["obs:9090"]
    assert targets(jobs, "alertmanager") == ["obs:9093"]
    assert targets(jobs, "dcgm") == []
    assert targets(jobs, "blackbox_tls") == [
        "gw:443",
        "admin:5000",
        "admin:443",
        "obs:9090",
        "obs:9093",
    ]
    assert targets(jobs, "blackbox_e2e") == ["https://gw:443/v1/completions"]


def test_the_groups_label_lets_a_rule_select_one_group_of_many(
    table: dict[str, Any], root: Path
) -> None:
    jobs = monitoring.scrape_targets(hostvars(), GROUPS, table, str(root))
    labels = {group["targets"][0]: group["labels"]["groups"] for group in jobs["node"]}
    assert labels["gpu1:9100"] == ",gpu_nodes,search,"
    assert labels["admin:9100"] == ",identity_provider,pki_ca,registry,"


def test_loopback_listeners_and_absent_exporters_are_not_scraped(
    table: dict[str, Any], root: Path
) -> None:
    variables = hostvars()
    variables["gw"]["gateway_metrics_address"] = "127.0.0.1"
    variables["gw"]["gateway_redis_server_enabled"] = False
    del variables["admin"]["model_registry_debug_bind_address"]
    variables["gpu1"]["dcgm_exporter_enabled"] = True
    jobs = monitoring.scrape_targets(variables, GROUPS, table, str(root))
    assert targets(jobs, "gateway") == [] and targets(jobs, "redis") == []
    assert targets(jobs, "registry") == []
    assert targets(jobs, "dcgm") == ["gpu1:9400"]


def test_a_bad_port_is_named(table: dict[str, Any], root: Path) -> None:
    variables = hostvars()
    variables["obs"]["prometheus_port"] = "9090"
    with pytest.raises(InventoryError, match="prometheus_port: '9090' must be a TCP port"):
        monitoring.scrape_targets(variables, GROUPS, table, str(root))


def test_the_flow_matrix_opens_every_scraped_port_to_observability(
    table: dict[str, Any], root: Path
) -> None:
    variables = hostvars()
    variables["gpu1"]["dcgm_exporter_enabled"] = True
    for number, host in enumerate(GROUPS["all"], start=1):
        variables[host]["ansible_default_ipv4"] = {"address": f"10.0.0.{number}"}
    jobs = monitoring.scrape_targets(variables, GROUPS, table, str(root))
    plan = flows.probes(variables, GROUPS)
    allowed = {(p["host"], p["port"]) for p in plan["obs"] if p["allowed"]}
    scraped = set()
    for job in jobs.values():
        for group in job:
            for address in group["targets"]:
                where = urlsplit(address if "://" in address else f"tcp://{address}")
                scraped.add((where.hostname, where.port))
    # The observability host reaches everything it scrapes, itself aside.
    assert {(host, port) for host, port in scraped if host != "obs"} <= allowed


def test_the_ports_are_the_roles_defaults() -> None:
    def default(role: str, name: str) -> Any:
        text = (REPO / "roles" / role / "defaults/main.yml").read_text(encoding="utf-8")
        return yaml.safe_load(text)[name]

    assert default("exporters", "exporters_node_port") == flows.NODE_EXPORTER_PORT
    assert default("exporters", "exporters_redis_port") == flows.REDIS_EXPORTER_PORT
    assert default("prometheus", "prometheus_port") == flows.PROMETHEUS_PORT
    assert default("alertmanager", "alertmanager_port") == flows.ALERTMANAGER_PORT
    assert default("retrieval", "retrieval_port") == flows.RETRIEVAL_PORT
    assert default("opensearch", "opensearch_http_port") == flows.OPENSEARCH_HTTP_PORT
    assert default("opensearch", "opensearch_transport_port") == flows.OPENSEARCH_TRANSPORT_PORT
    assert default("gateway", "gateway_metrics_port") == 9464
    assert default("model_registry", "model_registry_debug_port") == 5001
