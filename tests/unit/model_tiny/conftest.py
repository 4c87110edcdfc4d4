"""Models shared by the tiny model's tests: each variant is trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
QA_PATH = ROOT / "files" / "eval" / "tiny_qa.jsonl"
TORCH_REASON = "needs torch (make venv installs it)"


@pytest.fixture(scope="session")
def qa_path() -> Path:
    return QA_PATH


def _trained(factory: pytest.TempPathFactory, variant_name: str) -> Path:
    """A variant with its full training (seed 0), in a fresh directory."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    from sovereign.model.tiny.build import generate
    from sovereign.model.tiny.training import Variant

    out = factory.mktemp(variant_name)
    generate(out, Variant[variant_name.upper()], qa_path=QA_PATH)
    return out


@pytest.fixture(scope="session")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The good variant with its full training (seed 0)."""
    return _trained(tmp_path_factory, "good")


@pytest.fixture(scope="session")
def worse_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worse variant with its full training (seed 0)."""
    return _trained(tmp_path_factory, "worse")
