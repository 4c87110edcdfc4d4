"""The OCI artifact a model becomes: one layer per file, oras-compatible.

Each file is a layer whose ``org.opencontainers.image.title`` annotation is its
relative path (what ``oras pull`` writes it as); the signature is one more
layer titled ``model.sig``. The config is the OCI empty descriptor, as oras
uses for artifacts, and ``artifactType`` says what the artifact is. Manifest
annotations carry the name, revision, licence and the per-file digests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sovereign.model.digest import SIGNATURE_FILE, DigestManifest
from sovereign.model.errors import RegistryError, UnsignedError
from sovereign.model.reference import DIGEST
from sovereign.model.registry import OCI_MANIFEST

ARTIFACT_TYPE = "application/vnd.sovereign.model.v1"
FILE_MEDIA_TYPE = "application/vnd.sovereign.model.file.v1"
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"
REVISION = "org.opencontainers.image.revision"
LICENSES = "org.opencontainers.image.licenses"
FILES = "dev.sovereign.model.files"


@dataclass(frozen=True)
class Layer:
    """One file of the artifact: its path in the model directory, digest and size."""

    path: str
    digest: str
    size: int
    media_type: str = FILE_MEDIA_TYPE

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "annotations": {TITLE: self.path},
        }


@dataclass(frozen=True)
class ModelArtifact:
    """A parsed model manifest."""

    layers: tuple[Layer, ...]
    annotations: dict[str, str]

    @property
    def signature(self) -> Layer | None:
        return next((layer for layer in self.layers if layer.path == SIGNATURE_FILE), None)


def check_title(title: str) -> str:
    """Refuse a layer path that could land outside the model directory."""
    parts = PurePosixPath(title).parts
    if (
        not title
        or title.startswith("/")
        or "\\" in title
        or "\x00" in title
        or any(part in ("", ".", "..") for part in parts)
        or title != "/".join(parts)
    ):
        raise RegistryError(f"artifact names an unsafe file path {title!r}; refusing it")
    return title


def build_manifest(
    files: DigestManifest,
    signature: Layer,
    *,
    name: str | None = None,
    revision: str | None = None,
    license: str | None = None,
) -> bytes:
    """Serialise the manifest (deterministic bytes: same inputs, same digest)."""
    layers = [Layer(item.path, f"sha256:{item.sha256}", item.size) for item in files.files]
    annotations = {
        FILES: json.dumps(
            {item.path: f"sha256:{item.sha256}" for item in files.files},
            sort_keys=True,
            separators=(",", ":"),
        )
    }
    for key, value in ((TITLE, name), (REVISION, revision), (LICENSES, license)):
        if value:
            annotations[key] = value
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
            "digest": "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest(),
            "size": len(EMPTY_CONFIG),
            "data": "e30=",
        },
        "layers": [layer.descriptor() for layer in [*layers, signature]],
        "annotations": annotations,
    }
    return json.dumps(document, indent=2, sort_keys=True).encode()


def parse_manifest(document: dict[str, Any], where: str) -> ModelArtifact:
    """Validate a fetched manifest as a Sovereign model artifact."""
    if (
        document.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST
        or document.get("schemaVersion") != 2
    ):
        raise RegistryError(f"{where} is not an OCI image manifest")
    kind = document.get("artifactType")
    if kind != ARTIFACT_TYPE:
        raise RegistryError(
            f"{where} is not a Sovereign model (artifactType {kind!r}, expected {ARTIFACT_TYPE})"
        )
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise RegistryError(f"{where} has no layers")
    layers: list[Layer] = []
    seen: set[str] = set()
    for raw in raw_layers:
        try:
            title = raw["annotations"][TITLE]
            digest, size, media_type = raw["digest"], raw["size"], raw["mediaType"]
        except (KeyError, TypeError) as exc:
            raise RegistryError(f"{where}: a layer lacks digest, size or title") from exc
        if not isinstance(title, str) or not isinstance(digest, str) or not DIGEST.match(digest):
            raise RegistryError(f"{where}: layer {raw!r} has no usable title or sha256 digest")
        if not isinstance(size, int) or size < 0:
            raise RegistryError(f"{where}: layer {title!r} has a bad size")
        check_title(title)
        if title in seen:
            raise RegistryError(f"{where}: two layers are titled {title!r}")
        seen.add(title)
        layers.append(Layer(title, digest, size, str(media_type)))
    annotations = document.get("annotations") or {}
    artifact = ModelArtifact(tuple(layers), {str(k): str(v) for k, v in annotations.items()})
    if artifact.signature is None:
        raise UnsignedError(f"{where} carries no {SIGNATURE_FILE} layer: it is unsigned")
    return artifact
