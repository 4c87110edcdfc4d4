"""The gateway's own HTTP server refuses oversized and slow request heads and
slow bodies, over real sockets (uvicorn as ``sovereign gateway serve`` runs it)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from sovereign.gateway.config import Http, Listen
from sovereign.gateway.server import uvicorn_config
from tests.support import uvicorn_thread
from tests.support.redis_server import free_port
from tests.unit.gateway.conftest import Clock, FakeIdp, Harness, chat, make_config

LIMITS = Http(max_header_bytes=4096, max_headers=16, header_timeout_s=0.5, body_timeout_s=0.5)


@pytest.fixture
def server(idp: FakeIdp, clock: Clock) -> Iterator[tuple[Harness, int]]:
    port = free_port()
    config = make_config().model_copy(
        update={"listen": Listen(host="127.0.0.1", port=port), "http": LIMITS}
    )
    harness = Harness(config, idp, clock=clock)
    with uvicorn_thread.serving(uvicorn_config(harness.app, config)):
        yield harness, port


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_a_head_over_the_size_limit_is_431(server: tuple[Harness, int]) -> None:
    harness, port = server
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        assert _status(_answer(sock)) == 431
    with _connect(port) as sock:  # a long URL counts too
        sock.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert _status(_answer(sock)) == 431
    assert harness.audit.records == []  # refused before any request code ran


def test_too_many_header_fields_is_431(server: tuple[Harness, int]) -> None:
    _, port = server
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(20))
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n" + fields + b"\r\n")
        assert _status(_answer(sock)) == 431


def test_a_slow_head_is_408_and_closed(server: tuple[Harness, int]) -> None:
    _, port = server
    started = time.monotonic()
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")  # never finished
        data = _answer(sock)
    assert _status(data) == 408 and time.monotonic() - started < 3
    with _connect(port) as sock:  # a connection that never sends anything
        assert _status(_answer(sock)) == 408


def test_a_kept_alive_connection_idles_between_requests_and_heads_within_limits_pass(
    server: tuple[Harness, int],
) -> None:
    _, port = server
    request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n" + b"X-Ok: 1\r\n" * 10 + b"\r\n"
    with _connect(port) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # longer than the head timeout: idle, not a slow head
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_each_head_on_a_kept_alive_connection_gets_its_own_time(
    server: tuple[Harness, int],
) -> None:
    """The connection's one timer is measured against the head in progress:
    a second head that starts late in the first one's period still gets its
    full time, and a second head that trickles past its own time is 408."""
    _, port = server
    request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
    with _connect(port) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.35)  # the connection's timer fires 0.15 s into the next head
        sock.sendall(request[:20])
        time.sleep(0.3)  # 0.3 s into its head, within the 0.5 s limit
        sock.sendall(request[20:])
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.sendall(request[:20])  # and the rest never comes
        data = _answer(sock)
    assert _status(data) == 408 and time.monotonic() - started < 3


def test_a_slow_body_is_408(server: tuple[Harness, int]) -> None:
    harness, port = server
    body = json.dumps(chat()).encode()
    token = harness.auth()["Authorization"].encode()
    with _connect(port) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json"
            b"\r\nAuthorization: " + token + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body[:10])  # and the rest never comes
        data = sock.recv(65536)
    assert _status(data) == 408
    assert b"http.body_timeout_s" in data
    assert harness.backends.who_received() == []
    assert harness.audit.records[-1]["reason"] == "request_timeout"
