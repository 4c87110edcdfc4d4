"""The model's shape: what vLLM on a CPU can serve."""

from __future__ import annotations

import pytest

from .conftest import TORCH_REASON

pytest.importorskip("torch", reason=TORCH_REASON)

from sovereign.model.tiny.architecture import generation_config, model_config  # noqa: E402


def test_config_is_a_two_layer_128_wide_llama() -> None:
    config = model_config()
    assert config.architectures == ["LlamaForCausalLM"]
    assert config.model_type == "llama"
    assert config.num_hidden_layers == 2
    assert config.hidden_size == 128
    assert config.intermediate_size == 344
    assert config.max_position_embeddings == 256
    assert config.vocab_size == 512


def test_head_dim_is_at_least_64() -> None:
    config = model_config()
    assert config.head_dim is not None
    assert config.head_dim >= 64
    assert config.head_dim * config.num_attention_heads == config.hidden_size


def test_generation_config_names_special_ids_only() -> None:
    assert generation_config() == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
