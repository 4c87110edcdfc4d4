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
# What a promotion (playbooks/upgrade.yml) recorded: per serving group, per
# deployment, the release (and runtime) that now wins over the manifest's.
PINS = "sovereign_serving_pins"
_PIN_KEYS = ("release", "runtime", "previous_release", "previous_runtime", "change", "promoted_at")

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


def check_pins(pins: object, table: object, root: Path) -> list[str]:
    """Problems of the pins file's variable: its shape and the releases it names
    (that each pinned deployment exists is checked against each host's manifest)."""
    if not isinstance(pins, Mapping):
        return [
            f"{PINS}: must map serving groups to {{deployment: pin}} (got {type(pins).__name__})"
        ]
    problems: list[str] = []
    for group, deployments_ in sorted(pins.items()):
        where = f"{PINS}.{group}"
        if not isinstance(deployments_, Mapping):
            problems.append(f"{where}: must map deployment names to pins")
            continue
        for name, pin in sorted(deployments_.items()):
            at = f"{where}.{name}"
            if not isinstance(pin, Mapping) or "release" not in pin:
                problems.append(f"{at}: must be a mapping with at least 'release'")
                continue
            unknown = sorted(set(pin) - set(_PIN_KEYS))
            if unknown:
                problems.append(f"{at}: unknown keys {unknown}; a pin has {list(_PIN_KEYS)}")
            problems.extend(
                releases.check_model_reference(table, pin["release"], f"{at}.release", root)
            )
            if pin.get("runtime") is not None:
                problems.extend(
                    releases.check_runtime_reference(table, pin["runtime"], f"{at}.runtime", root)
                )
    return problems


def apply_pins(manifest: object, pins: object, groups: Iterable[str]) -> object:
    """The manifest with the pins of the host's groups applied: a pinned
    deployment serves the pinned release (and runtime). A pin naming a
    deployment the manifest does not have is an error, so a renamed
    deployment cannot silently drop a promotion."""
    if not isinstance(pins, Mapping) or not pins or not isinstance(manifest, Mapping):
        return manifest
    items = manifest.get("deployments", [])
    if not isinstance(items, Sequence) or isinstance(items, str):
        return manifest
    wanted: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for group in groups:
        found = pins.get(group)
        if isinstance(found, Mapping):
            for name, pin in found.items():
                if name in wanted and wanted[name][1] != pin:
                    raise InventoryError(
                        f"{PINS}: deployment {name!r} is pinned differently by groups "
                        f"{wanted[name][0]!r} and {group!r} of one host"
                    )
                wanted[name] = (group, pin)
    if not wanted:
        return manifest
    names = {item.get("name") for item in items if isinstance(item, Mapping)}
    missing = sorted(set(wanted) - names)
    if missing:
        raise InventoryError(
            f"{PINS}.{wanted[missing[0]][0]}.{missing[0]}: names no deployment of the serving "
            f"manifest ({sorted(str(name) for name in names)}); remove the pin or fix the manifest"
        )
    pinned = []
    for item in items:
        if isinstance(item, Mapping) and item.get("name") in wanted:
            pin = wanted[item["name"]][1]
            item = {**item, "release": pin["release"]}
            if pin.get("runtime") is not None:
                item["runtime"] = pin["runtime"]
        pinned.append(item)
    return {**manifest, "deployments": pinned}


# Set by playbooks/upgrade.yml on a canary node: the manifest it serves while
# the upgrade runs (the candidate release for the upgraded deployment).
CANDIDATE = "sovereign_serving_candidate"


