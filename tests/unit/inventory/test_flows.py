"""The flow matrix: concrete flows, each host's allow list, the probes, the docs table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovereign.inventory import InventoryError, flows

GROUPS = {
    "all": ["gw", "gpu1", "gpu2", "reg", "obs", "search"],
    "gateway": ["gw"],
    "gpu_nodes": ["gpu1", "gpu2"],
    "registry": ["reg"],
    "observability": ["obs"],
    "search": ["search"],
}


def manifest(port: int, replicas: int) -> dict[str, Any]:
    return {
        "deployments": [
            {
                "name": "llama",
                "release": "llama-2026-10",
                "runtime": "cu128",
                "hardware_profile": "h100-80gb",
                "tiers": ["general"],
                "replicas": replicas,
                "gpus_per_replica": 4,
                "port": port,
            }
        ]
    }


def hostvars() -> dict[str, dict[str, Any]]:
    def ip(n: int) -> dict[str, Any]:
        return {"ansible_default_ipv4": {"address": f"10.0.0.{n}"}, "ansible_connection": "ssh"}

    variables = {name: ip(n) for n, name in enumerate(GROUPS["all"], start=1)}
    variables["gpu1"]["sovereign_serving"] = manifest(8000, 2)
    variables["gpu2"]["sovereign_serving"] = manifest(9000, 1)
    for host in variables.values():
        host["sovereign_controller_networks"] = ["192.0.2.0/24"]
    return variables


def test_vllm_is_reached_by_the_gateway_and_observability_only() -> None:
    rules = flows.host_rules("gpu1", hostvars(), GROUPS)
    vllm = [rule for rule in rules if rule["ports"] == [8000, 8001]]
    assert [rule["sources"] for rule in vllm] == [["10.0.0.1"], ["10.0.0.5"]]
    assert {
        "comment": "controller -> ssh: Ansible reaches every host",
        "sources": ["192.0.2.0/24"],
        "ports": [22],
    } in rules
    # Nothing opens gpu1's ports to the other serving node or to search.
    every_source = {source for rule in rules for source in rule["sources"]}
    assert "10.0.0.3" not in every_source and "10.0.0.6" not in every_source


def test_the_front_doors_are_open_to_users_and_the_registry_to_serving_nodes() -> None:
    gateway = flows.host_rules("gw", hostvars(), GROUPS)
    assert gateway[0] == {
        "comment": "users -> sso_proxy: users reach the SSO proxy (OIDC login, then the API)",
        "sources": [],
        "ports": [443],
    }
    registry = flows.host_rules("reg", hostvars(), GROUPS)
    pulls = next(rule for rule in registry if rule["comment"].startswith("gpu_nodes"))
    assert pulls["sources"] == ["10.0.0.2", "10.0.0.3"] and pulls["ports"] == [5000]


def test_a_source_without_an_address_fails_instead_of_being_left_out() -> None:
    variables = hostvars()
    del variables["gw"]["ansible_default_ipv4"]
    with pytest.raises(InventoryError, match="the address of gw is unknown"):
        flows.host_rules("gpu1", variables, GROUPS)
    variables["gw"]["ansible_host"] = "10.9.9.9"
    assert flows.host_rules("gpu1", variables, GROUPS)[0]["sources"] == ["10.9.9.9"]


def test_a_bad_controller_network_is_named() -> None:
    variables = hostvars()
    variables["gpu1"]["sovereign_controller_networks"] = ["10.0.0.1/8"]
    with pytest.raises(InventoryError, match="sovereign_controller_networks: '10.0.0.1/8'"):
        flows.host_rules("gpu1", variables, GROUPS)


def test_probes_expect_the_serving_node_to_drop_search_and_its_peer() -> None:
    plan = flows.probes(hostvars(), GROUPS)
    to_gpu1 = {
        source: {p["port"]: p["allowed"] for p in tries if p["host"] == "gpu1"}
        for source, tries in plan.items()
    }
    assert to_gpu1["gw"][8000] and to_gpu1["obs"][8001]
    assert not to_gpu1["search"][8000] and not to_gpu1["gpu2"][8001]
    assert not to_gpu1["gw"][22]  # the controller's flow, not a host's
    assert all(p["address"] == "10.0.0.2" for p in plan["gw"] if p["host"] == "gpu1")


def test_the_docs_print_the_example_inventorys_matrix() -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[3]
    text = (repo / "docs/network.md").read_text(encoding="utf-8")
    table = subprocess.run(
        [str(repo / "scripts/flow-matrix.py"), str(repo / "inventories/example")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert table and table in text, "docs/network.md: rerun scripts/flow-matrix.py"


def test_the_retrieval_api_is_opened_to_the_gateway_only_where_it_runs() -> None:
    variables = hostvars()
    assert not [r for r in flows.host_rules("search", variables, GROUPS) if 8090 in r["ports"]]
    assert not [f for f in flows.matrix(variables, GROUPS) if f.source == "search"]
    variables["search"]["sovereign_retrieval_service"] = True
    variables["search"]["retrieval_port"] = 8443
    (rule,) = [r for r in flows.host_rules("search", variables, GROUPS) if 8443 in r["ports"]]
    assert rule["sources"] == ["10.0.0.1"]
    # Its way out: the front door (embeddings, answers) of the gateway host.
    assert [f.source_hosts for f in flows.matrix(variables, GROUPS) if f.source == "search"] == [
        ("search",)
    ]


def test_an_opensearch_cluster_is_opened_among_its_search_hosts_only() -> None:
    groups = {**GROUPS, "search": ["s1", "s2", "s3"]}
    groups["all"] = [*GROUPS["all"][:-1], "s1", "s2", "s3"]
    variables = hostvars()
    del variables["search"]
    for n, name in enumerate(("s1", "s2", "s3"), start=11):
        variables[name] = {
            "ansible_default_ipv4": {"address": f"10.0.0.{n}"},
            "sovereign_controller_networks": ["192.0.2.0/24"],
        }
    # The embedded index: nothing listens.
    assert not [r for r in flows.host_rules("s1", variables, groups) if 9300 in r["ports"]]
    for name in ("s1", "s2", "s3"):
        variables[name]["sovereign_retrieval_backend"] = "opensearch"
    (transport,) = [r for r in flows.host_rules("s2", variables, groups) if 9300 in r["ports"]]
    assert sorted(transport["sources"]) == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    # HTTP only from the hosts that run the retrieval API (service, ingestion).
    assert not [r for r in flows.host_rules("s2", variables, groups) if 9200 in r["ports"]]
    variables["s1"]["sovereign_retrieval_service"] = True
    (http,) = [r for r in flows.host_rules("s2", variables, groups) if 9200 in r["ports"]]
    assert http["sources"] == ["10.0.0.11"]
    assert not [r for r in flows.host_rules("gw", variables, groups) if 9200 in r["ports"]]
