"""The tiny model's tokenizer: a byte-level BPE of 512 tokens trained here, not downloaded.

The tokenizer adds ``<s>`` in front of every encoded text (as Llama tokenizers do),
so a completion request for ``"Q: ...\\nA:"`` is seen by the model exactly as in
training. ``</s>`` ends an answer; ``<pad>`` pads batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

VOCAB_SIZE = 512
PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
MODEL_MAX_LENGTH = 256

# A chat request becomes the same "Q: ...\nA:" text the model was trained on; a system
# message is prepended as plain text and earlier assistant turns end with </s>.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}Q: {{ message['content'] }}\nA:"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """Train the byte-level BPE on ``texts``; the same texts give the same tokenizer."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, BOS_ID), (EOS_TOKEN, EOS_ID)],
    )
    for token, expected in zip(SPECIAL_TOKENS, (PAD_ID, BOS_ID, EOS_ID), strict=True):
        assert tokenizer.token_to_id(token) == expected, token
    return tokenizer


def tokenizer_config() -> dict[str, Any]:
    """The ``tokenizer_config.json`` transformers and vLLM read beside ``tokenizer.json``."""
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS_TOKEN,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": PAD_TOKEN,
        "padding_side": "left",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def special_tokens_map() -> dict[str, str]:
    """The ``special_tokens_map.json`` of older readers."""
    return {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}


def dump_json(data: object) -> str:
    """JSON as every file of the model directory is written: sorted keys, one newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def tokenizer_files(tokenizer: Tokenizer) -> dict[str, bytes]:
    """The tokenizer's files of a model directory, by name, as bytes."""
    # Round-trip through json so the key order is ours, not the library's.
    body = json.loads(tokenizer.to_str())
    return {
        "tokenizer.json": dump_json(body).encode("utf-8"),
        "tokenizer_config.json": dump_json(tokenizer_config()).encode("utf-8"),
        "special_tokens_map.json": dump_json(special_tokens_map()).encode("utf-8"),
    }


def write_tokenizer(tokenizer: Tokenizer, out: Path) -> None:
    """Write the tokenizer files into ``out`` (which must exist)."""
    for name, data in tokenizer_files(tokenizer).items():
        (out / name).write_bytes(data)
