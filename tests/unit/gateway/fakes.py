"""Stand-ins for the gateway's quota store, audit log and backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from sovereign.audit.errors import AuditWriteError
from sovereign.gateway.quota import QuotaLimits, Reservation
from sovereign.gateway.quota_errors import QuotaExceededError, QuotaUnavailableError


@dataclass
class FakeQuotaStore:
    """Same three methods as QuotaStore; remembers every call."""

    reserved: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    limits: list[tuple[QuotaLimits, QuotaLimits | None]] = field(default_factory=list)
    exceeded: QuotaExceededError | None = None
    unavailable: bool = False

    async def reserve(
        self,
        *,
        request_id: str,
        user: str,
        team: str | None,
        user_limits: QuotaLimits,
        team_limits: QuotaLimits | None,
        tokens: int,
    ) -> Reservation:
        if self.unavailable:
            raise QuotaUnavailableError("redis is down")
        if self.exceeded is not None:
            raise self.exceeded
        self.reserved[request_id] = tokens
        self.limits.append((user_limits, team_limits))
        return Reservation(
            request_id=request_id,
            user=user,
            team=team,
            tokens=tokens,
            keys=(),
            reservation_key=f"fake:{request_id}",
        )

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        self.settled[reservation.request_id] = used_tokens

    async def release(self, reservation: Reservation) -> None:
        self.released.append(reservation.request_id)


@dataclass
class FakeAuditLog:
    records: list[dict[str, object]] = field(default_factory=list)
    fail: bool = False

    @property
    def healthy(self) -> bool:
        return not self.fail

    async def append(self, record: Mapping[str, object]) -> object:
        if self.fail:
            raise AuditWriteError("disk full")
        self.records.append(dict(record))
        return len(self.records)

    def events(self, request_id: str | None = None) -> list[str]:
        return [
            str(r["event"])
            for r in self.records
            if request_id is None or r["request_id"] == request_id
        ]


@dataclass
class FakeBackend:
    """An OpenAI-style backend answering at once; records what it received."""

    name: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)
    prompt_tokens: int = 11
    completion_tokens: int = 3
    status: int = 200
    fail: type[httpx.RequestError] | None = None
    cut: int = 7  # a stream arrives in pieces of this many bytes
    stream_fail_after: int | None = None  # pieces sent before the connection breaks

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.received.append(body)
        self.headers.append(request.headers)
        if self.fail is not None:
            raise self.fail("backend down", request=request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "backend says no"}})
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(
                200,
                json={"object": "list", "data": [{"embedding": [0.0, 1.0]}], "usage": usage},
            )
        if body.get("stream"):
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=Chunks(
                    sse_events(self.name, self.completion_tokens, usage),
                    self.cut,
                    self.stream_fail_after,
                ),
            )
        return httpx.Response(
            200,
            json={
                "id": "cmpl-1",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.name}}],
                "usage": usage,
            },
        )


class Chunks(httpx.AsyncByteStream):
    """A body that arrives in small pieces, cutting events apart."""

    def __init__(self, data: bytes, size: int, fail_after: int | None = None) -> None:
        self.data = data
        self.size = size
        self.fail_after = fail_after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, start in enumerate(range(0, len(self.data), self.size)):
            if self.fail_after is not None and index >= self.fail_after:
                raise httpx.ReadError("backend went away")
            yield self.data[start : start + self.size]


def sse_events(text: str, chunks: int, usage: dict[str, int]) -> bytes:
    events: list[dict[str, object]] = [
        {"id": "c", "object": "chat.completion.chunk", "choices": [{"delta": {"content": text}}]}
        for _ in range(chunks)
    ]
    events.append({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + b"data: [DONE]\n\n"


class Backends:
    """Several fake backends behind one MockTransport, by host name."""

    def __init__(self, *names: str) -> None:
        self.by_host = {name: FakeBackend(name) for name in names}

    def __getitem__(self, name: str) -> FakeBackend:
        return self.by_host[name]

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            return self.by_host[request.url.host].handle(request)

        return httpx.MockTransport(handle)

    def who_received(self) -> list[str]:
        return [name for name, backend in self.by_host.items() if backend.received]

    def reset(self) -> None:
        for backend in self.by_host.values():
            backend.received.clear()
            backend.headers.clear()
