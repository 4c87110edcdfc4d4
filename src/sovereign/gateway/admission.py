"""Admission: is this request within the limits, before it costs anything?

Checks, in order: the body is a JSON object of the endpoint's shape; the
completion budget (``max_tokens`` / ``max_completion_tokens``) is within the
model's cap, and a missing one is set to the cap so the reservation bounds
what the backend may generate; the estimated prompt (see
:mod:`sovereign.gateway.tokens`) is within ``max_prompt_tokens``; the
tool-call chain in the history is no deeper than ``max_tool_chain_depth``;
every tool offered to the model is allowed for one of the caller's groups.
Each refusal names the limit and its value. The request-size limit is
enforced earlier, while the body is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sovereign.gateway.config import Admission, ModelEntry
from sovereign.gateway.errors import BadRequestError, PermissionDeniedError
from sovereign.gateway.tokens import estimate_prompt_tokens

CHAT = "chat"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
_MAX_N = 16


@dataclass(slots=True)
class Admitted:
    body: dict[str, Any]
    prompt_tokens: int  # the estimate
    completion_tokens: int  # the most the backend may generate, all choices together
    stream: bool
    include_usage: bool  # the client asked for the final usage chunk
    changed: bool  # the body must be re-serialized before forwarding

    @property
    def reserved_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def tool_chain_depth(messages: list[Any]) -> int:
    """Most consecutive rounds of assistant tool calls (each followed by tool
    results) in the history; a user turn or a plain assistant answer ends a chain."""
    depth = deepest = 0
    for message in messages:
        if not isinstance(message, Mapping):
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
            if isinstance(item, Mapping):
                function = item.get("function")
                name = function.get("name") if isinstance(function, Mapping) else item.get("name")
            if not isinstance(name, str) or not name:
                raise BadRequestError(
                    f"'{key}[{index}]' has no function name", param=f"{key}[{index}]"
                )
            names.append(name)
    return names


def _int_field(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequestError(f"'{key}' must be a positive integer", param=key)
    return value


class Admitter:
    """The admission limits of one configuration."""

    def __init__(self, config: Admission) -> None:
        self.config = config
        self._tools: dict[str, frozenset[str]] = {
            group: frozenset(names) for group, names in config.allowed_tools.items()
        }

    def allowed_tools(self, groups: frozenset[str]) -> frozenset[str]:
        allowed: frozenset[str] = frozenset()
        for group in groups:
            allowed |= self._tools.get(group, frozenset())
        return allowed

    def admit(
        self, endpoint: str, body: dict[str, Any], model: ModelEntry, groups: frozenset[str]
    ) -> Admitted:
        limits = self.config
        changed = False
        if endpoint == CHAT:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise BadRequestError("'messages' must be a non-empty list", param="messages")
            for index, message in enumerate(messages):
                if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
                    raise BadRequestError(
                        f"'messages[{index}]' must be an object with a 'role'",
                        param=f"messages[{index}]",
                    )
        elif endpoint == COMPLETIONS:
            if not isinstance(body.get("prompt"), str | list):
                raise BadRequestError("'prompt' must be a string or a list", param="prompt")
        elif not isinstance(body.get("input"), str | list):
            raise BadRequestError("'input' must be a string or a list", param="input")

        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool) or (stream and endpoint == EMBEDDINGS):
            raise BadRequestError("'stream' must be true or false", param="stream")
        include_usage = False
        options = body.get("stream_options")
        if options is not None:
            if not isinstance(options, Mapping):
                raise BadRequestError("'stream_options' must be an object", param="stream_options")
            include_usage = options.get("include_usage") is True

        completion = 0
        if endpoint != EMBEDDINGS:
            cap = model.max_tokens_cap or limits.max_tokens_cap
            key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            asked = _int_field(body, key)
            if asked is not None and asked > cap:
                raise BadRequestError(
                    f"'{key}' {asked} is over the cap of {cap} tokens (max_tokens_cap)",
                    code="max_tokens_over_cap",
                    param=key,
                    limit="max_tokens_cap",
                    limit_value=cap,
                )
            if asked is None:
                body[key] = cap
                changed = True
            n = _int_field(body, "n") or 1
            if n > _MAX_N:
                raise BadRequestError(
                    f"'n' {n} is over the limit of {_MAX_N}",
                    param="n",
                    limit="n",
                    limit_value=_MAX_N,
                )
            completion = (asked or cap) * n

        prompt = estimate_prompt_tokens(body, model.bytes_per_token or limits.bytes_per_token)
        prompt_cap = model.max_prompt_tokens or limits.max_prompt_tokens
        if prompt > prompt_cap:
            raise BadRequestError(
                f"prompt of about {prompt} tokens is over the limit of {prompt_cap} "
                "(max_prompt_tokens)",
                code="prompt_too_long",
                param="messages" if endpoint == CHAT else "prompt",
                limit="max_prompt_tokens",
                limit_value=prompt_cap,
            )

        if endpoint == CHAT:
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
                                f"tool {name[:64]!r} is not allowed for your groups "
                                "(allowed_tools)",
                                code="tool_not_allowed",
                                param="tools",
                                limit="allowed_tools",
                            )
        return Admitted(body, prompt, completion, stream, include_usage, changed)
