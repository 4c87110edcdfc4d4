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


@pytest.fixture(scope="session")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The good variant with its full training (seed 0)."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    from sovereign.model.tiny.build import generate
    from sovereign.model.tiny.training import Variant

    out = tmp_path_factory.mktemp("good")
    generate(out, Variant.GOOD, qa_path=QA_PATH)
    return out


@pytest.fixture(scope="session")
def worse_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worse variant with its full training (seed 0)."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    from sovereign.model.tiny.build import generate
    from sovereign.model.tiny.training import Variant

    out = tmp_path_factory.mktemp("worse")
    generate(out, Variant.WORSE, qa_path=QA_PATH)
    return out
