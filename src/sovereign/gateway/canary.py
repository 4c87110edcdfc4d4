"""Sticky weighted split of a model's users between its versions.

A user's bucket is ``sha256(salt, model, user)`` mod 10 000; the versions
take consecutive ranges of buckets in the order they are listed, sized by
their weights. Growing the last version's weight (5 % -> 25 %) only moves
users into it: everyone already on the canary stays there, and a user's
version changes only when the weights do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

BUCKETS = 10_000


def bucket(salt: str, model: str, user: str) -> int:
    digest = hashlib.sha256(f"{salt}\0{model}\0{user}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


class CanarySplit:
    """Versions of one model with their weights (percent, summing to 100)."""

    def __init__(self, versions: Sequence[tuple[str, int]]) -> None:
        if sum(weight for _, weight in versions) != 100:
            raise ValueError("canary weights must sum to 100")
        self._bounds: list[tuple[int, str]] = []
        upper = 0
        for name, weight in versions:
            if weight:
                upper += weight * BUCKETS // 100
                self._bounds.append((upper, name))

    def choose(self, user_bucket: int) -> str:
        for upper, name in self._bounds:
            if user_bucket < upper:
                return name
        return self._bounds[-1][1]
