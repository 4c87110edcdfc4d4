from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sovereign.model.digest import (
    DigestManifest,
    compare,
    digest_directory,
    hash_file,
)
from sovereign.model.errors import ContentsDifferError, LayoutError, UsageError


def test_digest_is_deterministic_sorted_posix(model_dir: Path, tmp_path: Path) -> None:
    first = digest_directory(model_dir)
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in reversed(first.files):  # create in another order
        target = copy / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((model_dir / item.path).read_bytes())
    second = digest_directory(copy, workers=1)
    assert first.to_json() == second.to_json()
    assert [item.path for item in first.files] == [
        ".gitattributes",
        "config.json",
        "tokenizer/vocab.json",
        "weights.safetensors",
    ]
    weights = first.by_path()["weights.safetensors"]
    assert weights.size == 256 * 1024
    assert weights.sha256 == hash_file(model_dir / "weights.safetensors")


def test_signature_file_is_not_content(model_dir: Path) -> None:
    before = digest_directory(model_dir).to_json()
    (model_dir / "model.sig").write_text("{}")
    assert digest_directory(model_dir).to_json() == before


def test_manifest_round_trips_through_json(model_dir: Path) -> None:
    manifest = digest_directory(model_dir)
    assert DigestManifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize("text", ["nope", '{"format": "other"}', '{"format": 1, "files": []}'])
def test_bad_manifest_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="digest manifest|not JSON"):
        DigestManifest.from_json(text)


def test_symlink_is_refused(model_dir: Path) -> None:
    (model_dir / "link.bin").symlink_to(model_dir / "weights.safetensors")
    with pytest.raises(LayoutError, match="link.bin is a symlink"):
        digest_directory(model_dir)


def test_symlinked_directory_is_refused(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (model_dir / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LayoutError, match="sub is a symlink"):
        digest_directory(model_dir)


def test_fifo_and_socket_are_refused(model_dir: Path) -> None:
    os.mkfifo(model_dir / "pipe")
    with pytest.raises(LayoutError, match="pipe is a special file"):
        digest_directory(model_dir)
    os.unlink(model_dir / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(model_dir / "sock"))
        with pytest.raises(LayoutError, match="sock is a special file"):
            digest_directory(model_dir)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No such file"):
        digest_directory(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        digest_directory(tmp_path / "file")


def test_compare_names_missing_extra_changed() -> None:
    differences = compare({"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "x", "d": "4"})
    assert differences.lines() == ["missing: a", "extra: d", "changed: c"]
    with pytest.raises(ContentsDifferError, match=r"1 missing, 1 extra, 1 changed") as caught:
        differences.raise_if_any("model")
    assert caught.value.details == ("missing: a", "extra: d", "changed: c")
    assert not compare({"a": "1"}, {"a": "1"})
