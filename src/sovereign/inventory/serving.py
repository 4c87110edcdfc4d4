"""The serving manifest: what each serving node runs, by release name.

A datacenter inventory sets ``sovereign_serving`` for its serving groups
(``group_vars/<group>/serving.yml``). Each deployment names a model release
and a runtime release of the release table (``sovereign_releases``, see
``sovereign.inventory.releases``), the hardware profile, the gateway tiers
it serves and its replicas; nothing here types a digest or a version.
``playbooks/data_plane.yml`` turns it into the inputs of the ``model_sync``
and ``vllm`` roles, and ``playbooks/governance_plane.yml`` derives the
gateway's backends from every serving node's manifest, with the filters of
``sovereign.ansible.filter.sovereign_serving``. The validation play runs
:func:`check_manifest` before any host is touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from sovereign.inventory import releases
from sovereign.inventory.errors import InventoryError
from sovereign.inventory.releases import ModelRelease, RuntimeRelease

VARIABLE = "sovereign_serving"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TIER = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

_REQUIRED = ("name", "release", "runtime", "hardware_profile", "tiers", "port")
_OPTIONAL = ("replicas", "gpus_per_replica", "overrides")
_TOP = ("deployments",)


@dataclass(frozen=True)
class Deployment:
    """One model release served on a node: ``replicas`` vLLM instances of it."""

    name: str
    release: ModelRelease
    runtime: RuntimeRelease
    hardware_profile: str
    tiers: tuple[str, ...]
    replicas: int
    port: int
    gpus_per_replica: int | None
    overrides: Mapping[str, Any]

    def instance_names(self) -> list[str]:
        if self.replicas == 1:
            return [self.name]
        return [f"{self.name}-{index}" for index in range(self.replicas)]

    def ports(self) -> range:
        return range(self.port, self.port + self.replicas)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_deployment(where: str, item: Mapping[str, Any], table: object, root: Path) -> list[str]:
    problems: list[str] = []
    unknown = sorted(set(item) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        problems.append(
            f"{where}: unknown keys {unknown}; a deployment has {list(_REQUIRED + _OPTIONAL)} "
            f"(the model, its digest and the vLLM version come from the release named "
            f"in {releases.VARIABLE})"
        )
    for key in _REQUIRED:
        if key not in item:
            problems.append(f"{where}.{key}: is required")
    name = item.get("name")
    if "name" in item and not (isinstance(name, str) and _NAME.match(name)):
        problems.append(f"{where}.name: {name!r} must be letters, digits, '_' and '-'")
    if "release" in item:
        problems.extend(
            releases.check_model_reference(table, item["release"], f"{where}.release", root)
        )
    if "runtime" in item:
        problems.extend(
            releases.check_runtime_reference(table, item["runtime"], f"{where}.runtime", root)
        )
    if "hardware_profile" in item:
        problems.extend(
            releases.check_profile_reference(
                table, item["hardware_profile"], f"{where}.hardware_profile"
            )
        )
    tiers = item.get("tiers")
    if "tiers" in item and not (
        isinstance(tiers, list)
        and tiers
        and all(isinstance(tier, str) and _TIER.match(tier) for tier in tiers)
        and len(set(tiers)) == len(tiers)
    ):
        problems.append(
            f"{where}.tiers: {tiers!r} must list the gateway tiers this deployment serves, "
            "each once (e.g. [general])"
        )
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
    runtimes = table.get("runtimes", {}) if isinstance(table, Mapping) else {}
    runtime = runtimes.get(item.get("runtime")) if isinstance(runtimes, Mapping) else None
    cuda = runtime.get("cuda_version") if isinstance(runtime, Mapping) else ""
    if _is_int(replicas) and replicas > 1 and cuda and gpus is None:
        problems.append(
            f"{where}.gpus_per_replica: is required with {replicas} replicas on GPUs, so "
            "each replica gets its own devices (CUDA_VISIBLE_DEVICES)"
        )
    overrides = item.get("overrides", {})
    if not isinstance(overrides, Mapping):
        problems.append(f"{where}.overrides: must be a mapping of hardware profile keys")
    return problems


def check_manifest(manifest: object, table: object, root: Path) -> list[str]:
    """Every problem of one host's serving manifest, each naming the key."""
    if not isinstance(manifest, Mapping):
        return [f"{VARIABLE}: must be a mapping with 'deployments' (got {type(manifest).__name__})"]
    problems: list[str] = []
    unknown = sorted(set(manifest) - set(_TOP))
    if unknown:
        problems.append(
            f"{VARIABLE}: unknown keys {unknown}; it has {list(_TOP)} (signing keys "
            f"are the releases' own, in {releases.VARIABLE})"
        )
    items = manifest.get("deployments", [])
    if not isinstance(items, Sequence) or isinstance(items, str):
        return problems + [f"{VARIABLE}.deployments: must be a list of deployments"]
    for index, item in enumerate(items):
        where = f"{VARIABLE}.deployments[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        problems.extend(_check_deployment(where, item, table, root))
    if problems:
        return problems
    deployments = _parse(manifest, table)
    names = [name for d in deployments for name in d.instance_names()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"{VARIABLE}.deployments: instance names used twice: {duplicates}")
    ports: dict[int, str] = {}
    for deployment in deployments:
        for port in deployment.ports():
            if port in ports:
                problems.append(
                    f"{VARIABLE}.deployments: {deployment.name} and {ports[port]} "
                    f"both use port {port}"
                )
            ports.setdefault(port, deployment.name)
    pinned: dict[str, str] = {}
    for deployment in deployments:
        model = deployment.release.model
        if pinned.setdefault(model, deployment.release.name) != deployment.release.name:
            problems.append(
                f"{VARIABLE}.deployments: model {model!r} is served from two releases "
                f"({pinned[model]}, {deployment.release.name}); one node serves one "
                "version of a model (the canary runs on other nodes)"
            )
    runtimes = sorted({d.runtime.name for d in deployments})
    if len(runtimes) > 1:
        problems.append(
            f"{VARIABLE}.deployments: runtimes differ between deployments ({runtimes}); "
            "a node has one vLLM installation, so its deployments share one runtime"
        )
    return problems


