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
    UnsignedError,
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


def _check_signature(model_dir: Path, public_key: Path, hint: str) -> dict[str, str]:
    """``path -> sha256`` of the files the signature pins, once it verifies."""
    try:
        return verify_directory(model_dir, public_key).files
    except ContentsDifferError as exc:
        raise ContentsDifferError(f"{exc}{hint}", exc.details) from exc


def _signed_contents(
    model_dir: Path, private_key: Path | None, public_key: Path | None, password: str | None
) -> tuple[dict[str, str], bool]:
    """``path -> sha256`` pinned by the signature, signing first if there is none.

    With ``public_key`` the directory must already carry a signature by the
    matching private key (a custodian signed it elsewhere; the air-gap path):
    nothing is signed here.
    """
    if public_key is not None:
        if not (model_dir / SIGNATURE_FILE).exists():
            raise UnsignedError(
                f"{model_dir} has no {SIGNATURE_FILE}: sign it first "
                "(sovereign model sign DIR --key PRIVATE.pem), or publish with --key"
            )
        return _check_signature(model_dir, public_key, ""), False
    if private_key is None:
        raise UsageError("publish needs --key PRIVATE.pem or --public-key PUBLIC.pem")
    private = keys.load_private_key(private_key, password)
    if not (model_dir / SIGNATURE_FILE).exists():
        sign_directory(model_dir, private_key, password)
        return signed_files(model_dir / SIGNATURE_FILE), True
    with tempfile.TemporaryDirectory(prefix="sovereign-publish-") as scratch:
        public = Path(scratch) / "public.pem"
        public.write_bytes(keys.public_pem(private))
        hint = f"; remove {model_dir / SIGNATURE_FILE} to sign the directory again"
        try:
            return _check_signature(model_dir, public, hint), False
        except InvalidSignatureError as exc:
            raise InvalidSignatureError(
                f"{model_dir / SIGNATURE_FILE} was not made with {private_key}{hint}"
            ) from exc


def publish(
    model_dir: Path,
    target: Reference,
    client: RegistryClient | None,
    *,
    private_key: Path | None = None,
    public_key: Path | None = None,
    password: str | None = None,
    name: str | None = None,
    revision: str | None = None,
    license: str | None = None,
) -> PublishResult:
    """Sign (or check the signature of) ``model_dir`` and push it to ``target``.

    ``private_key`` signs a directory that carries no signature yet;
    ``public_key`` instead requires one made by its private key. With no
    ``client`` nothing is pushed: the result holds the digest the artifact
    has, which is the same for every push of the same signed directory.
    """
    if target.digest:
        raise BadReferenceError(
            f"{target}: publish to REGISTRY/REPOSITORY[:TAG]; the digest is computed"
        )
    if (private_key is None) == (public_key is None):
        raise UsageError(
            "publish needs exactly one of --key PRIVATE.pem or --public-key PUBLIC.pem"
        )
    listed = list_files(model_dir)
    if not listed:
        raise UsageError(f"{model_dir} holds no files to publish")
    signed, signed_now = _signed_contents(model_dir, private_key, public_key, password)
    sizes = {relative: size for relative, _, size in list_files(model_dir)}
    if set(sizes) != set(signed):
        raise ContentsDifferError(f"{model_dir} changed while it was being signed")
    files = DigestManifest(
        tuple(FileDigest(path, sizes[path], signed[path]) for path in sorted(signed))
    )
    signature_bytes = (model_dir / SIGNATURE_FILE).read_bytes()
    signature = Layer(
        SIGNATURE_FILE,
        "sha256:" + hashlib.sha256(signature_bytes).hexdigest(),
        len(signature_bytes),
        SIGNATURE_MEDIA_TYPE,
    )
    body = build_manifest(files, signature, name=name, revision=revision, license=license)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if client is None:
        return PublishResult(target.with_digest(digest), digest, signed_now)
    repository = target.repository
    client.push_blob_bytes(repository, EMPTY_CONFIG)
    for item in files.files:
        client.push_blob_file(repository, model_dir / item.path, f"sha256:{item.sha256}", item.size)
    client.push_blob_bytes(repository, signature_bytes)
    client.put_manifest(repository, target.tag or digest, body)
    return PublishResult(target.with_digest(digest), digest, signed_now)
