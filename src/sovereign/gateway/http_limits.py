"""The gateway's HTTP server protocol: uvicorn's httptools protocol with limits.

uvicorn's httptools protocol (the fast one the gateway serves with) accepts
request heads of any size and any number of header fields, and waits for a
head as long as the client likes: one slow client per connection can hold
the server's sockets (slowloris), and a megabyte of headers is parsed and
kept before any request code runs. This protocol adds, before anything
reaches the application:

- ``max_header_bytes``: request line plus header fields; past it the client
  is answered 431 and the connection closed;
- ``max_headers``: the number of header fields, likewise 431;
- ``header_timeout_s``: from a connection's opening (or the first byte of
  the next request on a kept-alive one) to the end of its head; past it
  the client is answered 408 and the connection closed.

The refusal is written straight to the socket: the parser's remaining
callbacks for that connection are ignored, and no ASGI task is started.
The body's own limits (size before authentication, a read deadline) are
the application's (see :mod:`sovereign.gateway.app`).

It also tells the application when a client leaves before its answer is
out: every request's scope carries a :class:`Departure` under the
``extensions`` key :data:`DEPARTURE`, whose callback the connection's loss
calls. A streamed answer registers one there instead of keeping a task
waiting on ``receive()`` for the disconnect (a task created, stepped and
cancelled per stream); under another ASGI server it falls back to the task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sovereign.gateway.config import Http

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}

DEPARTURE = "sovereign.departure"  # the scope's extension, see Departure


class Departure:
    """One request's hook for its client leaving before the answer is out."""

    __slots__ = ("callback",)

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None


def departure_of(scope: Mapping[str, Any]) -> Departure | None:
    """The request's departure hook; None under a server without one."""
    extensions = scope.get("extensions") or {}
    departure = extensions.get(DEPARTURE)
    return departure if isinstance(departure, Departure) else None


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One connection; the limits come from :func:`protocol_for`."""

    limits = Http()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_fields = 0
        self._in_head = False
        self._head_started = 0.0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    # -- connection -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            departure = departure_of(cycle.scope)
            if departure is not None and departure.callback is not None:
                departure.callback()

    # -- the head -----------------------------------------------------------------
    # Every callback below runs for every request (on_header for every field):
    # they stay flat, with no timer work per request (see _head_late).

    def on_message_begin(self) -> None:
        if self._refused:
            return
        HttpToolsProtocol.on_message_begin(self)
        self.scope["extensions"] = {DEPARTURE: Departure()}  # type: ignore[dict-item]
        self._head_bytes = self._head_fields = 0
        self._in_head = True
        self._head_started = self.loop.time()
        if self._head_timer is None:
            # The next request on a kept-alive connection that had gone quiet.
            self._arm(self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._over()
        else:
            HttpToolsProtocol.on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        # httptools may hand over a name or value in pieces: count every piece.
        self._head_bytes += len(name) + len(value) + 4
        self._head_fields += 1
        limits = self.limits
        if self._head_bytes > limits.max_header_bytes or self._head_fields > limits.max_headers:
            self._over()
        else:
            HttpToolsProtocol.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        HttpToolsProtocol.on_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        if not self._refused:
            HttpToolsProtocol.on_message_complete(self)

    def _over(self) -> None:
        limits = self.limits
        if self._head_bytes > limits.max_header_bytes:
            self._refuse(431, f"request head over {limits.max_header_bytes} bytes")
        else:
            self._refuse(431, f"more than {limits.max_headers} header fields")

    # -- the head timer -------------------------------------------------------------
    # One timer per connection, not one per request: it is armed when the
    # connection opens (or a quiet kept-alive one starts a request) and, when
    # it fires, compares the time against the start of the head in progress.
    # A head still arriving gets the rest of its time; a head not yet due, a
    # new timer for what is left; a connection between requests, none (its
    # next request arms one; uvicorn's keep-alive timeout closes it if idle).

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(delay, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if not self._in_head and self.cycle is not None:
            return  # between requests
        timeout = self.limits.header_timeout_s
        left = self._head_started + timeout - self.loop.time()
        if left > 0:
            self._arm(left)
            return
        # Mid-head, or a connection that never sent a request.
        self._refuse(408, f"request head not received within {timeout:g} s")

    def _refuse(self, status: int, reason: str) -> None:
        self._refused = True
        self._disarm()
        log.debug("refused %s from %s: %s", status, self.client, reason)
        body = reason.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


def protocol_for(limits: Http) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these limits."""
    return type("GatewayHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
