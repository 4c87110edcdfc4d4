"""The serving manifest: what each serving node runs, pinned.

A datacenter inventory sets ``sovereign_serving`` for its serving groups
(``group_vars/<group>/serving.yml``). Each deployment pins the model by
digest, the vLLM and CUDA versions, the hardware profile and the number of
replicas; ``playbooks/data_plane.yml`` turns it into the inputs of the
``model_sync`` and ``vllm`` roles with the filters of
``sovereign.ansible.filter.sovereign_serving``. The validation play runs
:func:`check_manifest` before any host is touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from sovereign.inventory.errors import InventoryError

VARIABLE = "sovereign_serving"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9.\[\]:-]+(:[0-9]+)?/[a-z0-9._/-]+$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){1,2}$")

_REQUIRED = ("name", "repository", "digest", "vllm_version", "hardware_profile", "port")
_OPTIONAL = (
    "model",
    "cuda_version",
    "replicas",
    "gpus_per_replica",
    "served_model_name",
    "public_key",
    "overrides",
)
_TOP = ("deployments", "public_key")


@dataclass(frozen=True)
class Deployment:
    """One model served on a node: ``replicas`` vLLM instances of one pinned model."""

    name: str
    model: str
    repository: str
    digest: str
    vllm_version: str
    cuda_version: str
    hardware_profile: str
    replicas: int
    port: int
    gpus_per_replica: int | None
    served_model_name: str
    public_key: str
    overrides: Mapping[str, Any]

    def instance_names(self) -> list[str]:
        if self.replicas == 1:
            return [self.name]
        return [f"{self.name}-{index}" for index in range(self.replicas)]


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_deployment(where: str, item: Mapping[str, Any], default_key: str) -> list[str]:
    problems: list[str] = []
    unknown = sorted(set(item) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        problems.append(
            f"{where}: unknown keys {unknown}; a deployment has {list(_REQUIRED + _OPTIONAL)}"
        )
    for key in _REQUIRED:
        if key not in item:
            problems.append(f"{where}.{key}: is required")
    name = item.get("name")
    if "name" in item and not (isinstance(name, str) and _NAME.match(name)):
        problems.append(f"{where}.name: {name!r} must be letters, digits, '_' and '-'")
    model = item.get("model", name)
    if not (isinstance(model, str) and _MODEL.match(model)):
        problems.append(f"{where}.model: {model!r} must be letters, digits, '.', '_' and '-'")
    repository = item.get("repository")
    if "repository" in item and not (
        isinstance(repository, str) and _REPOSITORY.match(repository) and "@" not in repository
    ):
        problems.append(
            f"{where}.repository: {repository!r} must be REGISTRY[:PORT]/REPOSITORY "
            "without tag or digest (the version is pinned by digest)"
        )
    digest = item.get("digest")
    if "digest" in item and not (isinstance(digest, str) and _DIGEST.match(digest)):
        problems.append(
            f"{where}.digest: {digest!r} is not a manifest digest (sha256: and 64 lowercase "
            "hex digits; pin what `sovereign model publish` printed, never a tag)"
        )
    version = item.get("vllm_version")
    if "vllm_version" in item and not (isinstance(version, str) and _VERSION.match(version)):
        problems.append(f"{where}.vllm_version: {version!r} must be a quoted version like '0.32.0'")
    cuda = item.get("cuda_version", "")
    if not (isinstance(cuda, str) and (cuda == "" or _VERSION.match(cuda))):
        problems.append(
            f"{where}.cuda_version: {cuda!r} must be a quoted version like '12.8', "
            "or '' for a CPU build"
        )
    profile = item.get("hardware_profile")
    if "hardware_profile" in item and not (isinstance(profile, str) and profile):
        problems.append(f"{where}.hardware_profile: must name a profile of the vllm role")
    replicas = item.get("replicas", 1)
    if not (_is_int(replicas) and replicas >= 1):
        problems.append(f"{where}.replicas: {replicas!r} must be a whole number >= 1")
    port = item.get("port")
    if "port" in item and not (_is_int(port) and 1 <= port <= 65535):
        problems.append(f"{where}.port: {port!r} must be a TCP port (1-65535)")
    elif _is_int(port) and _is_int(replicas) and port + replicas - 1 > 65535:
        problems.append(f"{where}.port: replicas use ports {port}..{port + replicas - 1}")
    gpus = item.get("gpus_per_replica")
    if gpus is not None and not (_is_int(gpus) and gpus >= 1):
        problems.append(f"{where}.gpus_per_replica: {gpus!r} must be a whole number >= 1")
    if _is_int(replicas) and replicas > 1 and cuda and gpus is None:
        problems.append(
            f"{where}.gpus_per_replica: is required with {replicas} replicas on GPUs, so "
            "each replica gets its own devices (CUDA_VISIBLE_DEVICES)"
        )
    key = item.get("public_key") or default_key
    if not (isinstance(key, str) and "-----BEGIN PUBLIC KEY-----" in key):
        problems.append(
            f"{where}.public_key: no PEM public key (-----BEGIN PUBLIC KEY-----) for this "
            f"model; set it or {VARIABLE}.public_key to the key of the model's signers"
        )
    served = item.get("served_model_name", model)
    if not (isinstance(served, str) and served):
        problems.append(f"{where}.served_model_name: must be a non-empty string")
    overrides = item.get("overrides", {})
    if not isinstance(overrides, Mapping):
        problems.append(f"{where}.overrides: must be a mapping of hardware profile keys")
    return problems


def check_manifest(manifest: object) -> list[str]:
    """Every problem of one host's serving manifest, each naming the key."""
    if not isinstance(manifest, Mapping):
        return [f"{VARIABLE}: must be a mapping with 'deployments' (got {type(manifest).__name__})"]
    problems: list[str] = []
    unknown = sorted(set(manifest) - set(_TOP))
    if unknown:
        problems.append(f"{VARIABLE}: unknown keys {unknown}; it has {list(_TOP)}")
    items = manifest.get("deployments", [])
    if not isinstance(items, Sequence) or isinstance(items, str):
        return problems + [f"{VARIABLE}.deployments: must be a list of deployments"]
    default_key = manifest.get("public_key", "")
    for index, item in enumerate(items):
        where = f"{VARIABLE}.deployments[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        problems.extend(_check_deployment(where, item, default_key))
    if problems:
        return problems
    deployments = _parse(manifest)
    names = [name for d in deployments for name in d.instance_names()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"{VARIABLE}.deployments: instance names used twice: {duplicates}")
    ports: dict[int, str] = {}
    for deployment in deployments:
        for port in range(deployment.port, deployment.port + deployment.replicas):
            if port in ports:
                problems.append(
                    f"{VARIABLE}.deployments: {deployment.name} and {ports[port]} "
                    f"both use port {port}"
                )
            ports.setdefault(port, deployment.name)
    digests: dict[str, str] = {}
    for deployment in deployments:
        if digests.setdefault(deployment.model, deployment.digest) != deployment.digest:
            problems.append(
                f"{VARIABLE}.deployments: model {deployment.model!r} is pinned to two "
                "digests; one node serves one version of a model (the canary runs on "
                "other nodes)"
            )
    for key in ("vllm_version", "cuda_version"):
        values = sorted({getattr(d, key) for d in deployments})
        if len(values) > 1:
            problems.append(
                f"{VARIABLE}.deployments: {key} differs between deployments ({values}); "
                "a node has one vLLM installation, so its deployments share one pin"
            )
    return problems


