from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovereign.model.errors import (
    ContentsDifferError,
    InvalidSignatureError,
    KeyFileError,
    UnsignedError,
)
from sovereign.model.signature import sign_directory, signed_files, verify_directory


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_good_signature_covers_every_file(model_dir: Path, key_pair: tuple[Path, Path]) -> None:
    private, public = key_pair
    signature = sign_directory(model_dir, private)
    assert signature == model_dir / "model.sig"
    files = verify_directory(model_dir, public).files
    assert sorted(files) == [
        ".gitattributes",  # hidden files are pinned too
        "config.json",
        "tokenizer/vocab.json",
        "weights.safetensors",
    ]
    assert files == signed_files(signature)


def test_tampered_file_one_flipped_byte(model_dir: Path, key_pair: tuple[Path, Path]) -> None:
    private, public = key_pair
    sign_directory(model_dir, private)
    _flip_byte(model_dir / "weights.safetensors")
    with pytest.raises(ContentsDifferError) as caught:
        verify_directory(model_dir, public)
    assert caught.value.details == ("changed: weights.safetensors",)


def test_missing_and_extra_files_are_named(model_dir: Path, key_pair: tuple[Path, Path]) -> None:
    private, public = key_pair
    sign_directory(model_dir, private)
    (model_dir / "tokenizer" / "vocab.json").unlink()
    (model_dir / "pickle.bin").write_bytes(b"surprise")
    with pytest.raises(ContentsDifferError) as caught:
        verify_directory(model_dir, public)
    assert caught.value.details == ("missing: tokenizer/vocab.json", "extra: pickle.bin")


def test_tampered_signature_one_flipped_byte(model_dir: Path, key_pair: tuple[Path, Path]) -> None:
    private, public = key_pair
    signature = sign_directory(model_dir, private)
    bundle = json.loads(signature.read_text())
    raw = bytearray(bundle["dsseEnvelope"]["signatures"][0]["sig"].encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = raw.decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(InvalidSignatureError):
        verify_directory(model_dir, public)


def test_wrong_key(
    model_dir: Path, key_pair: tuple[Path, Path], other_key_pair: tuple[Path, Path]
) -> None:
    sign_directory(model_dir, key_pair[0])
    with pytest.raises(InvalidSignatureError, match="not valid for"):
        verify_directory(model_dir, other_key_pair[1])


def test_unsigned(model_dir: Path, key_pair: tuple[Path, Path]) -> None:
    with pytest.raises(UnsignedError, match="model.sig is missing"):
        verify_directory(model_dir, key_pair[1])


def test_garbage_signature(model_dir: Path, key_pair: tuple[Path, Path]) -> None:
    (model_dir / "model.sig").write_text("not json")
    with pytest.raises(InvalidSignatureError, match="not a model-signing signature"):
        verify_directory(model_dir, key_pair[1])


def test_bad_keys(model_dir: Path, key_pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read private key"):
        sign_directory(model_dir, tmp_path / "absent.pem")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        sign_directory(model_dir, key_pair[1])  # a public key is not a private key
    sign_directory(model_dir, key_pair[0])
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        verify_directory(model_dir, key_pair[0])
