"""Fixtures of the model tooling tests: keys, a small model, a fake registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.keys import write_ec_key_pair
from tests.unit.model.fakeregistry import FakeRegistry


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for name in ("SOVEREIGN_REGISTRY_USERNAME", "SOVEREIGN_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_ec_key_pair(tmp_path_factory.mktemp("keys"), "signer")


@pytest.fixture(scope="session")
def other_key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_ec_key_pair(tmp_path_factory.mktemp("other-keys"), "other")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "tiny-model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 64}\n')
    (model / "tokenizer" / "vocab.json").write_text('{"a": 0}\n')
    (model / "weights.safetensors").write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    (model / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return model


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()
