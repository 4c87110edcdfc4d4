"""Refusals before the caller is known: cheap, rate-limited and of bounded audit cost.

A request refused before authentication succeeded (no token, a forged or
oversized one, an oversized body) is one an anonymous client can repeat at
will. Two bounds keep a flood of them from costing the service:

- per source address, a token bucket (``failures_per_minute``, ``burst``):
  an address past it is answered 429 ``too_many_failed_authentications``
  until its bucket refills. Only failures draw from it, so a valid caller
  behind the same address (a NAT, a proxy) is still served;
- for the audit log, at most ``audit_records_per_interval`` individual
  ``rejected`` records per ``summary_interval_s``; past that, and for every
  throttled refusal, the refusal is counted, and one ``rejected_summary``
  record per interval carries the counts by reason and status and the
  addresses that sent the most. An interval therefore costs the audit disk
  at most the budget times the largest ``rejected`` record (its free-text
  fields are bounded) plus one summary of bounded size.

Memory is bounded too: buckets of at most ``MAX_PEERS`` addresses (least
recently seen first out) and per-interval counts of at most ``MAX_PEERS``
addresses (the rest counted together).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sovereign.gateway.config import PreAuth

MAX_PEERS = 65536
TOP_PEERS = 10
THROTTLED = "too_many_failed_authentications"


@dataclass(frozen=True, slots=True)
class Verdict:
    throttled: bool  # answer 429 instead of the refusal
    audited: bool  # write an individual ``rejected`` record (else it is counted)
    retry_after: int  # seconds until the address's bucket has a token again


class PreAuthGuard:
    """The per-address buckets and the audit budget of one gateway process."""

    def __init__(self, config: PreAuth, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._rate = config.failures_per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._window_start = clock()
        self._window_wall = time.time()
        self._written = 0
        self._reasons: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._peers: Counter[str] = Counter()
        self._other_peers = 0

    def failure(self, peer: str, reason: str, status: int) -> Verdict:
        now = self._clock()
        throttled, retry_after = self._draw(peer, now)
        if not throttled and self._written < self.config.audit_records_per_interval:
            self._written += 1
            return Verdict(False, True, 0)
        self._reasons[THROTTLED if throttled else reason] += 1
        self._statuses[429 if throttled else status] += 1
        if peer in self._peers or len(self._peers) < MAX_PEERS:
            self._peers[peer] += 1
        else:
            self._other_peers += 1
        return Verdict(throttled, False, retry_after)

    def _draw(self, peer: str, now: float) -> tuple[bool, int]:
        burst = float(self.config.burst)
        tokens, updated = self._buckets.pop(peer, (burst, now))
        tokens = min(burst, tokens + (now - updated) * self._rate)
        throttled = tokens < 1.0
        if not throttled:
            tokens -= 1.0
        self._buckets[peer] = (tokens, now)
        if len(self._buckets) > MAX_PEERS:
            self._buckets.popitem(last=False)
        retry_after = max(1, int((1.0 - tokens) / self._rate) + 1) if throttled else 0
        return throttled, retry_after

    @property
    def pending(self) -> int:
        """Refusals counted in the current interval, not yet in a summary."""
        return sum(self._reasons.values())

    def seconds_left(self) -> float:
        """Until the current interval ends."""
        elapsed = self._clock() - self._window_start
        return max(0.0, self.config.summary_interval_s - elapsed)

    def due(self) -> bool:
        return self._clock() - self._window_start >= self.config.summary_interval_s

    def roll(self, schema: str) -> dict[str, object] | None:
        """End the interval; its summary record, if anything was counted."""
        now, wall = self._clock(), time.time()
        record: dict[str, object] | None = None
        if self._reasons:
            top = self._peers.most_common(TOP_PEERS)
            record = {
                "schema": schema,
                "event": "rejected_summary",
                "time": wall,
                "interval_start": round(self._window_wall, 3),
                "interval_s": round(now - self._window_start, 3),
                "count": self.pending,
                "individually_audited": self._written,
                "by_reason": dict(sorted(self._reasons.items())),
                "by_status": {str(k): v for k, v in sorted(self._statuses.items())},
                "top_peers": [{"peer": peer, "count": count} for peer, count in top],
                "distinct_peers": len(self._peers) + (1 if self._other_peers else 0),
            }
        self._window_start, self._window_wall = now, wall
        self._written = 0
        self._reasons.clear()
        self._statuses.clear()
        self._peers.clear()
        self._other_peers = 0
        return record
