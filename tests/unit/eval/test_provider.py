"""The Inspect AI provider ``sovereign-completions``, driven directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from .conftest import EXTRA_REASON, INSPECT_WARNINGS, collect_garbage
from .fakeserver import CLIENT_ID, CLIENT_SECRET, MODEL, FakeBackend, running

pytest.importorskip("inspect_ai", reason=EXTRA_REASON)
pytestmark = INSPECT_WARNINGS

from inspect_ai.model import (  # noqa: E402
    ChatMessageSystem,
    ChatMessageUser,
    GenerateConfig,
    ModelOutput,
    get_model,
)

from sovereign.eval import provider  # noqa: E402
from sovereign.eval.provider import CompletionError, CompletionsAPI  # noqa: E402

PROMPT = "Q: What is the minimum password length at Aldermoor Bank?\nA:"


def api(origin: str, **model_args: Any) -> CompletionsAPI:
    model = get_model(
        f"{provider.PROVIDER}/{MODEL}", base_url=f"{origin}/v1", memoize=False, **model_args
    )
    assert isinstance(model.api, CompletionsAPI)
    return model.api


def generate(api: CompletionsAPI, config: GenerateConfig, *messages: Any) -> ModelOutput:
    async def ask() -> ModelOutput:
        return await api.generate(
            list(messages or [ChatMessageUser(content=PROMPT)]), [], "auto", config
        )

    try:
        return anyio.run(ask)
    finally:
        collect_garbage()


def test_one_completion_with_the_run_settings() -> None:
    backend = FakeBackend({PROMPT: " 14 characters"})
    with running(backend) as origin:
        output = generate(
            api(origin),
            GenerateConfig(temperature=0, max_tokens=16, seed=3, stop_seqs=["\n"]),
        )
    assert output.completion == " 14 characters"
    assert output.choices[0].stop_reason == "stop"
    assert output.usage is not None and output.usage.total_tokens == 10
    assert backend.requests == [
        {
            "model": MODEL,
            "prompt": PROMPT,
            "n": 1,
            "stream": False,
            "temperature": 0,
            "max_tokens": 16,
            "seed": 3,
            "stop": ["\n"],
        }
    ]


def test_a_refused_token_is_replaced_once(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(CLIENT_SECRET)
    backend = FakeBackend({PROMPT: " 14 characters"}, require_token=True, expired_tokens={"tok-1"})
    with running(backend) as origin:
        model_api = api(
            origin,
            token_url=f"{origin}/oauth2/token",
            client_id=CLIENT_ID,
            client_secret_file=str(tmp_path / "secret"),
        )
        output = generate(model_api, GenerateConfig())
        backend.expired_tokens.add("tok-2")
        backend.expired_tokens.add("tok-3")
        with pytest.raises(CompletionError, match="HTTP 401: invalid token") as caught:
            generate(model_api, GenerateConfig())
    assert output.completion == " 14 characters"
    assert [h["authorization"] for h in backend.headers] == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
        "Bearer tok-3",
    ]
    assert caught.value.retryable is False and model_api.last_error is caught.value


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
def test_what_is_retried(status: int, retryable: bool) -> None:
    with running(FakeBackend({}, status=status)) as origin:
        model_api = api(origin)
        with pytest.raises(CompletionError) as caught:
            generate(model_api, GenerateConfig())
    assert caught.value.status == status
    assert model_api.should_retry(caught.value) is retryable


def test_connection_failures_are_retried() -> None:
    model_api = api("http://127.0.0.1:9")
    with pytest.raises(CompletionError, match="ConnectError") as caught:
        generate(model_api, GenerateConfig())
    assert model_api.should_retry(caught.value) is True
    assert model_api.should_retry(ValueError("a bug")) is False


def test_a_chat_conversation_is_refused() -> None:
    model_api = api("http://127.0.0.1:9")
    with pytest.raises(CompletionError, match="must be one user message"):
        generate(
            model_api,
            GenerateConfig(),
            ChatMessageSystem(content="be nice"),
            ChatMessageUser(content=PROMPT),
        )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "the answer has no choices"),
        ({"choices": []}, "the answer has no choices"),
        ({"choices": ["x"]}, "the answer has no choices"),
        ({"choices": [{"text": 3}]}, "choices[0].text is not a string"),
    ],
)
def test_malformed_answers(document: dict[str, Any], message: str) -> None:
    with pytest.raises(CompletionError) as caught:
        provider.parse_completion(document, "u")
    assert message in str(caught.value)


def test_usage_is_kept_only_when_it_is_counts() -> None:
    choice = {"choices": [{"text": "x", "finish_reason": "length"}]}
    text, finish, usage = provider.parse_completion(
        {**choice, "usage": {"prompt_tokens": 2, "completion_tokens": True}}, "u"
    )
    assert (text, finish, usage) == ("x", "length", None)
    assert provider.STOP_REASONS["length"] == "max_tokens"


def test_a_base_url_is_required() -> None:
    with pytest.raises(Exception, match="needs a base URL"):
        get_model(f"{provider.PROVIDER}/{MODEL}", memoize=False)
