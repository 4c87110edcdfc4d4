"""Fixtures of the gateway tests: an IdP with keys made here, a configuration,
fake backends, and a gateway wired to them in-process."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.testclient import TestClient

from sovereign.gateway.app import Gateway, create_app
from sovereign.gateway.config import GatewayConfig, parse_config
from sovereign.gateway.identity import OidcVerifier
from sovereign.gateway.metrics import GatewayMetrics
from sovereign.gateway.server import open_gateway
from tests.support.redis_server import MISSING_REASON, RedisUnavailable, binary, redis_server
from tests.unit.gateway.fakes import Backends, FakeAuditLog, FakeQuotaStore

ISSUER = "https://idp.test/realms/sovereign"
AUDIENCE = "sovereign-gateway"
PROXY = "10.9.0.7"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
BACKEND_HOSTS = (
    "tiny-stable-general",
    "tiny-canary-general",
    "tiny-stable-restricted",
    "tiny-canary-restricted",
    "big-restricted",
    "embed-general",
)


class FakeIdp:
    """Discovery document and JWKS over a MockTransport; signs tokens."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.down = False
        self.add_key("k1", publish=True)

    def add_key(self, kid: str, *, publish: bool, kind: str = "RSA") -> None:
        if kind == "RSA":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, object]:
        keys = []
        for kid in self.published:
            key = self.keys[kid]
            algorithm = (
                jwt.algorithms.RSAAlgorithm
                if isinstance(key, rsa.RSAPrivateKey)
                else (jwt.algorithms.ECAlgorithm)
            )
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig")
            keys.append(jwk)
        return {"keys": keys}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.down:
                raise httpx.ConnectError("idp down", request=request)
            if request.url.path.endswith("/.well-known/openid-configuration"):
                self.discovery_fetches += 1
                return httpx.Response(
                    200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/protocol/certs"}
                )
            if request.url.path.endswith("/protocol/certs"):
                self.jwks_fetches += 1
                return httpx.Response(200, json=self.jwks())
            return httpx.Response(404)

        return httpx.MockTransport(handle)

    def claims(self, **overrides: Any) -> dict[str, object]:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "u-1",
            "preferred_username": "alice",
            "groups": ["staff"],
            "team": "radiology",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, kid: str = "k1", alg: str = "RS256", **overrides: Any) -> str:
        return jwt.encode(
            self.claims(**overrides), self.keys[kid], algorithm=alg, headers={"kid": kid}
        )


BASE_CONFIG: dict[str, Any] = {
    "identity": {
        "oidc": {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "algorithms": ["RS256", "PS256", "ES256"],
            "leeway_s": 5,
            "jwks_min_refetch_interval_s": 30,
        },
        "trusted_header": {"enabled": True, "proxies": ["10.9.0.0/24", "fd00:9::/64"]},
    },
    "redis_url": "redis://127.0.0.1:6379/0",
    "quotas": {
        "user_defaults": {"requests_per_minute": 60, "tokens_per_day": 100000},
        "team_defaults": {"tokens_per_day": 1000000},
        "groups": {"power": {"requests_per_minute": 600}},
        "users": {"bob": {"tokens_per_day": 5}},
    },
    "admission": {
        "max_request_bytes": 20000,
        "max_tokens_cap": 256,
        "max_prompt_tokens": 2000,
        "max_tool_chain_depth": 2,
        "allowed_tools": {"staff": ["search"], "power": ["*"]},
    },
    "models": {
        "tiny": {
            "endpoints": ["chat", "completions"],
            "versions": [
                {
                    "name": "stable",
                    "weight": 95,
                    "digest": DIGEST_A,
                    "backends": {
                        "general": ["http://tiny-stable-general"],
                        "restricted": ["http://tiny-stable-restricted"],
                    },
                },
                {
                    "name": "canary",
                    "weight": 5,
                    "digest": DIGEST_B,
                    "backends": {
                        "general": ["http://tiny-canary-general"],
                        "restricted": ["http://tiny-canary-restricted"],
                    },
                },
            ],
        },
        "big": {
            "versions": [
                {
                    "name": "v1",
                    "weight": 100,
                    "digest": DIGEST_A,
                    "backends": {"restricted": ["http://big-restricted:8000"]},
                }
            ]
        },
        "embed": {
            "endpoints": ["embeddings"],
            "versions": [
                {
                    "name": "v1",
                    "weight": 100,
                    "digest": DIGEST_B,
                    "backends": {"general": ["http://embed-general"]},
                }
            ],
        },
    },
    "tiers": {"general": {"description": "shared pool"}, "restricted": {}},
    "routing": {
        "data_classes": ["public", "internal", "phi"],
        "restricted_groups": ["clinicians"],
        "rules": [
            {
                "name": "no-phi-for-contractors",
                "action": "deny",
                "data_classes": ["phi"],
                "groups": ["contractors"],
            },
            {
                "name": "phi-on-restricted",
                "data_classes": ["phi"],
                "groups": ["clinicians"],
                "tier": "restricted",
                "audit_full_text": True,
            },
            {
                "name": "big-for-researchers",
                "groups": ["researchers"],
                "models": ["big"],
                "tier": "restricted",
            },
            {
                "name": "everyday",
                "data_classes": ["public", "internal", "unclassified"],
                "tier": "general",
            },
        ],
    },
    "audit": {"directory": "/nonexistent/audit", "full_text_data_classes": []},
    "logging": {"access_log": False},
}


