from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sovereign.model.credentials import Credentials
from sovereign.model.errors import AuthenticationError, DigestMismatchError
from sovereign.model.registry import RegistryClient
from tests.unit.model.fakeregistry import FakeRegistry


def _blob(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "blob"
    path.write_bytes(bytes(i % 251 for i in range(size)))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_is_chunked_and_existing_blobs_are_skipped(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    path, digest = _blob(tmp_path, 10_000)
    with RegistryClient("r.test", transport=registry.transport(), chunk_size=4096) as client:
        assert client.push_blob_file("m", path, digest, 10_000)
        assert client.push_blob_file("m", path, digest, 10_000) is False
        assert client.stats.blobs_skipped == 1
    assert registry.blobs[digest] == path.read_bytes()
    assert sum(r.startswith("PATCH") for r in registry.requests) == 3


def test_upload_resumes_after_a_broken_patch(registry: FakeRegistry, tmp_path: Path) -> None:
    path, digest = _blob(tmp_path, 10_000)
    registry.drop_patch_once = True
    with RegistryClient("r.test", transport=registry.transport(), chunk_size=4096) as client:
        client.push_blob_file("m", path, digest, 10_000)
        assert client.stats.resumes == 1
        assert client.stats.bytes_sent == 10_000 - 4096  # the dropped chunk had landed
    assert registry.blobs[digest] == path.read_bytes()


def test_file_changed_during_upload_is_refused(registry: FakeRegistry, tmp_path: Path) -> None:
    path, _ = _blob(tmp_path, 100)
    with (
        RegistryClient("r.test", transport=registry.transport()) as client,
        pytest.raises(DigestMismatchError, match="changed while"),
    ):
        client.push_blob_file("m", path, "sha256:" + "1" * 64, 100)


def test_basic_auth(tmp_path: Path) -> None:
    registry = FakeRegistry(username="alice", password="s3cret")
    with RegistryClient("r.test", transport=registry.transport()) as client:
        with pytest.raises(AuthenticationError, match="requires authentication"):
            client.push_blob_bytes("m", b"{}")
    wrong = Credentials("alice", "nope")
    with RegistryClient("r.test", transport=registry.transport(), credentials=wrong) as client:
        with pytest.raises(AuthenticationError, match="rejected the credentials"):
            client.push_blob_bytes("m", b"{}")
    good = Credentials("alice", "s3cret")
    with RegistryClient("r.test", transport=registry.transport(), credentials=good) as client:
        client.push_blob_bytes("m", b"{}")
    assert len(registry.blobs) == 1
