"""Pull a model by digest: resumable, verified blob by blob, signature checked, then moved.

Work happens in ``DEST.partial/`` beside DEST (same filesystem): blobs download
to ``blobs/<hex>.part`` and are renamed to ``blobs/<hex>`` once their SHA-256
matches; the model tree is then assembled from hard links in ``tree/``, its
signature verified, and ``tree/`` renamed to DEST in one ``rename(2)``. DEST
therefore either does not exist or holds a fully verified model. An
interrupted pull leaves ``DEST.partial/``; running the same command again
resumes from the bytes already there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sovereign.model import keys
from sovereign.model.artifact import FILES, ModelArtifact, parse_manifest
from sovereign.model.digest import SIGNATURE_FILE, compare
from sovereign.model.errors import ModelError, PullError
from sovereign.model.reference import Reference, require_digest
from sovereign.model.registry import RegistryClient
from sovereign.model.signature import verify_directory

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class PullResult:
    """Where the verified model is, and whether its signature was checked."""

    path: Path
    digest: str
    signature_checked: bool


def staging_dir(dest: Path) -> Path:
    """The working directory of a pull into ``dest``."""
    return dest.with_name(dest.name + PARTIAL_SUFFIX)


def _check_file_annotation(artifact: ModelArtifact, where: str) -> None:
    raw = artifact.annotations.get(FILES)
    if raw is None:
        return
    try:
        annotated = {str(k): str(v) for k, v in json.loads(raw).items()}
    except (ValueError, AttributeError) as exc:
        raise PullError(f"{where}: annotation {FILES} is not a JSON object") from exc
    layers = {layer.path: layer.digest for layer in artifact.layers if layer.path != SIGNATURE_FILE}
    compare(annotated, layers).raise_if_any(f"{where}: layers disagree with the {FILES} annotation")


def _place(blob: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(blob, target)


def pull(
    reference: Reference,
    dest: Path,
    client: RegistryClient,
    *,
    public_key: Path | None,
) -> PullResult:
    """Pull ``reference`` (digest required) into the new directory ``dest``.

    ``public_key=None`` skips the signature check (blob digests are still
    verified); the CLI only allows that when asked explicitly.
    """
    digest = require_digest(reference)
    dest = dest.absolute()
    if os.path.lexists(dest):
        raise PullError(
            f"{dest} already exists; pull into a new directory (one per digest) or remove it first"
        )
    if public_key is not None:
        keys.load_public_key(public_key)
    staging = staging_dir(dest)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        lock = (staging / "lock").open("w")
    except OSError as exc:
        raise PullError(f"cannot create {staging}: {exc.strerror}") from exc
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PullError(f"another pull into {dest} is running ({staging} is locked)") from exc
        try:
            _pull_locked(reference, digest, dest, staging, client, public_key)
        except OSError as exc:
            raise PullError(f"pull into {dest} failed: {exc}") from exc
    shutil.rmtree(staging, ignore_errors=True)
    return PullResult(dest, digest, public_key is not None)


def _pull_locked(
    reference: Reference,
    digest: str,
    dest: Path,
    staging: Path,
    client: RegistryClient,
    public_key: Path | None,
) -> None:
    where = str(reference)
    artifact = parse_manifest(client.get_manifest(reference.repository, digest), where)
    _check_file_annotation(artifact, where)
    blobs = staging / "blobs"
    blobs.mkdir(exist_ok=True)
    done: set[str] = set()
    for layer in artifact.layers:
        hexdigest = layer.digest.removeprefix("sha256:")
        final = blobs / hexdigest
        if layer.digest in done or final.exists():
            done.add(layer.digest)
            continue
        part = blobs / f"{hexdigest}.part"
        client.fetch_blob(reference.repository, layer.digest, layer.size, part)
        os.replace(part, final)
        done.add(layer.digest)
    tree = staging / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir()
    for layer in artifact.layers:
        _place(blobs / layer.digest.removeprefix("sha256:"), tree / layer.path)
    if public_key is not None:
        try:
            verify_directory(tree, public_key)
        except ModelError:
            # Blobs match their digests and stay for the next attempt; the tree goes.
            shutil.rmtree(tree, ignore_errors=True)
            raise
    try:
        os.rename(tree, dest)
    except OSError as exc:
        raise PullError(f"cannot move the verified model into {dest}: {exc.strerror}") from exc
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
