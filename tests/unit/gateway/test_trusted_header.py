"""Identity headers are believed from the SSO proxy's address, and only from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.datastructures import Headers

from sovereign.gateway.trusted_header import TrustedProxies, principal_from_headers
from tests.unit.gateway.conftest import (
    BASE_CONFIG,
    PROXY,
    Clock,
    FakeIdp,
    Harness,
    chat,
    make_config,
)

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
    assert principal_from_headers(Headers({"x-sovereign-groups": "a"})) is None
    principal = principal_from_headers(
        Headers({"x-sovereign-user": " dave ", "x-sovereign-groups": ""})
    )
    assert principal is not None and principal.user == "dave" and principal.groups == frozenset()


def _as_proxy(harness: Harness, headers: list[tuple[str, str]]) -> tuple[int, dict[str, object]]:
    with harness.client(peer=PROXY) as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize("name", ["X-Sovereign-User", "X-Sovereign-Groups", "X-Sovereign-Team"])
def test_an_identity_header_sent_twice_is_refused_and_audited(harness: Harness, name: str) -> None:
    headers = [(key, value) for key, value in IDENTITY.items() if key != name]
    headers += [(name, "carol"), (name, "admin")]
    status, answer = _as_proxy(harness, headers)
    assert status == 401 and answer["error"]["code"] == "duplicate_identity_header"  # type: ignore[index]
    assert harness.backends.who_received() == []
    (record,) = harness.audit.records
    assert record["reason"] == "duplicate_identity_header" and record["user"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Sovereign-Groups", ",".join(f"group-{i}" for i in range(1000))),
        ("X-Sovereign-Groups", ",".join(["g"] * 300)),
        ("X-Sovereign-User", "u" * 300),
        ("X-Sovereign-Team", "t" * 300),
        ("X-Sovereign-User", "carol\tadmin"),
    ],
)
def test_an_over_long_or_odd_assertion_is_refused_never_cut(
    harness: Harness, name: str, value: str
) -> None:
    headers = [*((k, v) for k, v in IDENTITY.items() if k != name), (name, value)]
    status, answer = _as_proxy(harness, headers)
    assert status == 401, answer
    assert harness.backends.who_received() == []
    assert harness.audit.records[0]["event"] == "rejected"


@pytest.mark.parametrize(
    ("proxies", "words"),
    [
        (["0.0.0.0/0"], "trusts every address"),
        (["::/0"], "trusts every address"),
        (["10.9.0.7/24"], "host bits must be zero"),
    ],
)
def test_the_validator_refuses_proxy_networks_that_trust_too_much(
    proxies: list[str], words: str
) -> None:
    identity = {**BASE_CONFIG["identity"], "trusted_header": {"enabled": True, "proxies": proxies}}
    with pytest.raises(Exception, match=words):
        make_config(identity=identity)


def test_with_a_shared_secret_the_proxy_address_alone_is_not_enough(
    idp: FakeIdp, clock: Clock, tmp_path: Path
) -> None:
    secret = tmp_path / "proxy.secret"
    secret.write_text("s" * 40 + "\n")
    trusted = {"enabled": True, "proxies": ["10.9.0.0/24"], "shared_secret_file": str(secret)}
    harness = Harness(
        make_config(identity={**BASE_CONFIG["identity"], "trusted_header": trusted}),
        idp,
        clock=clock,
    )
    identity = list(IDENTITY.items())
    assert _as_proxy(harness, identity)[0] == 401
    assert _as_proxy(harness, [*identity, ("X-Sovereign-Proxy-Auth", "s" * 39)])[0] == 401
    good = ("X-Sovereign-Proxy-Auth", "s" * 40)
    assert _as_proxy(harness, [*identity, good, good])[0] == 401
    status, answer = _as_proxy(harness, [*identity, good])
    assert status == 200, answer
    reasons = [r.get("reason") for r in harness.audit.records if r["event"] == "rejected"]
    assert reasons == ["proxy_auth_failed"] * 3
    (sent,) = [h for b in harness.backends.by_host.values() for h in b.headers]
    assert "x-sovereign-proxy-auth" not in sent
