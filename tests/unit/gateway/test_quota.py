"""Quotas through a real redis-server: atomic reservations, settlement, windows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import TypeVar

import pytest
import redis as sync_redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sovereign.gateway.quota import QuotaLimits, QuotaStore, Reservation
from sovereign.gateway.quota_errors import (
    DuplicateRequestError,
    QuotaExceededError,
    QuotaUnavailableError,
)
from tests.support.redis_server import MISSING_REASON, binary, free_port, redis_server

T = TypeVar("T")
NO_LIMITS = QuotaLimits()
NO_RETRY = Retry(NoBackoff(), retries=0)  # fail at once: the gateway fails closed
NOON = datetime(2025, 3, 14, 12, 0, 15, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if binary() is None:
        pytest.skip(MISSING_REASON)
    with redis_server() as url:
        yield url


@asynccontextmanager
async def stores(url: str, clock: Clock, replicas: int = 1) -> AsyncIterator[list[QuotaStore]]:
    """``replicas`` stores, each with its own Redis client, on a flushed database."""
    clients = [redis.asyncio.Redis.from_url(url) for _ in range(replicas)]
    try:
        await clients[0].flushdb()
        yield [QuotaStore(client, clock=clock) for client in clients]
    finally:
        for client in clients:
            await client.aclose()


def run(url: str, clock: Clock, test: Callable[[QuotaStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with stores(url, clock) as (store,):
            return await test(store)

    return asyncio.run(main())


async def reserve(
    store: QuotaStore,
    request_id: str,
    tokens: int,
    *,
    user: str = "alice",
    team: str | None = None,
    limits: QuotaLimits = NO_LIMITS,
    team_limits: QuotaLimits | None = None,
) -> Reservation:
    return await store.reserve(
        request_id=request_id,
        user=user,
        team=team,
        user_limits=limits,
        team_limits=team_limits,
        tokens=tokens,
    )


@pytest.mark.parametrize(
    "limits",
    [QuotaLimits(tokens_per_day=1000), QuotaLimits(requests_per_minute=10)],
    ids=["tokens_per_day", "requests_per_minute"],
)
def test_50_concurrent_requests_on_two_replicas_never_overspend_a_budget_of_10(
    redis_url: str, limits: QuotaLimits
) -> None:
    async def main() -> None:
        async with stores(redis_url, Clock(), replicas=2) as replicas:
            results = await asyncio.gather(
                *(
                    reserve(replicas[i % 2], f"req-{i}", 100, team="risk", limits=limits)
                    for i in range(50)
                ),
                return_exceptions=True,
            )
            admitted = [r for r in results if isinstance(r, Reservation)]
            refused = [r for r in results if isinstance(r, QuotaExceededError)]
            assert len(admitted) == 10 and len(refused) == 40
            assert {r.limit for r in refused} == {
                "tokens_per_day" if limits.tokens_per_day else "requests_per_minute"
            }
            assert all(r.scope == "user" for r in refused)
            # Counters hold exactly the admitted requests, user and team alike.
            usage = await replicas[1].usage(user="alice", team="risk")
            assert usage == {
                "user.requests_per_minute": 10,
                "user.tokens_per_day": 1000,
                "user.tokens_per_month": 1000,
                "team.requests_per_minute": 10,
                "team.tokens_per_day": 1000,
                "team.tokens_per_month": 1000,
            }

    asyncio.run(main())


def test_a_refused_request_counts_nothing(redis_url: str) -> None:
    async def test(store: QuotaStore) -> dict[str, int]:
        limits = QuotaLimits(requests_per_minute=5, tokens_per_day=150)
        await reserve(store, "a", 100, team="risk", limits=limits)
        with pytest.raises(QuotaExceededError):
            await reserve(store, "b", 100, team="risk", limits=limits)
        return await store.usage(user="alice", team="risk")

    usage = run(redis_url, Clock(), test)
    assert usage["user.requests_per_minute"] == usage["team.requests_per_minute"] == 1
    assert usage["user.tokens_per_day"] == usage["team.tokens_per_month"] == 100


def test_settle_charges_the_actual_usage_less_or_more(redis_url: str) -> None:
    async def test(store: QuotaStore) -> list[dict[str, int]]:
        seen = []
        first = await reserve(store, "a", 100, team="risk")
        await store.settle(first, 60)
        seen.append(await store.usage(user="alice", team="risk"))
        second = await reserve(store, "b", 100, team="risk")
        await store.settle(second, 150)
        seen.append(await store.usage(user="alice", team="risk"))
        return seen

    after_less, after_more = run(redis_url, Clock(), test)
    assert after_less["user.tokens_per_day"] == after_less["team.tokens_per_month"] == 60
    assert after_more["user.tokens_per_month"] == after_more["team.tokens_per_day"] == 210
    assert after_more["user.requests_per_minute"] == 2


def test_settling_more_than_reserved_can_exhaust_the_budget(redis_url: str) -> None:
    async def test(store: QuotaStore) -> QuotaExceededError:
        limits = QuotaLimits(tokens_per_day=500)
        await store.settle(await reserve(store, "a", 100, limits=limits), 480)
        with pytest.raises(QuotaExceededError) as refused:
            await reserve(store, "b", 100, limits=limits)
        return refused.value

    assert run(redis_url, Clock(), test).limit == "tokens_per_day"


def test_settle_and_release_are_idempotent(redis_url: str) -> None:
    async def test(store: QuotaStore) -> dict[str, int]:
        reservation = await reserve(store, "a", 100)
        await store.settle(reservation, 40)
        await store.settle(reservation, 40)
        await store.settle(reservation, 999)
        await store.release(reservation)
        return await store.usage(user="alice", team=None)

    assert run(redis_url, Clock(), test)["user.tokens_per_day"] == 40


def test_release_refunds_tokens_but_the_request_still_counts(redis_url: str) -> None:
    async def test(store: QuotaStore) -> dict[str, int]:
        reservation = await reserve(store, "a", 100, team="risk")
        await store.release(reservation)
        await store.release(reservation)
        await store.settle(reservation, 100)
        return await store.usage(user="alice", team="risk")

    usage = run(redis_url, Clock(), test)
    assert usage["user.tokens_per_day"] == usage["team.tokens_per_month"] == 0
    assert usage["user.requests_per_minute"] == usage["team.requests_per_minute"] == 1


def test_a_request_id_reserves_once(redis_url: str) -> None:
    async def test(store: QuotaStore) -> dict[str, int]:
        await reserve(store, "a", 100)
        with pytest.raises(DuplicateRequestError):
            await reserve(store, "a", 100)
        return await store.usage(user="alice", team=None)

    assert run(redis_url, Clock(), test)["user.tokens_per_day"] == 100


@pytest.mark.parametrize(
    ("limits", "start", "retry_after", "later"),
    [
        # 12:00:15 -> the minute resets at 12:01:00.
        (QuotaLimits(requests_per_minute=2), datetime(2025, 3, 14, 12, 0, 15), 45, 45),
        # 23:00:00 -> the day resets at midnight UTC.
        (QuotaLimits(tokens_per_day=200), datetime(2025, 3, 14, 23, 0, 0), 3600, 3600),
        # Dec 31 23:59:30 -> the month (and year) resets on January 1st.
        (QuotaLimits(tokens_per_month=200), datetime(2025, 12, 31, 23, 59, 30), 30, 30),
        # Feb 27 00:00 -> March 1st is 2 days away (2025 is no leap year).
        (QuotaLimits(tokens_per_month=200), datetime(2025, 2, 27), 2 * 86400, 2 * 86400),
    ],
    ids=["minute", "day", "month-new-year", "month-february"],
)
def test_retry_after_points_at_the_window_reset_and_the_window_rolls_over(
    redis_url: str, limits: QuotaLimits, start: datetime, retry_after: int, later: int
) -> None:
    clock = Clock(start.replace(tzinfo=UTC).timestamp())

    async def test(store: QuotaStore) -> None:
        await reserve(store, "a", 100, limits=limits)
        await reserve(store, "b", 100, limits=limits)
        with pytest.raises(QuotaExceededError) as refused:
            await reserve(store, "c", 100, limits=limits)
        assert refused.value.retry_after == retry_after
        assert refused.value.limit_value == 200 or refused.value.limit_value == 2
        clock.now += later - 1
        with pytest.raises(QuotaExceededError) as still:
            await reserve(store, "d", 100, limits=limits)
        assert still.value.retry_after == 1
        clock.now += 1
        await reserve(store, "e", 100, limits=limits)  # a new window

    run(redis_url, clock, test)


def test_crossing_midnight_resets_the_day_but_not_the_month(redis_url: str) -> None:
    clock = Clock(datetime(2025, 3, 14, 23, 59, 0, tzinfo=UTC).timestamp())
    limits = QuotaLimits(tokens_per_day=100, tokens_per_month=150)

    async def test(store: QuotaStore) -> None:
        await reserve(store, "a", 100, limits=limits)
        clock.now += 60
        with pytest.raises(QuotaExceededError) as refused:
            await reserve(store, "b", 100, limits=limits)
        assert refused.value.limit == "tokens_per_month"
        # March 15th 00:00 -> April 1st 00:00.
        assert refused.value.retry_after == 17 * 86400
        await reserve(store, "c", 50, limits=limits)
        assert await store.usage(user="alice", team=None) == {
            "user.requests_per_minute": 1,
            "user.tokens_per_day": 50,
            "user.tokens_per_month": 150,
        }

    run(redis_url, clock, test)


def test_when_several_limits_block_the_last_to_reset_is_reported(redis_url: str) -> None:
    clock = Clock(datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC).timestamp())
    limits = QuotaLimits(requests_per_minute=1, tokens_per_day=100, tokens_per_month=100)

    async def test(store: QuotaStore) -> QuotaExceededError:
        await reserve(store, "a", 100, limits=limits)
        with pytest.raises(QuotaExceededError) as refused:
            await reserve(store, "b", 100, limits=limits)
        return refused.value

    refused = run(redis_url, clock, test)
    assert (refused.scope, refused.limit, refused.limit_value) == ("user", "tokens_per_month", 100)
    assert refused.retry_after == 18 * 86400 - 12 * 3600  # until April 1st


def test_team_limits_are_independent_of_user_limits(redis_url: str) -> None:
    roomy = QuotaLimits(tokens_per_day=1000)
    team = QuotaLimits(tokens_per_day=300)

    async def test(store: QuotaStore) -> None:
        await reserve(store, "a", 200, user="alice", team="risk", limits=roomy, team_limits=team)
        with pytest.raises(QuotaExceededError) as refused:
            await reserve(store, "b", 200, user="bob", team="risk", limits=roomy, team_limits=team)
        assert (refused.value.scope, refused.value.limit_value) == ("team", 300)
        # Another team, and the same user outside the team, are not held back.
        await reserve(store, "c", 200, user="bob", team="ops", limits=roomy, team_limits=team)
        await reserve(store, "d", 800, user="alice", team=None, limits=roomy)
        with pytest.raises(QuotaExceededError) as mine:
            await reserve(store, "e", 1, user="alice", team="ops", limits=roomy, team_limits=team)
        assert (mine.value.scope, mine.value.limit_value) == ("user", 1000)
        assert await store.usage(user="bob", team="risk") == {
            "user.requests_per_minute": 1,
            "user.tokens_per_day": 200,
            "user.tokens_per_month": 200,
            "team.requests_per_minute": 1,
            "team.tokens_per_day": 200,
            "team.tokens_per_month": 200,
        }

    run(redis_url, Clock(), test)


def test_keys_expire(redis_url: str) -> None:
    async def test(store: QuotaStore) -> dict[str, int]:
        await reserve(store, "a", 10, team="risk")
        client = store._redis
        ttls = {}
        async for key in client.scan_iter(match="sovereign:quota:*"):
            # sovereign:quota:{scope}:{window}:... or sovereign:quota:reservation:{id}
            parts = key.decode().split(":")
            ttls[
                ":".join(parts[2:4]) if parts[2] != "reservation" else "reservation"
            ] = await client.ttl(key)
        return ttls

    ttls = run(redis_url, Clock(), test)
    assert set(ttls) == {
        "user:minute",
        "user:day",
        "user:month",
        "team:minute",
        "team:day",
        "team:month",
        "reservation",
    }
    assert 60 < ttls["user:minute"] <= 120 and 60 < ttls["team:minute"] <= 120
    assert 86400 < ttls["user:day"] <= 2 * 86400
    assert 31 * 86400 < ttls["team:month"] <= 32 * 86400
    assert 0 < ttls["reservation"] <= 2 * 86400


def test_names_cannot_collide_across_scopes(redis_url: str) -> None:
    async def test(store: QuotaStore) -> dict[str, int]:
        await reserve(store, "a", 10, user="x:day", team="x")
        return await store.usage(user="x", team="x:day")

    assert set(run(redis_url, Clock(), test).values()) == {0}


def test_negative_tokens_are_refused(redis_url: str) -> None:
    async def test(store: QuotaStore) -> None:
        with pytest.raises(ValueError, match="negative"):
            await reserve(store, "a", -1)

    run(redis_url, Clock(), test)


def test_an_unreachable_redis_fails_closed() -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(
            host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=NO_RETRY
        )
        store = QuotaStore(client)
        reservation = Reservation("a", "alice", None, 10, ("k",), "sovereign:quota:reservation:a")
        try:
            with pytest.raises(QuotaUnavailableError, match="cannot reserve quota"):
                await reserve(store, "a", 10)
            with pytest.raises(QuotaUnavailableError, match="cannot settle"):
                await store.settle(reservation, 5)
            with pytest.raises(QuotaUnavailableError, match="cannot settle"):
                await store.release(reservation)
            with pytest.raises(QuotaUnavailableError, match="usage"):
                await store.usage(user="alice", team=None)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_redis_that_goes_away_fails_closed() -> None:
    # A server of its own, stopped under a connected client.
    if binary() is None:
        pytest.skip(MISSING_REASON)

    async def main(url: str, stop: Callable[[], None]) -> None:
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=1, retry=NO_RETRY)
        try:
            store = QuotaStore(client)
            await reserve(store, "a", 10)
            stop()
            with pytest.raises(QuotaUnavailableError):
                await reserve(store, "b", 10)
        finally:
            await client.aclose()

    with redis_server() as url:
        # redis_server's context stops the server; SHUTDOWN stops it early here.
        def stop() -> None:
            with sync_redis.Redis.from_url(url) as admin, suppress(sync_redis.ConnectionError):
                admin.shutdown(nosave=True)

        asyncio.run(main(url, stop))
