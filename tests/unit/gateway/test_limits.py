"""Quota limits per user and team: defaults and overrides; 429 and 503 at the door."""

from __future__ import annotations

from sovereign.gateway.identity import Principal
from sovereign.gateway.limits import QuotaPolicy
from sovereign.gateway.quota import QuotaLimits
from sovereign.gateway.quota_errors import QuotaExceededError
from tests.unit.gateway.conftest import Harness, Live, chat, make_config


def _policy() -> QuotaPolicy:
    return QuotaPolicy(make_config().quotas)


def test_defaults_apply_to_everyone() -> None:
    user, team = _policy().limits(Principal("x", frozenset(), "t", "oidc"))
    assert user == QuotaLimits(requests_per_minute=60, tokens_per_day=100000)
    assert team == QuotaLimits(tokens_per_day=1000000)


def test_group_user_and_team_overrides() -> None:
    policy = _policy()
    power, no_team = policy.limits(Principal("x", frozenset({"power", "staff"}), None, "oidc"))
    assert power.requests_per_minute == 600 and power.tokens_per_day == 100000
    assert no_team is None
    bob, _ = policy.limits(Principal("bob", frozenset(), None, "oidc"))
    assert bob.tokens_per_day == 5 and bob.requests_per_minute == 60


def test_a_spent_quota_is_429_with_retry_after(harness: Harness) -> None:
    harness.quota.exceeded = QuotaExceededError(
        scope="team", limit="tokens_per_day", limit_value=1000, retry_after=3600
    )
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3600"
    assert "team quota tokens_per_day of 1000" in response.json()["error"]["message"]
    assert harness.audit.records[0]["limit"] == "team.tokens_per_day"
    assert harness.backends.who_received() == []


def test_an_unreachable_quota_store_refuses_with_503(harness: Harness) -> None:
    harness.quota.unavailable = True
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "quota_unavailable"


def test_the_real_store_refuses_bob_over_his_5_tokens_a_day(live: Live) -> None:
    with live.client() as client:
        response = client.post(
            "/v1/chat/completions", json=chat(), headers=live.auth(preferred_username="bob")
        )
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert "user quota tokens_per_day of 5" in response.json()["error"]["message"]
    assert live.audit_records()[0]["event"] == "rejected"


def test_the_real_store_down_is_503(live: Live) -> None:
    live.config = live.config.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with live.client() as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=live.auth())
    assert response.status_code == 503
    assert live.backends.who_received() == []