# Written by playbooks/hardware_refresh.yml (the tuning file, like the pins
# file): per serving node, what its refresh chose.
TUNING = "sovereign_serving_tuning"
TUNED_KEYS = ("max_num_seqs", "max_num_batched_tokens")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_tuning(tuning: object, table: object) -> list[str]:
    """Problems of ``sovereign_serving_tuning``: {host: {hardware_profile,
    deployments: {name: {max_num_seqs, max_num_batched_tokens}}, ...}} (the
    refresh's other keys - its measurements, change id, time - are a record,
    not checked)."""
    if not isinstance(tuning, Mapping):
        return [f"{TUNING}: must map serving nodes to their tuning (got {type(tuning).__name__})"]
    problems: list[str] = []
    for host, record in sorted(tuning.items(), key=lambda item: str(item[0])):
        where = f"{TUNING}.{host}"
        if not isinstance(record, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        profile = record.get("hardware_profile")
        if profile is not None:
            problems.extend(
                releases.check_profile_reference(table, profile, f"{where}.hardware_profile")
            )
        chosen = record.get("deployments", {})
        if not isinstance(chosen, Mapping):
            problems.append(f"{where}.deployments: must map deployment names to settings")
            continue
        for name, values in chosen.items():
            if not isinstance(values, Mapping) or not set(values) <= set(TUNED_KEYS):
                problems.append(f"{where}.deployments.{name}: may set only {list(TUNED_KEYS)}")
                continue
            problems.extend(
                f"{where}.deployments.{name}.{key}: {value!r} must be a whole number >= 1"
                for key, value in values.items()
                if not _whole(value)
            )
    return problems


def apply_tuning(manifest: object, tuning: object, host: str) -> object:
    """The manifest with ``host``'s tuning applied: its refreshed hardware
    profile on every deployment, the chosen settings as overrides."""
    record = tuning.get(host) if isinstance(tuning, Mapping) else None
    if not isinstance(record, Mapping) or not isinstance(manifest, Mapping):
        return manifest
    items = manifest.get("deployments", [])
    if not isinstance(items, Sequence) or isinstance(items, str):
        return manifest
    chosen = record.get("deployments") or {}
    tuned = []
    for item in items:
        if isinstance(item, Mapping):
            item = dict(item)
            if record.get("hardware_profile"):
                item["hardware_profile"] = record["hardware_profile"]
            values = chosen.get(item.get("name")) if isinstance(chosen, Mapping) else None
            if isinstance(values, Mapping):
                item["overrides"] = {**dict(item.get("overrides") or {}), **dict(values)}
        tuned.append(item)
    return {**manifest, "deployments": tuned}


def manifest_of(variables: Mapping[str, Any]) -> object:
    """A host's serving manifest as it is served: a canary node's candidate
    manifest during an upgrade (or a refreshed node's sweep point), else its
    own with the pins of its groups and its tuning applied (hostvars carry
    ``group_names`` and ``inventory_hostname``)."""
    candidate = variables.get(CANDIDATE)
    if candidate:
        return candidate
    manifest = variables.get(VARIABLE, {"deployments": []})
    pinned = apply_pins(manifest, variables.get(PINS, {}), variables.get("group_names", []))
    return apply_tuning(pinned, variables.get(TUNING, {}), str(variables.get("inventory_hostname")))


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
                    # What the instance answers (its readiness probe asks for one).
                    "endpoints": list(deployment.release.endpoints),
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
    weights: Mapping[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """``gateway_models``, derived from every serving host's manifest: per model
    the releases serving it (a version each, weighted by replica count), each
    with every serving host x replica port as a backend in each of its tiers.

    ``weights`` (version name -> percent) fixes the weight of those versions (an
    upgrade's canary, :func:`version_name`); they are listed last, so raising their weight only
    moves users onto them, and the other releases of the model share the
    rest by replica count. A release fixed at 0 keeps its backends (registered,
    no traffic).

    Where a host reports what it serves now (the fact ``sovereign_serving_active``,
    read by the data plane and governance playbooks), a deployment counts under
    that release, not the manifest's: mid-rollout, a node not yet activated is
    audited with the digest it really serves; a node serving no release of the
    table gets no traffic."""
    base = Path(root)
    # (public name, release, runtime) -> replicas, and -> tier -> backends
    replicas: dict[tuple[str, str, str], int] = {}
    backends: dict[tuple[str, str, str], dict[str, list[str]]] = {}
    found: dict[str, ModelRelease] = {}
    for host in hosts:
        variables = hostvars[host]
        manifest = manifest_of(variables)
        active = variables.get(ACTIVE)
        for deployment in deployments(manifest, table, base):
            release = deployment.release
            if isinstance(active, Mapping) and deployment.name in active:
                if not active[deployment.name]:
                    continue
                release = releases.model_release(table, active[deployment.name])
            key = (release.served_model_name, release.name, deployment.runtime.name)
            found[release.name] = release
            replicas[key] = replicas.get(key, 0) + deployment.replicas
            tiers = backends.setdefault(key, {})
            for tier in deployment.tiers:
                tiers.setdefault(tier, []).extend(urls(deployment, host, scheme))
    fixed = dict(weights or {})
    models: dict[str, dict[str, Any]] = {}
    for public in sorted({key[0] for key in replicas}):
        keys = sorted(key for key in replicas if key[0] == public)
        names = {key: version_name(key[1], key[2], keys) for key in keys}
        pinned = [key for key in keys if names[key] in fixed]
        others = [key for key in keys if names[key] not in fixed]
        rest = 100 - sum(fixed[names[key]] for key in pinned)
        if rest < 0 or any(not 0 <= fixed[names[key]] <= 100 for key in pinned):
            raise InventoryError(f"canary weights of {public!r} must be 0..100 and sum to <= 100")
        if others:
            shares = [share * rest // 100 for share in _weights([replicas[k] for k in others])]
            shares[0] += rest - sum(shares)
        elif rest:
            raise InventoryError(
                f"model {public!r}: only canary versions serve it, so their weights must sum "
                f"to 100 (got {100 - rest})"
            )
        else:
            shares = []
        ordered = others + pinned
        weights_ = shares + [fixed[names[key]] for key in pinned]
        models[public] = {
            "endpoints": list(found[ordered[0][1]].endpoints),
            "versions": [
                {
                    "name": names[key],
                    "weight": weight,
                    "digest": found[key[1]].digest,
                    "backends": backends[key],
                }
                for key, weight in zip(ordered, weights_, strict=True)
            ],
        }
    return models


def version_name(release: str, runtime: str, keys: Iterable[tuple[str, str, str]]) -> str:
    """The gateway's version name of a release served on a runtime: the release's
    name, or ``release@runtime`` while the release is served on two runtimes
    (a runtime upgrade's canary), so the audit and the weights tell them apart."""
    runtimes = {key[2] for key in keys if key[1] == release}
    return release if len(runtimes) <= 1 else f"{release}@{runtime}"


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
        found = deployments(manifest_of(variables), table, Path(root))
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
