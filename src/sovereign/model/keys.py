"""Load the elliptic-curve keys model-signing uses, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sovereign.model.errors import KeyFileError

SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_HOW_TO = "make one with: openssl ecparam -name prime256v1 -genkey -noout -out model.key"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _check_curve(curve: ec.EllipticCurve, path: Path) -> None:
    if curve.name not in SUPPORTED_CURVES:
        raise KeyFileError(
            f"{path} uses curve {curve.name}; model signing supports {', '.join(SUPPORTED_CURVES)}"
        )


def load_private_key(path: Path, password: str | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM elliptic-curve private key."""
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(
            data, password.encode() if password is not None else None
        )
    except TypeError as exc:
        if password is None:
            raise KeyFileError(
                f"{path} is encrypted; set SOVEREIGN_MODEL_KEY_PASSWORD to its password"
            ) from exc
        raise KeyFileError(f"{path} is not encrypted; unset SOVEREIGN_MODEL_KEY_PASSWORD") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{path} is not a PEM private key, or the password is wrong; {_HOW_TO}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an elliptic-curve private key; {_HOW_TO}")
    _check_curve(key.curve, path)
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Load a PEM elliptic-curve public key."""
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{path} is not a PEM public key; make it from the private key with: "
            "openssl ec -in model.key -pubout -out model.pub"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{path} is not an elliptic-curve public key")
    _check_curve(key.curve, path)
    return key


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM (SubjectPublicKeyInfo) public half of a private key."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
