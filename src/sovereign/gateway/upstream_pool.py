"""A lean HTTP/1.1 client for the model backends: keep-alive pools, httptools parsing.

httpx costs about 2 ms of CPU per request here and its pool scans every
connection on each request, so under load it is most of the gateway's time.
This client does only what the gateway needs: ``POST`` a small body, read the
status and headers, then the body whole or piece by piece as it arrives
(``content-length``, ``chunked`` or until the backend closes).

One pool per origin (scheme, host, port) holds at most ``max_connections``
connections, idle or busy; a caller over the bound waits up to
``pool_timeout_s`` for one to come free. At most ``max_idle`` idle connections
are kept, the most recently used first, each for ``keepalive_expiry_s`` (below
the 5 s uvicorn, and so vLLM, keeps an idle connection: the backend never
closes a connection just as the gateway reuses it). A connection the backend
closed while idle leaves the pool at once. Time-outs: ``connect_timeout_s``
(TCP and TLS), ``write_timeout_s`` (the request flushed), ``read_timeout_s``
(the wait for the status line, then for each piece of a whole answer).
Bounds on what a backend may send: a whole answer (:meth:`BackendResponse.read`)
must be complete within ``response_deadline_s`` and hold at most
``max_response_bytes``; a streamed one (:meth:`BackendResponse.iter_raw`)
may go quiet for at most ``stream_idle_timeout_s`` and hold at most
``max_stream_bytes``; the head at most 64 KiB. Every failure is a
:class:`BackendTransportError` and the connection is closed; a request is
never sent twice.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

# Pause reading a backend's socket when this much of its answer waits unread
# (a slow client), resume when it is down to the low mark.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_MAX_HEAD = 64 * 1024  # status line and headers together
_NO_BODY = frozenset({204, 304})


class BackendTransportError(Exception):
    """The backend could not be reached, timed out, or broke the HTTP exchange.

    ``kind`` names what failed, in httpx's words (``ConnectError``,
    ``ConnectTimeout``, ``PoolTimeout``, ``WriteTimeout``, ``ReadTimeout``,
    ``ReadError``, ``RemoteProtocolError``); the ``...Timeout`` kinds are
    time-outs (504), the others failures (502).
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail

    @property
    def timeout(self) -> bool:
        return self.kind.endswith("Timeout")


@dataclass(frozen=True, slots=True)
class PoolLimits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    write_timeout_s: float = 30.0
    pool_timeout_s: float = 5.0
    max_connections: int = 512  # per origin
    max_idle: int = 128  # per origin
    keepalive_expiry_s: float = 4.0
    max_response_bytes: int = 16 * 1024 * 1024  # a whole (non-streamed) answer
    response_deadline_s: float = 300.0  # a whole answer, from the request to the last byte
    max_stream_bytes: int = 64 * 1024 * 1024  # a streamed answer
    stream_idle_timeout_s: float = 60.0  # a streamed answer, between two pieces


