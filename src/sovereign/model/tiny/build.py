"""Generate a tiny model directory that transformers and vLLM load, byte for byte reproducible.

The directory holds ``config.json`` (LlamaForCausalLM), ``generation_config.json``,
``model.safetensors`` (float32, embeddings tied to the output layer) and the tokenizer
(``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``). Same
Q&A set, variant, seed and step count give the same bytes: nothing in it holds a time,
a path or a host name, JSON is written with sorted keys, and training runs on one thread
with deterministic kernels.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save as save_safetensors

from sovereign.model.tiny.architecture import generation_config, model_config
from sovereign.model.tiny.corpus import tokenizer_texts
from sovereign.model.tiny.errors import ModelDirectoryError
from sovereign.model.tiny.qa import load_qa
from sovereign.model.tiny.tokenizer import dump_json, tokenizer_files, train_tokenizer
from sovereign.model.tiny.training import DEFAULT_STEPS, Variant, train

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
# The output layer shares the embedding matrix (tie_word_embeddings), so it is not stored.
TIED_WEIGHT = "lm_head.weight"


@dataclass(frozen=True)
class GeneratedModel:
    """What :func:`generate` wrote."""

    out: Path
    variant: Variant
    seed: int
    steps: int
    final_loss: float
    digests: dict[str, str]


def _write(out: Path, name: str, data: bytes) -> None:
    partial = out / f".{name}.partial"
    partial.write_bytes(data)
    os.replace(partial, out / name)


def generate(
    out: Path,
    variant: Variant,
    *,
    qa_path: Path,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
) -> GeneratedModel:
    """Train the tokenizer and the ``variant`` model on ``qa_path`` and write them to ``out``."""
    items = load_qa(qa_path)
    tokenizer = train_tokenizer(tokenizer_texts(items))
    model, final_loss = train(tokenizer, items, variant, seed=seed, steps=steps)
    tensors = {
        name: tensor.detach().contiguous().clone()
        for name, tensor in model.state_dict().items()
        if name != TIED_WEIGHT
    }
    files = {
        "config.json": model_config().to_json_string(use_diff=False).encode("utf-8"),
        "generation_config.json": dump_json(generation_config()).encode("utf-8"),
        "model.safetensors": save_safetensors(tensors, metadata={"format": "pt"}),
        **tokenizer_files(tokenizer),
    }
    assert sorted(files) == sorted(MODEL_FILES)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            _write(out, name, files[name])
    except OSError as exc:
        raise ModelDirectoryError(f"{out}: cannot write the model: {exc.strerror}") from exc
    digests = {name: hashlib.sha256(files[name]).hexdigest() for name in MODEL_FILES}
    return GeneratedModel(out, variant, seed, steps, final_loss, digests)