def _parse(manifest: Mapping[str, Any], table: object) -> list[Deployment]:
    deployments = []
    for item in manifest.get("deployments", []):
        deployments.append(
            Deployment(
                name=item["name"],
                release=releases.model_release(table, item["release"]),
                runtime=releases.runtime_release(table, item["runtime"]),
                hardware_profile=item["hardware_profile"],
                tiers=tuple(item["tiers"]),
                replicas=item.get("replicas", 1),
                port=item["port"],
                gpus_per_replica=item.get("gpus_per_replica"),
                overrides=item.get("overrides", {}),
            )
        )
    return deployments


def deployments(manifest: object, table: object, root: Path) -> list[Deployment]:
    """The deployments of a valid manifest; raises InventoryError naming every problem."""
    problems = check_manifest(manifest, table, root)
    if problems:
        raise InventoryError("; ".join(problems))
    assert isinstance(manifest, Mapping)
    return _parse(manifest, table)


def model_sync_models(
    manifest: object, table: object, root: str, registry: str
) -> list[dict[str, str]]:
    """``model_sync_models``: each pinned model once, from its registry by digest."""
    base = Path(root)
    seen: dict[str, dict[str, str]] = {}
    for deployment in deployments(manifest, table, base):
        release = deployment.release
        seen.setdefault(
            release.model,
            {
                "name": release.model,
                "repository": f"{registry}/{release.repository}",
                "digest": release.digest,
                "public_key": releases.public_key(table, release.name, base),
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


def vllm_instances(manifest: object, table: object, root: str) -> list[dict[str, Any]]:
    """``vllm_instances``: one per replica, on consecutive ports, each on its own GPUs."""
    instances: list[dict[str, Any]] = []
    for deployment in deployments(manifest, table, Path(root)):
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
                    "model": deployment.release.model,
                    "hardware_profile": deployment.hardware_profile,
                    "port": deployment.port + index,
                    "served_model_name": deployment.release.served_model_name,
                    "overrides": overrides,
                }
            )
    return instances


def runtime(manifest: object, table: object, root: str) -> dict[str, str]:
    """The node's one runtime release, with its wheel table as a controller path
    (empty values when the node serves nothing)."""
    base = Path(root)
    found = {deployment.runtime for deployment in deployments(manifest, table, base)}
    if not found:
        return {
            "name": "",
            "vllm_version": "",
            "cuda_version": "",
            "requirements": "",
            "wheelhouse": "",
        }
    release = found.pop()
    return {
        "name": release.name,
        "vllm_version": release.vllm_version,
        "cuda_version": release.cuda_version,
        "requirements": str(releases.resolve_path(release.requirements, base)),
        "wheelhouse": release.wheelhouse,
    }


def units(manifest: object, table: object, root: str) -> list[str]:
    """The systemd units that load the manifest's models (restarted on a model switch)."""
    return [
        f"vllm-{instance['name']}.service" for instance in vllm_instances(manifest, table, root)
    ]


ACTIVE = "sovereign_serving_active"


