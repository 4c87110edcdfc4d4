"""A release table and the key file its model releases name, for the inventory tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

KEY = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"
DIGEST = "sha256:" + "ab" * 32
DIGEST2 = "sha256:" + "cd" * 32

LINEAGE = {
    "base_model": "meta-llama/Llama-3-70B",
    "training_data": "vendor pretraining data",
    "legal_basis": "licence accepted by legal",
}

TABLE: dict[str, Any] = {
    "models": {
        "llama-2026-10": {
            "model": "llama-3-70b",
            "repository": "llm/llama-3-70b",
            "digest": DIGEST,
            "signing_key": "keys/custodians.pub",
            "revision": "2026-10-01",
            "license": "LicenseRef-Llama",
            "lineage": LINEAGE,
        },
        "llama-2026-11": {
            "model": "llama-3-70b",
            "repository": "llm/llama-3-70b",
            "digest": DIGEST2,
            "signing_key": "keys/custodians.pub",
            "revision": "2026-11-01",
            "license": "LicenseRef-Llama",
            "lineage": LINEAGE,
        },
        "tiny-1": {
            "model": "tiny",
            "served_model_name": "sovereign-tiny",
            "repository": "models/tiny",
            "digest": DIGEST,
            "signing_key": "keys/custodians.pub",
            "revision": "1",
            "license": "Apache-2.0",
            "lineage": LINEAGE,
        },
    },
    "runtimes": {
        "cu128": {
            "vllm_version": "0.32.0",
            "cuda_version": "12.8",
            "requirements": "runtimes/cu128.txt",
            "wheelhouse": "vllm-cu128",
        },
        "cu124": {
            "vllm_version": "0.31.0",
            "cuda_version": "12.4",
            "requirements": "runtimes/cu128.txt",
            "wheelhouse": "vllm-cu124",
        },
    },
    "hardware_profiles": {"h100-80gb": {}, "cpu-lab": {}},
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository root holding the key and the wheel table the table names."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/custodians.pub").write_text(KEY, encoding="ascii")
    (tmp_path / "runtimes").mkdir()
    (tmp_path / "runtimes/cu128.txt").write_text("vllm==0.32.0 --hash=sha256:00\n")
    return tmp_path


@pytest.fixture
def table() -> dict[str, Any]:
    return copy.deepcopy(TABLE)
