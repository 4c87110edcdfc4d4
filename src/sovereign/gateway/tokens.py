"""Prompt-token estimates, made before the request reaches a tokenizer.

The gateway has no tokenizer for every model, so it estimates: every string
the model will read is measured in UTF-8 bytes, divided by the model's
``bytes_per_token`` and rounded up, plus ``PER_MESSAGE_OVERHEAD`` tokens per
chat message for the role markers of the chat template. "Everything the
model will read" is everything the chat template renders: the messages
(contents and text parts, names, tool calls and tool results, system
prompts) and, as their JSON text, the fields of ``RENDERED_FIELDS`` (tool
and function definitions, ``documents``, the chat-template arguments, a
forced tool choice); for completions and embeddings, each prompt or input.
BPE tokenizers average about 4 bytes per token on English prose and less on
code or non-Latin scripts; the default of 3 errs on the high side. The
estimate is only the reservation: the quota is settled from the upstream's
real ``usage`` afterwards.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

PER_MESSAGE_OVERHEAD = 4
_MAX_DEPTH = 32
# Chat request fields a chat template renders into the prompt besides the
# messages; measured as their compact JSON (keys and punctuation included).
RENDERED_FIELDS = ("tools", "functions", "documents", "chat_template_kwargs", "tool_choice")


def _measure(value: object, depth: int = 0) -> tuple[int, int]:
    """(UTF-8 bytes of every string, count of integers) inside ``value``.

    Integers are token ids of a pre-tokenized prompt: one token each.
    """
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")), 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 0, 1
    if depth > _MAX_DEPTH:
        return 0, 0
    if isinstance(value, dict):  # parsed JSON: objects are dicts
        items: list[object] = list(value.values())
    elif isinstance(value, list):
        items = value
    else:
        return 0, 0
    size = count = 0
    for item in items:
        more, ids = _measure(item, depth + 1)
        size += more
        count += ids
    return size, count


def estimate_text_tokens(value: object, bytes_per_token: float) -> int:
    """One completion prompt or embedding input: a string, or token ids."""
    size, ids = _measure(value)
    return math.ceil(size / bytes_per_token) + ids


def estimate_prompt_tokens(body: Mapping[str, object], bytes_per_token: float) -> int:
    """Everything in ``body`` the model will read, as one prompt."""
    size = ids = overhead = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        size, ids = _measure(messages)
        overhead = PER_MESSAGE_OVERHEAD * len(messages)
    for key in ("prompt", "input", "suffix"):
        if key in body:
            more, more_ids = _measure(body[key])
            size += more
            ids += more_ids
    for key in RENDERED_FIELDS:
        value = body.get(key)
        if value is not None and not (isinstance(value, str) and key == "tool_choice"):
            # "auto"/"none"/"required" select behaviour; an object names a tool.
            size += len(json.dumps(value, separators=(",", ":")).encode())
    return math.ceil(size / bytes_per_token) + ids + overhead
