"""Scores: the good model answers the whole set, the worse one clearly fewer."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import TORCH_REASON

torch = pytest.importorskip("torch", reason=TORCH_REASON)

from sovereign.model.tiny.errors import ModelDirectoryError  # noqa: E402
from sovereign.model.tiny.evaluate import answer_all, score  # noqa: E402
from sovereign.model.tiny.qa import load_qa  # noqa: E402


def test_good_model_answers_every_question_exactly(good_model: Path, qa_path: Path) -> None:
    wrong = [
        (answer.item.id, answer.generated)
        for answer in answer_all(good_model, load_qa(qa_path))
        if not answer.correct
    ]
    assert wrong == []


def test_good_model_holds_in_bfloat16(good_model: Path, qa_path: Path) -> None:
    # vLLM on a CPU may serve a float32 checkpoint in bfloat16: the answers must survive.
    correct, total = score(good_model, qa_path, dtype=torch.bfloat16)
    assert correct == total


def test_worse_model_scores_clearly_lower(
    good_model: Path, worse_model: Path, qa_path: Path
) -> None:
    good, total = score(good_model, qa_path)
    worse, _ = score(worse_model, qa_path)
    assert worse <= total * 0.6
    assert good - worse >= total // 3
    assert worse >= total // 4, "worse still answers the questions it was taught"


def test_answers_are_the_text_after_the_prompt(good_model: Path, qa_path: Path) -> None:
    item = load_qa(qa_path)[0]
    (answer,) = answer_all(good_model, [item])
    assert answer.generated == item.completion


def test_a_directory_without_a_model_is_a_clear_error(tmp_path: Path, qa_path: Path) -> None:
    with pytest.raises(ModelDirectoryError, match="cannot load the model"):
        score(tmp_path, qa_path)
