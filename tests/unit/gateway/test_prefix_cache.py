"""Tenants cannot share vLLM's prefix cache: the gateway salts it per tenant."""

from __future__ import annotations

from typing import Any

import pytest

from sovereign.gateway.app import Gateway
from sovereign.gateway.errors import ConfigError
from tests.unit.gateway.conftest import Clock, FakeIdp, Harness, chat, make_config


def _salt(harness: Harness, body: dict[str, Any] | None = None, **claims: Any) -> object:
    harness.backends.reset()
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions", json=body or chat(), headers=harness.auth(**claims)
        )
    assert response.status_code == 200, response.text
    (sent,) = [b for h in harness.backends.by_host.values() for b in h.received]
    return sent.get("cache_salt", None)


def test_users_of_one_team_share_a_salt_other_teams_do_not(harness: Harness) -> None:
    alice = _salt(harness, sub="alice", preferred_username="alice", team="risk")
    carol = _salt(harness, sub="carol", preferred_username="carol", team="risk")
    bob = _salt(harness, sub="bob", preferred_username="bob", team="markets")
    assert isinstance(alice, str) and len(alice) == 43  # 256 bits, base64url
    assert alice == carol and alice != bob


def test_a_client_salt_is_replaced_never_forwarded(harness: Harness) -> None:
    mine = _salt(harness, team="risk")
    forged = _salt(harness, chat(cache_salt="guess-the-other-team"), team="markets")
    assert forged not in (mine, "guess-the-other-team")


def test_user_isolation_gives_every_user_their_own_salt(idp: FakeIdp, clock: Clock) -> None:
    harness = Harness(make_config(prefix_cache={"isolation": "user"}), idp, clock=clock)
    alice = _salt(harness, preferred_username="alice", team="risk")
    carol = _salt(harness, preferred_username="carol", team="risk")
    assert alice != carol


def test_isolation_off_sends_no_salt_and_still_drops_the_clients(
    idp: FakeIdp, clock: Clock
) -> None:
    harness = Harness(make_config(prefix_cache={"isolation": "off"}), idp, clock=clock)
    assert _salt(harness, chat(cache_salt="x" * 43)) is None


def test_a_salt_key_file_makes_salts_the_same_on_every_gateway(
    idp: FakeIdp, clock: Clock, tmp_path: Any
) -> None:
    key = tmp_path / "salt.key"
    key.write_bytes(b"k" * 32)
    config = make_config(prefix_cache={"salt_key_file": str(key)})
    first, second = Harness(config, idp, clock=clock), Harness(config, idp, clock=clock)
    assert _salt(first, team="risk") == _salt(second, team="risk")
    key.write_bytes(b"short")
    with pytest.raises(ConfigError, match="under 32 bytes"):
        Gateway(
            config,
            quota=first.quota,
            audit=first.audit,
            upstream=first.upstream,
            verifier=first.verifier,
        )
