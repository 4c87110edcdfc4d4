from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sovereign.model.errors import (
    BadReferenceError,
    DigestMismatchError,
    InvalidSignatureError,
    PullError,
    TransferError,
)
from sovereign.model.publish import publish
from sovereign.model.pull import pull, staging_dir
from sovereign.model.reference import Reference, parse_reference
from sovereign.model.registry import RegistryClient
from tests.unit.model.fakeregistry import FakeRegistry

TARGET = parse_reference("registry.test:5000/models/tiny:v1")


def _published(model_dir: Path, registry: FakeRegistry, key: Path) -> Reference:
    with RegistryClient("registry.test:5000", transport=registry.transport()) as client:
        return publish(model_dir, TARGET, client, private_key=key).reference


def _client(registry: FakeRegistry, attempts: int = 5) -> RegistryClient:
    return RegistryClient(
        "registry.test:5000", transport=registry.transport(), max_attempts=attempts
    )


def _weights_digest(model_dir: Path) -> str:
    return "sha256:" + hashlib.sha256((model_dir / "weights.safetensors").read_bytes()).hexdigest()


def test_pull_verifies_and_moves_into_place(
    model_dir: Path, registry: FakeRegistry, key_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _published(model_dir, registry, key_pair[0])
    dest = tmp_path / "cache" / "tiny"
    with _client(registry) as client:
        result = pull(ref, dest, client, public_key=key_pair[1])
    assert result.path == dest and result.signature_checked
    for name in ("config.json", "tokenizer/vocab.json", "weights.safetensors", "model.sig"):
        assert (dest / name).read_bytes() == (model_dir / name).read_bytes()
    assert not staging_dir(dest).exists()


def test_interrupted_pull_resumes_with_only_the_remaining_bytes(
    model_dir: Path, registry: FakeRegistry, key_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _published(model_dir, registry, key_pair[0])
    weights = _weights_digest(model_dir)
    size = len(registry.blobs[weights])
    cut = 100_000
    registry.drop_blob_at[weights] = cut
    dest = tmp_path / "tiny"
    with _client(registry, attempts=1) as client, pytest.raises(TransferError, match="resume"):
        pull(ref, dest, client, public_key=key_pair[1])
    assert not dest.exists()
    part = staging_dir(dest) / "blobs" / f"{weights.removeprefix('sha256:')}.part"
    assert part.stat().st_size == cut  # the bytes received are kept
    registry.served.clear()
    with _client(registry) as client:
        pull(ref, dest, client, public_key=key_pair[1])
    assert registry.served[weights] == size - cut  # only the rest went over the wire
    assert (dest / "weights.safetensors").read_bytes() == registry.blobs[weights]


def test_connection_drop_is_resumed_within_one_pull(
    model_dir: Path, registry: FakeRegistry, key_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _published(model_dir, registry, key_pair[0])
    weights = _weights_digest(model_dir)
    registry.drop_blob_at[weights] = 4096
    with _client(registry) as client:
        pull(ref, tmp_path / "tiny", client, public_key=key_pair[1])
        assert client.stats.resumes == 1
    assert registry.served[weights] == len(registry.blobs[weights])


def test_blob_digest_mismatch_is_refused_and_nothing_lands(
    model_dir: Path, registry: FakeRegistry, key_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _published(model_dir, registry, key_pair[0])
    weights = _weights_digest(model_dir)
    registry.corrupt.add(weights)
    dest = tmp_path / "tiny"
    with _client(registry) as client, pytest.raises(DigestMismatchError, match="corrupt"):
        pull(ref, dest, client, public_key=key_pair[1])
    assert not dest.exists()
    leftovers = [p.name for p in (staging_dir(dest) / "blobs").iterdir()]
    assert weights.removeprefix("sha256:") not in "".join(leftovers)


def test_pull_by_tag_is_refused(registry: FakeRegistry, tmp_path: Path) -> None:
    with _client(registry) as client, pytest.raises(BadReferenceError, match="digest-pinned"):
        pull(TARGET, tmp_path / "tiny", client, public_key=None)
    assert registry.requests == []


def test_wrong_key_leaves_nothing_loadable(
    model_dir: Path,
    registry: FakeRegistry,
    key_pair: tuple[Path, Path],
    other_key_pair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    ref = _published(model_dir, registry, key_pair[0])
    dest = tmp_path / "tiny"
    with _client(registry) as client, pytest.raises(InvalidSignatureError):
        pull(ref, dest, client, public_key=other_key_pair[1])
    assert not dest.exists()
    assert not (staging_dir(dest) / "tree").exists()


def test_existing_destination_is_refused(
    registry: FakeRegistry, tmp_path: Path, key_pair: tuple[Path, Path]
) -> None:
    (tmp_path / "tiny").mkdir()
    ref = parse_reference("registry.test:5000/models/tiny@sha256:" + "0" * 64)
    with _client(registry) as client, pytest.raises(PullError, match="already exists"):
        pull(ref, tmp_path / "tiny", client, public_key=key_pair[1])
