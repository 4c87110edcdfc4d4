"""The model backends: one shared connection pool, errors mapped to 502/504.

Only the headers the backend needs are sent: the body's type, what the
client accepts, and the gateway's request id. The caller's credentials and
the identity headers never leave the gateway.

The gateway talks to its backends through an :class:`UpstreamClient`: in
service the lean pool of :mod:`sovereign.gateway.upstream_pool`, built by
:func:`build_client`; :class:`HttpxUpstream` adapts an ``httpx.AsyncClient``
(a test's ``MockTransport``) to the same interface. Either raises
:class:`BackendTransportError` for a transport failure.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

import httpx

from sovereign.gateway.config import Upstream
from sovereign.gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from sovereign.gateway.upstream_pool import BackendPool, BackendTransportError, PoolLimits

PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
# Backend answers a client may see as they are: the request was at fault.
PASSED_THROUGH = frozenset({400, 404, 413, 422, 429})


class UpstreamAnswer(Protocol):
    """A backend's status and headers; the body still to be read."""

    status: int

    @property
    def content_type(self) -> str | None: ...

    async def read(self) -> bytes: ...

    def iter_raw(self) -> AsyncGenerator[bytes, None]: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamAnswer:
        """Send ``body``; returns once the status and headers are in.
        Raises BackendTransportError."""
        ...

    async def aclose(self) -> None: ...


def build_client(config: Upstream) -> BackendPool:
    """The pool the gateway serves with. ``max_connections`` and
    ``max_keepalive_connections`` bound each backend's connections."""
    tls = None
    if config.ca_bundle is not None:
        tls = ssl.create_default_context(cafile=str(config.ca_bundle))
    return BackendPool(pool_limits(config), tls=tls)


def pool_limits(config: Upstream) -> PoolLimits:
    return PoolLimits(
        connect_timeout_s=config.connect_timeout_s,
        read_timeout_s=config.read_timeout_s,
        write_timeout_s=config.write_timeout_s,
        pool_timeout_s=config.pool_timeout_s,
        max_connections=config.max_connections,
        max_idle=config.max_keepalive_connections,
        max_response_bytes=config.max_response_bytes,
        response_deadline_s=config.response_deadline_s,
        max_stream_bytes=config.max_stream_bytes,
        stream_idle_timeout_s=config.stream_idle_timeout_s,
    )


def build_httpx_client(
    config: Upstream, transport: httpx.AsyncBaseTransport | None = None
) -> HttpxUpstream:
    """An httpx client with the same limits (tests hand it a ``MockTransport``)."""
    verify: ssl.SSLContext | bool = True
    if config.ca_bundle is not None:
        verify = ssl.create_default_context(cafile=str(config.ca_bundle))
    return HttpxUpstream(
        httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.write_timeout_s,
                pool=config.pool_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_keepalive_connections,
            ),
            verify=verify,
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        ),
        pool_limits(config),
    )


def _httpx_failure(exc: httpx.HTTPError) -> BackendTransportError:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and not kind.endswith("Timeout"):
        kind = "ReadTimeout"
    return BackendTransportError(kind, str(exc))


class _HttpxAnswer:
    """The same bounds as the pool's answers (see upstream_pool)."""

    def __init__(self, response: httpx.Response, limits: PoolLimits) -> None:
        self._response = response
        self._limits = limits
        self.status = response.status_code

    @property
    def content_type(self) -> str | None:
        value: str | None = self._response.headers.get("content-type")
        return value

    async def read(self) -> bytes:
        limits = self._limits
        pieces: list[bytes] = []
        try:
            async with asyncio.timeout(limits.response_deadline_s):
                async for piece in self._pieces(limits.max_response_bytes, "max_response_bytes"):
                    pieces.append(piece)
        except TimeoutError:
            raise BackendTransportError(
                "ReadTimeout",
                f"no whole answer within {limits.response_deadline_s:g} s (response_deadline_s)",
            ) from None
        finally:
            await self._response.aclose()
        return b"".join(pieces)

    def iter_raw(self) -> AsyncGenerator[bytes, None]:
        return self._pieces(self._limits.max_stream_bytes, "max_stream_bytes")

    async def _pieces(self, cap: int, limit: str) -> AsyncGenerator[bytes, None]:
        size = 0
        try:
            # aiter_bytes: also for an answer already read whole (a MockTransport).
            async for chunk in self._response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    raise BackendTransportError("ResponseTooLarge", f"over {cap} bytes ({limit})")
                yield chunk
        except httpx.HTTPError as exc:
            raise _httpx_failure(exc) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """An ``httpx.AsyncClient`` as an :class:`UpstreamClient`."""

    def __init__(self, client: httpx.AsyncClient, limits: PoolLimits | None = None) -> None:
        self.client = client
        self.limits = limits or PoolLimits()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> _HttpxAnswer:
        request = self.client.build_request("POST", url, content=body, headers=headers)
        try:
            return _HttpxAnswer(await self.client.send(request, stream=True), self.limits)
        except httpx.HTTPError as exc:
            raise _httpx_failure(exc) from exc

    async def aclose(self) -> None:
        await self.client.aclose()


def request_headers(request_id: str, stream: bool) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
        "x-request-id": request_id,
    }


def transport_error(exc: BackendTransportError, backend: str) -> UpstreamError:
    if exc.timeout:
        return UpstreamTimeoutError(
            f"model backend {backend} did not answer in time ({exc.kind}: {exc.detail[:120]})"
        )
    if exc.kind == "ResponseTooLarge":
        return UpstreamError(
            f"model backend {backend} sent an answer {exc.detail}",
            code="upstream_response_too_large",
        )
    return UpstreamError(f"model backend {backend} failed: {exc.kind}")


def status_error(status: int, content: bytes, backend: str) -> GatewayError:
    """The error to answer for a backend's non-200 reply."""
    message = f"model backend {backend} answered HTTP {status}"
    try:
        parsed: Any = json.loads(content)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        detail = parsed.get("error", parsed.get("message"))
        if isinstance(detail, dict):
            detail = detail.get("message")
        if isinstance(detail, str):
            message = f"{message}: {detail[:500]}"
    if status in PASSED_THROUGH:
        error = GatewayError(message, code="upstream_rejected")
        error.status = status
        error.type = "invalid_request_error" if status != 429 else "rate_limit_error"
        return error
    if status == 504:
        return UpstreamTimeoutError(message)
    return UpstreamError(message)
