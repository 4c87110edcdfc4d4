"""Who is asking: OIDC bearer JWTs checked against the IdP's keys.

The IdP's discovery document names its JWKS; the keys are loaded once into
key objects and cached for ``jwks_cache_ttl_s``. A token naming a key id we
do not hold triggers one re-fetch (key rotation), but never more often than
``jwks_min_refetch_interval_s``: a stream of forged key ids cannot make the
gateway hammer the IdP. Only the configured asymmetric algorithms are
accepted (never ``none``, never HS*), and the key's type must fit the
algorithm. Issuer, audience, expiry and not-before are checked with a small
leeway. A verified token is remembered until it expires, so a client sending
the same token again costs a dictionary lookup, not a signature check; the
memory holds the 4096 most recently used tokens and is dropped whenever the
key set changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.exceptions import ExpiredSignatureError, ImmatureSignatureError, PyJWTError

from sovereign.gateway.config import Claims, Oidc
from sovereign.gateway.errors import AuthenticationError, ServiceUnavailableError, bounded

log = logging.getLogger(__name__)

_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_TOKEN_CACHE_SIZE = 4096
# Identity values go into every audit record, log line and quota key: short
# printable text only. Longer, control characters or lone surrogates: 401.
MAX_IDENTITY_CHARS = 256
MAX_GROUPS = 256


def identity_text(value: str, what: str) -> str:
    """``value`` if it can stand for an identity, else AuthenticationError naming ``what``."""
    if len(value) > MAX_IDENTITY_CHARS:
        raise AuthenticationError(
            f"{what} of {len(value)} characters is over the limit of {MAX_IDENTITY_CHARS}",
            code="invalid_identity",
        )
    if not value.isprintable():  # control characters, line breaks, unassigned code points
        raise AuthenticationError(
            f"{what} {bounded(value)} holds control or unprintable characters",
            code="invalid_identity",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        raise AuthenticationError(
            f"{what} holds a lone surrogate (not text)", code="invalid_identity"
        ) from None
    return value


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user: str
    groups: frozenset[str]
    team: str | None
    method: str  # "oidc" or "trusted_header"


def claim(claims: Mapping[str, Any], path: str) -> object:
    """The value at a dotted path (``realm_access.roles``), or None."""
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return claims.get(path) if "." in path else None
        value = value[part]
    return value


def parse_groups(value: object, what: str = "groups") -> frozenset[str]:
    """Groups as a list, or one string separated by spaces and/or commas; each
    must be identity text, and there may be at most ``MAX_GROUPS``."""
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        items = [item.strip() for item in value if isinstance(item, str) and item.strip()]
    else:
        return frozenset()
    if len(items) > MAX_GROUPS:
        raise AuthenticationError(
            f"{what}: {len(items)} groups, over the limit of {MAX_GROUPS}", code="invalid_identity"
        )
    return frozenset(identity_text(item, f"a group in {what}") for item in items if item)


def principal_from_claims(claims: Mapping[str, Any], names: Claims) -> Principal:
    user = claim(claims, names.user)
    if not isinstance(user, str) or not user:
        raise AuthenticationError(f"token has no {names.user!r} claim naming the user")
    user = identity_text(user, f"claim {names.user!r}")
    team: str | None = None
    if names.team is not None:
        raw = claim(claims, names.team)
        if isinstance(raw, list) and raw and isinstance(raw[0], str):
            raw = raw[0]
        team = identity_text(raw, f"claim {names.team!r}") if isinstance(raw, str) and raw else None
    groups = parse_groups(claim(claims, names.groups), f"claim {names.groups!r}")
    return Principal(user, groups, team, "oidc")


class _KeySet:
    """The IdP's signing keys, loaded, by key id."""

    def __init__(self, document: object) -> None:
        # kid -> (loaded key, the "alg" the JWK declares, if any)
        self.keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        entries = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS has no 'keys' list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") not in {"RSA", "EC", "OKP"}:
                continue  # encryption keys and symmetric ("oct") keys are never used
            kid = str(entry.get("kid", f"#{index}"))
            try:
                key = jwt.PyJWK(dict(entry))
            except PyJWTError as exc:
                log.warning("ignoring JWKS key %r: %s", kid, exc)
                continue
            declared = entry.get("alg")
            self.keys[kid] = (key, declared if isinstance(declared, str) else None)


