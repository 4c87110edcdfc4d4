"""The Inspect AI side of a run: a Task from a dataset, one eval, the per-item outcomes.

Each dataset item becomes a :class:`~inspect_ai.dataset.Sample` (id, raw prompt,
target, category and scorer in its metadata), the solver is Inspect's plain
``generate()``, and one scorer applies the item's own rule
(:func:`sovereign.eval.scoring.score`). ``--repeat N`` is Inspect's ``epochs``:
every item is asked N times in one eval, and each epoch is one run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovereign.eval import scoring
from sovereign.eval.connection import Connection, printable
from sovereign.eval.dataset import Dataset, Item
from sovereign.eval.errors import BackendError, EvalError

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.log import EvalLog


@dataclass(frozen=True)
class Generation:
    """How every completion is asked for; recorded in the result as is."""

    max_tokens: int
    seed: int
    temperature: float = 0.0
    retries: int = 3
    concurrency: int = 4


@dataclass(frozen=True)
class Outcome:
    """One answer to one item in one run."""

    output: str
    score: int
    stop_reason: str


def inspect_version() -> str:
    from importlib.metadata import version

    return version("inspect-ai")


def _task(dataset: Dataset) -> Task:
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import Score, Scorer, Target, accuracy, scorer
    from inspect_ai.solver import TaskState, generate

    items: dict[str, Item] = {item.id: item for item in dataset.items}

    @scorer(metrics=[accuracy()], name="sovereign_item_score")
    def item_score() -> Scorer:
        async def score(state: TaskState, target: Target) -> Score:
            item = items[str(state.sample_id)]
            return Score(value=float(scoring.score(item, state.output.completion)))

        return score

    samples = [
        Sample(
            id=item.id,
            input=item.input,
            target=item.target if isinstance(item.target, str) else "",
            metadata={"category": item.category, "scorer": item.scorer},
        )
        for item in dataset.items
    ]
    return Task(
        dataset=MemoryDataset(samples, name=dataset.name),
        solver=generate(),
        scorer=item_score(),
        name=dataset.name,
    )


def run_inspect(
    dataset: Dataset,
    connection: Connection,
    model: str,
    generation: Generation,
    *,
    repeat: int,
    log_dir: Path | None = None,
) -> list[dict[str, Outcome]]:
    """Ask every item ``repeat`` times; one ``{item id: outcome}`` per run, in run order."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import GenerateConfig, get_model

    import sovereign.eval.provider as provider  # registers the provider with Inspect

    config = GenerateConfig(
        temperature=generation.temperature,
        max_tokens=generation.max_tokens,
        seed=generation.seed,
        max_retries=generation.retries,
        timeout=int(connection.timeout_s * (generation.retries + 1)) + 1,
        max_connections=generation.concurrency,
    )
    with tempfile.TemporaryDirectory(prefix="sovereign-eval-") as scratch:
        try:
            # Strings only (paths, names, numbers): Inspect records model_args in its log.
            model_args: dict[str, Any] = connection.as_model_args()
            inspect_model = get_model(
                f"{provider.PROVIDER}/{model}",
                base_url=connection.url,
                config=config,
                memoize=False,  # a fresh provider (token, HTTP client) for every run
                **model_args,
            )
            logs = inspect_eval(
                _task(dataset),
                model=inspect_model,
                epochs=repeat,
                display="none",
                log_dir=str(log_dir) if log_dir is not None else scratch,
                log_level="error",
                fail_on_error=True,
                score_display=False,
            )
            # Inspect reads the samples back from its log lazily: before the scratch goes.
            api = inspect_model.api
            last_error = api.last_error if isinstance(api, provider.CompletionsAPI) else None
            runs = _outcomes(logs, repeat, last_error)
        except EvalError:
            raise
        except Exception as exc:  # the boundary with Inspect: any failure is a failed run
            raise BackendError(
                f"Inspect AI could not run the evaluation: {type(exc).__name__}: "
                f"{printable(str(exc), 400)}"
            ) from exc
    for number, run in enumerate(runs, start=1):
        missing = [item.id for item in dataset.items if item.id not in run]
        if missing:
            raise BackendError(f"run {number} has no answer for {len(missing)} item(s)")
    return runs


def _outcomes(
    logs: list[EvalLog], repeat: int, last_error: Exception | None
) -> list[dict[str, Outcome]]:
    """One ``{item id: outcome}`` per epoch of the one log; BackendError if it failed."""
    if len(logs) != 1:
        raise BackendError(f"Inspect AI returned {len(logs)} logs for one task")
    log = logs[0]
    if log.status != "success" or log.samples is None:
        if last_error is not None:
            raise BackendError(f"the evaluation did not finish: {last_error}") from last_error
        message = log.error.message if log.error is not None else f"status {log.status}"
        raise BackendError(f"the evaluation did not finish: {printable(message, 400)}")
    runs: list[dict[str, Outcome]] = [{} for _ in range(repeat)]
    for sample in log.samples:
        if not sample.scores or len(sample.scores) != 1:
            raise BackendError(f"item {sample.id!r} (run {sample.epoch}) has no score")
        (value,) = (score.value for score in sample.scores.values())
        choice = sample.output.choices[0] if sample.output.choices else None
        runs[sample.epoch - 1][str(sample.id)] = Outcome(
            output=sample.output.completion,
            score=1 if value == 1.0 else 0,
            stop_reason=choice.stop_reason if choice is not None else "unknown",
        )
    return runs