def make_config(**changes: Any) -> GatewayConfig:
    data = copy.deepcopy(BASE_CONFIG)
    data.update(changes)
    return parse_config(data, "test")


class Harness:
    """A gateway with fakes around it, and a TestClient per peer address."""

    def __init__(self, config: GatewayConfig, idp: FakeIdp, *, clock: Callable[[], float]) -> None:
        self.idp = idp
        self.backends = Backends(*BACKEND_HOSTS)
        self.quota = FakeQuotaStore()
        self.audit = FakeAuditLog()
        self.upstream = httpx.AsyncClient(transport=self.backends.transport())
        assert config.identity.oidc is not None
        self.verifier = OidcVerifier(
            config.identity.oidc, httpx.AsyncClient(transport=idp.transport()), clock=clock
        )
        self.gateway = Gateway(
            config,
            quota=self.quota,
            audit=self.audit,
            upstream=self.upstream,
            verifier=self.verifier,
        )
        self.app = create_app(self.gateway)

    def client(self, peer: str = "192.0.2.10") -> TestClient:
        return TestClient(self.app, client=(peer, 40000), raise_server_exceptions=True)

    def auth(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.idp.token(**claims)}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def idp_keys() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
def idp(idp_keys: FakeIdp) -> FakeIdp:
    # Key generation is slow: share the keys, reset everything else.
    idp_keys.published = ["k1"]
    idp_keys.jwks_fetches = idp_keys.discovery_fetches = 0
    idp_keys.down = False
    return idp_keys


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def harness(idp: FakeIdp, clock: Clock) -> Iterator[Harness]:
    yield Harness(make_config(), idp, clock=clock)


def chat(model: str = "tiny", content: str = "hello", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server for the tests that use the real QuotaStore."""
    if binary() is None:
        pytest.skip(MISSING_REASON)
    try:
        with redis_server() as url:
            yield url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


class Live:
    """The gateway as ``serve`` opens it (real AuditLog, real QuotaStore on a
    real Redis), with the IdP and the backends in-process."""

    def __init__(self, config: GatewayConfig, idp: FakeIdp, redis: str) -> None:
        self.config = config.model_copy(update={"redis_url": redis})
        self.idp = idp
        self.backends = Backends(*BACKEND_HOSTS)
        self.metrics = GatewayMetrics()
        self.gateway: Gateway | None = None

        @asynccontextmanager
        async def lifespan() -> AsyncIterator[Gateway]:
            async with open_gateway(
                self.config,
                self.metrics,
                upstream_transport=self.backends.transport(),
                idp_transport=idp.transport(),
            ) as gateway:
                self.gateway = gateway
                yield gateway

        self.app = create_app(lifespan=lifespan)

    def client(self, peer: str = "192.0.2.10") -> TestClient:
        return TestClient(self.app, client=(peer, 40000))

    def auth(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.idp.token(**claims)}"}

    def audit_records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.config.audit.directory.rglob("*.jsonl")):
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if "record" in entry:
                    records.append(entry["record"])
        return records


@pytest.fixture
def live(idp: FakeIdp, redis_url: str, tmp_path: Path) -> Live:
    audit = {"directory": str(tmp_path / "audit"), "full_text_data_classes": []}
    # A fresh key prefix per test: counters do not leak between tests.
    quotas = {**BASE_CONFIG["quotas"], "key_prefix": f"test:{uuid.uuid4().hex}"}
    return Live(make_config(audit=audit, quotas=quotas), idp, redis_url)
