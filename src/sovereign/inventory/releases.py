"""The release table: every model, runtime and hardware profile, by name.

The distribution keeps one table, ``sovereign_releases``, in the top-level
``group_vars/all/releases.yml`` (loaded by every entry playbook):

- ``models``: model releases by name. A release pins one signed artifact in
  the registry (``repository`` + ``digest``), the key its signers use
  (``signing_key``, a PEM file on the controller), its ``revision`` and
  ``license``, and its lineage (``base_model``, ``training_data``,
  ``legal_basis``) for the auditor. ``model`` names the model the release is
  a version of: two releases of one model share its cache directory and the
  name clients send (``served_model_name``).
- ``runtimes``: vLLM releases: the version, the CUDA version ("" for the
  CPU build), the hash-pinned wheel table (``requirements``) and the
  wheelhouse directory built from it.
- ``hardware_profiles``: vLLM's engine flags per hardware class.
- ``opensearch``: OpenSearch releases for the retrieval backend: the
  version, the tarball and the k-NN and security plugin zips, each a file
  name (on the site's mirror or in the offline bundle) with its SHA-256.

The serving manifests, the model catalog and the gateway refer to releases
by name; nothing else types a digest. :func:`check_table` and
:func:`check_model_reference` are run by the validation play.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovereign.inventory.errors import InventoryError

VARIABLE = "sovereign_releases"

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){1,2}$")
_ENDPOINTS = ("chat", "completions", "embeddings")

_MODEL_REQUIRED = ("model", "repository", "digest", "signing_key", "revision", "license", "lineage")
_MODEL_OPTIONAL = ("served_model_name", "endpoints")
_LINEAGE = ("base_model", "training_data", "legal_basis")
_RUNTIME_REQUIRED = ("vllm_version", "cuda_version", "requirements", "wheelhouse")
_SECTIONS = ("models", "runtimes", "hardware_profiles", "opensearch")
_OPENSEARCH_KEYS = ("version", "tarball", "plugins")
_ARTIFACT_KEYS = ("file", "sha256")
# The plugins the opensearch role configures: a release must pin both.
OPENSEARCH_PLUGINS = ("opensearch-knn", "opensearch-security")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class ModelRelease:
    """One signed model artifact, pinned."""

    name: str
    model: str
    repository: str
    digest: str
    signing_key: str
    revision: str
    license: str
    lineage: Mapping[str, str]
    served_model_name: str
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class RuntimeRelease:
    """One vLLM build and its hash-pinned wheel table."""

    name: str
    vllm_version: str
    cuda_version: str
    requirements: str
    wheelhouse: str


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_keys(
    where: str,
    item: Mapping[str, Any],
    what: str,
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> list[str]:
    """Unknown keys of ``item`` and missing required ones, each named."""
    problems: list[str] = []
    unknown = sorted(set(item) - set(required) - set(optional))
    if unknown:
        problems.append(
            f"{where}: unknown keys {unknown}; {what} has {list(required) + list(optional)}"
        )
    problems.extend(f"{where}.{key}: is required" for key in required if key not in item)
    return problems


def _check_model(where: str, item: Mapping[str, Any]) -> list[str]:
    problems = _check_keys(where, item, "a model release", _MODEL_REQUIRED, _MODEL_OPTIONAL)
    model = item.get("model")
    if "model" in item and not (isinstance(model, str) and NAME.match(model)):
        problems.append(f"{where}.model: {model!r} must be letters, digits, '.', '_' and '-'")
    repository = item.get("repository")
    if "repository" in item and not (isinstance(repository, str) and _REPOSITORY.match(repository)):
        problems.append(
            f"{where}.repository: {repository!r} must be the path in the registry "
            "(lowercase, no registry address, tag or digest)"
        )
    for key in ("revision", "license", "signing_key"):
        if key in item and not _text(item[key]):
            problems.append(f"{where}.{key}: must be a non-empty string")
    lineage = item.get("lineage")
    if "lineage" in item:
        if not isinstance(lineage, Mapping):
            problems.append(f"{where}.lineage: must be a mapping with {list(_LINEAGE)}")
        else:
            problems.extend(
                f"{where}.lineage.{key}: is required (the auditor's record of where "
                "the weights come from)"
                for key in _LINEAGE
                if not _text(lineage.get(key))
            )
            extra = sorted(set(lineage) - set(_LINEAGE))
            if extra:
                problems.append(f"{where}.lineage: unknown keys {extra}; it has {list(_LINEAGE)}")
    served = item.get("served_model_name", model)
    if not _text(served):
        problems.append(f"{where}.served_model_name: must be a non-empty string")
    endpoints = item.get("endpoints", ["chat", "completions"])
    if not (
        isinstance(endpoints, list)
        and endpoints
        and all(endpoint in _ENDPOINTS for endpoint in endpoints)
    ):
        problems.append(f"{where}.endpoints: {endpoints!r} must be a list from {list(_ENDPOINTS)}")
    return problems


def _check_runtime(where: str, item: Mapping[str, Any]) -> list[str]:
    problems = _check_keys(where, item, "a runtime release", _RUNTIME_REQUIRED)
    version = item.get("vllm_version")
    if "vllm_version" in item and not (isinstance(version, str) and _VERSION.match(version)):
        problems.append(f"{where}.vllm_version: {version!r} must be a quoted version like '0.32.0'")
    cuda = item.get("cuda_version")
    if "cuda_version" in item and not (
        isinstance(cuda, str) and (cuda == "" or _VERSION.match(cuda))
    ):
        problems.append(
            f"{where}.cuda_version: {cuda!r} must be a quoted version like '12.8', "
            "or '' for a CPU build"
        )
    for key in ("requirements", "wheelhouse"):
        if key in item and not _text(item[key]):
            problems.append(f"{where}.{key}: must be a non-empty string")
    wheelhouse = item.get("wheelhouse")
    if _text(wheelhouse) and not NAME.match(str(wheelhouse)):
        problems.append(
            f"{where}.wheelhouse: {wheelhouse!r} must be a directory name under the "
            "wheelhouse root (letters, digits, '.', '_' and '-')"
        )
    return problems


def _check_artifact(where: str, item: object) -> list[str]:
    """A pinned file: its name on the mirror or in the bundle, and its SHA-256."""
    if not isinstance(item, Mapping):
        return [f"{where}: must be a mapping with {list(_ARTIFACT_KEYS)}"]
    problems = _check_keys(where, item, "an artifact", _ARTIFACT_KEYS)
    name = item.get("file")
    if "file" in item and not (isinstance(name, str) and _FILE.match(name)):
        problems.append(
            f"{where}.file: {name!r} must be a file name (no directory): the mirror URL "
            "or the bundle directory is the site's"
        )
    digest = item.get("sha256")
    if "sha256" in item and not (isinstance(digest, str) and SHA256.match(digest)):
        problems.append(
            f"{where}.sha256: {digest!r} must be 64 lowercase hex digits (sha256sum of the file)"
        )
    return problems


def _check_opensearch(where: str, item: Mapping[str, Any]) -> list[str]:
    problems = _check_keys(where, item, "an OpenSearch release", _OPENSEARCH_KEYS)
    version = item.get("version")
    if "version" in item and not (isinstance(version, str) and _VERSION.match(version)):
        problems.append(f"{where}.version: {version!r} must be a quoted version like '2.19.2'")
    if "tarball" in item:
        problems.extend(_check_artifact(f"{where}.tarball", item["tarball"]))
    plugins = item.get("plugins")
    if "plugins" in item:
        if not isinstance(plugins, Mapping):
            problems.append(f"{where}.plugins: must be a mapping of plugin name to artifact")
        else:
            missing = [name for name in OPENSEARCH_PLUGINS if name not in plugins]
            if missing:
                problems.append(
                    f"{where}.plugins: {missing} missing; the opensearch role needs "
                    f"{list(OPENSEARCH_PLUGINS)}"
                )
            for name, artifact in plugins.items():
                problems.extend(_check_artifact(f"{where}.plugins.{name}", artifact))
    if not problems:
        files = [item["tarball"]["file"]] + [a["file"] for a in item["plugins"].values()]
        if len(set(files)) != len(files):
            problems.append(f"{where}: two artifacts name the same file {sorted(files)}")
    return problems


def check_opensearch_reference(table: object, name: object, where: str) -> list[str]:
    """Problems of a reference to an OpenSearch release: it exists."""
    return _unknown(table, "opensearch", "an OpenSearch release", name, where)


def check_table(table: object) -> list[str]:
    """Every structural problem of the release table, each naming its key."""
    if not isinstance(table, Mapping):
        return [
            f"{VARIABLE}: is not loaded or not a mapping; the release table lives in "
            "the repository's group_vars/all/releases.yml: run the playbooks of the "
            "repository (site.yml or playbooks/*.yml), which load it"
        ]
    problems: list[str] = []
    unknown = sorted(set(table) - set(_SECTIONS))
    if unknown:
        problems.append(f"{VARIABLE}: unknown keys {unknown}; it has {list(_SECTIONS)}")
    for section in _SECTIONS:
        entries = table.get(section, {})
        if not isinstance(entries, Mapping):
            problems.append(f"{VARIABLE}.{section}: must be a mapping of releases by name")
            continue
        for name, item in entries.items():
            where = f"{VARIABLE}.{section}.{name}"
            if not (isinstance(name, str) and NAME.match(name)):
                problems.append(f"{where}: a release name is letters, digits, '.', '_' and '-'")
                continue
            if not isinstance(item, Mapping):
                problems.append(f"{where}: must be a mapping")
                continue
            if section == "models":
                problems.extend(_check_model(where, item))
            elif section == "runtimes":
                problems.extend(_check_runtime(where, item))
            elif section == "opensearch":
                problems.extend(_check_opensearch(where, item))
    models = table.get("models", {})
    if isinstance(models, Mapping) and not problems:
        seen: dict[tuple[str, str], str] = {}
        for name, item in models.items():
            if not (isinstance(item["digest"], str) and DIGEST.match(item["digest"])):
                continue
            key = (item["model"], item["digest"])
            if key in seen:
                problems.append(
                    f"{VARIABLE}.models: {seen[key]} and {name} pin the same digest of "
                    f"{item['model']!r}; one artifact is one release"
                )
            seen.setdefault(key, name)
    return problems


def resolve_path(path: str, root: Path) -> Path:
    """A controller path of the table: absolute, or relative to the repository root."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def _public_key(release: ModelRelease, root: Path) -> str:
    path = resolve_path(release.signing_key, root)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(
            f"{VARIABLE}.models.{release.name}.signing_key: cannot read {path} on the "
            f"controller ({exc.__class__.__name__})"
        ) from exc
    if "-----BEGIN PUBLIC KEY-----" not in text:
        raise InventoryError(
            f"{VARIABLE}.models.{release.name}.signing_key: {path} holds no PEM public key "
            "(-----BEGIN PUBLIC KEY-----)"
        )
    return text


