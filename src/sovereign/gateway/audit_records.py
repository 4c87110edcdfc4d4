"""The audit records the gateway writes, one shape per phase.

A forwarded request gets an ``admitted`` record, written (and fsync'd by the
audit log) before anything reaches a backend, then a ``completed`` record. A
refused request gets one ``rejected`` record. Every record carries the
request id and the data class (``unclassified`` when the request had no
label). Prompt and response text appear only where the policy asks for full
text; otherwise their SHA-256 stands in.
"""

from __future__ import annotations

import time
from typing import Any

from sovereign.gateway.admission import Admitted
from sovereign.gateway.identity import Principal
from sovereign.gateway.routing import Decision, Target

SCHEMA = "sovereign.gateway/v1"
MAX_MESSAGE = 512


def clean_text(text: str) -> str:
    """Text the audit log can write: lone surrogates (valid in JSON escapes, not
    in UTF-8) become "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _who(principal: Principal | None) -> dict[str, object]:
    if principal is None:
        return {"user": None, "team": None, "groups": [], "auth": None}
    return {
        "user": principal.user,
        "team": principal.team,
        "groups": sorted(principal.groups),
        "auth": principal.method,
    }


def admitted(
    *,
    request_id: str,
    endpoint: str,
    principal: Principal,
    model: str,
    data_class: str,
    decision: Decision,
    target: Target,
    admission: Admitted,
    prompt_sha256: str,
    full_text: str | None,
) -> dict[str, object]:
    record: dict[str, object] = {
        "schema": SCHEMA,
        "event": "admitted",
        "time": time.time(),
        "request_id": request_id,
        "endpoint": endpoint,
        **_who(principal),
        "model": model,
        "model_digest": target.digest,
        "tier": decision.tier,
        "backend_version": target.version,
        "backend": target.url,
        "rule": decision.rule,
        "data_class": data_class,
        "admission": "admitted",
        "stream": admission.stream,
        "prompt_sha256": prompt_sha256,
        "prompt_tokens_estimate": admission.prompt_tokens,
        "reserved_tokens": admission.reserved_tokens,
    }
    if full_text is not None:
        record["request"] = clean_text(full_text)
    return record


def completed(
    *,
    request_id: str,
    model: str,
    data_class: str,
    version: str,
    status: int,
    outcome: str,
    usage: dict[str, Any] | None,
    used_tokens: int,
    response_sha256: str,
    upstream_s: float,
    full_text: str | None,
) -> dict[str, object]:
    record: dict[str, object] = {
        "schema": SCHEMA,
        "event": "completed",
        "time": time.time(),
        "request_id": request_id,
        "model": model,
        "data_class": data_class,
        "backend_version": version,
        "status": status,
        "outcome": outcome,
        "prompt_tokens": _count(usage, "prompt_tokens"),
        "completion_tokens": _count(usage, "completion_tokens"),
        "charged_tokens": used_tokens,
        "usage_reported": usage is not None,
        "response_sha256": response_sha256,
        "upstream_s": round(upstream_s, 6),
    }
    if full_text is not None:
        record["response"] = clean_text(full_text)
    return record


def rejected(
    *,
    request_id: str,
    endpoint: str,
    principal: Principal | None,
    peer: str | None,
    model: str | None,
    data_class: str,
    status: int,
    reason: str,
    message: str,
    limit: str | None,
    limit_value: int | float | None,
    rule: str | None = None,
) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "event": "rejected",
        "time": time.time(),
        "request_id": request_id,
        "endpoint": endpoint,
        **_who(principal),
        "peer": peer,
        "model": model,
        "data_class": data_class,
        "status": status,
        "reason": reason,
        # Messages quote client input only through errors.bounded; cut here too.
        "message": clean_text(message[:MAX_MESSAGE]),
        "limit": limit,
        "limit_value": limit_value,
        "rule": rule,
    }


def _count(usage: dict[str, Any] | None, key: str) -> int | None:
    value = usage.get(key) if usage is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
