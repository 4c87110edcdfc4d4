"""The JWT attack suite, key rotation and the JWKS refetch rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from sovereign.gateway.config import Claims
from sovereign.gateway.errors import AuthenticationError
from sovereign.gateway.identity import parse_groups, principal_from_claims
from tests.unit.gateway.conftest import Clock, FakeIdp, Harness, chat


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _post(harness: Harness, token: str) -> tuple[int, dict[str, object]]:
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {token}"}
        )
    return response.status_code, response.json()


def test_a_valid_token_is_accepted(harness: Harness) -> None:
    status, body = _post(harness, harness.idp.token())
    assert status == 200, body
    assert harness.audit.records[0]["user"] == "alice"
    assert harness.audit.records[0]["team"] == "radiology"


def test_alg_none_is_rejected(harness: Harness) -> None:
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, harness.idp.claims()) + "."
    status, body = _post(harness, token)
    assert status == 401
    assert "'none' is not allowed" in str(body)


def test_hs256_signed_with_the_rsa_public_key_is_rejected(harness: Harness) -> None:
    public = (
        harness.idp.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, harness.idp.claims())
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    status, body = _post(harness, signing_input + "." + _b64(signature))
    assert status == 401
    assert "'HS256' is not allowed" in str(body)


def test_an_allowed_algorithm_on_the_wrong_key_type_is_rejected(harness: Harness) -> None:
    harness.idp.add_key("ec1", publish=False, kind="EC")
    # ES256 signature, but the header points at the RSA key k1.
    token = jwt.encode(
        harness.idp.claims(), harness.idp.keys["ec1"], algorithm="ES256", headers={"kid": "k1"}
    )
    status, body = _post(harness, token)
    assert status == 401
    assert "cannot verify ES256" in str(body)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": "https://evil.test/realms/sovereign"}, "issuer"),
        ({"aud": "another-service"}, "Audience"),
        ({"exp": None}, "exp"),
        ({"preferred_username": None}, "'preferred_username' claim"),
    ],
)
def test_bad_claims_are_rejected(harness: Harness, claims: dict[str, Any], message: str) -> None:
    status, body = _post(harness, harness.idp.token(**claims))
    assert status == 401
    assert message in str(body)
    assert harness.backends.who_received() == []


def test_a_tampered_payload_is_rejected(harness: Harness) -> None:
    header, _, signature = harness.idp.token().split(".")
    forged = _b64(json.dumps(harness.idp.claims(preferred_username="admin")).encode())
    status, body = _post(harness, f"{header}.{forged}.{signature}")
    assert status == 401
    assert "Signature verification failed" in str(body)


def test_an_unknown_kid_refetches_once_then_is_rejected(harness: Harness) -> None:
    idp = harness.idp
    assert _post(harness, idp.token())[0] == 200
    assert idp.jwks_fetches == 1
    idp.add_key("k9", publish=False)
    status, body = _post(harness, idp.token(kid="k9"))
    assert status == 401
    assert "unknown key id 'k9'" in str(body)
    assert idp.jwks_fetches == 2


def test_unknown_kids_cannot_make_the_gateway_hammer_the_idp(
    harness: Harness, clock: Clock
) -> None:
    idp = harness.idp
    idp.add_key("k9", publish=False)
    assert _post(harness, idp.token())[0] == 200
    for _ in range(20):
        assert _post(harness, idp.token(kid="k9"))[0] == 401
    assert idp.jwks_fetches == 2  # the first load, one refetch, then the rate limit
    clock.now += 31
    assert _post(harness, idp.token(kid="k9"))[0] == 401
    assert idp.jwks_fetches == 3


def test_a_rotated_key_is_accepted_after_a_refetch(harness: Harness, clock: Clock) -> None:
    idp = harness.idp
    assert _post(harness, idp.token())[0] == 200
    clock.now += 31
    idp.add_key("k2", publish=True)
    status, body = _post(harness, idp.token(kid="k2"))
    assert status == 200, body
    assert idp.jwks_fetches == 2


def test_an_unreachable_idp_is_a_503_not_a_401(harness: Harness) -> None:
    harness.idp.down = True
    status, body = _post(harness, harness.idp.token())
    assert status == 503
    assert "identity provider unreachable" in str(body)


def test_a_missing_or_malformed_authorization_is_401_with_a_challenge(harness: Harness) -> None:
    with harness.client() as client:
        missing = client.post("/v1/chat/completions", json=chat())
        basic = client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Basic YTpi"}
        )
        garbage = client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer x.y"}
        )
    assert [r.status_code for r in (missing, basic, garbage)] == [401, 401, 401]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["type"] == "authentication_error"
    assert [r["event"] for r in harness.audit.records] == ["rejected"] * 3


def test_groups_may_be_a_list_or_a_space_or_comma_string() -> None:
    assert parse_groups(["a", "b "]) == {"a", "b"}
    assert parse_groups("a b,c , d") == {"a", "b", "c", "d"}
    assert parse_groups(None) == frozenset()


def test_claims_may_be_nested_paths() -> None:
    claims = {"sub": "x", "realm_access": {"roles": ["clinicians"]}, "org": {"team": "icu"}}
    names = Claims(user="sub", groups="realm_access.roles", team="org.team")
    principal = principal_from_claims(claims, names)
    assert principal.groups == {"clinicians"} and principal.team == "icu"
    with pytest.raises(AuthenticationError, match="'email'"):
        principal_from_claims(claims, Claims(user="email"))


def test_a_verified_token_is_checked_once(harness: Harness, idp: FakeIdp) -> None:
    token = idp.token()
    assert _post(harness, token)[0] == 200
    assert token in harness.verifier._verified
    assert _post(harness, token)[0] == 200


# -- odd input never gives a 500, and never reaches a record unbounded (issue 8, 4 and 10) --


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"preferred_username": "al\ud800ice"}, "invalid_identity"),
        ({"preferred_username": "alice\nadmin"}, "invalid_identity"),
        ({"preferred_username": "alice\x00"}, "invalid_identity"),
        ({"preferred_username": "a" * 10_000}, "invalid_identity"),
        ({"team": "t\u2028eam"}, "invalid_identity"),
        ({"team": "x" * 10_000}, "invalid_identity"),
        ({"groups": ["staff", "ad\x1bmin"]}, "invalid_identity"),
        ({"groups": [f"g{i}" for i in range(1000)]}, "invalid_identity"),
        ({"preferred_username": ["alice"]}, "invalid_token"),
        ({"preferred_username": 7}, "invalid_token"),
    ],
)
def test_odd_claims_are_401_and_audited(
    harness: Harness, claims: dict[str, Any], code: str
) -> None:
    status, body = _post(harness, harness.idp.token(**claims))
    assert status == 401, body
    assert body["error"]["code"] == code  # type: ignore[index]
    assert len(json.dumps(body)) < 1024
    (record,) = harness.audit.records
    assert record["event"] == "rejected" and record["user"] is None
    assert len(json.dumps(record)) < 2048
    assert harness.backends.who_received() == []


def test_a_huge_key_id_is_not_copied_into_the_answer_or_the_record(harness: Harness) -> None:
    token = jwt.encode(
        harness.idp.claims(), harness.idp.keys["k1"], algorithm="RS256", headers={"kid": "k" * 8000}
    )
    status, body = _post(harness, token)
    assert status == 401
    assert "k" * 100 not in json.dumps(body)
    assert "(8000 characters)" in str(body)
    assert "k" * 100 not in json.dumps(harness.audit.records[0])


def test_a_forged_algorithm_name_is_bounded_and_escaped(harness: Harness) -> None:
    token = _unsigned({"alg": "X\n" * 500, "kid": "k1"}, harness.idp.claims()) + ".sig"
    status, body = _post(harness, token)
    assert status == 401
    message = body["error"]["message"]  # type: ignore[index]
    assert "\n" not in message and len(message) < 200
