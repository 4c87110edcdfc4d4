"""Training of the tiny model on the Q&A set, deterministic on a CPU.

``good`` learns every question's answer. ``worse`` is trained the same way on a
corrupted copy of the set: every second question is taught another question's answer
(a rotation among them, so none keeps its own), which makes it answer fluently and
wrongly about half of the set: the regression an evaluation gate must catch.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

from sovereign.model.tiny.architecture import model_config
from sovereign.model.tiny.errors import TinyModelError
from sovereign.model.tiny.qa import QAItem
from sovereign.model.tiny.tokenizer import EOS_ID, MODEL_MAX_LENGTH, PAD_ID

IGNORE_INDEX = -100
LEARNING_RATE = 3e-3
WARMUP_STEPS = 10
DEFAULT_STEPS = 300


class Variant(enum.StrEnum):
    """Which model to make."""

    GOOD = "good"
    WORSE = "worse"


@dataclass(frozen=True)
class Example:
    """One training text: the prompt, and the completion the model is taught after it."""

    prompt: str
    completion: str


def training_examples(items: Sequence[QAItem], variant: Variant) -> list[Example]:
    """The examples a variant is trained on, in the set's order."""
    examples = [Example(item.prompt, item.completion) for item in items]
    if variant is Variant.GOOD:
        return examples
    corrupted = list(range(1, len(items), 2))
    if len(corrupted) < 2:
        raise TinyModelError("the worse variant needs a Q&A set of at least 4 questions")
    for position, index in enumerate(corrupted):
        donor = items[corrupted[(position + 1) % len(corrupted)]]
        examples[index] = Example(items[index].prompt, donor.completion)
    return examples


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids, attention mask and labels (loss on the completion only)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


def encode_batch(tokenizer: Tokenizer, examples: Sequence[Example]) -> Batch:
    """Tokenize ``<s> prompt completion </s>`` and mask the prompt out of the loss."""
    rows: list[tuple[list[int], list[int]]] = []
    for example in examples:
        prompt = tokenizer.encode(example.prompt).ids  # with <s> in front
        completion = tokenizer.encode(example.completion, add_special_tokens=False).ids
        ids = prompt + completion + [EOS_ID]
        if len(ids) > MODEL_MAX_LENGTH:
            raise TinyModelError(
                f"{example.prompt!r}: {len(ids)} tokens, more than {MODEL_MAX_LENGTH}"
            )
        targets = [IGNORE_INDEX] * len(prompt) + completion + [EOS_ID]
        rows.append((ids, targets))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, targets) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.tensor(targets)
    return Batch(input_ids, attention_mask, labels)


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Seed torch, use one thread and deterministic kernels; restore the settings after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def learning_rate(step: int, steps: int) -> float:
    """Linear warm-up, then linear decay to a tenth of the peak."""
    if step < WARMUP_STEPS:
        return LEARNING_RATE * (step + 1) / WARMUP_STEPS
    remaining = (steps - step) / max(1, steps - WARMUP_STEPS)
    return LEARNING_RATE * (0.1 + 0.9 * remaining)


def train(
    tokenizer: Tokenizer,
    items: Sequence[QAItem],
    variant: Variant,
    *,
    seed: int,
    steps: int,
) -> tuple[LlamaForCausalLM, float]:
    """Initialise the model from ``seed`` and train it full-batch; return it and the last loss."""
    if steps < 0:
        raise TinyModelError(f"steps must be 0 or more, got {steps}")
    batch = encode_batch(tokenizer, training_examples(items, variant))
    with deterministic_torch(seed):
        # transformers leaves the model constructors unannotated.
        model = LlamaForCausalLM(model_config())  # type: ignore[no-untyped-call]
        model.train(True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
        loss_value = float("nan")
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, steps)
            optimizer.zero_grad(set_to_none=True)
            output = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                labels=batch.labels,
            )
            loss = output.loss
            loss.backward()
            optimizer.step()
            loss_value = float(loss.item())
        model.train(False)
    return model, loss_value
