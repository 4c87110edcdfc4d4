"""The gateway's ASGI application: authenticate, admit, route, audit, forward.

One request, in order: identity (trusted proxy headers or a bearer JWT), the
body read within the size limit, the model, the data class and the routing
decision (default deny), admission limits, the quota reservation, the
``admitted`` audit record (no record, no service: 503), the backend call,
then settlement of the quota from the backend's real usage and the
``completed`` record. Every refusal is one ``rejected`` record and an
OpenAI-style error body; every answer carries ``X-Request-Id``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sovereign.gateway import audit_records
from sovereign.gateway.admission import CHAT, COMPLETIONS, EMBEDDINGS, Admitted, Admitter
from sovereign.gateway.config import UNCLASSIFIED, GatewayConfig, needs_restart
from sovereign.gateway.dependencies import AuditSink, QuotaBackend
from sovereign.gateway.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    GatewayError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UpstreamError,
)
from sovereign.gateway.http_limits import departure_of
from sovereign.gateway.identity import OidcVerifier, Principal
from sovereign.gateway.limits import QuotaPolicy
from sovereign.gateway.metrics import GatewayMetrics
from sovereign.gateway.openapi import build_openapi
from sovereign.gateway.preauth import THROTTLED, PreAuthGuard
from sovereign.gateway.quota import Reservation
from sovereign.gateway.quota_errors import QuotaError, QuotaExceededError
from sovereign.gateway.routing import DATA_CLASS_HEADER, VERSION_HEADER, Decision, Router, Target
from sovereign.gateway.streaming import SseRelay
from sovereign.gateway.trusted_header import (
    TrustedProxies,
    asserts_identity,
    principal_from_headers,
)
from sovereign.gateway.upstream import (
    PATHS,
    HttpxUpstream,
    UpstreamAnswer,
    UpstreamClient,
    request_headers,
    status_error,
    transport_error,
)
from sovereign.gateway.upstream_pool import BackendTransportError

log = logging.getLogger(__name__)
access_log = logging.getLogger("sovereign.gateway.access")

REQUEST_ID_HEADER = "x-request-id"
# Which version of the model answered, and the digest of its weights: on
# every answer a backend gave, so a client (the retrieval service binding
# an index to an embedding model) can refuse an answer of another release.
ANSWERED_VERSION_HEADER = "x-sovereign-model-version"
ANSWERED_DIGEST_HEADER = "x-sovereign-model-digest"
_SALT_CACHE_SIZE = 65536
# Asked of vLLM for every stream, and spliced as this member when the client sent none.
_USAGE_OPTIONS = {"include_usage": True, "continuous_usage_stats": True}
_USAGE_OPTIONS_MEMBER = b'"stream_options": ' + json.dumps(_USAGE_OPTIONS).encode()
_JSON = "application/json"


class Policy:
    """Everything derived from the configuration that a reload may change."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.router = Router(config)
        self.admitter = Admitter(config.admission)
        self.quotas = QuotaPolicy(config.quotas)
        self.model_names = sorted(config.models)
        self.public_paths = frozenset(config.public_paths)
        self.openapi = json.dumps(
            build_openapi(self.model_names, sorted(config.routing.data_classes))
        ).encode()


@dataclass(slots=True)
class Exchange:
    """What the gateway knows about one request so far."""

    request_id: str
    endpoint: str
    started: float
    principal: Principal | None = None
    model: str | None = None
    data_class: str = UNCLASSIFIED
    decision: Decision | None = None
    target: Target | None = None
    admitted: Admitted | None = None
    reservation: Reservation | None = None
    # The backend URL while a request to it is open (counted in in_flight).
    backend: str | None = None
    upstream_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


def error_response(error: GatewayError, request_id: str) -> Response:
    headers = {**error.headers, REQUEST_ID_HEADER: request_id}
    return Response(
        json.dumps(error.body()).encode(), error.status, headers=headers, media_type=_JSON
    )


