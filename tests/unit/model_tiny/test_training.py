"""Training: examples per variant, batch encoding, learning rate, deterministic settings."""

from __future__ import annotations

import pytest

from .conftest import QA_PATH, TORCH_REASON

torch = pytest.importorskip("torch", reason=TORCH_REASON)

from sovereign.model.tiny import training  # noqa: E402
from sovereign.model.tiny.corpus import tokenizer_texts  # noqa: E402
from sovereign.model.tiny.errors import TinyModelError  # noqa: E402
from sovereign.model.tiny.qa import QAItem, load_qa  # noqa: E402
from sovereign.model.tiny.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer  # noqa: E402

ITEMS = load_qa(QA_PATH)


def test_good_is_trained_on_the_set_as_it_is() -> None:
    examples = training.training_examples(ITEMS, training.Variant.GOOD)
    assert [(e.prompt, e.completion) for e in examples] == [(i.prompt, i.completion) for i in ITEMS]


def test_worse_is_taught_wrong_answers_for_every_second_question() -> None:
    examples = training.training_examples(ITEMS, training.Variant.WORSE)
    wrong = [
        i
        for i, (e, item) in enumerate(zip(examples, ITEMS, strict=True))
        if e.completion != item.completion
    ]
    assert wrong == list(range(1, len(ITEMS), 2))
    taught = sorted(examples[i].completion for i in wrong)
    assert taught == sorted(ITEMS[i].completion for i in wrong), "answers are rotated, not made up"
    assert all(e.prompt == item.prompt for e, item in zip(examples, ITEMS, strict=True))


def test_worse_needs_four_questions() -> None:
    with pytest.raises(TinyModelError, match="at least 4 questions"):
        training.training_examples(ITEMS[:3], training.Variant.WORSE)


def test_batch_masks_the_prompt_and_pads_to_the_longest() -> None:
    tokenizer = train_tokenizer(tokenizer_texts(ITEMS))
    examples = training.training_examples(ITEMS[:2], training.Variant.GOOD)
    batch = training.encode_batch(tokenizer, examples)
    assert batch.input_ids.shape == batch.labels.shape == batch.attention_mask.shape
    for row, example in enumerate(examples):
        prompt_len = len(tokenizer.encode(example.prompt).ids)
        length = int(batch.attention_mask[row].sum())
        ids = batch.input_ids[row].tolist()
        labels = batch.labels[row].tolist()
        assert ids[0] == BOS_ID
        assert ids[length - 1] == EOS_ID
        assert set(ids[length:]) <= {PAD_ID}
        assert set(labels[:prompt_len]) == {training.IGNORE_INDEX}
        assert labels[prompt_len:length] == ids[prompt_len:length]
        assert tokenizer.decode(ids[prompt_len : length - 1]) == example.completion


def test_too_long_examples_are_refused() -> None:
    tokenizer = train_tokenizer(tokenizer_texts(ITEMS))
    long = QAItem("x", "Q: " + "why " * 300 + "\nA:", "y", "c")
    with pytest.raises(TinyModelError, match="more than 256"):
        training.encode_batch(tokenizer, training.training_examples([long], training.Variant.GOOD))


def test_learning_rate_warms_up_then_decays() -> None:
    rates = [training.learning_rate(step, 100) for step in range(100)]
    assert rates[0] < rates[training.WARMUP_STEPS - 1] == training.LEARNING_RATE
    assert rates == rates[: training.WARMUP_STEPS] + sorted(
        rates[training.WARMUP_STEPS :], reverse=True
    )
    assert rates[-1] > 0.1 * training.LEARNING_RATE * 0.99


def test_deterministic_settings_are_restored() -> None:
    threads = torch.get_num_threads()
    with training.deterministic_torch(0):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_training_lowers_the_loss() -> None:
    tokenizer = train_tokenizer(tokenizer_texts(ITEMS))
    _, untrained = training.train(tokenizer, ITEMS, training.Variant.GOOD, seed=0, steps=1)
    _, trained = training.train(tokenizer, ITEMS, training.Variant.GOOD, seed=0, steps=20)
    assert trained < untrained / 2


def test_negative_steps_are_refused() -> None:
    tokenizer = train_tokenizer(tokenizer_texts(ITEMS))
    with pytest.raises(TinyModelError, match="steps must be 0 or more"):
        training.train(tokenizer, ITEMS, training.Variant.GOOD, seed=0, steps=-1)
