"""A canary upgrade's plan, the pins a promotion records, the canary's weights
in the gateway's table, and the step's SLO verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovereign.inventory import InventoryError, serving, upgrade
from sovereign.inventory.validate import check_host_variables, validate_inventory
from tests.unit.inventory.conftest import DIGEST, DIGEST2
from tests.unit.inventory.test_serving import deployment, manifest


def fleet(count: int, **variables: Any) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    hosts = [f"gpu{index}" for index in range(1, count + 1)]
    hostvars = {
        host: {
            "sovereign_serving": manifest(deployment(replicas=1, gpus_per_replica=4)),
            "group_names": ["gpu_nodes", "h100"],
            **variables,
        }
        for host in hosts
    }
    return hostvars, {"gpu_nodes": hosts, "h100": hosts, "all": hosts}


def request(**changes: Any) -> dict[str, Any]:
    return {"group": "h100", "release": "llama-2026-11", **changes}


def test_the_canary_grows_with_the_weight_and_never_takes_every_node(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(8)
    plan = upgrade.plan(hostvars, groups, table, str(root), request())
    assert plan["steps"] == [5, 25, 50, 100]
    assert plan["canary_counts"] == [1, 2, 4, 7]
    assert plan["waves"] == [["gpu1"], ["gpu2"], ["gpu3", "gpu4"], ["gpu5", "gpu6", "gpu7"]]
    assert plan["promotion_hosts"] == ["gpu8"]
    assert plan["wave_of"]["gpu4"] == 2 and "gpu8" not in plan["wave_of"]
    assert plan["current"] == {
        "release": "llama-2026-10",
        "runtime": "cu128",
        "digest": DIGEST,
        "version": "llama-2026-10",
    }
    assert plan["candidate"]["version"] == "llama-2026-11"
    assert plan["candidate"]["digest"] == DIGEST2
    assert plan["risk"] == "standard" and plan["approval"] is None
    # Two nodes (the lab): one canary node from the first step to the last.
    hostvars, groups = fleet(2)
    assert upgrade.plan(hostvars, groups, table, str(root), request())["waves"] == [
        ["gpu1"],
        [],
        [],
        [],
    ]


def test_a_runtime_upgrade_names_both_versions_by_runtime(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(2)
    plan = upgrade.plan(hostvars, groups, table, str(root), request(release="", runtime="cu124"))
    assert plan["current"]["version"] == "llama-2026-10@cu128"
    assert plan["candidate"]["version"] == "llama-2026-10@cu124"
    moved = upgrade.candidate_manifest(
        hostvars["gpu1"]["sovereign_serving"], "llama", "llama-2026-10", "cu124"
    )
    hostvars["gpu1"]["sovereign_serving_candidate"] = moved
    models = serving.gateway_models(
        hostvars, ["gpu1", "gpu2"], table, str(root), "http", {"llama-2026-10@cu124": 5}
    )
    assert [(v["name"], v["weight"]) for v in models["llama-3-70b"]["versions"]] == [
        ("llama-2026-10@cu128", 95),
        ("llama-2026-10@cu124", 5),
    ]


@pytest.mark.parametrize(
    ("changes", "count", "variables", "message"),
    [
        ({"group": "nope"}, 2, {}, "'nope' is no group of the inventory"),
        ({"group": ""}, 2, {}, "sovereign_upgrade_group: is required"),
        ({}, 1, {}, "a canary needs at least two"),
        ({"steps": [5, 50, 25, 100]}, 2, {}, "must increase strictly"),
        ({"steps": [5, 50]}, 2, {}, "must end at 100"),
        ({"steps": [0, 100]}, 2, {}, "whole percentages 1..100"),
        ({"release": "llama-2099"}, 2, {}, "'llama-2099' is not a model release"),
        ({"release": "tiny-1"}, 2, {}, "another release of the same model"),
        ({"release": "llama-2026-10"}, 2, {}, "already serves llama-2026-10 on cu128"),
        ({"deployment": "other"}, 2, {}, "'other' is not served by gpu1"),
        ({}, 2, {"sovereign_change_risk": "high"}, "needs the reference of its approved change"),
        ({"approval": "x y"}, 2, {}, "must be a change reference"),
        ({}, 2, {"sovereign_change_risk": "extreme"}, "must be one of ['standard', 'high']"),
    ],
)
def test_a_bad_request_is_refused_naming_the_variable(
    table: dict[str, Any],
    root: Path,
    changes: dict[str, Any],
    count: int,
    variables: dict[str, Any],
    message: str,
) -> None:
    hostvars, groups = fleet(count, **variables)
    with pytest.raises(InventoryError, match=None) as raised:
        upgrade.plan(hostvars, groups, table, str(root), request(**changes))
    assert message in str(raised.value)


def test_a_high_risk_group_starts_with_an_approval(table: dict[str, Any], root: Path) -> None:
    hostvars, groups = fleet(2, sovereign_change_risk="high")
    plan = upgrade.plan(hostvars, groups, table, str(root), request(approval="CHG-12345"))
    assert (plan["risk"], plan["approval"]) == ("high", "CHG-12345")


def test_a_group_with_hosts_outside_the_serving_nodes_is_refused(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(2)
    groups["h100"] = ["gpu1", "gpu2", "gateway1"]
    with pytest.raises(InventoryError, match=r"no serving node \(gpu_nodes\): \['gateway1'\]"):
        upgrade.plan(hostvars, groups, table, str(root), request())


def test_nodes_serving_different_releases_are_refused(table: dict[str, Any], root: Path) -> None:
    hostvars, groups = fleet(2)
    hostvars["gpu2"]["sovereign_serving"] = manifest(
        deployment(release="llama-2026-11", replicas=1, gpus_per_replica=4)
    )
    with pytest.raises(InventoryError, match="do not serve one release yet"):
        upgrade.plan(hostvars, groups, table, str(root), request())


def test_the_canary_is_listed_last_and_the_rest_share_the_remainder(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, _ = fleet(3)
    hostvars["gpu1"]["sovereign_serving_candidate"] = upgrade.candidate_manifest(
        hostvars["gpu1"]["sovereign_serving"], "llama", "llama-2026-11", "cu128"
    )
    hosts = ["gpu1", "gpu2", "gpu3"]
    for weight, expected in ((0, 100), (5, 95), (100, 0)):
        models = serving.gateway_models(
            hostvars, hosts, table, str(root), "http", {"llama-2026-11": weight}
        )
        versions = models["llama-3-70b"]["versions"]
        assert [(v["name"], v["weight"]) for v in versions] == [
            ("llama-2026-10", expected),
            ("llama-2026-11", weight),
        ]
        assert versions[1]["backends"] == {"general": ["http://gpu1:8000"]}
    with pytest.raises(InventoryError, match="must be 0..100"):
        serving.gateway_models(hostvars, hosts, table, str(root), "http", {"llama-2026-11": 101})


def test_pins_win_over_the_manifest_for_the_groups_they_name(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(2)
    plan = upgrade.plan(hostvars, groups, table, str(root), request())
    pins = upgrade.pins({}, plan, "CHG-1", "2026-12-04T10:00:00Z")
    assert pins == {
        "h100": {
            "llama": {
                "release": "llama-2026-11",
                "runtime": "cu128",
                "previous_release": "llama-2026-10",
                "previous_runtime": "cu128",
                "change": "CHG-1",
                "promoted_at": "2026-12-04T10:00:00Z",
            }
        }
    }
    assert serving.check_pins(pins, table, root) == []
    for host in hostvars.values():
        host["sovereign_serving_pins"] = pins
    models = serving.gateway_models(hostvars, ["gpu1", "gpu2"], table, str(root))
    assert [(v["name"], v["weight"]) for v in models["llama-3-70b"]["versions"]] == [
        ("llama-2026-11", 100)
    ]
    # A host outside the pinned group keeps its manifest's release.
    other = {**hostvars["gpu1"], "group_names": ["gpu_nodes", "h200"]}
    assert serving.manifest_of(other) == other["sovereign_serving"]


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ([], "must map serving groups"),
        ({"h100": {"llama": {"runtime": "cu128"}}}, "at least 'release'"),
        ({"h100": {"llama": {"release": "llama-2099"}}}, "'llama-2099' is not a model"),
        ({"h100": {"llama": {"release": "llama-2026-11", "why": 1}}}, "unknown keys ['why']"),
    ],
)
def test_bad_pins_are_named(pins: object, message: str, table: dict[str, Any], root: Path) -> None:
    problems = check_host_variables(
        {"sovereign_releases": table, "sovereign_serving_pins": pins}, {}, root
    )
    assert any(message in problem for problem in problems), problems


def test_a_pin_naming_no_deployment_of_a_host_fails_validation(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(2)
    pins = {"h100": {"mistral": {"release": "llama-2026-11"}}}
    for host in hostvars.values():
        host.pop("group_names")
        host.update({"sovereign_releases": table, "sovereign_serving_pins": pins})
    groups.update({name: [] for name in ("pki_ca", "registry", "search", "gateway")})
    groups["observability"] = []
    problems = [str(p) for p in validate_inventory(hostvars, groups, "2.19.0", {}, root)]
    assert any("sovereign_serving_pins.h100.mistral: names no deployment" in p for p in problems), (
        problems
    )


def test_the_slo_gate_fails_closed_and_names_each_breach() -> None:
    thresholds = {
        "ttft_p99_s": 2.0,
        "ttft_p99_ratio": 1.5,
        "ttft_p99_slack_s": 0.1,
        "error_ratio": 0.01,
        "restarts": 0,
    }
    good = {
        "candidate_ttft_p99_s": "0.4",
        "current_ttft_p99_s": "0.35",
        "candidate_error_ratio": "0",
        "candidate_requests": "42",
        "candidate_restarts": "0",
    }
    assert upgrade.slo_verdict(good, thresholds)["passed"] is True
    # 36 ms against 10 ms is within the slack (noise on a quiet node).
    quiet = {**good, "candidate_ttft_p99_s": "0.036", "current_ttft_p99_s": "0.010"}
    assert upgrade.slo_verdict(quiet, thresholds)["passed"] is True
    silent = {**good, "candidate_requests": None, "candidate_ttft_p99_s": "NaN"}
    assert upgrade.slo_verdict(silent, thresholds)["failures"] == [
        "the candidate answered no request in the window (nothing to judge)"
    ]
    bad = {
        **good,
        "candidate_ttft_p99_s": "2.5",
        "candidate_error_ratio": "0.2",
        "candidate_restarts": "1",
    }
    failures = upgrade.slo_verdict(bad, thresholds)["failures"]
    assert failures == [
        "TTFT p99 2.500 s > 2 s",
        "TTFT p99 2.500 s > 1.5 x the running version's 0.350 s + 0.1 s",
        "error ratio 0.2000 > 0.01",
        "1 vLLM restarts > 0",
    ]


def test_query_values_and_eval_summary_read_what_the_playbook_registered() -> None:
    results: list[dict[str, Any]] = [
        {"item": {"key": "a"}, "json": {"data": {"result": [{"value": [1.0, "0.5"]}]}}},
        {"item": {"key": "b"}, "json": {"data": {"result": []}}},
        {"item": {"key": "c"}},
    ]
    assert upgrade.query_values(results) == {"a": "0.5", "b": None, "c": None}
    summary = upgrade.eval_summary(
        {
            "run_id": "r1",
            "dataset": {"name": "tiny_qa", "sha256": "ff"},
            "comparison": {
                "items": 20,
                "baseline_accuracy": 1.0,
                "candidate_accuracy": 0.5,
                "difference": -0.5,
                "ci": {"low": -0.7, "high": -0.3},
                "lost": ["q1"],
            },
            "gate": {"passed": False},
        }
    )
    assert summary["candidate_accuracy"] == 0.5 and summary["ci"] == [-0.7, -0.3]
    assert summary["passed"] is False and summary["lost"] == ["q1"]


def test_the_deployment_is_found_by_the_candidates_model_when_not_named(
    table: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(2)
    for variables in hostvars.values():
        variables["sovereign_serving"]["deployments"].append(
            deployment(name="small", release="tiny-1", replicas=1, port=8100)
        )
    plan = upgrade.plan(hostvars, groups, table, str(root), request())
    assert plan["deployment"] == "llama"
    # A runtime upgrade moves no model: with two deployments, name one.
    with pytest.raises(InventoryError, match="sovereign_upgrade_deployment: is required"):
        upgrade.plan(hostvars, groups, table, str(root), request(release="", runtime="cu124"))
    named = upgrade.plan(
        hostvars, groups, table, str(root), request(release="", runtime="cu124", deployment="llama")
    )
    assert named["deployment"] == "llama"