class Gateway:
    """The request pipeline; one per process."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        quota: QuotaBackend,
        audit: AuditSink,
        upstream: UpstreamClient | httpx.AsyncClient,
        verifier: OidcVerifier | None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.policy = Policy(config)
        self.quota = quota
        self.audit = audit
        # An httpx client (tests) is adapted; in service it is the pool (build_client).
        self.upstream: UpstreamClient = (
            HttpxUpstream(upstream) if isinstance(upstream, httpx.AsyncClient) else upstream
        )
        self.verifier = verifier
        self.metrics = metrics or GatewayMetrics()
        self.metrics.set_quota_limits(config.quotas)
        trusted = config.identity.trusted_header
        self.proxies = TrustedProxies(
            trusted.proxies if trusted.enabled else (), _proxy_secret(trusted.shared_secret_file)
        )
        self.access_log = config.logging.access_log
        self.preauth = PreAuthGuard(config.preauth)
        self._summaries: asyncio.Task[None] | None = None
        self._salt_key = _salt_key(config)
        # tenant -> (salt, its JSON member), at most _SALT_CACHE_SIZE
        self._salts: dict[str, tuple[str, bytes]] = {}
        # Backend URL -> requests open to it now: a drain waits for 0.
        self.in_flight: dict[str, int] = {}
        self.metrics.watch_backends(self._backend_states)

    def reload(self, config: GatewayConfig) -> None:
        """Take a new routing, admission, quota and canary policy; in-flight requests
        finish under the old one. Identity, listeners, Redis and audit need a restart."""
        for key in needs_restart(self.policy.config, config):
            log.warning("configuration key %r changed: it takes effect on restart", key)
        self.policy = Policy(config)
        self.metrics.set_quota_limits(config.quotas)
        self.access_log = config.logging.access_log

    # -- identity ---------------------------------------------------------

    async def authenticate(self, request: Request) -> Principal:
        headers = request.headers
        client = request.client
        if self.proxies.trusts(client.host if client else None) and asserts_identity(headers):
            self.proxies.check_secret(headers)
            principal = principal_from_headers(headers)
            if principal is not None:
                return principal
        authorization = headers.get("authorization")
        if not authorization:
            raise AuthenticationError("a bearer token is required", code="missing_token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("expected 'Authorization: Bearer <token>'")
        if self.verifier is None:
            raise AuthenticationError(
                "bearer tokens are not accepted here; come through the SSO proxy"
            )
        return await self.verifier.verify(token)

    # -- endpoints ----------------------------------------------------------

    def _precheck(self, request: Request, body_limit: int | None) -> None:
        """Refusals that need no parsing, made before authentication: a bearer
        token or a declared body too large to be worth reading."""
        authorization = 0
        declared = b""
        for name, value in request.scope["headers"]:  # one pass over the raw headers
            if name == b"authorization":
                authorization = max(authorization, len(value))
            elif name == b"content-length":
                declared = value
        limit = self.policy.config.preauth.max_token_bytes
        if authorization > limit + 7:  # "Bearer "
            raise AuthenticationError(
                f"the Authorization header of {authorization} bytes is over the limit "
                f"of {limit} (preauth.max_token_bytes)",
                code="token_too_large",
            )
        if body_limit is not None and declared.isdigit() and int(declared) > body_limit:
            raise PayloadTooLargeError(
                f"request body of {declared[:20].decode()} bytes is over the limit of "
                f"{body_limit} bytes (max_request_bytes)",
                limit="max_request_bytes",
                limit_value=body_limit,
            )

    async def _caller(self, request: Request, path: str) -> Principal | None:
        """The authenticated caller of a GET endpoint, or None where the path is public."""
        if path in self.policy.public_paths:
            return None
        self._precheck(request, None)
        return await self.authenticate(request)

    async def models(self, request: Request) -> Response:
        exchange = Exchange(uuid.uuid4().hex, "models", time.perf_counter())
        try:
            exchange.principal = principal = await self._caller(request, "/v1/models")
        except GatewayError as error:
            refusal = await self._reject(exchange, error, request)
            return error_response(refusal, exchange.request_id)
        policy = self.policy
        names = (
            policy.router.allowed_models(principal, policy.model_names)
            if principal is not None
            else policy.model_names
        )
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "sovereign"} for name in names
        ]
        return Response(
            json.dumps({"object": "list", "data": data}).encode(),
            headers={REQUEST_ID_HEADER: exchange.request_id},
            media_type=_JSON,
        )

    async def openapi(self, request: Request) -> Response:
        exchange = Exchange(uuid.uuid4().hex, "openapi", time.perf_counter())
        try:
            exchange.principal = await self._caller(request, "/openapi.json")
        except GatewayError as error:
            refusal = await self._reject(exchange, error, request)
            return error_response(refusal, exchange.request_id)
        return Response(
            self.policy.openapi, headers={REQUEST_ID_HEADER: exchange.request_id}, media_type=_JSON
        )

    async def inference(self, request: Request, endpoint: str) -> Response:
        exchange = Exchange(uuid.uuid4().hex, endpoint, time.perf_counter())
        policy = self.policy
        try:
            raw, body = await self._admit(request, exchange, policy)
        except GatewayError as error:
            refusal = await self._reject(exchange, error, request)
            return error_response(refusal, exchange.request_id)
        admitted, decision, target = exchange.admitted, exchange.decision, exchange.target
        assert admitted is not None and decision is not None and target is not None
        assert exchange.principal is not None and exchange.model is not None
        record = audit_records.admitted(
            request_id=exchange.request_id,
            endpoint=endpoint,
            principal=exchange.principal,
            model=exchange.model,
            data_class=exchange.data_class,
            decision=decision,
            target=target,
            admission=admitted,
            prompt_sha256=hashlib.sha256(raw).hexdigest(),
            full_text=raw.decode("utf-8", "replace") if decision.full_text else None,
        )
        try:
            await self.audit.append(record)
        except Exception as exc:  # any failure to record means no service
            # Fail closed: a request that cannot be audited is never served.
            self.metrics.audit_failures.labels("admitted").inc()
            log.error("audit append failed, refusing %s: %s", exchange.request_id, exc)
            await self._release(exchange)
            refusal = ServiceUnavailableError(
                "the audit log cannot record this request; it was not served",
                code="audit_unavailable",
            )
            self._finish(exchange, refusal.status, refusal.code)
            return error_response(refusal, exchange.request_id)
        payload = self._payload(raw, body, admitted, exchange)
        exchange.backend = target.url
        self.in_flight[target.url] = self.in_flight.get(target.url, 0) + 1
        url = target.url.rstrip("/") + PATHS[endpoint]
        headers = request_headers(exchange.request_id, admitted.stream)
        if admitted.stream:
            return await self._stream(exchange, url, payload, headers)
        return await self._forward(exchange, url, payload, headers)

    # -- admission ------------------------------------------------------------

    async def _admit(
        self, request: Request, exchange: Exchange, policy: Policy
    ) -> tuple[bytes, dict[str, Any]]:
        body_limit = policy.config.admission.max_request_bytes
        self._precheck(request, body_limit)
        exchange.principal = principal = await self.authenticate(request)
        raw = await self._read_body(request, body_limit, policy.config.http.body_timeout_s)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequestError("the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise BadRequestError("the body must be a JSON object", code="invalid_json")
        model_name = body.get("model")
        if not isinstance(model_name, str) or not model_name:
            raise BadRequestError("'model' must be a model name", param="model")
        model = policy.config.models.get(model_name)
        if model is None:
            raise NotFoundError(
                f"model {model_name[:64]!r} does not exist", code="model_not_found", param="model"
            )
        exchange.model = model_name
        if exchange.endpoint not in model.endpoints:
            raise BadRequestError(
                f"model {model_name!r} does not serve {PATHS[exchange.endpoint]}",
                code="unsupported_endpoint",
                param="model",
            )
        router = policy.router
        exchange.data_class = router.data_class(
            request.headers.getlist(DATA_CLASS_HEADER), principal
        )
        exchange.decision = decision = router.decide(principal, model_name, exchange.data_class)
        exchange.admitted = admitted = policy.admitter.admit(
            exchange.endpoint, body, model, principal.groups
        )
        pinned = router.pinned_version(
            request.headers.getlist(VERSION_HEADER), principal, model_name
        )
        exchange.target = router.target(model_name, decision.tier, principal.user, pinned)
        user_limits, team_limits = policy.quotas.limits(principal)
        try:
            exchange.reservation = await self.quota.reserve(
                request_id=exchange.request_id,
                user=principal.user,
                team=principal.team,
                user_limits=user_limits,
                team_limits=team_limits,
                tokens=admitted.reserved_tokens,
            )
        except QuotaExceededError as exc:
            raise RateLimitError(
                f"{exc.scope} quota {exc.limit} of {exc.limit_value} is spent; "
                f"retry after {exc.retry_after} s",
                code="quota_exceeded",
                limit=f"{exc.scope}.{exc.limit}",
                limit_value=exc.limit_value,
                headers={"Retry-After": str(max(1, int(exc.retry_after)))},
            ) from None
        except QuotaError as exc:  # unavailable (fail closed), or a duplicate request id
            log.error("quota store refused %s: %s", exchange.request_id, exc)
            raise ServiceUnavailableError(
                "the quota store is unavailable; refusing rather than serving unmetered",
                code="quota_unavailable",
            ) from None
        return raw, body

    @staticmethod
    async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout):  # (anyio's fail_after costs ~40 us more)
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLargeError(
                            f"request body is over the limit of {limit} bytes (max_request_bytes)",
                            limit="max_request_bytes",
                            limit_value=limit,
                        )
                    chunks.append(chunk)
        except ClientDisconnect:
            raise BadRequestError("the client went away while sending") from None
        except TimeoutError:
            raise RequestTimeoutError(
                f"the request body did not arrive within {timeout:g} s (http.body_timeout_s)",
                limit="body_timeout_s",
                limit_value=timeout,
            ) from None
        return b"".join(chunks)

    def _payload(
        self, raw: bytes, body: dict[str, Any], admitted: Admitted, exchange: Exchange
    ) -> bytes:
        """The body forwarded: the client's bytes where nothing in them changed,
        with the keys the gateway adds spliced in before the closing brace
        (serializing the whole body again costs more than the rest of this)."""
        changed = admitted.changed
        added: dict[str, Any] = {}
        members: list[bytes] = []  # the same keys, as JSON members for the splice
        if admitted.stream:
            # The usage in the last chunk and so far in every chunk: a stream
            # the client leaves is charged (and audited) for the tokens
            # generated until then.
            if "stream_options" in body:
                options = body["stream_options"]
                body["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    **_USAGE_OPTIONS,
                }
                changed = True
            else:
                added["stream_options"] = dict(_USAGE_OPTIONS)
                members.append(_USAGE_OPTIONS_MEMBER)
        assert exchange.model is not None and exchange.principal is not None
        served = self.policy.config.models[exchange.model].served_name
        if served is not None:
            body["model"] = served
            changed = True
        if "cache_salt" in body:
            # A client's own salt is never forwarded: it could join another tenant's cache.
            del body["cache_salt"]
            changed = True
        salted = self._cache_salt(exchange.principal)
        if salted is not None:
            added["cache_salt"], member = salted
            members.append(member)
        if not changed:
            if not added:
                return raw
            end = raw.rstrip()
            # A UTF-8 JSON object (never empty: it names its model); a UTF-16
            # or UTF-32 body ends otherwise and is serialized again below.
            if end.endswith(b"}"):
                return end[:-1] + b"," + b",".join(members) + b"}"
        body.update(added)
        return json.dumps(body).encode()

    def _cache_salt(self, principal: Principal) -> tuple[str, bytes] | None:
        """The tenant's prefix-cache salt (HMAC-SHA256 of the tenant under the
        site key) and its ``"cache_salt"`` JSON member, both kept per tenant."""
        isolation = self.policy.config.prefix_cache.isolation
        if isolation == "off":
            return None
        tenant = (
            f"team:{principal.team}"
            if isolation == "team" and principal.team
            else f"user:{principal.user}"
        )
        salted = self._salts.get(tenant)
        if salted is None:
            mac = hmac.new(self._salt_key, tenant.encode("utf-8", "surrogatepass"), hashlib.sha256)
            salt = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")
            if len(self._salts) >= _SALT_CACHE_SIZE:
                self._salts.clear()
            salted = self._salts[tenant] = (salt, b'"cache_salt": "' + salt.encode() + b'"')
        return salted

    # -- forwarding -----------------------------------------------------------

    async def _forward(
        self, exchange: Exchange, url: str, payload: bytes, headers: dict[str, str]
    ) -> Response:
        target = exchange.target
        assert target is not None
        sent = time.perf_counter()
        try:
            upstream = await self.upstream.post(url, payload, headers)
            content = await upstream.read()
        except BackendTransportError as exc:
            exchange.upstream_s = time.perf_counter() - sent
            return await self._upstream_failed(exchange, transport_error(exc, target.version))
        exchange.upstream_s = time.perf_counter() - sent
        if upstream.status != 200:
            return await self._upstream_failed(
                exchange, status_error(upstream.status, content, target.version)
            )
        usage: dict[str, Any] | None = None
        text: str | None = None
        try:
            parsed = json.loads(content)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict):
            usage = parsed["usage"]
        if exchange.decision is not None and exchange.decision.full_text:
            text = content.decode("utf-8", "replace")

        async def books() -> None:
            # After the answer is sent: the client does not wait for the books.
            used = await self._settle(exchange, usage, None)
            await self._completed(exchange, 200, "ok", usage, used, hashlib.sha256(content), text)
            self._finish(exchange, 200, "ok")

        return Response(
            content,
            200,
            headers={
                REQUEST_ID_HEADER: exchange.request_id,
                ANSWERED_VERSION_HEADER: target.version,
                ANSWERED_DIGEST_HEADER: target.digest,
            },
            media_type=upstream.content_type or _JSON,
            background=BackgroundTask(books),
        )

    async def _stream(
        self, exchange: Exchange, url: str, payload: bytes, headers: dict[str, str]
    ) -> Response:
        target = exchange.target
        assert target is not None
        sent = time.perf_counter()
        try:
            upstream = await self.upstream.post(url, payload, headers)
        except BackendTransportError as exc:
            exchange.upstream_s = time.perf_counter() - sent
            return await self._upstream_failed(exchange, transport_error(exc, target.version))
        if upstream.status != 200:
            try:
                content = await upstream.read()
            except BackendTransportError:
                content = b""
            finally:
                await upstream.aclose()
            exchange.upstream_s = time.perf_counter() - sent
            return await self._upstream_failed(
                exchange, status_error(upstream.status, content, target.version)
            )
        assert exchange.admitted is not None and exchange.decision is not None
        relay = SseRelay(
            forward_usage=exchange.admitted.include_usage,
            collect_text=exchange.decision.full_text,
        )
        return RelayResponse(self, exchange, upstream, relay, sent)

    async def _upstream_failed(self, exchange: Exchange, error: GatewayError) -> Response:
        await self._release(exchange)
        await self._completed(exchange, error.status, error.code, None, 0, hashlib.sha256(), None)
        self._finish(exchange, error.status, error.code)
        return error_response(error, exchange.request_id)

    # -- bookkeeping ----------------------------------------------------------

    async def _settle(
        self, exchange: Exchange, usage: dict[str, Any] | None, streamed_chunks: int | None
    ) -> int:
        """Charge the real usage; without one, the reservation (or, for a stream,
        the prompt estimate plus one token per chunk seen)."""
        admitted = exchange.admitted
        assert admitted is not None
        used = _used_tokens(usage)
        if used is None:
            if streamed_chunks is None:
                used = admitted.reserved_tokens
            else:
                used = admitted.prompt_tokens + streamed_chunks
        if exchange.reservation is not None:
            try:
                await self.quota.settle(exchange.reservation, used)
            except Exception as exc:  # the answer is already out
                # The reservation stays charged (conservative); the quota store logs why.
                log.warning("quota settle failed for %s: %s", exchange.request_id, exc)
        team = exchange.principal.team if exchange.principal else None
        if usage is not None and exchange.model is not None:
            for kind in ("prompt_tokens", "completion_tokens"):
                value = usage.get(kind)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    self.metrics.tokens.labels(exchange.model, team or "none", kind[:-7]).inc(value)
        return used

    async def _release(self, exchange: Exchange) -> None:
        if exchange.reservation is None:
            return
        try:
            await self.quota.release(exchange.reservation)
        except Exception as exc:  # refunding is best effort
            log.warning("quota release failed for %s: %s", exchange.request_id, exc)

    async def _completed(
        self,
        exchange: Exchange,
        status: int,
        outcome: str,
        usage: dict[str, Any] | None,
        used: int,
        digest: hashlib._Hash,
        text: str | None,
    ) -> None:
        assert exchange.model is not None and exchange.target is not None
        record = audit_records.completed(
            request_id=exchange.request_id,
            model=exchange.model,
            data_class=exchange.data_class,
            version=exchange.target.version,
            status=status,
            outcome=outcome,
            usage=usage,
            used_tokens=used,
            response_sha256=digest.hexdigest(),
            upstream_s=exchange.upstream_s,
            full_text=text,
        )
        try:
            await self.audit.append(record)
        except Exception as exc:  # the answer is already out; alert on it
            self.metrics.audit_failures.labels("completed").inc()
            log.error("audit append failed for completed %s: %s", exchange.request_id, exc)

    async def _reject(
        self, exchange: Exchange, error: GatewayError, request: Request
    ) -> GatewayError:
        """Record a refusal; returns what to answer. Before authentication the
        refusal goes through the pre-auth guard: it may become a 429, and past
        the audit budget it is counted in a summary instead of recorded."""
        client = request.client
        peer = client.host if client else "unknown"
        audited = True
        if exchange.principal is None:
            guard = self.preauth
            if guard.due():
                await self._write_summary()
            verdict = guard.failure(peer, error.code, error.status)
            audited = verdict.audited
            if verdict.throttled:
                error = RateLimitError(
                    "too many failed authentications from your address; "
                    f"retry after {verdict.retry_after} s",
                    code=THROTTLED,
                    limit="preauth.failures_per_minute",
                    limit_value=guard.config.failures_per_minute,
                    headers={"Retry-After": str(verdict.retry_after)},
                )
            if not audited:
                self._summary_later()
        self.metrics.rejections.labels(error.code).inc()
        if audited:
            decision = exchange.decision
            record = audit_records.rejected(
                request_id=exchange.request_id,
                endpoint=exchange.endpoint,
                principal=exchange.principal,
                peer=peer,
                model=exchange.model,
                data_class=exchange.data_class,
                status=error.status,
                reason=error.code,
                message=error.message,
                limit=error.limit,
                limit_value=error.limit_value,
                rule=decision.rule if decision is not None else None,
            )
            try:
                await self.audit.append(record)
            except Exception as exc:  # the request is refused either way
                self.metrics.audit_failures.labels("rejected").inc()
                log.error("audit append failed for rejected %s: %s", exchange.request_id, exc)
            self._finish(exchange, error.status, error.code)
        return error

    def _summary_later(self) -> None:
        """Make sure the counted refusals reach the audit log when their interval ends."""
        if self._summaries is None or self._summaries.done():
            self._summaries = asyncio.get_running_loop().create_task(self._summary_loop())

    async def _summary_loop(self) -> None:
        guard = self.preauth
        while guard.pending:
            await asyncio.sleep(guard.seconds_left())
            if guard.due():
                await self._write_summary()

    async def _write_summary(self) -> None:
        record = self.preauth.roll(audit_records.SCHEMA)
        if record is None:
            return
        try:
            await self.audit.append(record)
        except Exception as exc:
            self.metrics.audit_failures.labels("rejected_summary").inc()
            log.error("audit append failed for a pre-auth refusal summary: %s", exc)

    async def aclose(self) -> None:
        """Write the refusals counted so far; before the audit log closes."""
        if self._summaries is not None:
            self._summaries.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._summaries
        await self._write_summary()

    def _backend_states(self) -> tuple[dict[str, int], frozenset[str]]:
        """Open requests per backend, and the backends drained now (for /metrics)."""
        config = self.policy.config
        known = {
            url: 0
            for model in config.models.values()
            for version in model.versions
            for urls in version.backends.values()
            for url in urls
        }
        return {**known, **self.in_flight}, frozenset(config.drained)

    def _finish(self, exchange: Exchange, status: int, outcome: str, **extra: object) -> None:
        backend = exchange.backend
        if backend is not None:
            exchange.backend = None
            left = self.in_flight.get(backend, 1) - 1
            if left > 0:
                self.in_flight[backend] = left
            else:
                self.in_flight.pop(backend, None)
        elapsed = time.perf_counter() - exchange.started
        model = exchange.model if exchange.model in self.policy.config.models else "other"
        assert model is not None
        metrics = self.metrics
        metrics.requests.labels(exchange.endpoint, model, str(status)).inc()
        metrics.duration.labels(exchange.endpoint, model).observe(elapsed)
        if exchange.target is not None:
            metrics.version_requests.labels(model, exchange.target.version, str(status)).inc()
            if exchange.upstream_s:
                metrics.upstream.labels(model, exchange.target.version).observe(exchange.upstream_s)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            principal = exchange.principal
            access_log.info(
                json.dumps(
                    {
                        "request_id": exchange.request_id,
                        "user": principal.user if principal else None,
                        "team": principal.team if principal else None,
                        "endpoint": exchange.endpoint,
                        "model": exchange.model,
                        "version": exchange.target.version if exchange.target else None,
                        "data_class": exchange.data_class,
                        "status": status,
                        "outcome": outcome,
                        "duration_ms": round(elapsed * 1000, 3),
                        "upstream_ms": round(exchange.upstream_s * 1000, 3),
                        **extra,
                    }
                )
            )


def _read_secret(path: Path, setting: str) -> bytes:
    """A secret of at least 32 bytes from the file a setting names."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {str(path)!r}: {exc.strerror}") from exc
    if len(secret) < 32:
        raise ConfigError(f"{setting}: {str(path)!r} holds under 32 bytes")
    return secret


