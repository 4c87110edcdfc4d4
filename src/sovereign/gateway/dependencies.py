"""What the gateway needs from the quota store and the audit log.

The real ones are :class:`sovereign.gateway.quota.QuotaStore` (Redis) and
:class:`sovereign.audit.log.AuditLog`; tests may stand in others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sovereign.gateway.quota import QuotaLimits, Reservation


class QuotaBackend(Protocol):
    async def reserve(
        self,
        *,
        request_id: str,
        user: str,
        team: str | None,
        user_limits: QuotaLimits,
        team_limits: QuotaLimits | None,
        tokens: int,
    ) -> Reservation: ...

    async def settle(self, reservation: Reservation, used_tokens: int) -> None: ...

    async def release(self, reservation: Reservation) -> None: ...


class AuditSink(Protocol):
    async def append(self, record: Mapping[str, object]) -> object: ...

    @property
    def healthy(self) -> bool: ...
