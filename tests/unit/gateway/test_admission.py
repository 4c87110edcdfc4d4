"""Each admission refusal names its limit and value, with the right status."""

from __future__ import annotations

from typing import Any

import pytest

from sovereign.gateway.admission import tool_chain_depth
from tests.unit.gateway.conftest import Harness, chat

TOOL_ROUND = [
    {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
    {"role": "tool", "tool_call_id": "1", "content": "42"},
]


def _tools(*names: str) -> list[dict[str, object]]:
    return [{"type": "function", "function": {"name": name}} for name in names]


def _post(harness: Harness, body: Any, groups: list[str] | None = None) -> tuple[int, Any]:
    headers = harness.auth(groups=groups or ["staff"])
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=body, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (chat(max_tokens=257), 400, "max_tokens_over_cap", "cap of 256 tokens (max_tokens_cap)"),
        (
            chat(max_completion_tokens=1000),
            400,
            "max_tokens_over_cap",
            "'max_completion_tokens' 1000 is over the cap of 256",
        ),
        (chat(content="x" * 6100), 400, "prompt_too_long", "over the limit of 2000"),
        (
            {
                "model": "tiny",
                "messages": [{"role": "user", "content": "go"}, *TOOL_ROUND * 3],
            },
            400,
            "tool_chain_too_deep",
            "depth 3 is over the limit of 2 (max_tool_chain_depth)",
        ),
        (chat(tools=_tools("search", "shell")), 403, "tool_not_allowed", "tool 'shell'"),
        (chat(max_tokens=0), 400, "invalid_request", "'max_tokens' must be a positive integer"),
        (chat(n=17), 400, "invalid_request", "'n' 17 is over the limit of 16"),
        ({"model": "tiny", "messages": []}, 400, "invalid_request", "non-empty list"),
        ({"model": "nope", "messages": [{"role": "user"}]}, 404, "model_not_found", "'nope'"),
        ({"model": "embed", "input": "x"}, 400, "unsupported_endpoint", "/v1/chat/completions"),
        ([1, 2], 400, "invalid_json", "JSON object"),
    ],
)
def test_refusals_name_the_limit(
    harness: Harness, body: Any, status: int, code: str, words: str
) -> None:
    got, answer = _post(harness, body)
    assert got == status, answer
    error = answer["error"]
    assert error["code"] == code and words in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert harness.backends.who_received() == []
    assert harness.quota.reserved == {}
    (record,) = harness.audit.records
    assert record["event"] == "rejected" and record["reason"] == code


def test_a_rejection_record_carries_the_limit(harness: Harness) -> None:
    _post(harness, chat(max_tokens=999))
    record = harness.audit.records[0]
    assert (record["limit"], record["limit_value"]) == ("max_tokens_cap", 256)


def test_an_oversized_body_is_413(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=b'{"model": "tiny", "messages": [' + b" " * 20000 + b"]}",
            headers={**harness.auth(), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert "limit of 20000 bytes (max_request_bytes)" in response.json()["error"]["message"]


def test_an_oversized_chunked_body_is_413(harness: Harness) -> None:
    def body() -> Any:
        for _ in range(30):
            yield b" " * 1000

    with harness.client() as client:
        response = client.post("/v1/chat/completions", content=body(), headers=harness.auth())
    assert response.status_code == 413


def test_invalid_json_is_400(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post("/v1/chat/completions", content=b"{nope", headers=harness.auth())
        deep = client.post(
            "/v1/chat/completions", content=b"[" * 5000 + b"]" * 5000, headers=harness.auth()
        )
    assert response.status_code == 400 and deep.status_code == 400


def test_a_missing_max_tokens_reserves_and_sends_the_cap(harness: Harness) -> None:
    status, _ = _post(harness, chat(content="abc"))
    assert status == 200
    (sent,) = [b for h in harness.backends.by_host.values() for b in h.received]
    assert sent["max_tokens"] == 256
    (reserved,) = harness.quota.reserved.values()
    # "user" + "abc" are 7 bytes -> 3 tokens, plus 4 for the message, plus the 256 cap.
    assert reserved == 3 + 4 + 256
    assert harness.audit.records[0]["reserved_tokens"] == reserved


def test_n_choices_reserve_n_budgets(harness: Harness) -> None:
    assert _post(harness, chat(content="abc", max_tokens=10, n=3))[0] == 200
    assert list(harness.quota.reserved.values()) == [7 + 30]


def test_allowed_tools_pass_and_a_wildcard_group_allows_any(harness: Harness) -> None:
    assert _post(harness, chat(tools=_tools("search")))[0] == 200
    assert _post(harness, chat(tools=_tools("shell")), groups=["staff", "power"])[0] == 200
    assert _post(harness, chat(tools=_tools("search")), groups=["nobody"])[0] == 403


def test_a_tool_chain_at_the_limit_passes(harness: Harness) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}, *TOOL_ROUND * 2]}
    assert _post(harness, body)[0] == 200


def test_tool_chain_depth_counts_consecutive_rounds() -> None:
    user = {"role": "user", "content": "q"}
    answer = {"role": "assistant", "content": "a"}
    assert tool_chain_depth([user]) == 0
    assert tool_chain_depth([user, *TOOL_ROUND, *TOOL_ROUND]) == 2
    assert tool_chain_depth([user, *TOOL_ROUND, answer, user, *TOOL_ROUND]) == 1
    assert tool_chain_depth([user, *TOOL_ROUND * 3, user]) == 3