def _unknown(table: object, section: str, kind: str, name: object, where: str) -> list[str]:
    """The problem of a reference to ``name`` that ``section`` of the table lacks."""
    entries = table.get(section, {}) if isinstance(table, Mapping) else {}
    if isinstance(entries, Mapping) and name in entries:
        return []
    known = sorted(entries) if isinstance(entries, Mapping) else []
    return [f"{where}: {name!r} is not {kind} of {VARIABLE} (known: {known})"]


def check_model_reference(table: object, name: object, where: str, root: Path) -> list[str]:
    """Problems of a reference to a model release: it exists, pins a digest, and
    its signing key is a PEM public key on the controller."""
    missing = _unknown(table, "models", "a model release", name, where)
    if missing:
        return missing
    assert isinstance(table, Mapping)
    item = table["models"][name]
    problems: list[str] = []
    digest = item.get("digest")
    if not (isinstance(digest, str) and DIGEST.match(digest)):
        problems.append(
            f"{VARIABLE}.models.{name}.digest: {digest!r} is not a manifest digest "
            "(sha256: and 64 lowercase hex digits; pin what `sovereign model publish` "
            "printed, never a tag)"
        )
    try:
        _public_key(model_release(table, str(name)), root)
    except InventoryError as exc:
        problems.append(str(exc))
    return problems