def active_releases(
    manifest: object, table: object, root: str, current: Mapping[str, str]
) -> dict[str, str]:
    """What a node serves now: per deployment, the release whose digest its
    model's active version (``current``: model -> digest hex of the link
    target) is, or "" when that version is no release of the table."""
    found: dict[str, str] = {}
    models = table.get("models", {}) if isinstance(table, Mapping) else {}
    for deployment in deployments(manifest, table, Path(root)):
        model = deployment.release.model
        target = current.get(model, "")
        found[deployment.name] = next(
            (
                name
                for name, item in sorted(models.items())
                if item.get("model") == model and item.get("digest") == f"sha256:{target}"
            ),
            "",
        )
    return found


def urls(deployment: Deployment, host: str, scheme: str = "http") -> list[str]:
    """The backend URLs of one deployment on one host, one per replica."""
    return [f"{scheme}://{host}:{port}" for port in deployment.ports()]


def host_backends(manifest: object, table: object, root: str, host: str) -> list[str]:
    """Every backend URL of a host's manifest (what a drain of the host drains)."""
    return [
        url
        for deployment in deployments(manifest, table, Path(root))
        for url in urls(deployment, host)
    ]


def gateway_models(
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Iterable[str],
    table: object,
    root: str,
    scheme: str = "http",
) -> dict[str, dict[str, Any]]:
    """``gateway_models``, derived from every serving host's manifest: per model
    the releases serving it (a version each, weighted by replica count), each
    with every serving host x replica port as a backend in each of its tiers.

    Where a host reports what it serves now (the fact ``sovereign_serving_active``,
    read by the data plane and governance playbooks), a deployment counts under
    that release, not the manifest's: mid-rollout, a node not yet activated is
    audited with the digest it really serves; a node serving no release of the
    table gets no traffic."""
    base = Path(root)
    replicas: dict[str, dict[str, int]] = {}
    backends: dict[tuple[str, str], dict[str, list[str]]] = {}
    found: dict[str, ModelRelease] = {}
    for host in hosts:
        variables = hostvars[host]
        manifest = variables.get(VARIABLE, {"deployments": []})
        active = variables.get(ACTIVE)
        for deployment in deployments(manifest, table, base):
            release = deployment.release
            if isinstance(active, Mapping) and deployment.name in active:
                if not active[deployment.name]:
                    continue
                release = releases.model_release(table, active[deployment.name])
            public = release.served_model_name
            found[release.name] = release
            counts = replicas.setdefault(public, {})
            counts[release.name] = counts.get(release.name, 0) + deployment.replicas
            tiers = backends.setdefault((public, release.name), {})
            for tier in deployment.tiers:
                tiers.setdefault(tier, []).extend(urls(deployment, host, scheme))
    models: dict[str, dict[str, Any]] = {}
    for public, counts in sorted(replicas.items()):
        names = sorted(counts)
        weights = _weights([counts[name] for name in names])
        first = found[names[0]]
        models[public] = {
            "endpoints": list(first.endpoints),
            "versions": [
                {
                    "name": name,
                    "weight": weight,
                    "digest": found[name].digest,
                    "backends": backends[public, name],
                }
                for name, weight in zip(names, weights, strict=True)
            ],
        }
    return models


def _weights(counts: Sequence[int]) -> list[int]:
    """Percentages proportional to ``counts`` that sum to 100 (largest remainder)."""
    total = sum(counts)
    shares = [count * 100 / total for count in counts]
    weights = [int(share) for share in shares]
    order = sorted(range(len(counts)), key=lambda i: shares[i] - weights[i], reverse=True)
    for index in order[: 100 - sum(weights)]:
        weights[index] += 1
    return weights


def eval_runtime(
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Iterable[str],
    table: object,
    root: str,
) -> dict[str, str | None]:
    """What an evaluation run records of the serving runtime (``sovereign eval
    --runtime``): the release the first serving host's first deployment serves
    (its model digest, vLLM and CUDA versions, from the release table) and the
    host. The driver version is the GPU-node roles' fact when they set one
    (``sovereign_gpu_driver_version``), else unknown (null), never guessed."""
    for host in hosts:
        variables = hostvars[host]
        found = deployments(variables.get(VARIABLE, {"deployments": []}), table, Path(root))
        if not found:
            continue
        deployment = found[0]
        driver = variables.get("sovereign_gpu_driver_version")
        return {
            "model_digest": deployment.release.digest,
            "vllm_version": deployment.runtime.vllm_version or None,
            "cuda_version": deployment.runtime.cuda_version or None,
            "driver_version": str(driver) if driver else None,
            "node": host,
        }
    return {}
