"""The pool's response parsing, fuzzed with hypothesis against a real loopback socket.

Whatever a backend sends (any bytes; or a plausible answer with a broken
status line, headers, content-length or chunked framing), cut into any
pieces, the pool gives a whole answer or a BackendTransportError, never any
other exception, never hangs (every wait is bounded), and never keeps a
connection whose exchange broke.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sovereign.gateway.upstream import transport_error
from sovereign.gateway.upstream_pool import BackendPool, BackendTransportError, PoolLimits

LIMITS = PoolLimits(
    connect_timeout_s=2.0,
    read_timeout_s=0.5,
    response_deadline_s=1.0,
    max_response_bytes=4096,
    stream_idle_timeout_s=0.5,
    max_stream_bytes=4096,
)

STATUS = st.sampled_from(
    [b"HTTP/1.1 200 OK", b"HTTP/1.1 502 Bad", b"HTTP/1.0 200 OK", b"HTTP/1.1 99 X", b"HTTP/2 200",
     b"HTTP/1.1 2000 OK", b"HTTP/1.1 200", b"garbage", b"HTTP/1.1 -1 OK", b""]
)  # fmt: skip
HEADER = st.one_of(
    st.tuples(st.just(b"content-length"), st.integers(-5, 10_000).map(lambda n: b"%d" % n)),
    st.tuples(st.just(b"transfer-encoding"), st.sampled_from([b"chunked", b"gzip, chunked", b"x"])),
    st.tuples(st.just(b"connection"), st.sampled_from([b"close", b"keep-alive", b"upgrade"])),
    st.tuples(st.binary(min_size=0, max_size=20), st.binary(max_size=40)),
)
CHUNKED = st.lists(st.binary(max_size=64), max_size=4).map(
    lambda pieces: b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
)
BODY = st.one_of(st.binary(max_size=256), CHUNKED, CHUNKED.map(lambda b: b[:-3]))
PLAUSIBLE = st.builds(
    lambda status, headers, body: (
        status
        + b"\r\n"
        + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        + b"\r\n"
        + body
    ),
    STATUS,
    st.lists(HEADER, max_size=5),
    BODY,
)
WELL_FORMED = st.one_of(
    st.binary(max_size=300).map(
        lambda body: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    ),
    CHUNKED.map(lambda body: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body),
    st.binary(max_size=300).map(lambda body: b"HTTP/1.1 200 OK\r\n\r\n" + body),  # until close
)
# Well-formed answers with a few bytes flipped, dropped or inserted.
MUTATED = st.builds(
    lambda answer, at, junk, drop: (
        answer[: at % (len(answer) + 1)] + junk + answer[at % (len(answer) + 1) + drop :]
    ),
    WELL_FORMED,
    st.integers(0, 400),
    st.binary(max_size=4),
    st.integers(0, 3),
)
ANSWERS = st.one_of(st.binary(max_size=512), PLAUSIBLE, WELL_FORMED, MUTATED)


async def _exchange(payload: bytes, cuts: list[int], stream: bool) -> str:
    """What the pool made of ``payload``: "answer" or the transport error's kind."""
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            start = 0
            for cut in sorted({c % (len(payload) + 1) for c in cuts}) + [len(payload)]:
                writer.write(payload[start:cut])
                await writer.drain()
                await asyncio.sleep(0)
                start = cut
            await asyncio.sleep(0.05)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            served.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/completions"
    client = BackendPool(LIMITS)
    try:
        async with asyncio.timeout(5):  # far beyond every bound above: a hang fails
            response = await client.post(url, b"{}", {"content-type": "application/json"})
            assert 200 <= response.status <= 999
            if stream:
                size = 0
                async for piece in response.iter_raw():
                    size += len(piece)
                assert size <= LIMITS.max_stream_bytes
            else:
                body = await response.read()
                assert len(body) <= LIMITS.max_response_bytes
        outcome = "answer"
    except BackendTransportError as exc:
        transport_error(exc, "v1")  # maps to a 502/504, never raises
        assert client.connections(url) == (0, 0)  # a broken exchange keeps nothing
        outcome = exc.kind
    finally:
        await client.aclose()
        server.close()
        async with asyncio.timeout(5):
            await served.wait()
        await server.wait_closed()
    return outcome


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=ANSWERS, cuts=st.lists(st.integers(0, 600), max_size=4), stream=st.booleans())
def test_any_answer_is_a_whole_answer_or_a_transport_error(
    payload: bytes, cuts: list[int], stream: bool
) -> None:
    asyncio.run(_exchange(payload, cuts, stream))


def test_well_formed_answers_come_through_whole_however_they_are_cut() -> None:
    body = b'{"choices": []}'
    for cuts in ([], [1], [5, 17], [40, 41, 42]):
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        assert asyncio.run(_exchange(answer, cuts, False)) == "answer"
    assert asyncio.run(_exchange(b"HTTP/1.1 200 OK\r\nX: 1\r\nX", [], False)) != "answer"
