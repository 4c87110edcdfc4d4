"""Sign and verify a model directory with OpenSSF model-signing (key-based, offline).

The signature is written into the directory as ``model.sig`` so that it travels
with the artifact. Every other file is covered, hidden files included
(model-signing would skip ``.git*`` files by default; a file a loader can read
is a file we pin). Only sha256 file-level signatures with ``model.sig`` as the
sole ignored path are accepted: anything else was not made by this tool and
could leave files unpinned.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from model_signing import hashing, signing, verifying

from sovereign.model import keys
from sovereign.model.digest import SIGNATURE_FILE, compare, digest_directory, list_files
from sovereign.model.errors import (
    InvalidSignatureError,
    LayoutError,
    SigningError,
    UnsignedError,
    UsageError,
)

_MISMATCH_PREFIX = "Signature mismatch"


@dataclass(frozen=True)
class SignedContents:
    """What a verified signature pins: ``path -> sha256`` (hex) of every content file."""

    files: dict[str, str]


def _hashing_config() -> hashing.Config:
    # model-signing's methods lack return annotations in places, hence the ignores.
    config = hashing.Config()  # type: ignore[no-untyped-call]
    return config.set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False)


def sign_directory(model_dir: Path, private_key: Path, password: str | None = None) -> Path:
    """Sign ``model_dir`` and write ``model_dir/model.sig``; returns its path."""
    if not list_files(model_dir):
        raise UsageError(f"{model_dir} holds no files to sign")
    keys.load_private_key(private_key, password)  # clear errors before model-signing runs
    target = model_dir / SIGNATURE_FILE
    config = signing.Config()  # type: ignore[no-untyped-call]
    config.set_hashing_config(_hashing_config()).use_elliptic_key_signer(
        private_key=private_key, password=password
    )
    with tempfile.TemporaryDirectory(prefix="sovereign-sign-") as scratch:
        written = Path(scratch) / SIGNATURE_FILE
        try:
            config.sign(model_dir, written)
        except ValueError as exc:  # model-signing reports layout problems as ValueError
            raise LayoutError(f"cannot sign {model_dir}: {exc}") from exc
        except OSError as exc:
            raise SigningError(f"cannot sign {model_dir}: {exc}") from exc
        data = written.read_bytes()
    staged = model_dir / f".{SIGNATURE_FILE}.tmp"
    try:
        staged.write_bytes(data)
        os.replace(staged, target)
    except OSError as exc:
        raise SigningError(f"cannot write {target}: {exc.strerror}") from exc
    return target


def read_statement(signature: Path) -> dict[str, Any]:
    """The in-toto statement inside a signature bundle (NOT verified by this call)."""
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True)
        statement = json.loads(payload)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidSignatureError(f"{signature} is not a model-signing signature bundle") from exc
    if not isinstance(statement, dict):
        raise InvalidSignatureError(f"{signature} holds no in-toto statement")
    return statement


def signed_files(signature: Path) -> dict[str, str]:
    """``path -> sha256`` listed in a signature, WITHOUT checking it cryptographically.

    For a signature this process has just written; anything else goes through
    :func:`verify_directory`.
    """
    return _signed_files(read_statement(signature), signature)


def _signed_files(statement: dict[str, Any], signature: Path) -> dict[str, str]:
    try:
        predicate = statement["predicate"]
        serialization = predicate["serialization"]
        resources = predicate["resources"]
        method, hash_type = serialization["method"], serialization["hash_type"]
        ignored = set(serialization.get("ignore_paths", []))
        files = {str(item["name"]): str(item["digest"]) for item in resources}
        algorithms = {item["algorithm"] for item in resources}
    except (KeyError, TypeError) as exc:
        raise InvalidSignatureError(f"{signature} holds an unexpected statement") from exc
    if method != "files" or hash_type != "sha256" or algorithms - {"sha256"}:
        raise InvalidSignatureError(
            f"{signature} was made with {method}/{hash_type} hashing; "
            "sign with `sovereign model sign` (sha256 per file)"
        )
    if ignored - {SIGNATURE_FILE}:
        raise InvalidSignatureError(
            f"{signature} leaves files unpinned (ignores {', '.join(sorted(ignored))}); "
            "sign with `sovereign model sign`"
        )
    return files


def verify_directory(model_dir: Path, public_key: Path) -> SignedContents:
    """Check the signature of ``model_dir`` and that every file matches it.

    Raises UnsignedError, InvalidSignatureError or ContentsDifferError (naming
    each missing, extra or changed file).
    """
    list_files(model_dir, include_signature=True)  # refuses symlinks and special files
    signature = model_dir / SIGNATURE_FILE
    if not signature.is_file():
        raise UnsignedError(f"{model_dir} is not signed: {SIGNATURE_FILE} is missing")
    keys.load_public_key(public_key)
    statement = read_statement(signature)
    config = verifying.Config()  # type: ignore[no-untyped-call]
    config.set_hashing_config(_hashing_config()).use_elliptic_key_verifier(public_key=public_key)
    contents_differ = False
    try:
        config.verify(model_dir, signature)
    except ValueError as exc:
        if not str(exc).startswith(_MISMATCH_PREFIX):
            raise InvalidSignatureError(
                f"signature of {model_dir} is not valid for {public_key}: {exc}"
            ) from exc
        # The signature itself verified; the files are not the signed ones.
        contents_differ = True
    except InvalidSignature as exc:
        raise InvalidSignatureError(
            f"signature of {model_dir} is not valid for {public_key}"
        ) from exc
    except (KeyError, TypeError) as exc:
        raise InvalidSignatureError(f"{signature} is malformed: {exc}") from exc
    files = _signed_files(statement, signature)
    if contents_differ:
        actual = {item.path: item.sha256 for item in digest_directory(model_dir).files}
        compare(files, actual).raise_if_any(f"{model_dir} does not match its signature")
        # model-signing saw a difference we cannot name: still a refusal.
        raise InvalidSignatureError(f"{model_dir} does not match its signature")
    return SignedContents(files)
