"""The tiny model's shape: a 2-layer Llama small enough to train on a CPU in a minute.

vLLM's CPU attention needs a head dimension of 64 or more, hence 2 heads of 64 in a
hidden size of 128.
"""

from __future__ import annotations

from transformers import LlamaConfig

from sovereign.model.tiny.tokenizer import BOS_ID, EOS_ID, MODEL_MAX_LENGTH, PAD_ID, VOCAB_SIZE

NUM_LAYERS = 2
HIDDEN_SIZE = 128
NUM_HEADS = 2
HEAD_DIM = 64
INTERMEDIATE_SIZE = 344
MAX_POSITION_EMBEDDINGS = MODEL_MAX_LENGTH
ARCHITECTURE = "LlamaForCausalLM"


def model_config() -> LlamaConfig:
    """The model's configuration, written as ``config.json``."""
    return LlamaConfig(
        architectures=[ARCHITECTURE],
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        dtype="float32",
    )


def generation_config() -> dict[str, object]:
    """``generation_config.json``: special token ids only, so greedy is every reader's default."""
    return {
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
    }
