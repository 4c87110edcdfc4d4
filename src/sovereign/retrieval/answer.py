"""Retrieval-augmented answers: the reader's chunks as context, the model through the gateway.

The question is searched like any query (the reader's access list inside the
search), the best chunks become a bounded context, and the completion is
asked of the gateway's ``/v1/completions`` with the reader's own token: the
gateway applies the reader's identity, quota, routing and audit to it, so
what the model saw is on the reader's record. The answer comes back with its
sources (document id, title, link), never with chunks the reader may not read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from sovereign.retrieval.backend import Hit
from sovereign.retrieval.embedding import DATA_CLASS_HEADER, post_to_gateway
from sovereign.retrieval.errors import EmbeddingError, QueryError

MAX_ANSWER_BYTES = 256 * 1024


class AnswerError(EmbeddingError):
    """The gateway failed or refused the completion, or answered something unusable."""


def context_of(hits: Sequence[Hit], max_chars: int) -> tuple[str, list[Hit]]:
    """Numbered passages, best first, until ``max_chars``; the hits that made it in."""
    parts: list[str] = []
    used: list[Hit] = []
    size = 0
    for number, hit in enumerate(hits, start=1):
        label = " - ".join(part for part in (hit.title, hit.heading) if part)
        passage = f"[{number}] {label}: {hit.text}"
        if size + len(passage) > max_chars:
            room = max_chars - size
            if room < 80:
                break
            passage = passage[:room].rsplit(" ", 1)[0] + " ..."
        parts.append(passage)
        used.append(hit)
        size += len(passage) + 1
        if size >= max_chars:
            break
    return "\n".join(parts), used


def prompt_of(question: str, context: str) -> str:
    """The prompt: the passages, then the question in the Q/A form the models are asked in."""
    return f"Context:\n{context}\n\nQ: {question.strip()}\nA:"


@dataclass
class GatewayCompleter:
    """``/v1/completions`` of the gateway, as the reader (its bearer token)."""

    base_url: str
    model: str
    token: Callable[[], str]
    max_tokens: int = 32
    timeout_s: float = 60.0
    transport: httpx.BaseTransport | None = None
    verify: str | bool = True
    # The data class the completion is labelled with: the most sensitive
    # among the reader's label and the passages' classes (None: no label).
    data_class: str | None = None

    def complete(self, prompt: str) -> tuple[str, str]:
        """The completion's text and the model that answered."""
        if not prompt or len(prompt) > 64 * 1024:
            raise QueryError("the prompt is empty or too long")
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        headers = {"authorization": f"Bearer {self.token()}"}
        if self.data_class is not None:
            headers[DATA_CLASS_HEADER] = self.data_class
        response = post_to_gateway(
            self.base_url, "/v1/completions", body, headers, self.timeout_s, self.transport,
            self.verify, AnswerError,
        )  # fmt: skip
        if len(response.content) > MAX_ANSWER_BYTES:
            raise AnswerError("the gateway's completion is over 256 KiB")
        try:
            payload = response.json()
            text = payload["choices"][0]["text"]
            model = payload.get("model", self.model)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise AnswerError("the gateway's completion is not the OpenAI shape") from exc
        if not isinstance(text, str):
            raise AnswerError("the gateway's completion has no text")
        return text, str(model)[:128]
