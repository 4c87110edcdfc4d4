"""Exceptions of the quota store (:mod:`sovereign.gateway.quota`).

The gateway maps them to HTTP: QuotaExceededError to 429 with ``Retry-After:
retry_after``, QuotaUnavailableError to 503 (quotas fail closed).
"""

from __future__ import annotations


class QuotaError(Exception):
    """Base class of quota errors."""


class QuotaExceededError(QuotaError):
    """A limit would be passed; nothing was counted.

    ``scope`` is "user" or "team", ``limit`` the name of the field of
    QuotaLimits that blocks ("requests_per_minute", "tokens_per_day",
    "tokens_per_month"), ``limit_value`` its value, ``retry_after`` the whole
    seconds until that limit's window resets (at least 1). When several limits
    block, the one that resets last is reported: retrying sooner cannot succeed.
    """

    def __init__(self, *, scope: str, limit: str, limit_value: int, retry_after: int) -> None:
        super().__init__(
            f"{scope} quota exceeded: {limit} is {limit_value}; retry after {retry_after} s"
        )
        self.scope = scope
        self.limit = limit
        self.limit_value = limit_value
        self.retry_after = retry_after


class QuotaUnavailableError(QuotaError):
    """The quota state (Redis) cannot be reached or answered with an error."""


class DuplicateRequestError(QuotaError):
    """A reservation for this request id already exists."""