def _parse(manifest: Mapping[str, Any]) -> list[Deployment]:
    default_key = manifest.get("public_key", "")
    deployments = []
    for item in manifest.get("deployments", []):
        model = item.get("model", item["name"])
        deployments.append(
            Deployment(
                name=item["name"],
                model=model,
                repository=item["repository"],
                digest=item["digest"],
                vllm_version=item["vllm_version"],
                cuda_version=item.get("cuda_version", ""),
                hardware_profile=item["hardware_profile"],
                replicas=item.get("replicas", 1),
                port=item["port"],
                gpus_per_replica=item.get("gpus_per_replica"),
                served_model_name=item.get("served_model_name", model),
                public_key=item.get("public_key") or default_key,
                overrides=item.get("overrides", {}),
            )
        )
    return deployments


def deployments(manifest: object) -> list[Deployment]:
    """The deployments of a valid manifest; raises InventoryError naming every problem."""
    problems = check_manifest(manifest)
    if problems:
        raise InventoryError("; ".join(problems))
    assert isinstance(manifest, Mapping)
    return _parse(manifest)


def model_sync_models(manifest: object) -> list[dict[str, str]]:
    """``model_sync_models``: each pinned model once."""
    seen: dict[str, dict[str, str]] = {}
    for deployment in deployments(manifest):
        seen.setdefault(
            deployment.model,
            {
                "name": deployment.model,
                "repository": deployment.repository,
                "digest": deployment.digest,
                "public_key": deployment.public_key,
            },
        )
    return list(seen.values())


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def vllm_instances(manifest: object) -> list[dict[str, Any]]:
    """``vllm_instances``: one per replica, on consecutive ports, each on its own GPUs."""
    instances: list[dict[str, Any]] = []
    for deployment in deployments(manifest):
        for index, name in enumerate(deployment.instance_names()):
            overrides: dict[str, Any] = dict(deployment.overrides)
            if deployment.gpus_per_replica is not None:
                first = index * deployment.gpus_per_replica
                devices = ",".join(
                    str(device) for device in range(first, first + deployment.gpus_per_replica)
                )
                overrides = _merge({"env": {"CUDA_VISIBLE_DEVICES": devices}}, overrides)
            instances.append(
                {
                    "name": name,
                    "model": deployment.model,
                    "hardware_profile": deployment.hardware_profile,
                    "port": deployment.port + index,
                    "served_model_name": deployment.served_model_name,
                    "overrides": overrides,
                }
            )
    return instances


def pin(manifest: object, key: str) -> str:
    """The node's one ``vllm_version`` or ``cuda_version`` ("" when nothing is served)."""
    if key not in ("vllm_version", "cuda_version"):
        raise InventoryError(f"{key!r} is not a pin of the serving manifest")
    values = {getattr(deployment, key) for deployment in deployments(manifest)}
    return values.pop() if values else ""


def units(manifest: object) -> list[str]:
    """The systemd units that load the manifest's models (restarted on a model switch)."""
    return [f"vllm-{instance['name']}.service" for instance in vllm_instances(manifest)]
