"""Publish, pull by digest and verify against a real CNCF distribution registry.

The registry (Debian's docker-registry, distribution 2.8) runs on 127.0.0.1
with a throwaway CA, TLS and htpasswd (bcrypt) auth.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sovereign.model.cli import main
from tests.support.local_registry import (
    MISSING_REASON,
    PASSWORD,
    REGISTRY_BINARY,
    USER,
    write_key_pair,
)

pytestmark = pytest.mark.skipif(not REGISTRY_BINARY.exists(), reason=MISSING_REASON)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for name in ("SOVEREIGN_REGISTRY_USERNAME", "SOVEREIGN_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def _run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def signed_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    private, public = write_key_pair(tmp_path)
    model = tmp_path / "tiny"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 64}\n')
    (model / "tokenizer" / "tokenizer.json").write_text('{"vocab": {}}\n')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 12_288)  # 3 MiB
    return model, private, public


def test_publish_pull_verify_round_trip(
    registry: tuple[str, Path], signed_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    address, ca = registry
    model, private, public = signed_model
    auth = ["--username", USER, "--password-stdin", "--ca-bundle", str(ca)]
    code, out, err = _run(
        "publish",
        str(model),
        f"{address}/models/tiny:v1",
        "--key",
        str(private),
        "--name",
        "tiny",
        "--revision",
        "1",
        "--license",
        "Apache-2.0",
        "--chunk-size",
        "1",
        *auth,
        stdin=PASSWORD,
    )
    assert code == 0, err
    digest = out.strip()
    assert digest.startswith("sha256:")
    # Publishing again uploads nothing new and yields the same digest.
    assert _run(
        "publish", str(model), f"{address}/models/tiny:v1", "--key", str(private), *auth,
        "--name", "tiny", "--revision", "1", "--license", "Apache-2.0",
        stdin=PASSWORD,
    )[1].strip() == digest  # fmt: skip
    dest = tmp_path / "cache" / digest.replace(":", "-")
    code, out, err = _run(
        "pull", f"{address}/models/tiny@{digest}", str(dest), "--public-key", str(public), *auth,
        stdin=PASSWORD,
    )  # fmt: skip
    assert code == 0, err
    assert _run("verify", str(dest), "--public-key", str(public))[0] == 0
    assert (dest / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()


def test_unauthenticated_push_is_rejected(
    registry: tuple[str, Path], signed_model: tuple[Path, Path, Path]
) -> None:
    address, ca = registry
    model, private, _ = signed_model
    code, _, err = _run(
        "publish", str(model), f"{address}/models/anon:v1", "--key", str(private),
        "--ca-bundle", str(ca),
    )  # fmt: skip
    assert code == 1
    assert "requires authentication" in err


def test_wrong_password_is_rejected(
    registry: tuple[str, Path], signed_model: tuple[Path, Path, Path]
) -> None:
    address, ca = registry
    model, private, _ = signed_model
    code, _, err = _run(
        "publish", str(model), f"{address}/models/anon:v1", "--key", str(private),
        "--ca-bundle", str(ca), "--username", USER, "--password-stdin",
        stdin="wrong",
    )  # fmt: skip
    assert code == 1
    assert "rejected the credentials" in err
