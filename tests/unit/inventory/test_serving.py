"""The serving manifest: validation names each bad key; role inputs derive from it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sovereign.inventory import InventoryError, serving
from sovereign.inventory.validate import check_host_variables

KEY = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"
DIGEST = "sha256:" + "ab" * 32


def deployment(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": "llama",
        "model": "llama-3-70b",
        "repository": "registry.dc1.example:5000/llm/llama-3-70b",
        "digest": DIGEST,
        "vllm_version": "0.32.0",
        "cuda_version": "12.8",
        "hardware_profile": "h100-80gb",
        "replicas": 2,
        "gpus_per_replica": 4,
        "port": 8000,
    }
    item.update(changes)
    return item


def manifest(*items: dict[str, Any]) -> dict[str, Any]:
    return {"public_key": KEY, "deployments": list(items) or [deployment()]}


def test_a_sound_manifest_has_no_problems() -> None:
    assert serving.check_manifest(manifest()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"digest": "latest"}, "deployments[0].digest: 'latest' is not a manifest digest"),
        ({"digest": "sha256:" + "AB" * 32}, "is not a manifest digest"),
        ({"repository": "reg:5000/llm/x:v1"}, "deployments[0].repository"),
        ({"repository": "reg:5000/llm/x@" + DIGEST}, "without tag or digest"),
        ({"vllm_version": 0.32}, "vllm_version: 0.32 must be a quoted version"),
        ({"cuda_version": 12.8}, "cuda_version: 12.8 must be a quoted version"),
        ({"replicas": 0}, "replicas: 0 must be a whole number >= 1"),
        ({"replicas": "2"}, "replicas: '2' must be a whole number"),
        ({"port": 70000}, "port: 70000 must be a TCP port"),
        ({"port": 65535}, "replicas use ports 65535..65536"),
        ({"gpus_per_replica": None}, "gpus_per_replica: is required with 2 replicas on GPUs"),
        ({"name": "bad name"}, "name: 'bad name' must be letters"),
        ({"hardware_profile": ""}, "hardware_profile: must name a profile"),
        ({"colour": "blue"}, "unknown keys ['colour']"),
        ({"overrides": ["x"]}, "overrides: must be a mapping"),
    ],
)
def test_each_bad_key_is_named(changes: dict[str, Any], message: str) -> None:
    item = deployment(**changes)
    if changes.get("gpus_per_replica", 1) is None:
        del item["gpus_per_replica"]
    problems = serving.check_manifest(manifest(item))
    assert any(message in problem for problem in problems), problems


def test_required_keys_and_public_key_are_reported_together() -> None:
    item = deployment()
    del item["digest"], item["port"]
    problems = serving.check_manifest({"deployments": [item]})
    assert "sovereign_serving.deployments[0].digest: is required" in problems
    assert "sovereign_serving.deployments[0].port: is required" in problems
    assert any("public_key: no PEM public key" in problem for problem in problems)


def test_deployments_of_one_node_must_agree_and_not_collide() -> None:
    first = deployment()
    second = deployment(name="small", model="small", port=8001, cuda_version="12.4")
    problems = serving.check_manifest(manifest(first, second))
    assert any(
        "llama and small both use port 8001" in p or "small and llama" in p for p in problems
    )
    assert any("cuda_version differs between deployments" in p for p in problems)
    twice = deployment(name="llama2", port=9000, digest="sha256:" + "cd" * 32)
    problems = serving.check_manifest(manifest(deployment(), twice))
    assert any("model 'llama-3-70b' is pinned to two digests" in p for p in problems)


def test_not_a_mapping() -> None:
    assert serving.check_manifest(["x"]) == [
        "sovereign_serving: must be a mapping with 'deployments' (got list)"
    ]


def test_role_inputs_derive_from_the_manifest() -> None:
    small = deployment(
        name="tiny",
        model="tiny",
        replicas=1,
        gpus_per_replica=None,
        port=9000,
        served_model_name="sovereign-tiny",
        overrides={"max_num_seqs": 8},
    )
    value = manifest(deployment(overrides={"env": {"NCCL_DEBUG": "WARN"}}), small)
    assert serving.model_sync_models(value) == [
        {
            "name": "llama-3-70b",
            "repository": "registry.dc1.example:5000/llm/llama-3-70b",
            "digest": DIGEST,
            "public_key": KEY,
        },
        {"name": "tiny", "repository": small["repository"], "digest": DIGEST, "public_key": KEY},
    ]
    instances = serving.vllm_instances(value)
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
    assert serving.pin(value, "vllm_version") == "0.32.0"
    assert serving.units(value) == [
        "vllm-llama-0.service",
        "vllm-llama-1.service",
        "vllm-tiny.service",
    ]


def test_an_empty_manifest_serves_nothing() -> None:
    empty: dict[str, list[object]] = {"deployments": []}
    assert serving.vllm_instances(empty) == [] and serving.pin(empty, "cuda_version") == ""


def test_derivation_refuses_an_invalid_manifest() -> None:
    broken = manifest(deployment(digest="latest"))
    with pytest.raises(InventoryError, match=r"deployments\[0\]\.digest"):
        serving.vllm_instances(broken)
    with pytest.raises(InventoryError, match="not a pin"):
        serving.pin(manifest(), "replicas")


def test_the_inventory_validator_checks_the_manifest() -> None:
    broken = copy.deepcopy(manifest(deployment(replicas=0)))
    problems = check_host_variables({"sovereign_serving": broken}, {})
    assert problems == ["sovereign_serving.deployments[0].replicas: 0 must be a whole number >= 1"]
