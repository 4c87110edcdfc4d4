"""Backend failures become 502/504 with OpenAI-style bodies, and refund the quota."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sovereign.gateway.upstream import HttpxUpstream
from sovereign.gateway.upstream_pool import PoolLimits
from tests.unit.gateway.conftest import Harness, chat


def _post(harness: Harness, body: dict[str, object] | None = None) -> Any:
    with harness.client() as client:
        return client.post("/v1/chat/completions", json=body or chat(), headers=harness.auth())


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (httpx.ConnectError, 502, "bad_gateway"),
        (httpx.ReadTimeout, 504, "upstream_timeout"),
        (httpx.RemoteProtocolError, 502, "bad_gateway"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_transport_failures_map_to_502_or_504(
    harness: Harness, failure: type[httpx.RequestError], status: int, code: str, stream: bool
) -> None:
    for backend in harness.backends.by_host.values():
        backend.fail = failure
    response = _post(harness, chat(stream=stream))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text
    assert harness.quota.released == list(harness.quota.reserved)
    assert harness.audit.records[-1]["event"] == "completed"
    assert harness.audit.records[-1]["status"] == status


@pytest.mark.parametrize(("backend_status", "status"), [(500, 502), (401, 502), (400, 400)])
def test_backend_statuses_are_mapped(harness: Harness, backend_status: int, status: int) -> None:
    for backend in harness.backends.by_host.values():
        backend.status = backend_status
    response = _post(harness)
    assert response.status_code == status
    assert "backend says no" in response.json()["error"]["message"]


def test_embeddings_and_completions_are_forwarded_to_their_paths(harness: Harness) -> None:
    with harness.client() as client:
        embedding = client.post(
            "/v1/embeddings", json={"model": "embed", "input": ["a", "b"]}, headers=harness.auth()
        )
        completion = client.post(
            "/v1/completions", json={"model": "tiny", "prompt": "once"}, headers=harness.auth()
        )
    assert embedding.status_code == 200 and completion.status_code == 200
    assert harness.backends["embed-general"].received[0]["input"] == ["a", "b"]
    # Embeddings generate nothing: the reservation is the prompt alone.
    assert min(harness.quota.reserved.values()) < 10


def test_the_request_id_is_generated_returned_and_forwarded(harness: Harness) -> None:
    with harness.client() as client:
        first = client.post(
            "/v1/chat/completions",
            json=chat(),
            headers={**harness.auth(), "X-Request-Id": "client-chosen"},
        )
        second = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2 and "client-chosen" not in ids
    sent = [h["x-request-id"] for b in harness.backends.by_host.values() for h in b.headers]
    assert set(sent) == ids


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_over_the_size_cap_is_a_502_and_audited(harness: Harness, stream: bool) -> None:
    # The fake backend's answers are a few hundred bytes: a 100-byte cap cuts them.
    limits = PoolLimits(max_response_bytes=100, max_stream_bytes=100)
    harness.gateway.upstream = HttpxUpstream(harness.upstream, limits)
    response = _post(harness, chat(stream=stream))
    completed = harness.audit.records[-1]
    assert completed["event"] == "completed"
    if stream:  # the status line was out: the stream ends with the error event
        assert response.status_code == 200
        assert "upstream_response_too_large" in response.text
        assert completed["outcome"] == "upstream_failed_mid_stream"
    else:
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_response_too_large"
        assert completed["status"] == 502
