"""Per-user and per-team quotas in Redis, shared by every gateway replica.

Limits: requests per UTC minute, tokens per UTC day and per UTC calendar month
(fixed windows). A request is *reserved* before admission: one Lua script
checks every applicable limit (user and team) against the counters plus this
request (one request; prompt tokens + max_tokens) and increments all of them,
or none. Redis runs a script atomically, so replicas cannot race between check
and increment. After the answer the reservation is *settled* from the real
usage (the difference is added to the token counters it was charged to; more
than reserved is charged too), or *released* (tokens refunded) when the
backend failed before producing any. Settling or releasing twice, or both, is
a no-op: a per-request key records that it happened.

Counters are counted even where no limit applies (for :meth:`QuotaStore.usage`)
and expire: minute keys after 2 minutes, day keys after 2 days, month keys
after 32 days; an unsettled reservation after 2 days, its tokens staying
charged (conservative).

Keys: ``{prefix}:{user|team}:{minute|day|month}:{bucket}:{name}`` and
``{prefix}:reservation:{request_id}``; request ids must be unique across
replicas. A script touches user and team keys together, so on Redis Cluster
put a hash tag in the prefix (``{sovereign}:quota``).

The store talks to Redis through :class:`sovereign.gateway.redis_client.RedisClient`
(the gateway's: less than half the CPU of redis-py per call) or a redis-py
``redis.asyncio.Redis`` client; both fail the same way (QuotaUnavailableError).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from sovereign.gateway.quota_errors import (
    DuplicateRequestError,
    QuotaExceededError,
    QuotaUnavailableError,
)
from sovereign.gateway.redis_client import RedisClient, RedisClientError, Script

MINUTE_TTL_S = 120
DAY_TTL_S = 2 * 86400
MONTH_TTL_S = 32 * 86400
RESERVATION_TTL_S = 2 * 86400

REQUESTS_PER_MINUTE = "requests_per_minute"
TOKENS_PER_DAY = "tokens_per_day"
TOKENS_PER_MONTH = "tokens_per_month"

# KEYS[1] the reservation, KEYS[2..] counters; ARGV[1] reservation TTL,
# ARGV[2] tokens reserved, then per counter: limit (-1: none), increment, TTL.
# Returns {0} when reserved, {-1} when the request id is taken, else the
# (1-based) counters that would pass their limit.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
local blocked = {}
for i = 2, #KEYS do
  local base = 3 * (i - 2) + 2
  local limit = tonumber(ARGV[base + 1])
  if limit >= 0 then
    local current = tonumber(redis.call('GET', KEYS[i]) or '0')
    if current + tonumber(ARGV[base + 2]) > limit then blocked[#blocked + 1] = i - 1 end
  end
end
if #blocked > 0 then return blocked end
for i = 2, #KEYS do
  local base = 3 * (i - 2) + 2
  redis.call('INCRBY', KEYS[i], ARGV[base + 2])
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[base + 3]) end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return {0}
"""

# KEYS[1] the reservation, KEYS[2..] its token counters; ARGV[1] tokens used.
# Adds (used - reserved) to counters that still exist, marks the reservation
# done. Returns 1 when it settled, 0 when already done or unknown.
_SETTLE = """
local reserved = redis.call('GET', KEYS[1])
if not reserved or reserved == 'done' then return 0 end
local delta = tonumber(ARGV[1]) - tonumber(reserved)
if delta ~= 0 then
  for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], delta) end
  end
end
redis.call('SET', KEYS[1], 'done', 'KEEPTTL')
return 1
"""

_RESERVE_SCRIPT = Script.of(_RESERVE)
_SETTLE_SCRIPT = Script.of(_SETTLE)
# What either client raises when Redis is unreachable, slow or answers an error.
_REDIS_ERRORS = (RedisClientError, RedisError, OSError)


@dataclass(frozen=True)
class QuotaLimits:
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None


@dataclass(frozen=True)
class Reservation:
    request_id: str
    user: str
    team: str | None
    tokens: int
    keys: tuple[str, ...]  # the token counters charged (day and month, user and team)
    reservation_key: str  # records that the reservation was settled


@dataclass(frozen=True)
class _Counter:
    key: str
    scope: str  # "user" or "team"
    limit: str  # a QuotaLimits field
    limit_value: int | None
    increment: int
    ttl: int
    resets_at: float  # UNIX time the window ends


@dataclass(frozen=True, slots=True)
class _Windows:
    minute: int  # UNIX minute
    minute_key: str
    day_key: str
    month_key: str
    minute_ends: float
    day_ends: float
    month_ends: float


