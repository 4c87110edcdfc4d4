"""The built-in tokenizer corpus and the texts the tokenizer is trained on."""

from __future__ import annotations

from sovereign.model.tiny.corpus import BUILTIN_CORPUS, tokenizer_texts
from sovereign.model.tiny.qa import load_qa

from .conftest import QA_PATH


def test_corpus_is_small_plain_text() -> None:
    assert 5 <= len(BUILTIN_CORPUS) <= 100
    for text in BUILTIN_CORPUS:
        assert text.strip()
        assert all(char.isprintable() or char == "\n" for char in text), text
    assert any(char.isdigit() for text in BUILTIN_CORPUS for char in text)


def test_tokenizer_sees_every_prompt_with_its_answer_then_the_corpus() -> None:
    items = load_qa(QA_PATH)
    texts = tokenizer_texts(items)
    assert texts[0] == items[0].prompt + " " + items[0].answer
    assert texts[len(items) :] == list(BUILTIN_CORPUS)