def check_runtime_reference(table: object, name: object, where: str, root: Path) -> list[str]:
    """Problems of a reference to a runtime release: it exists and its wheel
    table is a file on the controller."""
    missing = _unknown(table, "runtimes", "a runtime release", name, where)
    if missing:
        return missing
    assert isinstance(table, Mapping)
    requirements = table["runtimes"][name].get("requirements")
    if isinstance(requirements, str):
        path = resolve_path(requirements, root)
        if not path.is_file():
            return [
                f"{VARIABLE}.runtimes.{name}.requirements: {path} does not exist on the "
                "controller (the hashed wheel table of this vLLM build)"
            ]
    return []


def check_profile_reference(table: object, name: object, where: str) -> list[str]:
    return _unknown(table, "hardware_profiles", "a hardware profile", name, where)


def model_release(table: object, name: str) -> ModelRelease:
    """The model release ``name`` of a checked table."""
    if not isinstance(table, Mapping) or name not in table.get("models", {}):
        raise InventoryError(f"{name!r} is not a model release of {VARIABLE}")
    item = table["models"][name]
    return ModelRelease(
        name=name,
        model=item["model"],
        repository=item["repository"],
        digest=item["digest"],
        signing_key=item["signing_key"],
        revision=str(item["revision"]),
        license=item["license"],
        lineage=dict(item["lineage"]),
        served_model_name=item.get("served_model_name", item["model"]),
        endpoints=tuple(item.get("endpoints", ("chat", "completions"))),
    )


