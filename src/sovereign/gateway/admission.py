"""Admission: is this request within the limits, before it costs anything?

Checks, in order: the body is a JSON object of the endpoint's shape and
names only fields the gateway knows how to account for (``FIELDS``; a site
adds harmless ones with ``admission.forward_fields``); every output cap the
endpoint's backend may honour (``max_tokens`` and ``max_completion_tokens``
on chat, ``max_tokens`` on completions) is checked against the model's cap,
and a missing one is set to the cap, so the reservation bounds what the
backend may generate; a completions prompt list or an embeddings input list
is a batch of at most ``max_batch_size`` items; each prompt is within
``max_prompt_tokens`` (see :mod:`sovereign.gateway.tokens` for what is
counted); the tool-call chain in the history is no deeper than
``max_tool_chain_depth``; every tool offered to the model is allowed for one
of the caller's groups. The reservation is every prompt plus, for every
prompt and every one of its ``n`` choices, the output cap. Each refusal
names the field or limit and its value. The request-size limit is enforced
earlier, while the body is read. The body is parsed JSON, so its objects are
checked as ``dict`` (an ``isinstance`` against the ``Mapping`` ABC costs
about ten times as much, on every request).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sovereign.gateway.config import Admission, ModelEntry
from sovereign.gateway.errors import BadRequestError, PermissionDeniedError, bounded
from sovereign.gateway.tokens import estimate_prompt_tokens, estimate_text_tokens

CHAT = "chat"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"

# Sampling and formatting fields: they shape the tokens the backend
# generates, not how many, nor how large the answer is.
_SAMPLING = frozenset(
    {
        "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
        "repetition_penalty", "seed", "stop", "stop_token_ids", "logit_bias", "user",
        "include_stop_str_in_output", "ignore_eos", "skip_special_tokens",
        "spaces_between_special_tokens", "truncate_prompt_tokens", "truncation_side",
        "allowed_token_ids", "bad_words", "response_format", "structured_outputs",
        "add_special_tokens", "length_penalty",
    }
)  # fmt: skip
# The fields each endpoint accepts: the sampling ones, and those admission
# checks and accounts for itself. Anything else (best_of, use_beam_search,
# prompt_logprobs, chat_template, priority, request_id, vllm_xargs,
# kv_transfer_params, prompt_embeds, ...) multiplies or enlarges the output,
# changes scheduling, or runs client code in the backend: refused by name.
FIELDS: dict[str, frozenset[str]] = {
    CHAT: _SAMPLING
    | {
        "model", "messages", "max_tokens", "max_completion_tokens", "n", "min_tokens",
        "stream", "stream_options", "logprobs", "top_logprobs", "tools", "tool_choice",
        "parallel_tool_calls", "functions", "function_call", "documents",
        "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
        "reasoning_effort", "include_reasoning", "cache_salt",
    },
    COMPLETIONS: _SAMPLING
    | {
        "model", "prompt", "suffix", "max_tokens", "n", "min_tokens", "stream",
        "stream_options", "logprobs", "echo", "cache_salt",
    },
    EMBEDDINGS: frozenset(
        {
            "model", "input", "encoding_format", "dimensions", "user",
            "truncate_prompt_tokens", "truncation_side", "add_special_tokens", "cache_salt",
        }
    ),
}  # fmt: skip
# The output caps each endpoint's backend honours (vLLM's chat takes
# max_completion_tokens when set, else max_tokens; another backend may not).
OUTPUT_CAPS = {CHAT: ("max_completion_tokens", "max_tokens"), COMPLETIONS: ("max_tokens",)}


@dataclass(slots=True)
class Admitted:
    body: dict[str, Any]
    prompt_tokens: int  # the estimate, every prompt of a batch together
    completion_tokens: int  # the most the backend may generate, all prompts and choices
    stream: bool
    include_usage: bool  # the client asked for the final usage chunk
    changed: bool  # the body must be re-serialized before forwarding
    batch: int = 1  # prompts (completions) or inputs (embeddings)

    @property
    def reserved_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def tool_chain_depth(messages: list[Any]) -> int:
    """Most consecutive rounds of assistant tool calls (each followed by tool
    results) in the history; a user turn or a plain assistant answer ends a chain."""
    depth = deepest = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            depth += 1
            deepest = max(deepest, depth)
        elif role == "user" or role == "assistant":
            depth = 0
    return deepest


def tool_names(body: Mapping[str, Any]) -> list[str]:
    names = []
    for key in ("tools", "functions"):
        items = body.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise BadRequestError(f"'{key}' must be a list", param=key)
        for index, item in enumerate(items):
            name: object = None
            if isinstance(item, dict):
                function = item.get("function")
                name = function.get("name") if isinstance(function, dict) else item.get("name")
            if not isinstance(name, str) or not name:
                raise BadRequestError(
                    f"'{key}[{index}]' has no function name", param=f"{key}[{index}]"
                )
            names.append(name)
    return names


def batch_items(value: object, key: str) -> list[str | list[int]]:
    """A prompt or input as its list of items: one string, one token-id list,
    a list of strings, or a list of token-id lists."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise BadRequestError(
            f"'{key}' must be a string, a list of strings or a list of token ids", param=key
        )
    if all(_token_id(item) for item in value):
        return [value]
    if all(isinstance(item, str) for item in value):
        return list(value)
    if all(isinstance(item, list) and item and all(map(_token_id, item)) for item in value):
        return list(value)
    raise BadRequestError(
        f"'{key}' mixes kinds: use strings, token ids, or lists of token ids", param=key
    )


