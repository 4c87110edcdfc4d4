"""Retrieval-augmented answers: the reader's passages only, the completion as the reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from sovereign.retrieval.answer import AnswerError, GatewayCompleter, context_of, prompt_of
from sovereign.retrieval.backend import Hit
from sovereign.retrieval.config import parse_config
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.service import RetrievalService, build_app

from .conftest import HashEmbedder
from .test_service import QUESTION, Sink, Verifier, config_for

HIT = Hit("d#0", "d", "Visitor procedure", "Badges", "Visitors wear an orange badge " * 5,
          "dms://d", "internal", 0.1)  # fmt: skip


def test_the_context_is_numbered_best_first_and_bounded() -> None:
    context, used = context_of([HIT, HIT, HIT], 300)
    assert context.startswith("[1] Visitor procedure - Badges: Visitors wear")
    assert len(context) <= 300 + 8 and len(used) == 2 and context.endswith(" ...")
    assert prompt_of(" Which badge? ", "ctx") == "Context:\nctx\n\nQ: Which badge?\nA:"
    assert context_of([], 300) == ("", [])


def completer(handler: httpx.MockTransport) -> GatewayCompleter:
    return GatewayCompleter("https://gateway.example", "sovereign-tiny", lambda: "bob-token",
                            max_tokens=16, transport=handler)  # fmt: skip


def test_the_completion_is_asked_as_the_reader_with_temperature_zero() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"model": "sovereign-tiny", "choices": [{"text": " two"}]})

    assert completer(httpx.MockTransport(handle)).complete("Q: x\nA:") == (" two", "sovereign-tiny")
    body = json.loads(seen[0].content)
    assert body == {"model": "sovereign-tiny", "prompt": "Q: x\nA:", "max_tokens": 16,
                    "temperature": 0}  # fmt: skip
    assert seen[0].headers["authorization"] == "Bearer bob-token"
    assert seen[0].url.path == "/v1/completions"


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(429, text="quota"), "answered 429"),
        (httpx.Response(200, json={"choices": []}), "not the OpenAI shape"),
        (httpx.Response(200, json={"choices": [{"text": 5}]}), "no text"),
    ],
)
def test_bad_completions_are_answer_errors(response: httpx.Response, match: str) -> None:
    with pytest.raises(AnswerError, match=match):
        completer(httpx.MockTransport(lambda request: response)).complete("Q: x\nA:")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sovereign.retrieval.chunk import ChunkerConfig
    from sovereign.retrieval.ingest import Ingestor, load_manifest

    root = tmp_path_factory.mktemp("answers")
    manifest = Path(__file__).resolve().parents[3] / "files" / "corpus" / "manifest.yml"
    Ingestor(EmbeddedBackend(root / "db"), HashEmbedder(), ChunkerConfig(), "chunks").run(
        load_manifest(manifest)
    )
    return root


class Gateway:
    """The gateway's /v1/completions as seen from the service: who asked, with what prompt."""

    def __init__(self) -> None:
        self.prompts: dict[str, str] = {}
        self.labels: dict[str, str | None] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        self.prompts[token] = json.loads(request.content)["prompt"]
        self.labels[token] = request.headers.get("x-sovereign-data-class")
        return httpx.Response(
            200, json={"model": "sovereign-tiny", "choices": [{"text": " financial crime\n"}]}
        )


def client_for(root: Path, gateway: Gateway, answers: bool = True) -> tuple[TestClient, Sink]:
    raw = config_for(root).model_dump(mode="json")
    if answers:
        raw["answer"] = {"model": "sovereign-tiny", "max_context_chars": 1500}
    config = parse_config(raw, "test")
    sink = Sink()
    service = RetrievalService(
        config,
        EmbeddedBackend(root / "db"),
        Verifier(),
        lambda token, data_class: HashEmbedder(),
        sink,
        completer_for=lambda token, data_class: GatewayCompleter(
            "https://gateway.example",
            "sovereign-tiny",
            lambda: token,
            transport=httpx.MockTransport(gateway.handle),
            data_class=data_class,
        ),  # fmt: skip
    )
    return TestClient(build_app(service)), sink


def ask(client: TestClient, token: str, body: object) -> Any:
    return client.post(
        "/v1/retrieval/answer", json=body, headers={"authorization": f"Bearer {token}"}
    )


def test_each_reader_s_answer_is_built_from_what_they_may_read(corpus: Path) -> None:
    gateway = Gateway()
    client, sink = client_for(corpus, gateway)
    for token in ("alice-token", "bob-token"):
        response = ask(client, token, {"question": QUESTION, "k": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "retrieval.answer" and body["answer"] == "financial crime"
        assert [s["n"] for s in body["sources"]] == list(range(1, len(body["sources"]) + 1))
    assert "Suspicious Transaction Review Procedure" in gateway.prompts["bob-token"]
    assert "Suspicious Transaction Review Procedure" not in gateway.prompts["alice-token"]
    assert gateway.prompts["bob-token"].endswith(f"Q: {QUESTION}\nA:")
    # The completion carries the passages: labelled with their most sensitive
    # class, so the gateway routes and audits bob's as confidential.
    assert gateway.labels == {"alice-token": "internal", "bob-token": "confidential"}
    record = sink.records[-1]
    assert record["event"] == "answer" and record["user"] == "bob"
    assert record["model"] == "sovereign-tiny" and len(str(record["answer_sha256"])) == 64


def test_nothing_readable_means_no_completion_is_asked(corpus: Path) -> None:
    gateway = Gateway()
    client, _ = client_for(corpus, gateway)
    body = ask(client, "eve-token", {"question": QUESTION}).json()
    assert body["answer"] is None and body["sources"] == [] and gateway.prompts == {}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": QUESTION}, "unknown_field"),
        ({"question": QUESTION, "mode": "vector"}, "unknown_field"),
        ({"question": ""}, "invalid_question"),
    ],
)
def test_bad_questions_are_400(corpus: Path, body: object, code: str) -> None:
    client, _ = client_for(corpus, Gateway())
    response = ask(client, "alice-token", body)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_answers_are_404_where_not_configured(corpus: Path) -> None:
    client, _ = client_for(corpus, Gateway(), answers=False)
    assert ask(client, "alice-token", {"question": QUESTION}).status_code == 404


def test_a_failing_completion_is_a_502_and_logged(corpus: Path) -> None:
    class Down(Gateway):
        def handle(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(503, json={"error": {"code": "audit_unavailable"}})

    client, sink = client_for(corpus, Down())
    response = ask(client, "bob-token", {"question": QUESTION})
    assert response.status_code == 502
    assert sink.records[-1]["status"] == 502 and sink.records[-1]["answer_sha256"] is None
