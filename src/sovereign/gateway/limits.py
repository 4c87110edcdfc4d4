"""Which quota applies to whom: defaults, then group, user and team overrides."""

from __future__ import annotations

from sovereign.gateway.config import Limits, Quotas
from sovereign.gateway.identity import Principal
from sovereign.gateway.quota import QuotaLimits

_Key = tuple[str, frozenset[str], str | None]
_FIELDS = ("requests_per_minute", "tokens_per_day", "tokens_per_month")


def _generous(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


class QuotaPolicy:
    """Resolves a caller's limits; answers are remembered per (user, groups, team)."""

    def __init__(self, config: Quotas) -> None:
        self.config = config
        self._cache: dict[_Key, tuple[QuotaLimits, QuotaLimits | None]] = {}

    def limits(self, principal: Principal) -> tuple[QuotaLimits, QuotaLimits | None]:
        key = (principal.user, principal.groups, principal.team)
        found = self._cache.get(key)
        if found is None:
            found = (self._user(principal), self._team(principal.team))
            if len(self._cache) >= 65536:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _user(self, principal: Principal) -> QuotaLimits:
        values = {name: getattr(self.config.user_defaults, name) for name in _FIELDS}
        overrides = [
            self.config.groups[g] for g in sorted(principal.groups) if g in self.config.groups
        ]
        for name in _FIELDS:
            setting = [getattr(o, name) for o in overrides if name in o.model_fields_set]
            if setting:
                best = setting[0]
                for value in setting[1:]:
                    best = _generous(best, value)
                values[name] = best
        own = self.config.users.get(principal.user)
        if own is not None:
            values.update(_set_fields(own))
        return QuotaLimits(**values)

    def _team(self, team: str | None) -> QuotaLimits | None:
        if team is None:
            return None
        values = {name: getattr(self.config.team_defaults, name) for name in _FIELDS}
        own = self.config.teams.get(team)
        if own is not None:
            values.update(_set_fields(own))
        return QuotaLimits(**values)


def _set_fields(limits: Limits) -> dict[str, int | None]:
    return {name: getattr(limits, name) for name in _FIELDS if name in limits.model_fields_set}
