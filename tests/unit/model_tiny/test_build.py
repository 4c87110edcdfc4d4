"""The model directory: its files, their contents, and byte-identical regeneration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .conftest import QA_PATH, TORCH_REASON

pytest.importorskip("torch", reason=TORCH_REASON)

from safetensors import safe_open  # noqa: E402

from sovereign.model.tiny.build import MODEL_FILES, generate  # noqa: E402
from sovereign.model.tiny.errors import ModelDirectoryError, QASetError  # noqa: E402
from sovereign.model.tiny.training import Variant  # noqa: E402

FEW_STEPS = 3


def digests(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", Variant.GOOD, qa_path=QA_PATH, seed=7, steps=FEW_STEPS)
    second = generate(tmp_path / "b", Variant.GOOD, qa_path=QA_PATH, seed=7, steps=FEW_STEPS)
    assert digests(tmp_path / "a") == digests(tmp_path / "b") == first.digests == second.digests
    assert sorted(first.digests) == sorted(MODEL_FILES)


def test_other_seed_gives_other_weights_and_same_tokenizer(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", Variant.GOOD, qa_path=QA_PATH, seed=0, steps=FEW_STEPS)
    second = generate(tmp_path / "b", Variant.GOOD, qa_path=QA_PATH, seed=1, steps=FEW_STEPS)
    assert first.digests["model.safetensors"] != second.digests["model.safetensors"]
    assert first.digests["tokenizer.json"] == second.digests["tokenizer.json"]


def test_directory_holds_a_llama_vllm_can_load(tmp_path: Path) -> None:
    made = generate(tmp_path, Variant.WORSE, qa_path=QA_PATH, steps=0)
    assert made.variant is Variant.WORSE and made.steps == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(MODEL_FILES)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True
    generation = json.loads((tmp_path / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == 2
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as weights:
        names = set(weights.keys())
        assert weights.metadata() == {"format": "pt"}
        assert tuple(weights.get_tensor("model.embed_tokens.weight").shape) == (512, 128)
    assert "lm_head.weight" not in names
    assert "model.layers.1.mlp.gate_proj.weight" in names
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert str(tmp_path) not in text


def test_regenerating_over_a_directory_replaces_it(tmp_path: Path) -> None:
    generate(tmp_path, Variant.GOOD, qa_path=QA_PATH, steps=1)
    made = generate(tmp_path, Variant.GOOD, qa_path=QA_PATH, steps=0)
    assert digests(tmp_path) == made.digests


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(ModelDirectoryError, match="cannot write the model"):
        generate(blocker / "model", Variant.GOOD, qa_path=QA_PATH, steps=0)


def test_missing_qa_set_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QASetError, match="cannot read the Q&A set"):
        generate(tmp_path, Variant.GOOD, qa_path=tmp_path / "absent.jsonl", steps=0)