def _token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int_field(body: Mapping[str, Any], key: str, minimum: int = 1) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise BadRequestError(f"'{key}' must be {kind}", param=key)
    return value


def _over(
    key: str, value: int, limit: str, limit_value: int, code: str = "invalid_request"
) -> None:
    if value > limit_value:
        raise BadRequestError(
            f"'{key}' {value} is over the limit of {limit_value} ({limit})",
            code=code,
            param=key,
            limit=limit,
            limit_value=limit_value,
        )


class Admitter:
    """The admission limits of one configuration."""

    def __init__(self, config: Admission) -> None:
        self.config = config
        self._tools: dict[str, frozenset[str]] = {
            group: frozenset(names) for group, names in config.allowed_tools.items()
        }
        extra = frozenset(config.forward_fields)
        self._fields = {endpoint: names | extra for endpoint, names in FIELDS.items()}

    def allowed_tools(self, groups: frozenset[str]) -> frozenset[str]:
        allowed: frozenset[str] = frozenset()
        for group in groups:
            allowed |= self._tools.get(group, frozenset())
        return allowed

    def admit(
        self, endpoint: str, body: dict[str, Any], model: ModelEntry, groups: frozenset[str]
    ) -> Admitted:
        limits = self.config
        fields = self._fields[endpoint]
        if not fields.issuperset(body):
            key = min(body.keys() - fields)
            raise BadRequestError(
                f"field {bounded(key)} is not accepted here: the gateway cannot "
                "account for what it does (admission.forward_fields lists extra "
                "fields a site allows)",
                code="unsupported_field",
                param=bounded(key),
            )
        if endpoint == CHAT:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise BadRequestError("'messages' must be a non-empty list", param="messages")
            for index, message in enumerate(messages):
                if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                    raise BadRequestError(
                        f"'messages[{index}]' must be an object with a 'role'",
                        param=f"messages[{index}]",
                    )
            items: list[str | list[int]] = []
        else:
            key = "prompt" if endpoint == COMPLETIONS else "input"
            items = batch_items(body.get(key), key)
            _over(key, len(items), "max_batch_size", limits.max_batch_size, "batch_too_large")

        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool) or (stream and endpoint == EMBEDDINGS):
            raise BadRequestError("'stream' must be true or false", param="stream")
        include_usage = False
        options = body.get("stream_options")
        if options is not None:
            if not isinstance(options, dict):
                raise BadRequestError("'stream_options' must be an object", param="stream_options")
            include_usage = options.get("include_usage") is True

        cap_tokens, changed = self._output_cap(endpoint, body, model)
        n = 1
        if endpoint != EMBEDDINGS:
            n = _int_field(body, "n") or 1
            _over("n", n, "max_n", limits.max_n)
            min_tokens = _int_field(body, "min_tokens", minimum=0)
            if min_tokens is not None and min_tokens > cap_tokens:
                raise BadRequestError(
                    f"'min_tokens' {min_tokens} is over the output cap of {cap_tokens}",
                    param="min_tokens",
                )
            self._check_logprobs(endpoint, body)

        bytes_per_token = model.bytes_per_token or limits.bytes_per_token
        prompt_cap = model.max_prompt_tokens or limits.max_prompt_tokens
        if endpoint == CHAT:
            prompts = [estimate_prompt_tokens(body, bytes_per_token)]
        else:
            prompts = [estimate_text_tokens(item, bytes_per_token) for item in items]
            suffix = body.get("suffix")
            if suffix is not None:
                if not isinstance(suffix, str):
                    raise BadRequestError("'suffix' must be a string", param="suffix")
                extra = estimate_text_tokens(suffix, bytes_per_token)
                prompts = [tokens + extra for tokens in prompts]
        for index, prompt in enumerate(prompts):
            if prompt > prompt_cap:
                where = "" if len(prompts) == 1 else f" (item {index})"
                raise BadRequestError(
                    f"prompt of about {prompt} tokens{where} is over the limit of {prompt_cap} "
                    "(max_prompt_tokens)",
                    code="prompt_too_long",
                    param={CHAT: "messages", COMPLETIONS: "prompt"}.get(endpoint, "input"),
                    limit="max_prompt_tokens",
                    limit_value=prompt_cap,
                )
        # Each prompt gets n choices of at most the cap; an echoed prompt comes back too.
        per_prompt = cap_tokens * n
        completion = per_prompt * len(prompts)
        if endpoint == COMPLETIONS and body.get("echo") is True:
            completion += sum(prompts)

        if endpoint == CHAT:
            self._check_tools(body, groups)
        return Admitted(
            body, sum(prompts), completion, stream, include_usage, changed, len(prompts)
        )

    def _output_cap(
        self, endpoint: str, body: dict[str, Any], model: ModelEntry
    ) -> tuple[int, bool]:
        """The most tokens one choice may generate, after checking every cap field the
        backend may honour; a request naming none is given ``max_tokens`` = the cap."""
        keys = OUTPUT_CAPS.get(endpoint)
        if keys is None:
            return 0, False
        cap = model.max_tokens_cap or self.config.max_tokens_cap
        asked = 0  # the largest sent; each is at least 1
        changed = False
        for key in keys:
            if key not in body:
                continue
            if body[key] is None:
                del body[key]  # an explicit null means "the backend's default": no such thing here
                changed = True
                continue
            value = _int_field(body, key)
            assert value is not None
            if value > cap:
                raise BadRequestError(
                    f"'{key}' {value} is over the cap of {cap} tokens (max_tokens_cap)",
                    code="max_tokens_over_cap",
                    param=key,
                    limit="max_tokens_cap",
                    limit_value=cap,
                )
            asked = max(asked, value)
        if not asked:
            body["max_tokens"] = cap
            return cap, True
        return asked, changed

    def _check_logprobs(self, endpoint: str, body: Mapping[str, Any]) -> None:
        limit = self.config.max_logprobs
        if endpoint == CHAT:
            logprobs = body.get("logprobs")
            if logprobs is not None and not isinstance(logprobs, bool):
                raise BadRequestError("'logprobs' must be true or false", param="logprobs")
            top = _int_field(body, "top_logprobs", minimum=0)
            if top is not None:
                _over("top_logprobs", top, "max_logprobs", limit)
        else:
            count = _int_field(body, "logprobs", minimum=0)
            if count is not None:
                _over("logprobs", count, "max_logprobs", limit)

    def _check_tools(self, body: Mapping[str, Any], groups: frozenset[str]) -> None:
        limits = self.config
        depth = tool_chain_depth(body["messages"])
        if depth > limits.max_tool_chain_depth:
            raise BadRequestError(
                f"tool-call chain depth {depth} is over the limit of "
                f"{limits.max_tool_chain_depth} (max_tool_chain_depth)",
                code="tool_chain_too_deep",
                param="messages",
                limit="max_tool_chain_depth",
                limit_value=limits.max_tool_chain_depth,
            )
        names = tool_names(body)
        if names:
            allowed = self.allowed_tools(groups)
            if "*" not in allowed:
                for name in names:
                    if name not in allowed:
                        raise PermissionDeniedError(
                            f"tool {bounded(name)} is not allowed for your groups (allowed_tools)",
                            code="tool_not_allowed",
                            param="tools",
                            limit="allowed_tools",
                        )
