"""The serving manifest: validation names each bad key; role inputs and the
gateway's backends derive from it and the release table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovereign.inventory import InventoryError, serving
from sovereign.inventory.validate import check_host_variables
from tests.unit.inventory.conftest import DIGEST, DIGEST2, KEY


def deployment(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": "llama",
        "release": "llama-2026-10",
        "runtime": "cu128",
        "hardware_profile": "h100-80gb",
        "tiers": ["general"],
        "replicas": 2,
        "gpus_per_replica": 4,
        "port": 8000,
    }
    item.update(changes)
    return item


def manifest(*items: dict[str, Any]) -> dict[str, Any]:
    return {"deployments": list(items) or [deployment()]}


def test_a_sound_manifest_has_no_problems(table: dict[str, Any], root: Path) -> None:
    assert serving.check_manifest(manifest(), table, root) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"release": "llama-latest"}, "deployments[0].release: 'llama-latest' is not a model"),
        ({"runtime": "cu999"}, "deployments[0].runtime: 'cu999' is not a runtime release"),
        ({"hardware_profile": "a100"}, "hardware_profile: 'a100' is not a hardware profile"),
        ({"tiers": "general"}, "tiers: 'general' must list the gateway tiers"),
        ({"tiers": []}, "tiers: [] must list"),
        ({"tiers": ["general", "general"]}, "each once"),
        ({"replicas": 0}, "replicas: 0 must be a whole number >= 1"),
        ({"replicas": "2"}, "replicas: '2' must be a whole number"),
        ({"port": 70000}, "port: 70000 must be a TCP port"),
        ({"port": 65535}, "replicas use ports 65535..65536"),
        ({"gpus_per_replica": None}, "gpus_per_replica: is required with 2 replicas on GPUs"),
        ({"name": "bad name"}, "name: 'bad name' must be letters"),
        ({"digest": DIGEST}, "unknown keys ['digest']"),
        ({"overrides": ["x"]}, "overrides: must be a mapping"),
    ],
)
def test_each_bad_key_is_named(
    changes: dict[str, Any], message: str, table: dict[str, Any], root: Path
) -> None:
    item = deployment(**changes)
    if changes.get("gpus_per_replica", 1) is None:
        del item["gpus_per_replica"]
    problems = serving.check_manifest(manifest(item), table, root)
    assert any(message in problem for problem in problems), problems


def test_a_release_with_a_tag_or_a_missing_key_file_is_refused_where_it_is_used(
    table: dict[str, Any], root: Path
) -> None:
    table["models"]["llama-2026-10"]["digest"] = "latest"
    (root / "keys/custodians.pub").unlink()
    problems = serving.check_manifest(manifest(), table, root)
    assert any(
        "sovereign_releases.models.llama-2026-10.digest: 'latest' is not a manifest digest" in p
        for p in problems
    )
    assert any("signing_key: cannot read" in p and "custodians.pub" in p for p in problems)


def test_a_runtime_whose_wheel_table_is_missing_is_refused(
    table: dict[str, Any], root: Path
) -> None:
    (root / "runtimes/cu128.txt").unlink()
    problems = serving.check_manifest(manifest(), table, root)
    assert any(
        "sovereign_releases.runtimes.cu128.requirements:" in p and "does not exist" in p
        for p in problems
    )


def test_required_keys_are_reported_together(table: dict[str, Any], root: Path) -> None:
    item = deployment()
    del item["release"], item["port"]
    problems = serving.check_manifest({"deployments": [item]}, table, root)
    assert "sovereign_serving.deployments[0].release: is required" in problems
    assert "sovereign_serving.deployments[0].port: is required" in problems


def test_deployments_of_one_node_must_agree_and_not_collide(
    table: dict[str, Any], root: Path
) -> None:
    first = deployment()
    second = deployment(name="small", release="tiny-1", port=8001, runtime="cu124")
    problems = serving.check_manifest(manifest(first, second), table, root)
    assert any("small and llama both use port 8001" in p for p in problems), problems
    assert any("runtimes differ between deployments" in p for p in problems)
    twice = deployment(name="llama2", port=9000, release="llama-2026-11")
    problems = serving.check_manifest(manifest(deployment(), twice), table, root)
    assert any(
        "model 'llama-3-70b' is served from two releases (llama-2026-10, llama-2026-11)" in p
        for p in problems
    )


def test_not_a_mapping(table: dict[str, Any], root: Path) -> None:
    assert serving.check_manifest(["x"], table, root) == [
        "sovereign_serving: must be a mapping with 'deployments' (got list)"
    ]


def test_role_inputs_derive_from_the_manifest_and_the_releases(
    table: dict[str, Any], root: Path
) -> None:
    small = deployment(
        name="tiny",
        release="tiny-1",
        replicas=1,
        gpus_per_replica=None,
        port=9000,
        overrides={"max_num_seqs": 8},
    )
    value = manifest(deployment(overrides={"env": {"NCCL_DEBUG": "WARN"}}), small)
    assert serving.model_sync_models(value, table, str(root), "reg.dc1:5000") == [
        {
            "name": "llama-3-70b",
            "repository": "reg.dc1:5000/llm/llama-3-70b",
            "digest": DIGEST,
            "public_key": KEY,
        },
        {
            "name": "tiny",
            "repository": "reg.dc1:5000/models/tiny",
            "digest": DIGEST,
            "public_key": KEY,
        },
    ]
    instances = serving.vllm_instances(value, table, str(root))
    assert [(i["name"], i["port"]) for i in instances] == [
        ("llama-0", 8000),
        ("llama-1", 8001),
        ("tiny", 9000),
    ]
    assert instances[0]["overrides"] == {
        "env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "NCCL_DEBUG": "WARN"}
    }
    assert instances[1]["overrides"]["env"]["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    assert instances[2]["overrides"] == {"max_num_seqs": 8}
    assert instances[2]["served_model_name"] == "sovereign-tiny"
    assert instances[0]["served_model_name"] == "llama-3-70b"
    assert serving.runtime(value, table, str(root)) == {
        "name": "cu128",
        "vllm_version": "0.32.0",
        "cuda_version": "12.8",
        "requirements": str(root / "runtimes/cu128.txt"),
        "wheelhouse": "vllm-cu128",
    }
    assert serving.units(value, table, str(root)) == [
        "vllm-llama-0.service",
        "vllm-llama-1.service",
        "vllm-tiny.service",
    ]


def test_an_empty_manifest_serves_nothing(table: dict[str, Any], root: Path) -> None:
    empty: dict[str, list[object]] = {"deployments": []}
    assert serving.vllm_instances(empty, table, str(root)) == []
    assert serving.runtime(empty, table, str(root))["vllm_version"] == ""


def test_derivation_refuses_an_invalid_manifest(table: dict[str, Any], root: Path) -> None:
    broken = manifest(deployment(release="nope"))
    with pytest.raises(InventoryError, match=r"deployments\[0\]\.release"):
        serving.vllm_instances(broken, table, str(root))


def test_the_inventory_validator_checks_the_manifest(table: dict[str, Any], root: Path) -> None:
    variables = {"sovereign_releases": table, "sovereign_serving": manifest(deployment(replicas=0))}
    problems = check_host_variables(variables, {}, root)
    assert problems == ["sovereign_serving.deployments[0].replicas: 0 must be a whole number >= 1"]


def test_the_gateway_backends_are_every_serving_host_times_every_replica(
    table: dict[str, Any], root: Path
) -> None:
    h100 = manifest(deployment())
    h200 = manifest(deployment(tiers=["restricted"], replicas=4, gpus_per_replica=2))
    hostvars = {
        "gpu1": {"sovereign_serving": h100},
        "gpu2": {"sovereign_serving": h100},
        "gpu5": {"sovereign_serving": h200},
        "search1": {},
    }
    models = serving.gateway_models(hostvars, ["gpu1", "gpu2", "gpu5"], table, str(root))
    assert models == {
        "llama-3-70b": {
            "endpoints": ["chat", "completions"],
            "versions": [
                {
                    "name": "llama-2026-10",
                    "weight": 100,
                    "digest": DIGEST,
                    "backends": {
                        "general": [
                            "http://gpu1:8000",
                            "http://gpu1:8001",
                            "http://gpu2:8000",
                            "http://gpu2:8001",
                        ],
                        "restricted": [f"http://gpu5:{port}" for port in range(8000, 8004)],
                    },
                }
            ],
        }
    }


def test_mid_rollout_each_release_is_a_version_weighted_by_its_replicas(
    table: dict[str, Any], root: Path
) -> None:
    old = manifest(deployment(replicas=1, gpus_per_replica=4))
    new = manifest(deployment(release="llama-2026-11", replicas=1, gpus_per_replica=4))
    hostvars = {"a": {"sovereign_serving": new}, "b": {"sovereign_serving": old}}
    hostvars["c"] = {"sovereign_serving": old}
    models = serving.gateway_models(hostvars, ["a", "b", "c"], table, str(root))
    versions = models["llama-3-70b"]["versions"]
    assert [(v["name"], v["weight"], v["digest"]) for v in versions] == [
        ("llama-2026-10", 67, DIGEST),
        ("llama-2026-11", 33, DIGEST2),
    ]
    assert versions[1]["backends"] == {"general": ["http://a:8000"]}


def test_what_a_node_serves_now_is_read_from_its_active_digests(
    table: dict[str, Any], root: Path
) -> None:
    value = manifest(deployment(release="llama-2026-11"))
    assert serving.active_releases(value, table, str(root), {"llama-3-70b": "ab" * 32}) == {
        "llama": "llama-2026-10"
    }
    assert serving.active_releases(value, table, str(root), {}) == {"llama": ""}
    assert serving.host_backends(value, table, str(root), "gpu1") == [
        "http://gpu1:8000",
        "http://gpu1:8001",
    ]


def test_mid_rollout_the_gateway_counts_a_node_under_what_it_serves_now(
    table: dict[str, Any], root: Path
) -> None:
    # Every manifest already names the new release; gpu2 is not activated yet
    # and gpu3 serves an artifact that is no release at all.
    new = manifest(deployment(release="llama-2026-11", replicas=1, gpus_per_replica=4))
    hostvars = {
        "gpu1": {"sovereign_serving": new, "sovereign_serving_active": {"llama": "llama-2026-11"}},
        "gpu2": {"sovereign_serving": new, "sovereign_serving_active": {"llama": "llama-2026-10"}},
        "gpu3": {"sovereign_serving": new, "sovereign_serving_active": {"llama": ""}},
    }
    models = serving.gateway_models(hostvars, ["gpu1", "gpu2", "gpu3"], table, str(root))
    versions = {v["name"]: v for v in models["llama-3-70b"]["versions"]}
    assert versions["llama-2026-10"]["backends"] == {"general": ["http://gpu2:8000"]}
    assert versions["llama-2026-11"]["backends"] == {"general": ["http://gpu1:8000"]}
    assert versions["llama-2026-10"]["digest"] == DIGEST
    assert sorted(v["weight"] for v in versions.values()) == [50, 50]


def test_an_evaluation_records_the_runtime_the_release_table_names(
    table: dict[str, Any], root: Path
) -> None:
    hostvars: dict[str, dict[str, Any]] = {
        "gpu1": {"sovereign_serving": {"deployments": []}},
        "gpu2": {"sovereign_serving": manifest(), "sovereign_gpu_driver_version": "570.124.06"},
    }
    runtime = serving.eval_runtime(hostvars, ["gpu1", "gpu2"], table, str(root))
    assert runtime == {
        "model_digest": DIGEST,
        "vllm_version": table["runtimes"]["cu128"]["vllm_version"],
        "cuda_version": table["runtimes"]["cu128"]["cuda_version"],
        "driver_version": "570.124.06",
        "node": "gpu2",
    }
    # Without the GPU-node roles' fact the driver is unknown, not guessed.
    del hostvars["gpu2"]["sovereign_gpu_driver_version"]
    assert serving.eval_runtime(hostvars, ["gpu2"], table, str(root))["driver_version"] is None
    assert serving.eval_runtime(hostvars, [], table, str(root)) == {}