class OidcVerifier:
    """Verifies bearer tokens; one per process, shared by all requests."""

    def __init__(
        self,
        config: Oidc,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock
        self._discovery_url = config.discovery_url or (
            config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        )
        self._jwks_uri: str | None = None
        self._keys: _KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._unknown_kid_at = float("-inf")
        self._lock = asyncio.Lock()
        # raw token -> (principal, exp); least recently used first
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self.fetches = 0  # JWKS fetches, for tests and the metrics

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError as exc:
            raise AuthenticationError(f"malformed bearer token: {bounded(str(exc))}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            raise AuthenticationError(
                f"token algorithm {bounded(alg, 16)} is not allowed "
                f"(allowed: {', '.join(self.config.algorithms)})"
            )
        kid = header.get("kid")
        key, declared = await self._key(kid if isinstance(kid, str) else None)
        if declared is not None and declared != alg:
            raise AuthenticationError(
                f"key {bounded(kid)} is for {bounded(declared, 16)}, token says {alg}"
            )
        if _KEY_TYPES.get(alg[:2]) != key.key_type:
            raise AuthenticationError(f"key {bounded(kid)} ({key.key_type}) cannot verify {alg}")
        claims = self._decode(token, key, alg)
        principal = principal_from_claims(claims, self.config.claims)
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            if len(self._verified) >= _TOKEN_CACHE_SIZE:
                self._verified.popitem(last=False)
            self._verified[token] = (principal, float(exp))
        return principal

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except ExpiredSignatureError:
            raise AuthenticationError("token has expired") from None
        except ImmatureSignatureError:
            raise AuthenticationError("token is not valid yet (nbf/iat in the future)") from None
        except PyJWTError as exc:
            # PyJWT's messages can quote claims (an issuer, an audience): bounded.
            raise AuthenticationError(f"invalid bearer token: {bounded(str(exc), 128)}") from None

    async def _key(self, kid: str | None) -> tuple[jwt.PyJWK, str | None]:
        now = self._clock()
        stale = now - self._fetched_at > self.config.jwks_cache_ttl_s
        key = self._lookup(kid)
        if key is None or stale:
            await self._refresh(kid)
            key = self._lookup(kid)
        if key is None:
            if self._keys is None:
                raise ServiceUnavailableError(
                    "identity provider unreachable: no signing keys loaded yet",
                    code="idp_unavailable",
                )
            raise AuthenticationError(f"token signed with unknown key id {bounded(kid)}")
        return key

    def _lookup(self, kid: str | None) -> tuple[jwt.PyJWK, str | None] | None:
        if self._keys is None:
            return None
        if kid is None:
            # A token without "kid" is accepted only when there is one key.
            keys = list(self._keys.keys.values())
            return keys[0] if len(keys) == 1 else None
        return self._keys.keys.get(kid)

    async def _refresh(self, kid: str | None) -> None:
        async with self._lock:
            now = self._clock()
            if self._lookup(kid) is not None and now - self._fetched_at <= (
                self.config.jwks_cache_ttl_s
            ):
                return  # another request refreshed while we waited
            interval = self.config.jwks_min_refetch_interval_s
            fresh = now - self._fetched_at <= self.config.jwks_cache_ttl_s
            if fresh and self._keys is not None:
                # The keys are current but lack this kid: perhaps a rotation,
                # perhaps a forgery. Re-fetch, at most once per interval.
                if now - self._unknown_kid_at < interval:
                    return
                self._unknown_kid_at = now
            elif now - self._attempted_at < interval:
                return  # expired or never loaded, and the last try was just now
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("cannot refresh the IdP's keys from %s: %s", self._discovery_url, exc)
                return
            if self._keys is None or set(keys.keys) != set(self._keys.keys):
                self._verified.clear()
            self._keys = keys
            self._fetched_at = now

    async def _fetch(self) -> _KeySet:
        if self._jwks_uri is None:
            document = await self._get_json(self._discovery_url)
            if not isinstance(document, Mapping):
                raise ValueError("discovery document is not a JSON object")
            if document.get("issuer") != self.config.issuer:
                raise ValueError(
                    f"discovery document names issuer {document.get('issuer')!r}, "
                    f"configured {self.config.issuer!r}"
                )
            uri = document.get("jwks_uri")
            if not isinstance(uri, str):
                raise ValueError("discovery document has no jwks_uri")
            self._jwks_uri = uri
        self.fetches += 1
        try:
            return _KeySet(await self._get_json(self._jwks_uri))
        except (httpx.HTTPError, ValueError):
            self._jwks_uri = None  # re-read discovery next time
            raise

    async def _get_json(self, url: str) -> object:
        response = await self._client.get(url, timeout=self.config.timeout_s)
        response.raise_for_status()
        return response.json()

    async def warm_up(self) -> None:
        """Load the keys at start-up; failure is logged, requests retry."""
        await self._refresh(None)
