"""Scorers: how a model's output is checked against an item's target.

Every scorer gives 1 (correct) or 0 (wrong); the rules are deliberately plain so
that a person can say why an answer scored as it did:

``exact``
    the output equals the target once surrounding whitespace is stripped from
    both (the rule of the tiny model's Q&A set, ``sovereign.model.tiny.qa``).
``includes``
    the target occurs in the output, case and whitespace as written.
``regex``
    the target, a Python regular expression, matches somewhere in the output
    (``re.search``; anchor it with ``^``/``$`` or ``\\A``/``\\Z`` for a whole answer).
``json_schema``
    the output, stripped, is one JSON document that the target schema accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sovereign.eval.dataset import Item


def exact(output: str, target: str) -> bool:
    return output.strip() == target.strip()


def includes(output: str, target: str) -> bool:
    return target in output


def regex(output: str, pattern: re.Pattern[str]) -> bool:
    return pattern.search(output) is not None


def json_schema(output: str, validator: Any) -> bool:
    try:
        document = json.loads(output.strip(), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    try:
        return bool(validator.is_valid(document))
    except RecursionError:
        return False


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def score(item: Item, output: str) -> int:
    """1 when ``output`` is a correct answer to ``item``, else 0."""
    if item.scorer == "exact":
        assert isinstance(item.target, str)
        return int(exact(output, item.target))
    if item.scorer == "includes":
        assert isinstance(item.target, str)
        return int(includes(output, item.target))
    if item.scorer == "regex":
        return int(regex(output, item.check))
    if item.scorer == "json_schema":
        return int(json_schema(output, item.check))
    raise ValueError(f"unknown scorer {item.scorer!r}")  # the dataset loader refuses these
