"""The backend client pool against a real asyncio server on loopback, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from sovereign.gateway.errors import UpstreamTimeoutError
from sovereign.gateway.upstream import transport_error
from sovereign.gateway.upstream_pool import BackendPool, BackendTransportError, PoolLimits

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]

JSON = b'{"ok": true}'


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    def runner(main: Coroutine[Any, Any, T]) -> T:
        if request.param == "uvloop":
            return uvloop.run(main)
        return asyncio.run(main)

    return runner


def answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "".join(f"{line}\r\n" for line in extra) + "\r\n").encode() + body


class Backend:
    """Answers each request on a connection with ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.handler(reader, writer, body)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(answer(JSON))
    await writer.drain()


def pool(**limits: Any) -> BackendPool:
    return BackendPool(PoolLimits(**limits))


async def post(client: BackendPool, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await client.post(url, body, {"content-type": "application/json"})
    return response.status, await response.read()


def test_a_connection_is_kept_alive_and_reused(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        async with Backend(ok) as backend:
            client = pool()
            for _ in range(5):
                assert await post(client, backend.url, b'{"n": 1}') == (200, JSON)
            assert backend.connections == 1 and client.opened(backend.url) == 1
            assert client.connections(backend.url) == (1, 1)
            request = backend.requests[0]
            assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert b"\r\ncontent-length: 8\r\n" in request and request.endswith(b'{"n": 1}')
            await client.aclose()

    run(main())


def test_a_chunked_body_is_read_whole(run: Callable[[Any], Any]) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in (b'{"a"', b": 1", b"}"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def main() -> None:
        async with Backend(chunked) as backend:
            client = pool()
            assert await post(client, backend.url) == (200, b'{"a": 1}')
            assert await post(client, backend.url) == (200, b'{"a": 1}')
            assert backend.connections == 1  # chunked answers keep the connection
            await client.aclose()

    run(main())


def test_a_body_until_close_is_read_and_the_connection_not_reused(
    run: Callable[[Any], Any],
) -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with Backend(until_close) as backend:
            client = pool()
            assert await post(client, backend.url) == (200, b"all of it")
            assert await post(client, backend.url) == (200, b"all of it")
            assert backend.connections == 2 and client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def test_connection_close_is_honoured(run: Callable[[Any], Any]) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(answer(JSON, "connection: close"))
        await writer.drain()

    async def main() -> None:
        async with Backend(closing) as backend:
            client = pool()
            assert await post(client, backend.url) == (200, JSON)
            assert await post(client, backend.url) == (200, JSON)
            assert client.opened(backend.url) == 2 and client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def test_a_stream_is_yielded_as_it_arrives(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        go_on = asyncio.Event()

        async def events(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
        ) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
            writer.write(b"transfer-encoding: chunked\r\n\r\n")
            first = b"data: first\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(first), first))
            await writer.drain()
            await go_on.wait()
            second = b"data: second\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
            await writer.drain()

        async with Backend(events) as backend:
            client = pool()
            response = await client.post(backend.url, b"{}", {})
            assert response.status == 200 and response.content_type == "text/event-stream"
            pieces = response.iter_raw()
            assert await pieces.__anext__() == b"data: first\n\n"  # before the rest exists
            go_on.set()
            assert [piece async for piece in pieces] == [b"data: second\n\n"]
            assert client.connections(backend.url) == (1, 1)  # read to the end: kept
            await client.aclose()

    run(main())


def test_a_backend_closing_mid_body_is_a_clean_error(run: Callable[[Any], Any]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with Backend(cut) as backend:
            client = pool()
            response = await client.post(backend.url, b"{}", {})
            with pytest.raises(BackendTransportError) as caught:
                await response.read()
            assert caught.value.kind == "ReadError" and not caught.value.timeout
            assert transport_error(caught.value, "v1").status == 502
            assert client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def test_a_backend_closing_without_answering_is_a_clean_error(run: Callable[[Any], Any]) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.close()

    async def main() -> None:
        async with Backend(hang_up) as backend:
            client = pool()
            with pytest.raises(BackendTransportError) as caught:
                await client.post(backend.url, b"{}", {})
            assert caught.value.kind == "RemoteProtocolError"
            assert client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def test_garbage_is_a_protocol_error(run: Callable[[Any], Any]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        async with Backend(garbage) as backend:
            client = pool()
            with pytest.raises(BackendTransportError) as caught:
                await client.post(backend.url, b"{}", {})
            assert caught.value.kind == "RemoteProtocolError"
            assert transport_error(caught.value, "v1").status == 502
            await client.aclose()

    run(main())


def test_a_slow_backend_times_out_as_504(run: Callable[[Any], Any]) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        await asyncio.sleep(2)

    async def slow_body(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes
    ) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await writer.drain()
        await asyncio.sleep(2)

    async def main() -> None:
        for handler in (slow, slow_body):
            async with Backend(handler) as backend:
                client = pool(read_timeout_s=0.1)
                with pytest.raises(BackendTransportError) as caught:
                    await (await client.post(backend.url, b"{}", {})).read()
                assert caught.value.kind == "ReadTimeout" and caught.value.timeout
                error = transport_error(caught.value, "v1")
                assert isinstance(error, UpstreamTimeoutError) and error.status == 504
                assert client.connections(backend.url) == (0, 0)  # never reused
                await client.aclose()

    run(main())


def test_a_refused_connection_is_a_502(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        async with Backend(ok) as backend:
            url = backend.url
        await asyncio.sleep(0.05)  # the listener is gone
        client = pool()
        with pytest.raises(BackendTransportError) as caught:
            await client.post(url, b"{}", {})
        assert caught.value.kind == "ConnectError"
        assert transport_error(caught.value, "v1").status == 502
        assert client.connections(url) == (0, 0)
        await client.aclose()

    run(main())


def test_the_pool_never_exceeds_its_bound(run: Callable[[Any], Any]) -> None:
    async def slowish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        await asyncio.sleep(0.01)
        writer.write(answer(JSON))
        await writer.drain()

    async def main() -> None:
        async with Backend(slowish) as backend:
            client = pool(max_connections=3, max_idle=2)
            most = 0

            async def one() -> tuple[int, bytes]:
                nonlocal most
                result = await post(client, backend.url)
                most = max(most, client.connections(backend.url)[0])
                return result

            results = await asyncio.gather(*(one() for _ in range(40)))
            assert results == [(200, JSON)] * 40
            assert backend.most_open <= 3 and most <= 3 and backend.connections <= 3
            assert client.connections(backend.url) == (2, 2)  # idle ones kept: max_idle
            await client.aclose()

    run(main())


def test_a_caller_waits_for_a_free_connection_at_most_pool_timeout(
    run: Callable[[Any], Any],
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        await asyncio.sleep(0.5)
        writer.write(answer(JSON))
        await writer.drain()

    async def main() -> None:
        async with Backend(slow) as backend:
            client = pool(max_connections=1, pool_timeout_s=0.05)
            first = asyncio.create_task(post(client, backend.url))
            await asyncio.sleep(0.01)
            with pytest.raises(BackendTransportError) as caught:
                await post(client, backend.url)
            assert caught.value.kind == "PoolTimeout"
            assert transport_error(caught.value, "v1").status == 504
            assert await first == (200, JSON)
            assert await post(client, backend.url) == (200, JSON)  # the slot came back
            assert backend.connections == 1
            await client.aclose()

    run(main())


def test_an_answer_left_unread_closes_its_connection(run: Callable[[Any], Any]) -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()

    async def main() -> None:
        async with Backend(big) as backend:
            client = pool()
            response = await client.post(backend.url, b"{}", {})
            await response.aclose()
            assert client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def test_an_idle_connection_the_backend_closed_is_not_used(run: Callable[[Any], Any]) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(answer(JSON))
        await writer.drain()
        writer.close()  # after a keep-alive answer: the idle time-out of a backend

    async def main() -> None:
        async with Backend(once) as backend:
            client = pool()
            assert await post(client, backend.url) == (200, JSON)
            await asyncio.sleep(0.05)
            assert client.connections(backend.url) == (0, 0)  # left the pool at once
            assert await post(client, backend.url) == (200, JSON)
            assert backend.connections == 2
            await client.aclose()

    run(main())


def test_an_expired_idle_connection_is_replaced(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        async with Backend(ok) as backend:
            client = pool(keepalive_expiry_s=0.02)
            assert await post(client, backend.url) == (200, JSON)
            await asyncio.sleep(0.05)
            assert await post(client, backend.url) == (200, JSON)
            assert backend.connections == 2 and client.connections(backend.url) == (1, 1)
            await client.aclose()

    run(main())


def test_header_injection_is_refused(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        async with Backend(ok) as backend:
            client = pool()
            with pytest.raises(ValueError, match="line break"):
                await client.post(backend.url, b"{}", {"x-request-id": "a\r\nevil: 1"})
            assert backend.requests == []
            await client.aclose()

    run(main())


def test_a_backend_error_status_is_read_like_any_answer(run: Callable[[Any], Any]) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        body = b'{"error": {"message": "too long"}}'
        writer.write(answer(body, status="400 Bad Request"))
        await writer.drain()

    async def main() -> None:
        async with Backend(refuse) as backend:
            client = pool()
            assert await post(client, backend.url) == (400, b'{"error": {"message": "too long"}}')
            assert client.connections(backend.url) == (1, 1)
            await client.aclose()

    run(main())


# -- bounds on what a backend may send (issue 8, points 5 and 12) --


def test_a_whole_answer_over_the_size_cap_is_refused_and_its_connection_closed(
    run: Callable[[Any], Any],
) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(answer(b"x" * 300_000))
        await writer.drain()

    async def main() -> None:
        async with Backend(huge) as backend:
            client = pool(max_response_bytes=100_000)
            response = await client.post(backend.url, b"{}", {})
            with pytest.raises(BackendTransportError) as caught:
                await response.read()
            assert caught.value.kind == "ResponseTooLarge"
            assert "max_response_bytes" in str(caught.value)
            assert client.connections(backend.url) == (0, 0)
            error = transport_error(caught.value, "v1")
            assert (error.status, error.code) == (502, "upstream_response_too_large")
            await client.aclose()

    run(main())


def test_a_trickled_answer_ends_at_the_deadline_though_every_piece_is_in_time(
    run: Callable[[Any], Any],
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        for _byte in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    async def main() -> None:
        async with Backend(trickle) as backend:
            client = pool(read_timeout_s=5.0, response_deadline_s=0.5)
            response = await client.post(backend.url, b"{}", {})
            started = asyncio.get_running_loop().time()
            with pytest.raises(BackendTransportError) as caught:
                await response.read()
            assert asyncio.get_running_loop().time() - started < 2
            assert caught.value.timeout and "response_deadline_s" in str(caught.value)
            assert isinstance(transport_error(caught.value, "v1"), UpstreamTimeoutError)
            assert client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def _stream(first: bytes, pause: float, rest: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        await writer.drain()
        await asyncio.sleep(pause)
        if rest:
            writer.write(b"%x\r\n%s\r\n" % (len(rest), rest))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return handler


def test_a_stream_that_goes_quiet_past_the_idle_timeout_fails(
    run: Callable[[Any], Any],
) -> None:
    async def main() -> None:
        async with Backend(_stream(b"data: 1\n\n", 3.0, b"data: 2\n\n")) as backend:
            client = pool(read_timeout_s=10.0, stream_idle_timeout_s=0.3)
            response = await client.post(backend.url, b"{}", {})
            pieces = []
            with pytest.raises(BackendTransportError) as caught:
                async for piece in response.iter_raw():
                    pieces.append(piece)
            assert pieces == [b"data: 1\n\n"] and caught.value.kind == "ReadTimeout"
            assert client.connections(backend.url) == (0, 0)
            await client.aclose()

    run(main())


def test_a_stream_over_its_size_cap_fails(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        async with Backend(_stream(b"a" * 1000, 0.0, b"b" * 1000)) as backend:
            client = pool(max_stream_bytes=1500)
            response = await client.post(backend.url, b"{}", {})
            with pytest.raises(BackendTransportError) as caught:
                async for _ in response.iter_raw():
                    pass
            assert caught.value.kind == "ResponseTooLarge" and "max_stream_bytes" in str(
                caught.value
            )
            await client.aclose()

    run(main())
