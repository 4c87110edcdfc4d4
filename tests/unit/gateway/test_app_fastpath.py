"""Inference requests take the raw ASGI fast path; the rest still goes through Starlette."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from sovereign.gateway.app import create_app
from tests.unit.gateway.conftest import Harness, chat


def test_inference_before_the_gateway_is_open_is_503_starting() -> None:
    with TestClient(create_app()) as client:
        answer = client.post("/v1/chat/completions", json=chat())
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "starting"
    assert answer.headers["x-request-id"]


def test_other_methods_and_paths_still_get_starlette_errors(harness: Harness) -> None:
    client = harness.client()
    wrong_method = client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"]
    slash = client.post("/v1/chat/completions/x", json=chat())
    assert slash.status_code == 404


def test_a_crash_in_the_pipeline_is_a_500_error_body(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(request: Request, endpoint: str) -> Response:
        raise RuntimeError("boom")

    monkeypatch.setattr(harness.gateway, "inference", crash)
    client = TestClient(harness.app, raise_server_exceptions=False)
    answer = client.post("/v1/embeddings", json={"model": "tiny", "input": "x"})
    assert answer.status_code == 500
    assert "internal error" in answer.json()["error"]["message"]
    assert "boom" not in answer.text


def test_every_inference_endpoint_reaches_the_pipeline(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def record(request: Request, endpoint: str) -> Response:
        seen.append(endpoint)
        return Response(b"{}", media_type="application/json")

    monkeypatch.setattr(harness.gateway, "inference", record)
    client = harness.client()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        assert client.post(path, json={}).status_code == 200
    assert seen == ["chat", "completions", "embeddings"]
