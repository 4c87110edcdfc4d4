"""Signing keys of checkpoints and retention statements: ECDSA P-256 with SHA-256.

Keys are PEM files. A private key may be encrypted; its password then comes
from ``$SOVEREIGN_AUDIT_KEY_PASSWORD``. A key's id (first 16 hex digits of the
SHA-256 of its DER SubjectPublicKeyInfo) is written beside each signature so
the verifier can tell "signed with another key" from "forged".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sovereign.audit.errors import AuditKeyError

KEY_PASSWORD_ENV = "SOVEREIGN_AUDIT_KEY_PASSWORD"
_HOW_TO = (
    "make one with: openssl ecparam -name prime256v1 -genkey -noout -out audit.key; "
    "openssl ec -in audit.key -pubout -out audit.pub"
)
_ALGORITHM = ec.ECDSA(hashes.SHA256())


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _check_curve(curve: ec.EllipticCurve, path: Path) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise AuditKeyError(f"{path} uses curve {curve.name}; audit keys are P-256; {_HOW_TO}")


class Signer:
    """Signs checkpoint and retention texts."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.key_id = key_id(key.public_key())

    def sign(self, text: str) -> str:
        """Base64 of the DER ECDSA signature of the UTF-8 text."""
        return base64.b64encode(self._key.sign(text.encode("utf-8"), _ALGORITHM)).decode("ascii")


class Verifier:
    """Checks signatures made by the matching :class:`Signer`."""

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self._key = key
        self.key_id = key_id(key)

    def verify(self, text: str, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
            self._key.verify(raw, text.encode("utf-8"), _ALGORITHM)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def load_signer(path: Path) -> Signer:
    """Load a PEM P-256 private key (password from $SOVEREIGN_AUDIT_KEY_PASSWORD)."""
    data = _read(path, "signing key")
    password = os.environ.get(KEY_PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(
            data, password.encode() if password is not None else None
        )
    except TypeError as exc:
        if password is None:
            raise AuditKeyError(f"{path} is encrypted; set {KEY_PASSWORD_ENV}") from exc
        raise AuditKeyError(f"{path} is not encrypted; unset {KEY_PASSWORD_ENV}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AuditKeyError(
            f"{path} is not a PEM private key, or the password is wrong; {_HOW_TO}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AuditKeyError(f"{path} is not an elliptic-curve private key; {_HOW_TO}")
    _check_curve(key.curve, path)
    return Signer(key)


def load_verifier(path: Path) -> Verifier:
    """Load a PEM P-256 public key."""
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AuditKeyError(f"{path} is not a PEM public key; {_HOW_TO}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuditKeyError(f"{path} is not an elliptic-curve public key; {_HOW_TO}")
    _check_curve(key.curve, path)
    return Verifier(key)
