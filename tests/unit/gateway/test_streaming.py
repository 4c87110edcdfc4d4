"""Streams are relayed as they come and charged their real usage."""

from __future__ import annotations

import json

from sovereign.gateway.quota import QuotaStore
from sovereign.gateway.streaming import SseRelay
from tests.unit.gateway.conftest import Harness, Live, chat
from tests.unit.gateway.fakes import sse_events

USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def _events(data: bytes) -> list[str]:
    return [e for e in data.decode().split("\n\n") if e]


def test_events_cut_anywhere_are_forwarded_whole_and_the_usage_chunk_is_read() -> None:
    stream = sse_events("hi", 4, USAGE)
    for size in (1, 3, 17, len(stream)):
        relay = SseRelay(forward_usage=False)
        out = b"".join(relay.feed(stream[i : i + size]) for i in range(0, len(stream), size))
        out += relay.finish()
        assert relay.usage == USAGE
        events = _events(out)
        assert len(events) == 5 and events[-1] == "data: [DONE]"
        assert all('"usage"' not in e for e in events)
        assert relay.content_chunks >= 4


def test_the_usage_chunk_is_kept_for_a_client_that_asked() -> None:
    relay = SseRelay(forward_usage=True)
    out = relay.feed(sse_events("hi", 2, USAGE)) + relay.finish()
    assert sum('"usage"' in e for e in _events(out)) == 1


def test_a_complete_event_is_sent_at_once_and_crlf_separators_work() -> None:
    relay = SseRelay(forward_usage=False)
    assert relay.feed(b'data: {"choices": [{"delta": {}}]}\r\n\r\ndata: {"cho') != b""
    assert relay.feed(b'ices": []}') == b""
    assert relay.feed(b"\n\n") == b'data: {"choices": []}\n\n'


def test_full_text_collects_the_deltas() -> None:
    relay = SseRelay(forward_usage=False, collect_text=True)
    relay.feed(sse_events("ab", 3, USAGE))
    assert "".join(relay.text) == "ababab"


def test_a_streamed_request_asks_for_usage_and_settles_it(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.content)
    assert events[-1] == "data: [DONE]" and all('"usage"' not in e for e in events)
    (sent,) = [b for h in harness.backends.by_host.values() for b in h.received]
    # The final usage, and the running count in every chunk (for a client that leaves).
    assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    (request_id,) = harness.quota.settled
    assert harness.quota.settled[request_id] == 11 + 3  # the backend's usage, not the estimate
    assert harness.quota.reserved[request_id] > 14
    completed = harness.audit.records[-1]
    assert (completed["event"], completed["outcome"], completed["charged_tokens"]) == (
        "completed",
        "ok",
        14,
    )


def test_a_client_asking_for_usage_gets_it(harness: Harness) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=body, headers=harness.auth())
    usage = [json.loads(e[6:]) for e in _events(response.content) if '"usage"' in e]
    assert usage[0]["usage"]["total_tokens"] == 14


def test_a_stream_broken_by_the_backend_ends_with_an_error_event(harness: Harness) -> None:
    for backend in harness.backends.by_host.values():
        backend.cut, backend.stream_fail_after = 150, 1  # one whole event, then a break
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
        )
    assert response.status_code == 200  # the status line was already out
    assert '"code": "bad_gateway"' in _events(response.content)[-1]
    completed = harness.audit.records[-1]
    assert completed["outcome"] == "upstream_failed_mid_stream" and completed["status"] == 502
    (charged,) = harness.quota.settled.values()
    admitted = harness.audit.records[0]
    assert charged == int(str(admitted["prompt_tokens_estimate"])) + 1


def test_the_real_quota_store_is_charged_the_streamed_usage(live: Live) -> None:
    with live.client() as client:
        streamed = client.post(
            "/v1/chat/completions",
            json=chat(stream=True, max_tokens=200),
            headers=live.auth(preferred_username="erin", team="icu"),
        )
        assert streamed.status_code == 200
        assert live.gateway is not None and client.portal is not None
        store = live.gateway.quota
        assert isinstance(store, QuotaStore)
        usage = client.portal.call(lambda: store.usage(user="erin", team="icu"))
    assert usage["user.tokens_per_day"] == 14
    assert usage["team.tokens_per_month"] == 14
    assert usage["user.requests_per_minute"] == 1


def test_the_usage_options_reach_the_backend_whatever_the_body_encoding(harness: Harness) -> None:
    """The options are spliced into a UTF-8 body and merged into any other:
    the backend gets one valid JSON object with every field of the client's."""
    body = chat(stream=True, temperature=0.5)
    for raw in (json.dumps(body).encode() + b" \n", json.dumps(body).encode("utf-16")):
        with harness.client() as client:
            response = client.post(
                "/v1/chat/completions",
                content=raw,
                headers={**harness.auth(), "Content-Type": "application/json"},
            )
        assert response.status_code == 200
    sent = [b for h in harness.backends.by_host.values() for b in h.received]
    assert len(sent) == 2
    for forwarded in sent:
        assert forwarded["stream_options"] == {
            "include_usage": True,
            "continuous_usage_stats": True,
        }
        assert forwarded["temperature"] == 0.5 and forwarded["messages"] == body["messages"]