def runtime_release(table: object, name: str) -> RuntimeRelease:
    """The runtime release ``name`` of a checked table."""
    if not isinstance(table, Mapping) or name not in table.get("runtimes", {}):
        raise InventoryError(f"{name!r} is not a runtime release of {VARIABLE}")
    item = table["runtimes"][name]
    return RuntimeRelease(
        name=name,
        vllm_version=item["vllm_version"],
        cuda_version=item["cuda_version"],
        requirements=item["requirements"],
        wheelhouse=item["wheelhouse"],
    )


def public_key(table: object, name: str, root: Path) -> str:
    """The PEM public key the signers of model release ``name`` use."""
    return _public_key(model_release(table, name), root)


def catalog(entries: object, table: object, root: Path) -> list[dict[str, str]]:
    """The model catalog's publish list: each ``{release, path}`` entry with the
    release's repository, digest, key file, revision and licence."""
    if not isinstance(entries, list):
        raise InventoryError("sovereign_model_catalog: must be a list of {release, path}")
    published: list[dict[str, str]] = []
    for index, entry in enumerate(entries):
        where = f"sovereign_model_catalog[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"release", "path"}:
            raise InventoryError(
                f"{where}: an entry is {{release, path}}: the release's name in "
                f"{VARIABLE}.models and its signed directory on the controller"
            )
        problems = check_model_reference(table, entry["release"], f"{where}.release", root)
        if problems:
            raise InventoryError("; ".join(problems))
        release = model_release(table, entry["release"])
        published.append(
            {
                "name": release.model,
                "release": release.name,
                "path": str(entry["path"]),
                "repository": release.repository,
                "digest": release.digest,
                "public_key": str(resolve_path(release.signing_key, root)),
                "revision": release.revision,
                "license": release.license,
            }
        )
    return published


def check_catalog(entries: object, table: object, root: Path) -> list[str]:
    """Problems of the catalog: references, and signed directories that exist."""
    try:
        published = catalog(entries, table, root)
    except InventoryError as exc:
        return [str(exc)]
    return [
        f"sovereign_model_catalog[{index}].path: {entry['path']} is not a directory on "
        "the controller (the signed model to publish)"
        for index, entry in enumerate(published)
        if not Path(entry["path"]).is_dir()
    ]
