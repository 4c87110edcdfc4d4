"""Inspect AI model provider ``sovereign-completions``: raw prompts to ``/v1/completions``.

The datasets hold raw prompts (``"Q: ...\\nA:"``) for models served by vLLM's
completions API, with no chat template in between. Inspect AI 0.3.285 ships an
``openai-api-completions`` provider for that, built on the ``openai`` SDK; this
one is a small :class:`~inspect_ai.model.ModelAPI` (Inspect's own extension
point) on httpx, which the package already pins, so that it can

* send the gateway's bearer token, obtained and refreshed by
  :class:`~sovereign.eval.connection.TokenSource` (a 401 fetches a new one once),
* verify TLS with the site's CA bundle (``--cacert``),
* bound what it reads: the answer's size (``max_response_bytes``) and the time
  per request (``timeout_s``), since a backend's output is treated as hostile.

Every request asks for one completion with the run's ``temperature`` (0),
``max_tokens`` and ``seed``. Connection failures, timeouts, 408, 429, 500, 502,
503 and 504 are retried by Inspect (``max_retries``); any other refusal fails
the run.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
import httpx
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    StopReason,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from sovereign.eval.connection import (
    AsyncResolvingTransport,
    Connection,
    error_reason,
    parse_json_object,
    printable,
    tls_context,
)
from sovereign.eval.errors import BackendError

PROVIDER = "sovereign-completions"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_CONNECTIONS = 4


# OpenAI's finish_reason in Inspect's words.
STOP_REASONS: dict[str, StopReason] = {
    "stop": "stop",
    "length": "max_tokens",
    "content_filter": "content_filter",
}


class CompletionError(BackendError):
    """A completion request failed; ``retryable`` when trying again may help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def completion_body(model: str, prompt: str, config: GenerateConfig) -> dict[str, Any]:
    """The JSON body of one completion request."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "n": 1,
        "stream": False,
        "temperature": config.temperature if config.temperature is not None else 0.0,
    }
    if config.max_tokens is not None:
        body["max_tokens"] = config.max_tokens
    if config.seed is not None:
        body["seed"] = config.seed
    if config.top_p is not None:
        body["top_p"] = config.top_p
    if config.stop_seqs:
        body["stop"] = config.stop_seqs
    return body


def parse_completion(
    document: dict[str, Any], url: str
) -> tuple[str, str | None, ModelUsage | None]:
    """The text, finish reason and usage of a completions answer; BackendError if malformed."""
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise CompletionError(f"{url}: the answer has no choices", retryable=False)
    choice = choices[0]
    text = choice.get("text")
    if not isinstance(text, str):
        raise CompletionError(f"{url}: choices[0].text is not a string", retryable=False)
    finish = choice.get("finish_reason")
    usage = document.get("usage")
    counts: ModelUsage | None = None
    if isinstance(usage, dict):
        numbers = [usage.get(key) for key in ("prompt_tokens", "completion_tokens")]
        if all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            prompt_tokens, completion_tokens = (int(n) for n in numbers if isinstance(n, int))
            counts = ModelUsage(
                input_tokens=prompt_tokens,
                output_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
    return text, finish if isinstance(finish, str) else None, counts


def prompt_of(input: list[ChatMessage]) -> str:
    """The raw prompt: the text of the one user message a completions sample has."""
    if len(input) != 1 or input[0].role != "user":
        raise CompletionError(
            f"{PROVIDER} sends one raw prompt: the sample must be one user message",
            retryable=False,
        )
    return input[0].text


class CompletionsAPI(ModelAPI):
    """Completions over httpx, with the runner's token, CA bundle and bounds."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(
            model_name=model_name,
            base_url=base_url,
            api_key=None,
            api_key_vars=[],
            config=config if config is not None else GenerateConfig(),
        )
        if base_url is None:
            raise ValueError(f"{PROVIDER} needs a base URL (model_base_url)")
        self.connection = Connection.from_model_args(base_url, model_args)
        self.tokens = self.connection.token_source()
        # One client per request: Inspect does not close a provider it was handed,
        # and a pooled client would outlive the event loop of the run.
        self._tls = tls_context(self.connection.cacert)
        self.last_error: CompletionError | None = None

    def max_connections(self) -> int:
        return DEFAULT_MAX_CONNECTIONS

    def connection_key(self) -> str:
        return self.connection.url

    def should_retry(self, ex: Exception) -> bool:
        return isinstance(ex, CompletionError) and ex.retryable

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        try:
            return await self._generate(input, config)
        except CompletionError as exc:
            # Inspect reports a request that failed after its retries as a
            # tenacity RetryError; the runner names this instead.
            self.last_error = exc
            raise

    async def _generate(self, input: list[ChatMessage], config: GenerateConfig) -> ModelOutput:
        body = json.dumps(completion_body(self.model_name, prompt_of(input), config)).encode()
        for attempt in (1, 2):
            status, answer = await self._post(body)
            if status == 401 and attempt == 1 and self.tokens.settings.grant != "none":
                self.tokens.invalidate()  # expired or revoked: fetch a new one, once
                continue
            break
        url = self.connection.url + "/completions"
        if status != 200:
            raise CompletionError(
                f"{url}: HTTP {status}: {error_reason(answer)}",
                retryable=status in RETRY_STATUSES,
                status=status,
            )
        text, finish, usage = parse_completion(parse_json_object(answer, url), url)
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content=text, model=self.model_name),
                    stop_reason=STOP_REASONS.get(finish or "", "unknown"),
                )
            ],
            usage=usage,
        )

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        url = self.connection.url + "/completions"
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **self.connection.headers(),
        }
        bearer = await anyio.to_thread.run_sync(self.tokens.bearer)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        limit = self.connection.max_response_bytes
        try:
            async with (
                httpx.AsyncClient(
                    transport=AsyncResolvingTransport(self.connection.resolve, verify=self._tls),
                    timeout=self.connection.timeout_s,
                    follow_redirects=False,
                ) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) > limit:
                        raise CompletionError(
                            f"{url}: the answer is larger than {limit} bytes", retryable=False
                        )
                return response.status_code, bytes(received)
        except httpx.TransportError as exc:
            raise CompletionError(
                f"{url}: {type(exc).__name__}: {printable(str(exc))}", retryable=True
            ) from exc


@modelapi(name=PROVIDER)
def sovereign_completions() -> type[ModelAPI]:
    return CompletionsAPI
