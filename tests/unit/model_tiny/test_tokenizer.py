"""The byte-level BPE tokenizer: 512 tokens, special ids, lossless round trip."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tokenizers", reason="needs tokenizers (make venv installs it)")

from tokenizers import Tokenizer  # noqa: E402

from sovereign.model.tiny import tokenizer as tok  # noqa: E402
from sovereign.model.tiny.corpus import tokenizer_texts  # noqa: E402
from sovereign.model.tiny.qa import load_qa  # noqa: E402

from .conftest import QA_PATH  # noqa: E402


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    return tok.train_tokenizer(tokenizer_texts(load_qa(QA_PATH)))


def test_vocabulary_has_512_tokens_and_fixed_special_ids(trained: Tokenizer) -> None:
    assert trained.get_vocab_size() == tok.VOCAB_SIZE == 512
    assert trained.token_to_id("<pad>") == tok.PAD_ID == 0
    assert trained.token_to_id("<s>") == tok.BOS_ID == 1
    assert trained.token_to_id("</s>") == tok.EOS_ID == 2


@pytest.mark.parametrize(
    "text",
    [
        "Q: How many vacation days do Aldermoor Bank staff get?\nA: 28 days",
        "Unseen words, ünïcödé, emoji \U0001f512 and tabs\tstay intact.  ",
        "",
    ],
)
def test_round_trip_is_lossless(trained: Tokenizer, text: str) -> None:
    encoded = trained.encode(text)
    assert encoded.ids[0] == tok.BOS_ID
    assert trained.decode(encoded.ids) == text


def test_qa_text_compresses(trained: Tokenizer) -> None:
    text = "Q: Where are Aldermoor Bank backups stored?\nA: the Leeds vault"
    assert len(trained.encode(text).ids) < len(text.encode("utf-8")) / 2


def test_same_texts_same_bytes(trained: Tokenizer) -> None:
    again = tok.train_tokenizer(tokenizer_texts(load_qa(QA_PATH)))
    assert tok.tokenizer_files(again) == tok.tokenizer_files(trained)


def test_files_carry_special_tokens_and_chat_template(trained: Tokenizer) -> None:
    files = tok.tokenizer_files(trained)
    assert sorted(files) == sorted(tok.TOKENIZER_FILES)
    config = json.loads(files["tokenizer_config.json"])
    assert config["bos_token"] == "<s>"
    assert config["eos_token"] == "</s>"
    assert config["pad_token"] == "<pad>"
    assert "Q: {{ message['content'] }}\nA:" in config["chat_template"]
    assert json.loads(files["tokenizer.json"])["model"]["type"] == "BPE"
