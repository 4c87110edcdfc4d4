"""Identity headers are believed from the SSO proxy's address, and only from it."""

from __future__ import annotations

from sovereign.gateway.trusted_header import TrustedProxies, principal_from_headers
from tests.unit.gateway.conftest import PROXY, Harness, chat

IDENTITY = {
    "X-Sovereign-User": "carol",
    "X-Sovereign-Groups": "staff, power",
    "X-Sovereign-Team": "oncology",
}


def test_headers_from_the_proxy_are_the_identity(harness: Harness) -> None:
    with harness.client(peer=PROXY) as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=IDENTITY)
    assert response.status_code == 200, response.text
    record = harness.audit.records[0]
    assert (record["user"], record["team"], record["auth"]) == (
        "carol",
        "oncology",
        "trusted_header",
    )
    assert record["groups"] == ["power", "staff"]


def test_headers_from_another_peer_are_ignored_and_a_token_is_required(harness: Harness) -> None:
    with harness.client(peer="10.9.1.7") as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=IDENTITY)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"
    assert harness.backends.who_received() == []


def test_a_token_from_another_peer_wins_over_its_identity_headers(harness: Harness) -> None:
    with harness.client(peer="192.0.2.99") as client:
        response = client.post(
            "/v1/chat/completions", json=chat(), headers={**IDENTITY, **harness.auth()}
        )
    assert response.status_code == 200
    assert harness.audit.records[0]["user"] == "alice"


def test_the_proxy_without_headers_falls_back_to_the_token(harness: Harness) -> None:
    with harness.client(peer=PROXY) as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
    assert response.status_code == 200
    assert harness.audit.records[0]["auth"] == "oidc"


def test_credentials_and_identity_headers_never_reach_the_backend(harness: Harness) -> None:
    with harness.client(peer=PROXY) as client:
        response = client.post(
            "/v1/chat/completions",
            json=chat(),
            headers={**IDENTITY, **harness.auth(), "Cookie": "session=1", "X-Custom": "1"},
        )
    assert response.status_code == 200
    (sent,) = (
        harness.backends["tiny-stable-general"].headers
        or harness.backends["tiny-canary-general"].headers
    )
    assert "authorization" not in sent and "cookie" not in sent and "x-custom" not in sent
    assert not [name for name in sent if name.startswith("x-sovereign-")]
    assert sent["x-request-id"] == response.headers["x-request-id"]


def test_proxy_networks_match_v4_v6_and_mapped_addresses() -> None:
    proxies = TrustedProxies(["10.9.0.0/24", "fd00:9::/64"])
    assert proxies.trusts("10.9.0.200")
    assert proxies.trusts("::ffff:10.9.0.1")
    assert proxies.trusts("fd00:9::5")
    assert not proxies.trusts("10.9.1.1")
    assert not proxies.trusts("testclient")
    assert not proxies.trusts(None)
    assert not TrustedProxies([]).trusts("10.9.0.1")


def test_a_header_identity_needs_a_user() -> None:
    assert principal_from_headers({"x-sovereign-groups": "a"}) is None
    principal = principal_from_headers({"x-sovereign-user": " dave ", "x-sovereign-groups": ""})
    assert principal is not None and principal.user == "dave" and principal.groups == frozenset()
