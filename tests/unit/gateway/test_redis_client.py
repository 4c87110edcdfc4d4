"""The lean Redis client against a real redis-server: scripts, pool, failures."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis as sync_redis

from sovereign.gateway.quota import QuotaLimits, QuotaStore
from sovereign.gateway.quota_errors import QuotaUnavailableError
from sovereign.gateway.redis_client import (
    Endpoint,
    RedisClient,
    RedisClientError,
    RedisReplyError,
    Script,
    encode,
)
from tests.support.redis_server import MISSING_REASON, binary, free_port, redis_server

T = TypeVar("T")
ECHO = Script.of("return {KEYS[1], ARGV[1]}")
LIMITS = QuotaLimits(requests_per_minute=1000, tokens_per_day=10**6)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if binary() is None:
        pytest.skip(MISSING_REASON)
    with redis_server() as url:
        yield url


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(test())


def client_count(url: str) -> int:
    with sync_redis.Redis.from_url(url) as admin:
        clients = admin.client_list()
        return len(clients) - 1  # less the admin's own


def test_urls_are_parsed_and_unsupported_ones_refused() -> None:
    assert Endpoint.parse("redis://127.0.0.1:6390/2") == Endpoint("127.0.0.1", 6390, db=2)
    assert Endpoint.parse("rediss://u:p%40ss@h/0?ssl_ca_certs=/ca.pem") == Endpoint(
        "h", 6379, username="u", password="p@ss", tls=True, ca_file="/ca.pem"
    )
    assert Endpoint.parse("redis://:secret@h") == Endpoint("h", password="secret")
    assert Endpoint.parse("unix:///run/redis.sock?db=3") == Endpoint(path="/run/redis.sock", db=3)
    for bad in (
        "redis://h/0?socket_keepalive=1",
        "http://h",
        "redis://h/x",
        "redis://h?ssl_ca_certs=/ca",
        "redis:///0",
    ):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)


def test_encode_is_resp() -> None:
    resp = b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$1\r\nv\r\n"
    assert encode(("SET", "k", 12, b"v")) == resp


def test_commands_replies_and_error_replies(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url)
        try:
            assert await client.execute("SET", "rc:a", 5) == b"OK"
            assert await client.execute("INCRBY", "rc:a", 2) == 7
            assert await client.execute("MGET", "rc:a", "rc:missing") == [b"7", None]
            with pytest.raises(RedisReplyError, match="WRONGTYPE|not an integer"):
                await client.execute("LPUSH", "rc:a", "x")
            # An error reply leaves the connection usable.
            assert await client.execute("GET", "rc:a") == b"7"
            assert client.connections == 1
        finally:
            await client.aclose()

    run(test)


def test_a_script_unknown_to_redis_is_sent_whole_then_run_by_sha(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url)
        try:
            await client.execute("SCRIPT", "FLUSH")
            assert await client.run_script(ECHO, ["k"], [3]) == [b"k", b"3"]
            assert await client.execute("SCRIPT", "EXISTS", ECHO.sha) == [1]
            assert await client.run_script(ECHO, ["j"], ["x"]) == [b"j", b"x"]
            with pytest.raises(RedisReplyError):
                await client.run_script(Script.of("return redis.call('NOPE')"), [], [])
        finally:
            await client.aclose()

    run(test)


def test_connections_are_reused_and_bounded_under_concurrency(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url, max_connections=4)
        try:
            for _ in range(20):
                await client.execute("PING")
            assert client.connections == 1
            results = await asyncio.gather(
                *(client.execute("INCR", "rc:concurrent") for _ in range(200))
            )
            assert sorted(results) == list(range(1, 201))
            assert client.connections <= 4
            assert await asyncio.to_thread(client_count, redis_url) == client.connections
        finally:
            await client.aclose()
        assert client.connections == 0
        with pytest.raises(RedisClientError, match="closed"):
            await client.execute("PING")

    run(test)


def test_a_connection_redis_closed_while_idle_is_replaced(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url)
        try:
            await client.execute("PING")
            with sync_redis.Redis.from_url(redis_url) as admin:
                admin.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.05)  # the EOF reaches the idle connection
            assert await client.execute("PING") == b"PONG"
            assert client.connections == 1
        finally:
            await client.aclose()

    run(test)


def test_a_slow_answer_times_out_and_the_connection_is_dropped(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url, timeout=0.2)
        try:
            with pytest.raises(RedisClientError, match="no answer"):
                await client.execute("BLPOP", "rc:never", 5)
            assert client.connections == 0
            assert await client.execute("PING") == b"PONG"
        finally:
            await client.aclose()

    run(test)


def test_a_cancelled_call_does_not_leave_its_reply_for_the_next(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url, max_connections=1)
        try:
            await client.execute("DEL", "rc:list")
            call = asyncio.create_task(client.execute("BLPOP", "rc:list", 1))
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await client.execute("RPUSH", "rc:list", "late")
            assert await client.execute("GET", "rc:other") is None
        finally:
            await client.aclose()

    run(test)


def test_unreachable_redis_and_a_silent_server_fail_fast() -> None:
    async def test() -> None:
        down = RedisClient.from_url(f"redis://127.0.0.1:{free_port()}/0")
        with pytest.raises(RedisClientError, match="connection failed"):
            await down.execute("PING")
        assert down.connections == 0
        with socket.socket() as silent:  # accepts, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            mute = RedisClient.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.2)
            with pytest.raises(RedisClientError, match="no answer"):
                await mute.execute("PING")

    run(test)


def test_wrong_password_is_an_error(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url.replace("redis://", "redis://:wrong@"))
        with pytest.raises(RedisReplyError, match="AUTH"):
            await client.execute("PING")
        assert client.connections == 0

    run(test)


def test_select_picks_the_database(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url.rsplit("/", 1)[0] + "/5")
        try:
            await client.execute("SET", "rc:db", "five")
        finally:
            await client.aclose()
        with sync_redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/5") as admin:
            assert admin.get("rc:db") == b"five"

    run(test)


def test_quota_store_on_the_lean_client(redis_url: str) -> None:
    async def test() -> None:
        client = RedisClient.from_url(redis_url, max_connections=3)
        store = QuotaStore(client, prefix=f"rc-{uuid.uuid4().hex}")
        try:
            await client.execute("SCRIPT", "FLUSH")

            async def one(index: int) -> None:
                reservation = await store.reserve(
                    request_id=f"r{index}",
                    user="alice",
                    team="risk",
                    user_limits=LIMITS,
                    team_limits=None,
                    tokens=10,
                )
                await store.settle(reservation, 4)
                await store.release(reservation)  # a no-op after settling

            await asyncio.gather(*(one(i) for i in range(30)))
            usage = await store.usage(user="alice", team="risk")
            assert usage["user.requests_per_minute"] == 30
            assert usage["user.tokens_per_day"] == 120
            assert usage["team.tokens_per_month"] == 120
            assert client.connections <= 3
        finally:
            await store.aclose()

    run(test)


def test_quota_store_fails_closed_when_redis_goes_away() -> None:
    if binary() is None:
        pytest.skip(MISSING_REASON)

    async def reserve(store: QuotaStore, request_id: str) -> None:
        await store.reserve(
            request_id=request_id,
            user="u",
            team=None,
            user_limits=LIMITS,
            team_limits=None,
            tokens=1,
        )

    async def test() -> None:
        with redis_server() as url:
            store = QuotaStore(RedisClient.from_url(url, timeout=0.5))
            await reserve(store, "a")
        with pytest.raises(QuotaUnavailableError, match="cannot reserve"):
            await reserve(store, "b")
        with pytest.raises(QuotaUnavailableError, match="usage"):
            await store.usage(user="u", team=None)
        await store.aclose()

    run(test)