class QuotaStore:
    """Quota counters in Redis; see the module docstring."""

    def __init__(
        self,
        redis: RedisClient | redis.asyncio.Redis,
        *,
        prefix: str = "sovereign:quota",
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Either client, typed loosely: tests inspect keys through redis-py's helpers.
        self._redis: Any = redis
        self._prefix = prefix
        self._clock = clock
        self._windows_cache: _Windows | None = None
        if not isinstance(redis, RedisClient):
            self._scripts = {
                _RESERVE_SCRIPT: redis.register_script(_RESERVE),
                _SETTLE_SCRIPT: redis.register_script(_SETTLE),
            }

    async def aclose(self) -> None:
        """Close the Redis client's connections."""
        await self._redis.aclose()

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[int]) -> Any:
        client = self._redis
        if isinstance(client, RedisClient):
            return await client.run_script(script, keys, args)
        return await self._scripts[script](keys=keys, args=args)

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
        """Count one request and ``tokens`` against every limit, or none.

        Raises QuotaExceededError (nothing counted), QuotaUnavailableError,
        DuplicateRequestError, ValueError for a negative token count.
        """
        if tokens < 0:
            raise ValueError(f"tokens must not be negative: {tokens}")
        now = self._clock()
        counters = self._counters("user", user, user_limits, tokens, now)
        if team is not None:
            counters += self._counters("team", team, team_limits or QuotaLimits(), tokens, now)
        reservation_key = f"{self._prefix}:reservation:{request_id}"
        args: list[int] = [RESERVATION_TTL_S, tokens]
        for counter in counters:
            limit = -1 if counter.limit_value is None else counter.limit_value
            args += [limit, counter.increment, counter.ttl]
        try:
            result = await self._run(
                _RESERVE_SCRIPT, [reservation_key, *(c.key for c in counters)], args
            )
        except _REDIS_ERRORS as exc:
            raise QuotaUnavailableError(f"cannot reserve quota in Redis: {exc}") from exc
        answer = [int(value) for value in result]
        if answer == [0]:
            return Reservation(
                request_id=request_id,
                user=user,
                team=team,
                tokens=tokens,
                keys=tuple(c.key for c in counters if c.limit != REQUESTS_PER_MINUTE),
                reservation_key=reservation_key,
            )
        if answer == [-1]:
            raise DuplicateRequestError(f"request {request_id!r} already holds a reservation")
        blocking = [counters[index - 1] for index in answer]
        # Report the limit that frees up last: retrying before it resets is futile.
        worst = max(blocking, key=lambda c: c.resets_at)
        assert worst.limit_value is not None
        raise QuotaExceededError(
            scope=worst.scope,
            limit=worst.limit,
            limit_value=worst.limit_value,
            retry_after=max(1, math.ceil(worst.resets_at - now)),
        )

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Charge ``used_tokens`` instead of the reserved amount; a second call is a no-op."""
        if used_tokens < 0:
            raise ValueError(f"used tokens must not be negative: {used_tokens}")
        try:
            await self._run(
                _SETTLE_SCRIPT, [reservation.reservation_key, *reservation.keys], [used_tokens]
            )
        except _REDIS_ERRORS as exc:
            raise QuotaUnavailableError(f"cannot settle quota in Redis: {exc}") from exc

    async def release(self, reservation: Reservation) -> None:
        """Refund the reserved tokens (the request still counts per minute)."""
        await self.settle(reservation, 0)

    async def usage(self, *, user: str, team: str | None) -> dict[str, int]:
        """Current counters: ``{"user.requests_per_minute": 3, "team.tokens_per_day": ...}``."""
        now = self._clock()
        counters = self._counters("user", user, QuotaLimits(), 0, now)
        if team is not None:
            counters += self._counters("team", team, QuotaLimits(), 0, now)
        keys = [c.key for c in counters]
        try:
            if isinstance(self._redis, RedisClient):
                values = await self._redis.execute("MGET", *keys)
            else:
                values = await self._redis.mget(keys)
        except _REDIS_ERRORS as exc:
            raise QuotaUnavailableError(f"cannot read quota usage from Redis: {exc}") from exc
        return {
            f"{c.scope}.{c.limit}": int(value) if value is not None else 0
            for c, value in zip(counters, values, strict=True)
        }

    def _windows(self, now: float) -> _Windows:
        """The minute, day and month windows holding ``now``; computed once a minute."""
        minute = math.floor(now / 60)
        cached = self._windows_cache
        if cached is not None and cached.minute == minute:
            return cached
        moment = datetime.fromtimestamp(now, UTC)
        day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        next_month = (
            day_start.replace(year=moment.year + 1, month=1, day=1)
            if moment.month == 12
            else day_start.replace(month=moment.month + 1, day=1)
        )
        self._windows_cache = windows = _Windows(
            minute,
            f"{moment:%Y%m%d%H%M}",
            f"{moment:%Y%m%d}",
            f"{moment:%Y%m}",
            minute * 60 + 60,
            day_start.timestamp() + 86400,
            next_month.timestamp(),
        )
        return windows

    def _counters(
        self, scope: str, name: str, limits: QuotaLimits, tokens: int, now: float
    ) -> list[_Counter]:
        windows = self._windows(now)
        base = f"{self._prefix}:{scope}"
        return [
            _Counter(
                f"{base}:minute:{windows.minute_key}:{name}",
                scope,
                REQUESTS_PER_MINUTE,
                limits.requests_per_minute,
                1,
                MINUTE_TTL_S,
                windows.minute_ends,
            ),
            _Counter(
                f"{base}:day:{windows.day_key}:{name}",
                scope,
                TOKENS_PER_DAY,
                limits.tokens_per_day,
                tokens,
                DAY_TTL_S,
                windows.day_ends,
            ),
            _Counter(
                f"{base}:month:{windows.month_key}:{name}",
                scope,
                TOKENS_PER_MONTH,
                limits.tokens_per_month,
                tokens,
                MONTH_TTL_S,
                windows.month_ends,
            ),
        ]
