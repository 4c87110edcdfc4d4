"""A small built-in text corpus the tokenizer is trained on, beside the Q&A set.

It gives the byte-level BPE common English words, digits and punctuation, so text
outside the Q&A set still tokenizes into sensible pieces. Changing it changes the
tokenizer and therefore every generated model's digest.
"""

from __future__ import annotations

from collections.abc import Sequence

from sovereign.model.tiny.qa import QAItem

BUILTIN_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.",
    "Sovereign runs a private language model platform inside the boundary of the bank.",
    "Every request is logged, every model is signed, and every answer stays on premises.",
    "Staff must lock their screens when they leave their desks, even for a short time.",
    "A customer may ask for a copy of the data the bank holds about them at any time.",
    "Payments are checked twice: once by the system and once by a person who did not create them.",
    "The branch is open from Monday to Friday; on Saturday only the counter service opens.",
    "Questions about policy go to the compliance office; questions about pay go to people "
    "services.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 14 20 25 28 30 50 90 100 500 1000 10000 2024 2025.",
    "Punctuation: commas, full stops. Colons: semicolons; question marks? (brackets) "
    '"quotes" - dashes / slashes & ampersands % percent # hash @ at.',
    "Q: What is this corpus for?\nA: It teaches the tokenizer common words.",
    "Q: Who owns the model?\nA: The platform team.",
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April "
    "May June July August September October November December.",
    "approve report review store patch sign open close keep reset expire deposit withdraw "
    "transfer account manager director employee visitor contractor auditor",
)


def tokenizer_texts(items: Sequence[QAItem]) -> list[str]:
    """The texts the tokenizer is trained on: every prompt with its answer, then the corpus."""
    return [item.prompt + item.completion for item in items] + list(BUILTIN_CORPUS)
