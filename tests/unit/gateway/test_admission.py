"""Each admission refusal names its limit and value, with the right status."""

from __future__ import annotations

from typing import Any

import pytest

from sovereign.gateway.admission import tool_chain_depth
from tests.unit.gateway.conftest import BASE_CONFIG, Clock, FakeIdp, Harness, chat, make_config

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


# -- budgets count every output the backend will generate (issue 8, points 1-3) --


def _completions(harness: Harness, body: Any) -> tuple[int, Any]:
    with harness.client() as client:
        response = client.post("/v1/completions", json=body, headers=harness.auth())
    return response.status_code, response.json()


def _sent(harness: Harness) -> dict[str, Any]:
    (sent,) = [b for h in harness.backends.by_host.values() for b in h.received]
    return sent


def test_a_prompt_list_is_a_batch_reserved_per_prompt_and_per_choice(harness: Harness) -> None:
    # Three 6-byte prompts are 2 tokens each; 3 prompts x n=2 x 10 tokens of output.
    body = {"model": "tiny", "prompt": ["abcdef"] * 3, "max_tokens": 10, "n": 2}
    assert _completions(harness, body)[0] == 200
    assert list(harness.quota.reserved.values()) == [3 * 2 + 3 * 2 * 10]
    assert harness.audit.records[0]["reserved_tokens"] == 66


def test_token_id_prompts_count_one_token_per_id_and_batch_alike(harness: Harness) -> None:
    body = {"model": "tiny", "prompt": [[1, 2, 3], [4, 5]], "max_tokens": 4}
    assert _completions(harness, body)[0] == 200
    assert list(harness.quota.reserved.values()) == [5 + 2 * 4]


def test_a_batch_over_the_cap_is_refused(harness: Harness) -> None:
    status, answer = _completions(harness, {"model": "tiny", "prompt": ["a"] * 33})
    assert status == 400 and answer["error"]["code"] == "batch_too_large"
    assert "'prompt' 33 is over the limit of 32 (max_batch_size)" in answer["error"]["message"]
    assert harness.backends.who_received() == []


def test_an_embeddings_input_list_is_a_batch_too(harness: Harness) -> None:
    with harness.client() as client:
        over = client.post(
            "/v1/embeddings", json={"model": "embed", "input": ["x"] * 33}, headers=harness.auth()
        )
        ok = client.post(
            "/v1/embeddings", json={"model": "embed", "input": ["abc"] * 4}, headers=harness.auth()
        )
    assert over.status_code == 400 and over.json()["error"]["code"] == "batch_too_large"
    assert ok.status_code == 200 and list(harness.quota.reserved.values()) == [4]


@pytest.mark.parametrize(
    "prompt", [[], [1, "a"], [["a"]], [[1], 2], [True], {"text": "a"}, [[]], [-1]]
)
def test_malformed_prompts_are_400(harness: Harness, prompt: Any) -> None:
    status, answer = _completions(harness, {"model": "tiny", "prompt": prompt})
    assert status == 400 and answer["error"]["param"] == "prompt"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "tiny", "prompt": "a", "best_of": 8}),
        ("/v1/completions", {"model": "tiny", "prompt": "a", "use_beam_search": True}),
        ("/v1/completions", {"model": "tiny", "prompt": "a", "prompt_logprobs": 20}),
        ("/v1/completions", {"model": "tiny", "prompt": "a", "prompt_embeds": "AAAA"}),
        ("/v1/chat/completions", chat(chat_template="{{ 7 * 7 }}")),
        ("/v1/chat/completions", chat(priority=-100)),
        ("/v1/chat/completions", chat(vllm_xargs={"a": 1})),
        ("/v1/chat/completions", chat(kv_transfer_params={})),
        ("/v1/chat/completions", chat(request_id="mine")),
        ("/v1/embeddings", {"model": "embed", "input": "a", "mm_processor_kwargs": {}}),
    ],
)
def test_fields_the_gateway_cannot_account_for_are_refused_by_name(
    harness: Harness, path: str, body: dict[str, Any]
) -> None:
    field = next(key for key in body if key not in {"model", "prompt", "messages", "input"})
    with harness.client() as client:
        response = client.post(path, json=body, headers=harness.auth())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_field" and repr(field) in error["message"]
    assert harness.backends.who_received() == []


