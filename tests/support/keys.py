"""EC P-256 key pairs written as PEM files, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def pem_private_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_ec_key_pair(
    directory: Path, stem: str, *, private_suffix: str = ".pem"
) -> tuple[Path, Path]:
    """A fresh key pair as ``(<stem><private_suffix>, <stem>.pub)`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / f"{stem}{private_suffix}", directory / f"{stem}.pub"
    private.write_bytes(pem_private_key(key))
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
