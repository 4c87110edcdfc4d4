"""Score a model directory on a Q&A set with transformers' greedy generation.

This is the reference the tests use: each prompt is encoded as a completion request
sends it (``<s>`` then the prompt), the model decodes greedily until ``</s>`` or
:data:`MAX_NEW_TOKENS`, and the text after the prompt must equal the answer once
surrounding whitespace is stripped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from sovereign.model.tiny.errors import ModelDirectoryError
from sovereign.model.tiny.qa import QAItem, is_correct, load_qa

MAX_NEW_TOKENS = 24


@dataclass(frozen=True)
class Answer:
    """What the model said to one question."""

    item: QAItem
    generated: str

    @property
    def correct(self) -> bool:
        return is_correct(self.generated, self.item.answer)


def answer_all(
    model_dir: Path, items: Sequence[QAItem], *, dtype: torch.dtype = torch.float32
) -> list[Answer]:
    """Generate greedily for every item's prompt."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelDirectoryError(f"{model_dir}: cannot load the model: {exc}") from exc
    model.train(False)
    answers: list[Answer] = []
    with torch.inference_mode():
        for item in items:
            encoded = tokenizer(item.prompt, return_tensors="pt")
            # generate() is declared on a mixin whose self type mypy can't match to the model.
            output = model.generate(  # type: ignore[misc]
                **encoded,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            new_tokens = output[0, encoded["input_ids"].shape[1] :]
            generated = tokenizer.decode(new_tokens, skip_special_tokens=True)
            answers.append(Answer(item, str(generated)))
    return answers


def score(model_dir: Path, qa_path: Path, *, dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """``(correct, total)`` of the model in ``model_dir`` on the Q&A set at ``qa_path``."""
    answers = answer_all(model_dir, load_qa(qa_path), dtype=dtype)
    return sum(answer.correct for answer in answers), len(answers)
