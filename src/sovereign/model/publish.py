"""Publish: check or make the signature, then push the model as an OCI artifact."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sovereign.model import keys
from sovereign.model.artifact import (
    EMPTY_CONFIG,
    SIGNATURE_MEDIA_TYPE,
    Layer,
    build_manifest,
)
from sovereign.model.digest import SIGNATURE_FILE, DigestManifest, FileDigest, list_files
from sovereign.model.errors import (
    BadReferenceError,
    ContentsDifferError,
    InvalidSignatureError,
    UsageError,
)
from sovereign.model.reference import Reference
from sovereign.model.registry import RegistryClient
from sovereign.model.signature import sign_directory, signed_files, verify_directory


@dataclass(frozen=True)
class PublishResult:
    """Where the model went and what it cost."""

    reference: Reference
    digest: str
    signed_now: bool


def _signed_contents(
    model_dir: Path, private_key: Path, password: str | None
) -> tuple[dict[str, str], bool]:
    """``path -> sha256`` pinned by the signature, signing first if there is none."""
    private = keys.load_private_key(private_key, password)
    if not (model_dir / SIGNATURE_FILE).exists():
        sign_directory(model_dir, private_key, password)
        return signed_files(model_dir / SIGNATURE_FILE), True
    with tempfile.TemporaryDirectory(prefix="sovereign-publish-") as scratch:
        public = Path(scratch) / "public.pem"
        public.write_bytes(keys.public_pem(private))
        hint = f"; remove {model_dir / SIGNATURE_FILE} to sign the directory again"
        try:
            return verify_directory(model_dir, public).files, False
        except ContentsDifferError as exc:
            raise ContentsDifferError(f"{exc}{hint}", exc.details) from exc
        except InvalidSignatureError as exc:
            raise InvalidSignatureError(
                f"{model_dir / SIGNATURE_FILE} was not made with {private_key}{hint}"
            ) from exc


def publish(
    model_dir: Path,
    target: Reference,
    client: RegistryClient,
    *,
    private_key: Path,
    password: str | None = None,
    name: str | None = None,
    revision: str | None = None,
    license: str | None = None,
) -> PublishResult:
    """Sign (or check the signature of) ``model_dir`` and push it to ``target``."""
    if target.digest:
        raise BadReferenceError(
            f"{target}: publish to REGISTRY/REPOSITORY[:TAG]; the digest is computed"
        )
    listed = list_files(model_dir)
    if not listed:
        raise UsageError(f"{model_dir} holds no files to publish")
    signed, signed_now = _signed_contents(model_dir, private_key, password)
    sizes = {relative: size for relative, _, size in list_files(model_dir)}
    if set(sizes) != set(signed):
        raise ContentsDifferError(f"{model_dir} changed while it was being signed")
    files = DigestManifest(
        tuple(FileDigest(path, sizes[path], signed[path]) for path in sorted(signed))
    )
    repository = target.repository
    client.push_blob_bytes(repository, EMPTY_CONFIG)
    for item in files.files:
        client.push_blob_file(repository, model_dir / item.path, f"sha256:{item.sha256}", item.size)
    signature_bytes = (model_dir / SIGNATURE_FILE).read_bytes()
    signature = Layer(
        SIGNATURE_FILE,
        client.push_blob_bytes(repository, signature_bytes),
        len(signature_bytes),
        SIGNATURE_MEDIA_TYPE,
    )
    body = build_manifest(files, signature, name=name, revision=revision, license=license)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    client.put_manifest(repository, target.tag or digest, body)
    return PublishResult(target.with_digest(digest), digest, signed_now)
