"""The gateway embedder: the OpenAI shape, the weights that answered, every answer checked."""

from __future__ import annotations

import json

import httpx
import pytest

from sovereign.retrieval.embedding import GatewayEmbedder, check_vector
from sovereign.retrieval.errors import EmbeddingError, QueryError


def embedder(handler: httpx.MockTransport) -> GatewayEmbedder:
    return GatewayEmbedder(
        base_url="https://gateway.example",
        model="all-minilm-l6-v2",
        release="minilm-l6-v2-1",
        digest=DIGEST,
        dimension=3,
        token=lambda: "tok",
        transport=handler,
    )


DIGEST = "sha256:" + "aa" * 32
ANSWERED = {"x-sovereign-model-digest": DIGEST}


def answer(request: httpx.Request, model: str = "all-minilm-l6-v2") -> httpx.Response:
    body = json.loads(request.content)
    data = [
        {"object": "embedding", "index": i, "embedding": [3.0, 4.0, 0.0]}
        for i in reversed(range(len(body["input"])))
    ]
    return httpx.Response(
        200, json={"object": "list", "data": data, "model": model}, headers=ANSWERED
    )


def test_embeds_in_batches_and_normalises() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    vectors = embedder(httpx.MockTransport(handle)).embed([f"t{i}" for i in range(70)])
    assert len(vectors) == 70 and vectors[0] == [0.6, 0.8, 0.0]
    # The gateway's default admission.max_batch_size is 32.
    assert [len(json.loads(r.content)["input"]) for r in seen] == [32, 32, 6]
    assert "truncate_prompt_tokens" not in json.loads(seen[0].content)
    # Any version of the model may answer (a plain user may not pin one);
    # its digest is checked instead.
    assert "x-sovereign-model-version" not in seen[0].headers
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].url.path == "/v1/embeddings"


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(429, text="quota"), "answered 429"),
        (httpx.Response(200, text="not json", headers=ANSWERED), "not the OpenAI shape"),
        (
            httpx.Response(200, json={"data": [], "model": "all-minilm-l6-v2"}, headers=ANSWERED),
            "another number",
        ),
        (
            httpx.Response(200, json={"data": [], "model": "all-minilm-l6-v2"}),
            "answered with the weights '', not sha256:aa",
        ),
        (
            httpx.Response(
                200,
                json={"data": [], "model": "all-minilm-l6-v2"},
                headers={"x-sovereign-model-digest": "sha256:" + "bb" * 32},
            ),
            "answered with the weights 'sha256:bbbb",
        ),
        (
            httpx.Response(
                200,
                json={"data": [{"index": 0, "embedding": [1, 2, 3]}], "model": "x"},
                headers=ANSWERED,
            ),
            "answered x",
        ),
        (
            httpx.Response(
                200,
                json={"data": [{"index": 0, "embedding": [1, 2]}], "model": "all-minilm-l6-v2"},
                headers=ANSWERED,
            ),
            "3 dimensions",
        ),
        (
            httpx.Response(
                200,
                json={"data": [{"index": 3, "embedding": [1, 2, 3]}], "model": "all-minilm-l6-v2"},
                headers=ANSWERED,
            ),
            "bad or repeated index",
        ),
    ],
)
def test_a_bad_answer_is_an_embedding_error(response: httpx.Response, match: str) -> None:
    with pytest.raises(EmbeddingError, match=match):
        embedder(httpx.MockTransport(lambda request: response)).embed(["one"])


def test_unreachable_gateway_and_bad_inputs() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(EmbeddingError, match="could not be reached"):
        embedder(httpx.MockTransport(fail)).embed(["x"])
    with pytest.raises(QueryError):
        embedder(httpx.MockTransport(answer)).embed(["x" * 9000])


@pytest.mark.parametrize("vector", [[0.0, 0.0, 0.0], [1.0, float("nan"), 0.0], ["a", 1, 2], None])
def test_check_vector_refuses_unusable_vectors(vector: object) -> None:
    with pytest.raises(EmbeddingError):
        check_vector(vector, 3)


def test_a_text_longer_than_the_model_is_truncated_when_configured() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    short = embedder(httpx.MockTransport(handle))
    short.batch_size, short.truncate_tokens = 2, 256
    short.embed(["a", "b", "c"])
    assert [json.loads(r.content)["input"] for r in seen] == [["a", "b"], ["c"]]
    assert {json.loads(r.content)["truncate_prompt_tokens"] for r in seen} == {256}
