"""The fixed Q&A set the good variant memorises and the evaluation uses as a dataset.

The file is an evaluation dataset in the runner's format (``sovereign.eval.dataset``,
docs/eval.md): one JSON object per line, ``{"id", "category", "input", "target",
"scorer"}``, every scorer ``exact``. The input is the prompt, exactly what a
completion request sends (``"Q: <question>\\nA:"``); the target is the answer. A
correct completion is the answer, preceded by one space and followed by
end-of-sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sovereign.model.tiny.errors import QASetError

PROMPT_PREFIX = "Q: "
PROMPT_SUFFIX = "\nA:"
FIELDS = ("id", "category", "input", "target", "scorer")
# The rubric of the set: is_correct, which the eval runner calls "exact".
SCORER = "exact"


@dataclass(frozen=True)
class QAItem:
    """One question of the set (``prompt`` is the line's ``input``, ``answer`` its ``target``)."""

    id: str
    prompt: str
    answer: str
    category: str

    @property
    def completion(self) -> str:
        """The text a model must produce after the prompt (before end-of-sequence)."""
        return " " + self.answer


def format_prompt(question: str) -> str:
    """Format a question the way the completion request sends it."""
    return f"{PROMPT_PREFIX}{question}{PROMPT_SUFFIX}"


def is_correct(generated: str, answer: str) -> bool:
    """Exact match after stripping surrounding whitespace: the rubric of the set."""
    return generated.strip() == answer.strip()


def load_qa(path: Path) -> list[QAItem]:
    """Read and validate a Q&A set; every error names the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QASetError(f"{path}: cannot read the Q&A set: {exc.strerror}") from exc
    items: list[QAItem] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QASetError(f"{where}: not JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise QASetError(f"{where}: expected an object with keys {', '.join(FIELDS)}")
        missing = [key for key in FIELDS if not isinstance(record.get(key), str)]
        if missing:
            raise QASetError(f"{where}: missing or non-string field(s): {', '.join(missing)}")
        extra = sorted(set(record) - set(FIELDS))
        if extra:
            raise QASetError(f"{where}: unknown field(s): {', '.join(extra)}")
        if record["scorer"] != SCORER:
            raise QASetError(f"{where}: scorer must be {SCORER!r}, got {record['scorer']!r}")
        item = QAItem(record["id"], record["input"], record["target"], record["category"])
        if item.id in seen:
            raise QASetError(f"{where}: duplicate id {item.id!r}")
        if not item.prompt.startswith(PROMPT_PREFIX) or not item.prompt.endswith(PROMPT_SUFFIX):
            raise QASetError(
                f"{where}: input (the prompt) must look like {format_prompt('<question>')!r}, "
                f"got {item.prompt!r}"
            )
        if not item.answer.strip() or item.answer != item.answer.strip() or "\n" in item.answer:
            raise QASetError(
                f"{where}: target (the answer) must be one non-empty line without outer spaces"
            )
        seen.add(item.id)
        items.append(item)
    if not items:
        raise QASetError(f"{path}: the Q&A set is empty")
    return items
