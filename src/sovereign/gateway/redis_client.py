"""A minimal Redis client for the quota store: commands, scripts, a small pool.

The quota store makes two script calls per request; through redis-py (with
hiredis) a reserve and a settle cost the gateway about 0.31 ms of CPU, most of
it redis-py's own machinery (argument packing, connection pool,
instrumentation), through this client about 0.14 ms. It does only what
:class:`sovereign.gateway.quota.QuotaStore` needs: encode a command, send it
on a pooled connection, parse the reply with hiredis (C). Scripts run by
``EVALSHA``; a server that does not hold the script (``NOSCRIPT``: restarted,
flushed) gets ``EVAL``, which also loads it.

Fail fast: no retries (a script call is not idempotent) and one deadline per
call (``timeout``: waiting for a pooled connection, connecting, the answer);
every failure is a :class:`RedisClientError`. A connection that failed, timed
out or was cancelled mid-call is closed, never reused; one Redis closed while
it sat idle is dropped before use. At most ``max_connections`` are open; more
callers wait for one (Redis runs one script at a time, so more would only
queue there).

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS,
verified against the system CAs, or ``?ssl_ca_certs=FILE``) and
``unix://[[user]:password@]/path[?db=N]``. Anything else is a ValueError.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

DEFAULT_PORT = 6379
_READ_SIZE = 65536


class RedisClientError(Exception):
    """Redis cannot be reached, timed out, or answered with an error."""


class RedisReplyError(RedisClientError):
    """Redis answered with an error reply (the connection stays usable)."""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA-1, as ``EVALSHA`` names it."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where Redis listens and how to log in; see :meth:`parse`."""

    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None  # a unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Raises ValueError for a URL this client does not handle."""
        parts = urlsplit(url)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"db", "ssl_ca_certs"}
        if unknown:
            raise ValueError(f"unsupported Redis URL parameters: {', '.join(sorted(unknown))}")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        try:
            db = int(query.get("db", "0"))
            if parts.scheme == "unix":
                if "ssl_ca_certs" in query or not parts.path:
                    raise ValueError(f"unsupported Redis URL {url!r}")
                return cls(path=parts.path, db=db, username=username, password=password)
            if parts.scheme not in ("redis", "rediss") or not parts.hostname:
                raise ValueError(f"unsupported Redis URL {url!r}")
            if parts.scheme == "redis" and "ssl_ca_certs" in query:
                raise ValueError("ssl_ca_certs needs a rediss:// URL")
            path_db = parts.path.strip("/")
            if path_db:
                db = int(path_db)
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise ValueError(f"bad Redis URL: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            db=db,
            username=username,
            password=password,
            tls=parts.scheme == "rediss",
            ca_file=query.get("ssl_ca_certs"),
        )


def encode(args: tuple[str | bytes | int, ...]) -> bytes:
    """One command in RESP: an array of bulk strings (hiredis packs it, in C)."""
    # hiredis's stub declares a one-element tuple; it takes any number.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


class _Connection:
    __slots__ = ("reader", "writer", "parser")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()

    def stale(self) -> bool:
        """Closed by Redis (or by us) while idle."""
        return self.reader.at_eof() or self.writer.is_closing()

    async def request(self, command: bytes) -> Any:
        """Send one command and return its reply; error replies are returned as such."""
        self.writer.write(command)
        parser = self.parser
        while True:
            reply = parser.gets()
            if reply is not False:
                return reply
            data = await self.reader.read(_READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the connection")
            parser.feed(data)

    def close(self) -> None:
        self.writer.close()


class RedisClient:
    """A pool of up to ``max_connections`` connections to one Redis; see the module."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_connections: int = 64,
        timeout: float = 2.0,
        connect_timeout: float = 1.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.endpoint = endpoint
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._open = 0  # connections open, idle or in use
        self._closed = False
        self._ssl: ssl.SSLContext | None = None
        if endpoint.tls:
            self._ssl = ssl.create_default_context(cafile=endpoint.ca_file)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisClient:
        """Raises ValueError for a URL :meth:`Endpoint.parse` does not handle."""
        return cls(Endpoint.parse(url), **options)

    @property
    def connections(self) -> int:
        """Connections open now (idle or in use)."""
        return self._open

    async def execute(self, *args: str | bytes | int) -> Any:
        """Run one command; raises RedisReplyError for an error reply, else RedisClientError."""
        reply = await self._call(encode(args))
        if isinstance(reply, hiredis.ReplyError):
            raise RedisReplyError(str(reply))
        return reply

    async def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """``EVALSHA``, or ``EVAL`` when Redis does not hold the script."""
        tail = (len(keys), *keys, *args)
        reply = await self._call(encode(("EVALSHA", script.sha, *tail)))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._call(encode(("EVAL", script.source, *tail)))
        if isinstance(reply, hiredis.ReplyError):
            raise RedisReplyError(str(reply))
        return reply

    async def aclose(self) -> None:
        """Close every idle connection; calls after this fail, ones in flight finish."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)

    async def _call(self, command: bytes) -> Any:
        if self._closed:
            raise RedisClientError("the Redis client is closed")
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    connection = await self._acquire()
                    try:
                        reply = await connection.request(command)
                    except BaseException:
                        # Mid-call (error, time-out, cancellation): the reply may
                        # still come, so the connection cannot carry another call.
                        self._discard(connection)
                        raise
                    if self._closed:
                        self._discard(connection)
                    else:
                        self._idle.append(connection)
                    return reply
        except TimeoutError as exc:
            raise RedisClientError(f"no answer from Redis within {self.timeout} s") from exc
        except (OSError, EOFError, hiredis.ProtocolError) as exc:
            raise RedisClientError(f"Redis connection failed: {exc}") from exc

    async def _acquire(self) -> _Connection:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.stale():
                return connection
            self._discard(connection)
        return await self._connect()

    async def _connect(self) -> _Connection:
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(self.connect_timeout):
                if endpoint.path is not None:
                    reader, writer = await asyncio.open_unix_connection(endpoint.path)
                else:
                    reader, writer = await asyncio.open_connection(
                        endpoint.host, endpoint.port, ssl=self._ssl
                    )
        except TimeoutError as exc:
            raise RedisClientError(
                f"cannot connect to Redis within {self.connect_timeout} s"
            ) from exc
        connection = _Connection(reader, writer)
        self._open += 1
        try:
            await self._log_in(connection)
        except BaseException:
            self._discard(connection)
            raise
        return connection

    async def _log_in(self, connection: _Connection) -> None:
        endpoint = self.endpoint
        commands: list[tuple[str | int, ...]] = []
        if endpoint.password is not None:
            if endpoint.username:
                commands.append(("AUTH", endpoint.username, endpoint.password))
            else:
                commands.append(("AUTH", endpoint.password))
        if endpoint.db:
            commands.append(("SELECT", endpoint.db))
        for command in commands:
            reply = await connection.request(encode(command))
            if isinstance(reply, hiredis.ReplyError):
                raise RedisReplyError(f"Redis refused {command[0]}: {reply}")

    def _discard(self, connection: _Connection) -> None:
        self._open -= 1
        connection.close()
