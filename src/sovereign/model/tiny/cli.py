"""Command line of the tiny model generator.

    python -m sovereign.model.tiny --variant good|worse --out DIR
        [--seed N] [--steps N] [--qa PATH] [--score]

Prints the SHA-256 of every file written (``sha256sum`` format) and, with ``--score``,
how many questions of the Q&A set the model answers exactly. Exits 0 on success, 1
when the model cannot be made or scored (with a one-line reason), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from sovereign.model.tiny.errors import MissingDependencyError, TinyModelError

DEFAULT_QA = Path("files/eval/tiny_qa.jsonl")
DEFAULT_SEED = 0
VARIANTS = ("good", "worse")
MAX_SEED = 2**32 - 1
MAX_STEPS = 100_000
NEEDS = "torch, transformers, tokenizers and safetensors"


def bounded_int(low: int, high: int, text: str) -> int:
    """Parse ``text`` as an integer in ``[low, high]`` or fail with argparse's message."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
    return value


def _bounded(low: int, high: int) -> Callable[[str], int]:
    return functools.partial(bounded_int, low, high)


def parser() -> argparse.ArgumentParser:
    """The argument parser (public so the README and tests can show its help)."""
    result = argparse.ArgumentParser(
        prog="python -m sovereign.model.tiny",
        description="Generate Sovereign's tiny test model (a 2-layer Llama and its tokenizer).",
    )
    result.add_argument("--variant", required=True, choices=VARIANTS, help="which model to make")
    result.add_argument("--out", required=True, type=Path, help="model directory to write")
    result.add_argument(
        "--seed", type=_bounded(0, MAX_SEED), default=DEFAULT_SEED, help="random seed (0)"
    )
    result.add_argument(
        "--steps",
        type=_bounded(0, MAX_STEPS),
        default=None,
        help="training steps (default: the variant's full training)",
    )
    result.add_argument(
        "--qa", type=Path, default=DEFAULT_QA, help=f"Q&A set to train on ({DEFAULT_QA})"
    )
    result.add_argument("--score", action="store_true", help="also score the model on the Q&A set")
    return result


def run(args: argparse.Namespace, stdout: TextIO) -> None:
    """Generate (and optionally score) the model the arguments ask for."""
    try:
        from sovereign.model.tiny import build, evaluate, training
    except ImportError as exc:
        raise MissingDependencyError(f"needs {NEEDS} ({exc.name} is missing)") from exc
    variant = training.Variant(args.variant)
    steps = training.DEFAULT_STEPS if args.steps is None else args.steps
    started = time.monotonic()
    made = build.generate(args.out, variant, qa_path=args.qa, seed=args.seed, steps=steps)
    elapsed = time.monotonic() - started
    print(
        f"wrote the {variant} model to {made.out} "
        f"(seed {made.seed}, {made.steps} steps, final loss {made.final_loss:.4f}, "
        f"{elapsed:.1f} s)",
        file=stdout,
    )
    for name, digest in made.digests.items():
        print(f"{digest}  {name}", file=stdout)
    if args.score:
        from transformers.utils.logging import disable_progress_bar

        # One line per result: transformers' weight-loading progress bar is noise here.
        disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
        correct, total = evaluate.score(args.out, args.qa)
        print(f"score: {correct}/{total} exact on {args.qa}", file=stdout)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    args = parser().parse_args(argv)
    try:
        run(args, out)
    except TinyModelError as exc:
        print(f"error: {exc}", file=err)
        return 1
    return 0
