"""Embeddings computed inside the boundary, through the inference gateway.

The retrieval service asks the gateway's ``/v1/embeddings`` like any other
client, with the caller's identity, quota and audit record. The gateway
names the digest of the weights that answered (``x-sovereign-model-digest``)
and an answer of any other weights than the index's binding records is
refused, so the vectors of an index and of a query always come from the
same model, through a rolling release of it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from sovereign.retrieval.errors import EmbeddingError, QueryError

# Texts per request: the gateway's admission.max_batch_size (32 by default)
# bounds an embeddings input list.
MAX_BATCH = 32
MAX_INPUT_CHARS = 8192
# The gateway's answer names the digest of the weights that computed it.
DIGEST_HEADER = "x-sovereign-model-digest"
# The data class a request to the gateway is labelled with (its routing rules
# require one of some callers, e.g. risk officers).
DATA_CLASS_HEADER = "x-sovereign-data-class"


class Embedder(Protocol):
    """Turns texts into unit vectors; names the model and the digest of its weights."""

    @property
    def model(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass
class GatewayEmbedder:
    """An embedding model reached through the gateway (OpenAI ``/v1/embeddings`` shape)."""

    base_url: str
    model: str
    release: str
    digest: str
    dimension: int
    token: Callable[[], str]
    timeout_s: float = 30.0
    transport: httpx.BaseTransport | None = None
    verify: str | bool = True
    batch_size: int = MAX_BATCH
    # vLLM's truncate_prompt_tokens: a text longer than the model's input is
    # embedded by its first tokens (as sentence-transformers does) instead of
    # refused; None sends nothing.
    truncate_tokens: int | None = None
    # The data class the requests are labelled with (None: no label).
    data_class: str | None = None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._batch(texts[start : start + self.batch_size]))
        return out

    def _batch(self, texts: Sequence[str]) -> list[list[float]]:
        for text in texts:
            if not text or len(text) > MAX_INPUT_CHARS:
                raise QueryError(f"an input to embed is empty or over {MAX_INPUT_CHARS} characters")
        body: dict[str, object] = {
            "model": self.model,
            "input": list(texts),
            "encoding_format": "float",
        }
        if self.truncate_tokens is not None:
            body["truncate_prompt_tokens"] = self.truncate_tokens
        headers = {"authorization": f"Bearer {self.token()}"}
        if self.data_class is not None:
            headers[DATA_CLASS_HEADER] = self.data_class
        response = post_to_gateway(
            self.base_url, "/v1/embeddings", body, headers, self.timeout_s, self.transport,
            self.verify, EmbeddingError,
        )  # fmt: skip
        answered = response.headers.get(DIGEST_HEADER, "")
        if answered != self.digest:
            raise EmbeddingError(
                f"the gateway answered with the weights {answered[:80]!r}, not {self.digest} "
                f"({self.release}) that the index is bound to"
            )
        return self._vectors(response, len(texts))

    def _vectors(self, response: httpx.Response, count: int) -> list[list[float]]:
        try:
            payload = response.json()
            data = payload["data"]
            answered = payload.get("model")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EmbeddingError("the gateway's embeddings answer is not the OpenAI shape") from exc
        if answered != self.model:
            raise EmbeddingError(
                f"asked for {self.model}, the gateway answered {str(answered)[:64]}"
            )
        if not isinstance(data, list) or len(data) != count:
            raise EmbeddingError(f"asked for {count} embeddings, got another number")
        vectors: list[list[float]] = [[] for _ in range(count)]
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or vectors[index]:
                raise EmbeddingError("the embeddings answer has a bad or repeated index")
            vectors[index] = check_vector(vector, self.dimension)
        return vectors


def post_to_gateway(
    base_url: str,
    path: str,
    body: Mapping[str, object],
    headers: dict[str, str],
    timeout_s: float,
    transport: httpx.BaseTransport | None,
    verify: str | bool,
    error: type[EmbeddingError],
) -> httpx.Response:
    """POST ``body`` to the gateway; ``error`` (naming the path) unless it answers 200."""
    try:
        with httpx.Client(timeout=timeout_s, transport=transport, verify=verify) as client:
            response = client.post(base_url.rstrip("/") + path, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise error(f"the gateway could not be reached: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise error(
            f"the gateway answered {response.status_code} to {path}: {response.text[:200]!r}"
        )
    return response


def check_vector(vector: object, dimension: int) -> list[float]:
    """A list of ``dimension`` finite floats, normalised to unit length."""
    if not isinstance(vector, list) or len(vector) != dimension:
        raise EmbeddingError(f"an embedding does not have {dimension} dimensions")
    values = [float(v) for v in vector if isinstance(v, int | float)]
    if len(values) != dimension or not all(math.isfinite(v) for v in values):
        raise EmbeddingError("an embedding holds a value that is not a finite number")
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:
        raise EmbeddingError("an embedding is the zero vector")
    return [v / norm for v in values]