def _proxy_secret(path: Path | None) -> bytes | None:
    return (
        None if path is None else _read_secret(path, "identity.trusted_header.shared_secret_file")
    )


def _salt_key(config: GatewayConfig) -> bytes:
    path = config.prefix_cache.salt_key_file
    return (
        secrets.token_bytes(32)
        if path is None
        else _read_secret(path, "prefix_cache.salt_key_file")
    )


def _used_tokens(usage: dict[str, Any] | None) -> int | None:
    if usage is None:
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    counts = [p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p >= 0]
    return sum(counts) if counts else None


class RelayResponse(Response):
    """Streams the backend's events to the client as they arrive, then settles
    the quota and writes the ``completed`` record, whatever ended the stream."""

    def __init__(
        self,
        gateway: Gateway,
        exchange: Exchange,
        upstream: UpstreamAnswer,
        relay: SseRelay,
        sent: float,
    ) -> None:
        self.gateway = gateway
        self.exchange = exchange
        self.upstream = upstream
        self.relay = relay
        self.sent = sent
        self.ending = False  # the last message is being sent
        self.status_code = 200
        self.background = None
        target = exchange.target
        assert target is not None
        self.init_headers(
            {
                REQUEST_ID_HEADER: exchange.request_id,
                ANSWERED_VERSION_HEADER: target.version,
                ANSWERED_DIGEST_HEADER: target.digest,
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange, relay, gateway = self.exchange, self.relay, self.gateway
        status, outcome = 200, "ok"
        chunks = self.upstream.iter_raw()
        relaying = asyncio.current_task()
        assert relaying is not None
        left = False

        def leave() -> None:
            nonlocal left
            if not self.ending:  # not once the last byte is out
                left = True
                relaying.cancel()

        async def watch() -> None:
            # The body was read already: the next message is the disconnect.
            while (await receive())["type"] != "http.disconnect":
                pass
            leave()

        # The gateway's own server calls leave() when the connection is lost;
        # under another ASGI server a task waits for the disconnect instead.
        departure = departure_of(scope)
        watcher = None
        if departure is not None:
            departure.callback = leave
        else:
            watcher = asyncio.get_running_loop().create_task(watch())
        try:
            try:
                status, outcome = await self._relay(send, chunks)
            except asyncio.CancelledError:
                if not left:
                    raise
                relaying.uncancel()
        finally:
            if departure is not None:
                departure.callback = None
            if watcher is not None:
                watcher.cancel()
            if left:
                # The backend's connection is closed below, unread: vLLM aborts
                # the request and stops generating.
                status, outcome = 499, "client_disconnected"
            exchange.upstream_s = time.perf_counter() - self.sent
            with anyio.CancelScope(shield=True):
                await chunks.aclose()
                await self.upstream.aclose()
                if outcome == "ok" and relay.usage is None:
                    outcome = "ok_without_usage"
                used = await gateway._settle(exchange, relay.usage, relay.content_chunks)
                text = "".join(relay.text) if relay.collect_text else None
                await gateway._completed(
                    exchange, status, outcome, relay.usage, used, relay.sha256, text
                )
                gateway._finish(exchange, status, outcome)

    async def _relay(self, send: Send, chunks: AsyncIterator[bytes]) -> tuple[int, str]:
        """Send the backend's events on; the status and outcome to record."""
        exchange, relay = self.exchange, self.relay
        first = True
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in chunks:
                out = relay.feed(chunk)
                if out:
                    if first:
                        first = False
                        assert exchange.model is not None
                        self.gateway.metrics.first_byte.labels(exchange.model).observe(
                            time.perf_counter() - exchange.started
                        )
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            self.ending = True
            await send({"type": "http.response.body", "body": relay.finish(), "more_body": False})
        except BackendTransportError as exc:
            assert exchange.target is not None
            error: UpstreamError = transport_error(exc, exchange.target.version)
            event = b"data: " + json.dumps(error.body()).encode() + b"\n\n"
            self.ending = True
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": event, "more_body": False})
            return error.status, "upstream_failed_mid_stream"
        except OSError:
            return 499, "client_disconnected"
        except Exception:  # the status line is out: end the stream, never hang it
            log.exception("relay of %s failed", exchange.request_id)
            event = b"data: " + json.dumps(GatewayError("internal error").body()).encode()
            self.ending = True
            with contextlib.suppress(Exception):
                await send(
                    {"type": "http.response.body", "body": event + b"\n\n", "more_body": False}
                )
            return 500, "gateway_error_mid_stream"
        return 200, "ok"


# -- the Starlette application ---------------------------------------------------------


class _Slot:
    gateway: Gateway | None = None


_INFERENCE_PATHS = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETIONS,
    "/v1/embeddings": EMBEDDINGS,
}


class _InferenceFastPath:
    """Inference POSTs straight to the gateway, past Starlette's exception
    middleware and router (tens of microseconds a request); anything else goes
    on to them. It runs inside Starlette's server-error middleware, so a crash
    still gets the ``Exception`` handler's 500; the pipeline answers its own
    errors, and a GatewayError from here (the gateway is starting) is answered
    as the exception handler would."""

    def __init__(self, app: ASGIApp, slot: _Slot) -> None:
        self.app = app
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = _INFERENCE_PATHS.get(scope["path"])
            if endpoint is not None:
                gateway = self.slot.gateway
                if gateway is None:
                    error = ServiceUnavailableError("the gateway is starting", code="starting")
                    response = error_response(error, uuid.uuid4().hex)
                else:
                    response = await gateway.inference(Request(scope, receive), endpoint)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    gateway: Gateway | None = None,
    *,
    lifespan: Callable[[], AbstractAsyncContextManager[Gateway]] | None = None,
) -> Starlette:
    """The ASGI app around a gateway, or around the one ``lifespan`` opens."""
    slot = _Slot()
    slot.gateway = gateway

    def current() -> Gateway:
        if slot.gateway is None:
            raise ServiceUnavailableError("the gateway is starting", code="starting")
        return slot.gateway

    async def chat(request: Request) -> Response:
        return await current().inference(request, CHAT)

    async def completions(request: Request) -> Response:
        return await current().inference(request, COMPLETIONS)

    async def embeddings(request: Request) -> Response:
        return await current().inference(request, EMBEDDINGS)

    async def models(request: Request) -> Response:
        return await current().models(request)

    async def openapi(request: Request) -> Response:
        return await current().openapi(request)

    async def health(request: Request) -> Response:
        gateway = current()
        healthy = bool(gateway.audit.healthy)
        body = {"status": "ok" if healthy else "audit log unhealthy"}
        return Response(json.dumps(body).encode(), 200 if healthy else 503, media_type=_JSON)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: GatewayError
        if exc.status_code == 405:
            error = MethodNotAllowedError(f"method {request.method} is not allowed here")
        elif exc.status_code == 404:
            error = NotFoundError(f"no such endpoint {request.url.path[:128]!r}")
        else:
            error = GatewayError(str(exc.detail))
            error.status = exc.status_code
        return error_response(error, uuid.uuid4().hex)

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc, uuid.uuid4().hex)

    async def on_crash(request: Request, exc: Exception) -> Response:
        request_id = uuid.uuid4().hex
        log.exception("unexpected error in request %s", request_id)
        error = GatewayError(f"internal error (request id {request_id})")
        return error_response(error, request_id)

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        if lifespan is None:
            yield
            return
        async with lifespan() as opened:
            slot.gateway = opened
            try:
                yield
            finally:
                slot.gateway = None

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        middleware=[Middleware(_InferenceFastPath, slot=slot)],
        exception_handlers={
            HTTPException: on_http_error,
            GatewayError: on_gateway_error,
            Exception: on_crash,
        },
        lifespan=run,
    )