def _expire(waiter: asyncio.Future[None], kind: str) -> None:
    if not waiter.done():
        waiter.set_exception(BackendTransportError(kind, "no answer in time"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, pool: _OriginPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle = False  # in its pool's idle list
        self.idle_since = 0.0
        self.busy = False  # an exchange is under way
        self.error: BackendTransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        # the answer being read
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_done = False
        self.complete = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.received = 0
        self.until_close = False  # neither content-length nor chunked: ends at EOF
        self.keep_alive = False  # as the answer's head says
        self._framed = False

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but is one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes nobody asked for: the stream is out of step; never reuse it.
            self._fail(BackendTransportError("RemoteProtocolError", "unexpected data"))
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BackendTransportError("RemoteProtocolError", "protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(BackendTransportError("RemoteProtocolError", f"bad HTTP: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle:
            self.pool.lost_idle(self)
            return
        if self.busy and not self.complete and self.error is None:
            if self.head_done and self.until_close and exc is None:
                self.complete = True
            elif self.received == 0:
                self.error = BackendTransportError(
                    "RemoteProtocolError", "the backend closed the connection without answering"
                )
            else:
                self.error = BackendTransportError(
                    "ReadError", "the backend closed the connection mid-answer"
                )
        self._wake()
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(BackendTransportError("WriteError", "connection lost"))

    def pause_writing(self) -> None:
        if self._write_waiter is None:
            self._write_waiter = self.loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._write_waiter = self._write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks ----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > _MAX_HEAD:
            raise httptools.HttpParserError("response head too large")
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True
        self.headers.append((lowered, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: an interim answer; the real one follows
            self.headers = []
            self.head_size = 0
            self._framed = False
            return
        self.status = status
        self.head_done = True
        self.until_close = not self._framed and status not in _NO_BODY
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self._wake()

    # -- the exchange -----------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BackendTransportError) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def send(self, data: bytes, write_timeout: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.status = 0
        self.headers = []
        self.head_size = 0
        self.head_done = self.complete = self.until_close = self._framed = False
        self.keep_alive = False
        self.received = 0
        self.transport.write(data)
        waiter = self._write_waiter
        if waiter is not None:  # the kernel's buffer is full: wait for it to drain
            try:
                async with asyncio.timeout(write_timeout):
                    await waiter
            except TimeoutError:
                raise BackendTransportError("WriteTimeout", "request not sent in time") from None

    async def wait(self, timeout: float) -> None:
        """Until something new arrived (head, body, end, error); raises on error."""
        if self.error is None and self.closed and not self.complete:
            # Lost before the exchange began (closed as it was opened): nothing will come.
            self.error = BackendTransportError(
                "RemoteProtocolError" if self.received == 0 else "ReadError",
                "the backend closed the connection",
            )
        if self.error is not None:
            raise self.error
        waiter = self.loop.create_future()
        self._waiter = waiter
        timer = self.loop.call_later(timeout, _expire, waiter, "ReadTimeout")
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """Everything of the body that has arrived, as one piece."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and self.error is None
            and not self.until_close
            and self.keep_alive
        )


class _OriginPool:
    """The connections to one origin, at most ``limits.max_connections``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        limits: PoolLimits,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.tls = tls
        self.limits = limits
        self.idle: list[_Connection] = []
        self.count = 0  # connections open or opening, idle or busy
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.opened = 0  # connections ever opened, for tests and metrics

    async def acquire(self) -> _Connection:
        now = self.loop.time()
        expiry = self.limits.keepalive_expiry_s
        while self.idle:
            connection = self.idle.pop()
            connection.idle = False
            if connection.closed or now - connection.idle_since > expiry:
                self._drop(connection)
                continue
            return connection
        if self.count < self.limits.max_connections:
            self.count += 1
            return await self._open()
        return await self._wait_for_slot()

    async def _wait_for_slot(self) -> _Connection:
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(self.limits.pool_timeout_s):
                handed = await waiter
        except BaseException as exc:
            # Timed out or cancelled, perhaps just after being handed something: give it back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()
                if given is None:
                    self.count -= 1
                    self._hand_over_slot()
                else:
                    self.release(given)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise BackendTransportError(
                    "PoolTimeout", f"all {self.limits.max_connections} connections busy"
                ) from None
            raise
        if handed is not None:
            return handed
        return await self._open()  # a slot, already counted for us

    async def _open(self) -> _Connection:
        """A new connection; the caller has counted it."""
        connection = _Connection(self)
        try:
            async with asyncio.timeout(self.limits.connect_timeout_s):
                await self.loop.create_connection(
                    lambda: connection,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            self._forget_slot(connection)
            raise BackendTransportError(
                "ConnectTimeout", f"{self.host}:{self.port} did not accept in time"
            ) from None
        except OSError as exc:
            self._forget_slot(connection)
            raise BackendTransportError(
                "ConnectError", f"{self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            self._forget_slot(connection)
            raise
        self.opened += 1
        return connection

    def _forget_slot(self, connection: _Connection) -> None:
        connection.close()
        self.count -= 1
        self._hand_over_slot()

    def _hand_over_slot(self) -> None:
        """A slot came free: a waiter may open a connection in it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.count += 1
                waiter.set_result(None)
                return

    def release(self, connection: _Connection) -> None:
        """Back from an exchange: to a waiter, to the idle list, or closed."""
        connection.busy = False
        if not connection.reusable:
            self._drop(connection)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                connection.busy = True
                waiter.set_result(connection)
                return
        if len(self.idle) >= self.limits.max_idle:
            self._drop(connection)
            return
        connection.idle = True
        connection.idle_since = self.loop.time()
        self.idle.append(connection)
        oldest = self.idle[0]
        if connection.idle_since - oldest.idle_since > self.limits.keepalive_expiry_s:
            self.idle.pop(0)
            oldest.idle = False
            self._drop(oldest)

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self.count -= 1
        self._hand_over_slot()

    def lost_idle(self, connection: _Connection) -> None:
        """The backend closed an idle connection."""
        connection.idle = False
        try:
            self.idle.remove(connection)
        except ValueError:
            return
        self.count -= 1
        self._hand_over_slot()

    def close(self) -> None:
        for connection in self.idle:
            connection.idle = False
            connection.close()
        self.count -= len(self.idle)
        self.idle.clear()


class BackendResponse:
    """A backend's answer: status and headers read, the body still to come."""

    def __init__(self, pool: _OriginPool, connection: _Connection, limits: PoolLimits) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._limits = limits
        self.status = connection.status
        self.headers = connection.headers

    @property
    def content_type(self) -> str | None:
        for name, value in self.headers:
            if name == b"content-type":
                return value.decode("latin-1")
        return None

    async def read(self) -> bytes:
        """The whole body within the deadline and the size cap; the connection
        goes back to the pool."""
        limits = self._limits
        pieces = [
            piece
            async for piece in self._pieces(
                limits.read_timeout_s,
                limits.max_response_bytes,
                "max_response_bytes",
                limits.response_deadline_s,
            )
        ]
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def iter_raw(self) -> AsyncGenerator[bytes, None]:
        """The body's pieces as they arrive (chunked framing removed), each
        within the idle time-out, all within the stream's size cap."""
        limits = self._limits
        return self._pieces(
            limits.stream_idle_timeout_s, limits.max_stream_bytes, "max_stream_bytes"
        )

    async def _pieces(
        self, wait: float, cap: int, limit: str, deadline_s: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The body's pieces; each wait at most ``wait`` seconds and, with a
        deadline, no later than ``deadline_s`` after the start (one timer per
        wait, as before: no extra timer object for the deadline)."""
        connection = self._connection
        if connection is None:
            return
        size = 0
        loop = connection.loop
        deadline = loop.time() + deadline_s if deadline_s is not None else None
        try:
            while True:
                if connection.chunks:
                    piece = connection.take()
                    size += len(piece)
                    if size > cap:
                        raise BackendTransportError(
                            "ResponseTooLarge", f"over {cap} bytes ({limit})"
                        )
                    yield piece
                elif connection.complete:
                    break
                elif deadline is None:
                    await connection.wait(wait)
                else:
                    left = deadline - loop.time()
                    try:
                        if left <= 0:
                            raise BackendTransportError("ReadTimeout")
                        await connection.wait(min(wait, left))
                    except BackendTransportError as exc:
                        if not exc.timeout or left > wait:
                            raise
                        raise BackendTransportError(
                            "ReadTimeout",
                            f"no whole answer within {deadline_s:g} s (response_deadline_s)",
                        ) from None
        except BaseException:
            self._discard()
            raise
        self._connection = None
        self._pool.release(connection)

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.busy = False
            self._pool._drop(connection)

    async def aclose(self) -> None:
        """Done with the answer: a body not read to its end closes the connection."""
        connection = self._connection
        if connection is None:
            return
        if connection.complete and not connection.chunks:
            self._connection = None
            self._pool.release(connection)
        else:
            self._discard()


_Origin = tuple[str, str, int]


class BackendPool:
    """HTTP/1.1 keep-alive connections to every backend; see the module docstring."""

    def __init__(self, limits: PoolLimits | None = None, *, tls: ssl.SSLContext | None = None):
        self.limits = limits or PoolLimits()
        self._tls = tls
        self._pools: dict[_Origin, _OriginPool] = {}
        self._urls: dict[str, tuple[_Origin, bytes]] = {}
        self._closed = False

    def _target(self, url: str) -> tuple[_Origin, bytes]:
        known = self._urls.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendTransportError("ConnectError", f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = (parts.scheme == "http" and port == 80) or (
            parts.scheme == "https" and port == 443
        )
        host = parts.hostname
        authority = host if ":" not in host else f"[{host}]"
        if not default:
            authority = f"{authority}:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        prefix = f"POST {path} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")
        if len(self._urls) >= 4096:  # backends come from the configuration: a few
            self._urls.clear()
        known = self._urls[url] = ((parts.scheme, host, port), prefix)
        return known

    def _pool(self, origin: _Origin) -> _OriginPool:
        pool = self._pools.get(origin)
        if pool is None:
            scheme, host, port = origin
            tls = None
            if scheme == "https":
                tls = self._tls or ssl.create_default_context()
            pool = _OriginPool(asyncio.get_running_loop(), host, port, tls, self.limits)
            self._pools[origin] = pool
        return pool

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> BackendResponse:
        """Send ``body``; returns once the status line and headers are in."""
        if self._closed:
            raise BackendTransportError("ConnectError", "the client is closed")
        origin, prefix = self._target(url)
        head = [prefix.decode("ascii")]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            head.append(f"{name}: {value}\r\n")
        head.append(f"content-length: {len(body)}\r\n\r\n")
        data = "".join(head).encode("latin-1") + body
        pool = self._pool(origin)
        connection = await pool.acquire()
        connection.busy = True
        limits = self.limits
        try:
            await connection.send(data, limits.write_timeout_s)
            while not connection.head_done:
                await connection.wait(limits.read_timeout_s)
        except BaseException:
            connection.busy = False
            pool._drop(connection)
            raise
        return BackendResponse(pool, connection, limits)

    def connections(self, url: str) -> tuple[int, int]:
        """(open, idle) connections to the origin of ``url``, for tests and metrics."""
        pool = self._pools.get(self._target(url)[0])
        return (pool.count, len(pool.idle)) if pool else (0, 0)

    def opened(self, url: str) -> int:
        pool = self._pools.get(self._target(url)[0])
        return pool.opened if pool else 0

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