def test_a_site_can_forward_a_field_it_allows(idp: FakeIdp, clock: Clock) -> None:
    config = make_config(admission={**BASE_CONFIG["admission"], "forward_fields": ["metadata"]})
    harness = Harness(config, idp, clock=clock)
    assert _post(harness, chat(metadata={"ticket": "42"}))[0] == 200
    assert _sent(harness)["metadata"] == {"ticket": "42"}


def test_every_output_cap_field_is_checked(harness: Harness) -> None:
    # vLLM honours max_completion_tokens here, another backend max_tokens: both are checked.
    status, answer = _post(harness, chat(max_completion_tokens=10, max_tokens=100000))
    assert status == 400 and answer["error"]["param"] == "max_tokens"
    assert harness.backends.who_received() == []


def test_both_caps_within_the_cap_are_forwarded_and_the_larger_reserved(harness: Harness) -> None:
    assert _post(harness, chat(content="abc", max_completion_tokens=10, max_tokens=20))[0] == 200
    sent = _sent(harness)
    assert (sent["max_completion_tokens"], sent["max_tokens"]) == (10, 20)
    assert list(harness.quota.reserved.values()) == [7 + 20]


def test_null_caps_are_replaced_by_the_cap(harness: Harness) -> None:
    assert _post(harness, chat(max_completion_tokens=None, max_tokens=None))[0] == 200
    sent = _sent(harness)
    assert sent["max_tokens"] == 256 and "max_completion_tokens" not in sent


def test_min_tokens_over_the_output_cap_is_refused(harness: Harness) -> None:
    status, answer = _post(harness, chat(max_tokens=10, min_tokens=11))
    assert status == 400 and answer["error"]["param"] == "min_tokens"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", chat(logprobs=True, top_logprobs=6), "top_logprobs"),
        ("/v1/completions", {"model": "tiny", "prompt": "a", "logprobs": 6}, "logprobs"),
    ],
)
def test_logprobs_are_capped(harness: Harness, path: str, body: dict[str, Any], param: str) -> None:
    with harness.client() as client:
        response = client.post(path, json=body, headers=harness.auth())
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert "(max_logprobs)" in response.json()["error"]["message"]


def test_an_echoed_prompt_is_reserved_as_output_too(harness: Harness) -> None:
    body = {"model": "tiny", "prompt": "abcdef", "max_tokens": 5, "echo": True}
    assert _completions(harness, body)[0] == 200
    assert list(harness.quota.reserved.values()) == [2 + 5 + 2]


@pytest.mark.parametrize(
    "extra",
    [
        {"documents": [{"title": "t", "text": "x" * 6100}]},
        {"chat_template_kwargs": {"context": "x" * 6100}},
        {"functions": [{"name": "search", "description": "x" * 6100}]},
        {"tool_choice": {"type": "function", "function": {"name": "x" * 6100}}},
    ],
)
def test_everything_the_template_renders_counts_towards_the_prompt(
    harness: Harness, extra: dict[str, Any]
) -> None:
    status, answer = _post(harness, chat(**extra), groups=["power"])
    assert status == 400 and answer["error"]["code"] == "prompt_too_long"


def test_each_prompt_of_a_batch_is_within_the_prompt_limit(harness: Harness) -> None:
    status, answer = _completions(harness, {"model": "tiny", "prompt": ["a", "x" * 6100]})
    assert status == 400 and answer["error"]["code"] == "prompt_too_long"
    assert "(item 1)" in answer["error"]["message"]
