"""A hardware refresh's plan, its sweep and choice, and the tuning it records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovereign.inventory import InventoryError, refresh, serving, validate_inventory
from sovereign.inventory.validate import check_host_variables
from tests.unit.inventory.test_serving import deployment, manifest

PROFILE = {"max_num_seqs": 4, "max_num_batched_tokens": 512, "max_model_len": 256}


def fleet(count: int) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    hosts = [f"gpu{index}" for index in range(1, count + 1)]
    hostvars = {
        host: {
            "sovereign_serving": manifest(
                deployment(replicas=1, gpus_per_replica=4, hardware_profile="cpu-lab")
            ),
            "group_names": ["gpu_nodes"],
        }
        for host in hosts
    }
    return hostvars, {"gpu_nodes": hosts, "all": hosts}


@pytest.fixture
def profiled(table: dict[str, Any]) -> dict[str, Any]:
    table["hardware_profiles"]["cpu-lab"] = dict(PROFILE)
    table["hardware_profiles"]["h100-80gb"] = {
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "max_model_len": 32768,
    }
    return table


def test_the_default_sweep_brackets_the_profile() -> None:
    assert refresh.sweep_points(PROFILE, None) == [
        {"max_num_seqs": 2, "max_num_batched_tokens": 512},
        {"max_num_seqs": 4, "max_num_batched_tokens": 512},
        {"max_num_seqs": 8, "max_num_batched_tokens": 512},
    ]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"max_num_seqs": [0]}, "must be a list of whole numbers >= 1"),
        ({"max_num_seqs": "4"}, "must be a list of whole numbers >= 1"),
        ({"max_num_seqs": [1, 2, 3, 4], "max_num_batched_tokens": [256, 512]}, "at most 6"),
    ],
)
def test_a_bad_sweep_is_refused(sweep: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError, match=None) as raised:
        refresh.sweep_points(PROFILE, sweep)
    assert message in str(raised.value)


def test_the_plan_skips_absent_hosts_and_sweeps_each_deployment(
    profiled: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(3)
    plan = refresh.plan(
        hostvars, groups, profiled, str(root), {"group": "gpu_nodes", "absent": ["gpu2"]}
    )
    assert plan["hosts"] == ["gpu1", "gpu3"]
    assert plan["absent"] == ["gpu2"]
    assert [run["point"]["max_num_seqs"] for run in plan["runs"]["gpu1"]] == [2, 4, 8]
    assert plan["runs"]["gpu1"][1] == {
        "deployment": "llama",
        "model": "llama-3-70b",
        "cache_name": plan["runs"]["gpu1"][1]["cache_name"],
        "digest": plan["runs"]["gpu1"][1]["digest"],
        "port": 8000,
        "point": {"max_num_seqs": 4, "max_num_batched_tokens": 512},
    }
    assert plan["current"]["gpu1"]["llama"]["point"] == {
        "max_num_seqs": 4,
        "max_num_batched_tokens": 512,
    }
    assert plan["previous"] == {"gpu1": {}, "gpu3": {}}
    # A new hardware profile sweeps around its own values.
    plan = refresh.plan(
        hostvars, groups, profiled, str(root), {"group": "gpu_nodes", "profile": "h100-80gb"}
    )
    assert [r["point"]["max_num_seqs"] for r in plan["runs"]["gpu3"]] == [128, 256, 512]


def test_the_plan_sweeps_around_the_last_refresh_and_keeps_its_figures(
    profiled: dict[str, Any], root: Path
) -> None:
    hostvars, groups = fleet(2)
    measured = {"llama": {"output_tokens_per_s": 80.0, "ttft_p99_s": 0.5}}
    tuning = {
        "gpu1": {
            "deployments": {"llama": {"max_num_seqs": 16, "max_num_batched_tokens": 1024}},
            "measured": measured,
        }
    }
    for host in hostvars:
        hostvars[host]["sovereign_serving_tuning"] = tuning
        hostvars[host]["inventory_hostname"] = host
    plan = refresh.plan(hostvars, groups, profiled, str(root), {"group": "gpu_nodes"})
    assert [r["point"]["max_num_seqs"] for r in plan["runs"]["gpu1"]] == [8, 16, 32]
    assert plan["current"]["gpu1"]["llama"]["point"]["max_num_batched_tokens"] == 1024
    assert [r["point"]["max_num_seqs"] for r in plan["runs"]["gpu2"]] == [2, 4, 8]
    assert plan["previous"] == {"gpu1": measured, "gpu2": {}}


@pytest.mark.parametrize(
    ("request_", "count", "message"),
    [
        ({"group": "gpu_nodes", "absent": ["gpu9"]}, 2, "['gpu9'] are not in 'gpu_nodes'"),
        ({"group": "gpu_nodes", "absent": ["gpu1", "gpu2"]}, 2, "every host of 'gpu_nodes'"),
        ({"group": "nope"}, 2, "'nope' is no group"),
        ({"group": "gpu_nodes", "profile": "a100"}, 2, "'a100' is not a hardware profile"),
        ({"group": "gpu_nodes"}, 1, "gpu1 is the only node serving 'llama-3-70b'"),
        ({"group": "gpu_nodes", "absent": ["gpu2"]}, 2, "gpu1 is the only node serving"),
        ({"group": "gpu_nodes", "absent": "gpu2"}, 2, "must be a list of host names"),
        ({"group": "gpu_nodes", "ttft_p99_slo_s": 0}, 2, "must be a number of seconds > 0"),
        ({"group": "gpu_nodes", "limits": {"ttft_ratio": 2}}, 2, "['ttft_ratio'] must be"),
        ({"group": "gpu_nodes", "sweep": {"max_num_seqs": [0]}}, 2, "whole numbers >= 1"),
    ],
)
def test_a_refresh_that_would_stop_a_model_or_names_unknowns_is_refused(
    profiled: dict[str, Any], root: Path, request_: dict[str, Any], count: int, message: str
) -> None:
    hostvars, groups = fleet(count)
    with pytest.raises(InventoryError, match=None) as raised:
        refresh.plan(hostvars, groups, profiled, str(root), request_)
    assert message in str(raised.value)


def test_the_best_throughput_within_the_slo_wins() -> None:
    results = [
        {
            "max_num_seqs": 2,
            "max_num_batched_tokens": 512,
            "output_tokens_per_s": 40.0,
            "ttft_p99_s": 0.3,
        },
        {
            "max_num_seqs": 4,
            "max_num_batched_tokens": 512,
            "output_tokens_per_s": 70.0,
            "ttft_p99_s": 0.9,
        },
        {
            "max_num_seqs": 8,
            "max_num_batched_tokens": 512,
            "output_tokens_per_s": 95.0,
            "ttft_p99_s": 2.4,
        },
        {
            "max_num_seqs": 16,
            "max_num_batched_tokens": 512,
            "output_tokens_per_s": 120.0,
            "ttft_p99_s": 0.2,
            "failed": 3,
        },
    ]
    # The fastest point failed requests: never chosen.
    assert refresh.choose(results, 1.0)["max_num_seqs"] == 4
    assert refresh.choose(results, 3.0)["max_num_seqs"] == 8
    with pytest.raises(
        InventoryError, match=r"no sweep point meets .* 0.1 s \(2x512: TTFT p99 0.3 s"
    ):
        refresh.choose(results, 0.1)


def test_choose_all_names_each_deployment_without_a_point() -> None:
    ok = {"max_num_seqs": 4, "max_num_batched_tokens": 512, "ttft_p99_s": 0.5}
    results = [
        {**ok, "deployment": "a", "output_tokens_per_s": 10.0},
        {**ok, "deployment": "b", "output_tokens_per_s": 0.0},
    ]
    with pytest.raises(InventoryError, match="^b: no sweep point meets"):
        refresh.choose_all(results, 1.0)
    chosen = refresh.choose_all(results[:1], 1.0)
    assert refresh.settings_of(chosen) == {"a": {"max_num_seqs": 4, "max_num_batched_tokens": 512}}


def test_the_latency_gate_holds_the_node_to_its_previous_record() -> None:
    limits = dict(refresh.LIMITS)
    previous = {"llama": {"output_tokens_per_s": 100.0, "ttft_p99_s": 1.0}}
    good = {"llama": {"output_tokens_per_s": 90.0, "ttft_p99_s": 1.5}}
    assert refresh.latency_verdict(good, previous, limits) == {"passed": True, "reasons": []}
    slow = {"llama": {"output_tokens_per_s": 70.0, "ttft_p99_s": 1.7}}
    verdict = refresh.latency_verdict(slow, previous, limits)
    assert verdict["passed"] is False
    assert verdict["reasons"] == [
        "llama: TTFT p99 1.700 s > 1.600 s (1.5 x the previous 1.000 s + 0.1 s)",
        "llama: output 70.0 tokens/s < 80.0 (0.8 x the previous 100.0)",
    ]
    # Nothing to compare with is no pass.
    assert refresh.latency_verdict(good, {}, limits)["reasons"] == [
        "llama: no previous record to compare with"
    ]


def test_the_record_keeps_the_settings_and_the_figures() -> None:
    chosen = {
        "llama": {
            "deployment": "llama",
            "max_num_seqs": 8,
            "max_num_batched_tokens": 512,
            "output_tokens_per_s": 95.0,
            "ttft_p99_s": 2.4,
            "completed": 16,
            "failed": 0,
            "duration_s": 3.0,
        }
    }
    entry = refresh.record(chosen, "h100-80gb", "C1", "2026-12-04T00:00:00Z")
    assert entry == {
        "hardware_profile": "h100-80gb",
        "deployments": {"llama": {"max_num_seqs": 8, "max_num_batched_tokens": 512}},
        "measured": {
            "llama": {
                "output_tokens_per_s": 95.0,
                "ttft_p99_s": 2.4,
                "completed": 16,
                "failed": 0,
            }
        },
        "change": "C1",
        "refreshed_at": "2026-12-04T00:00:00Z",
    }


def test_tuning_applies_the_profile_and_the_chosen_values(
    profiled: dict[str, Any], root: Path
) -> None:
    tuning = {
        "gpu1": {
            "hardware_profile": "h100-80gb",
            "deployments": {"llama": {"max_num_seqs": 384, "max_num_batched_tokens": 16384}},
            "measured": {"llama": {"output_tokens_per_s": 1.0}},
        }
    }
    assert serving.check_tuning(tuning, profiled) == []
    base = manifest(deployment(overrides={"env": {"A": "1"}}, hardware_profile="cpu-lab"))
    tuned = serving.apply_tuning(base, tuning, "gpu1")
    assert isinstance(tuned, dict)
    item = tuned["deployments"][0]
    assert item["hardware_profile"] == "h100-80gb"
    assert item["overrides"] == {
        "env": {"A": "1"},
        "max_num_seqs": 384,
        "max_num_batched_tokens": 16384,
    }
    # Another host's record changes nothing; manifest_of applies the host's own.
    assert serving.apply_tuning(base, tuning, "gpu2") == base
    variables = {
        "sovereign_serving": base,
        "sovereign_serving_tuning": tuning,
        "inventory_hostname": "gpu1",
    }
    assert serving.manifest_of(variables) == tuned
    # A refresh's sweep point wins over the inventory's tuning.
    point = refresh.manifest_for(tuned, "gpu1", None, {"llama": {"max_num_seqs": 2}})
    assert isinstance(point, dict)
    assert point["deployments"][0]["overrides"]["max_num_seqs"] == 2
    assert point["deployments"][0]["hardware_profile"] == "h100-80gb"


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ([], "sovereign_serving_tuning: must map serving nodes to their tuning (got list)"),
        ({"gpu1": "x"}, "sovereign_serving_tuning.gpu1: must be a mapping"),
        (
            {"gpu1": {"deployments": {"llama": {"kv_cache_dtype": "fp8"}}}},
            "sovereign_serving_tuning.gpu1.deployments.llama: may set only "
            "['max_num_seqs', 'max_num_batched_tokens']",
        ),
        (
            {"gpu1": {"deployments": {"llama": {"max_num_seqs": 0}}}},
            "sovereign_serving_tuning.gpu1.deployments.llama.max_num_seqs: 0 must be",
        ),
        (
            {"gpu1": {"hardware_profile": "a100"}},
            "sovereign_serving_tuning.gpu1.hardware_profile: 'a100' is not a hardware profile",
        ),
    ],
)
def test_a_bad_tuning_record_is_named(
    profiled: dict[str, Any], tuning: object, message: str
) -> None:
    problems = serving.check_tuning(tuning, profiled)
    assert problems
    assert problems[0].startswith(message)


def test_validation_names_a_bad_tuning_record_before_any_task(
    profiled: dict[str, Any], root: Path
) -> None:
    problems = check_host_variables(
        {"sovereign_releases": profiled, "sovereign_serving_tuning": {"gpu1": []}}, {}, root
    )
    assert "sovereign_serving_tuning.gpu1: must be a mapping" in problems
    hostvars, groups = fleet(2)
    tuning = {"gpu1": {"hardware_profile": "a100-40gb"}}
    for host in hostvars.values():
        host.pop("group_names")
        host.update({"sovereign_releases": profiled, "sovereign_serving_tuning": tuning})
    groups.update({name: [] for name in ("pki_ca", "registry", "search", "gateway")})
    groups["observability"] = []
    found = [str(p) for p in validate_inventory(hostvars, groups, "2.19.0", {}, root)]
    assert any(
        "sovereign_serving_tuning.gpu1.hardware_profile: 'a100-40gb' is not a hardware profile" in p
        for p in found
    ), found


def test_an_embedding_deployment_moves_with_the_node_but_is_not_swept(
    profiled: dict[str, Any], root: Path
) -> None:
    profiled["models"]["minilm-1"] = {
        **profiled["models"]["tiny-1"],
        "model": "minilm",
        "served_model_name": "all-MiniLM-L6-v2",
        "endpoints": ["embeddings"],
    }
    hostvars, groups = fleet(2)
    for variables in hostvars.values():
        variables["sovereign_serving"]["deployments"].append(
            deployment(
                name="embedding",
                release="minilm-1",
                replicas=1,
                gpus_per_replica=None,
                hardware_profile="cpu-lab",
                port=8001,
            )
        )
    plan = refresh.plan(
        hostvars, groups, profiled, str(root), {"group": "gpu_nodes", "profile": "h100-80gb"}
    )
    # vLLM's benchmark and the Q&A evaluation measure generation only.
    assert {run["deployment"] for run in plan["runs"]["gpu1"]} == {"llama"}
    assert list(plan["current"]["gpu1"]) == ["llama"]
    # The refreshed node still serves the embedding model, on the new profile.
    refreshed = refresh.manifest_for(
        hostvars["gpu1"]["sovereign_serving"], "gpu1", "h100-80gb", {"llama": {"max_num_seqs": 8}}
    )
    instances = serving.vllm_instances(refreshed, profiled, str(root))
    by_name = {instance["name"]: instance for instance in instances}
    assert by_name["embedding"]["hardware_profile"] == "h100-80gb"
    assert by_name["embedding"]["endpoints"] == ["embeddings"]
    assert by_name["embedding"]["overrides"] == {}
    assert by_name["llama"]["endpoints"] == ["chat", "completions"]
