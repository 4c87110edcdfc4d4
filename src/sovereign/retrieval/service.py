"""The retrieval API: ``POST /v1/retrieval/search`` for a reader with an OIDC token.

One request, in order: the bearer token verified against the same identity
provider as the gateway (issuer, audience, keys: sovereign.gateway.identity),
the body read within its size and time limits and checked (unknown fields
refused), the query embedded through the gateway's ``/v1/embeddings`` with
the reader's own token (the gateway applies its identity, quota and audit to
it, and serves exactly the release the index is bound to), the search with
the reader's access list inside it, the retrieval-log record written (no
record, no answer: 503), then the chunks. Every refusal is an OpenAI-style
error with a 4xx for the client's mistakes; nothing the client sent is
echoed unbounded.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from sovereign.gateway.errors import GatewayError
from sovereign.gateway.identity import Principal
from sovereign.retrieval import logs
from sovereign.retrieval.acl import principals_of
from sovereign.retrieval.answer import GatewayCompleter, context_of, prompt_of
from sovereign.retrieval.backend import Backend, Hit, Query
from sovereign.retrieval.config import ServiceConfig
from sovereign.retrieval.embedding import DATA_CLASS_HEADER, Embedder
from sovereign.retrieval.errors import (
    BindingMismatch,
    IndexNotFound,
    QueryError,
    RetrievalError,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
MAX_TOKEN_BYTES = 16 * 1024
MODES = ("hybrid", "vector", "lexical")
_JSON = "application/json"


class Verifier(Protocol):
    """Turns a bearer token into a principal (sovereign.gateway.identity.OidcVerifier)."""

    async def verify(self, token: str) -> Principal: ...


class Sink(Protocol):
    """Where retrieval-log records go (sovereign.audit.log.AuditLog in service)."""

    @property
    def healthy(self) -> bool: ...

    async def append(self, record: dict[str, object]) -> object: ...


class Refusal(Exception):
    """A request refused before or instead of a search: status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str, request_id: str) -> Response:
    body = {"error": {"message": message, "type": _kind(status), "code": code}}
    return Response(
        json.dumps(body).encode(), status, headers={REQUEST_ID_HEADER: request_id}, media_type=_JSON
    )


def _kind(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        409: "conflict",
        413: "invalid_request_error",
        415: "invalid_request_error",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")


@dataclass
class Trace:
    """What one request did so far: the retrieval log's record is made of it."""

    request_id: str
    principal: Principal
    event: str
    k: int
    query: str = ""
    mode: str = "hybrid"
    index: str | None = None
    binding: str | None = None
    hits: list[Hit] = field(default_factory=list)
    answer: str | None = None
    model: str | None = None
    # The reader's label of the question (X-Sovereign-Data-Class), sent on to
    # the gateway, whose routing rules may require one.
    data_class: str | None = None


class RetrievalService:
    def __init__(
        self,
        config: ServiceConfig,
        backend: Backend,
        verifier: Verifier,
        embedder_for: Callable[[str, str | None], Embedder],
        sink: Sink,
        completer_for: Callable[[str, str | None], GatewayCompleter] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.verifier = verifier
        self.embedder_for = embedder_for
        self.sink = sink
        self.completer_for = completer_for

    async def search(self, request: Request) -> Response:
        return await self._serve(request, "search")

    async def answer(self, request: Request) -> Response:
        return await self._serve(request, "answer")

    async def _serve(self, request: Request, event: str) -> Response:
        request_id = uuid.uuid4().hex
        limits = self.config.search
        answering = self.config.answer
        if event == "answer" and (answering is None or self.completer_for is None):
            return _error(404, "not_found", "answers are not enabled here", request_id)
        try:
            token = self._token(request)
            principal = await self._verify(token)
        except Refusal as refusal:
            return _error(refusal.status, refusal.code, refusal.message, request_id)
        default_k = answering.default_k if event == "answer" and answering else limits.default_k
        trace = Trace(request_id=request_id, principal=principal, event=event, k=default_k)
        deadline = limits.timeout_s + (
            answering.timeout_s if event == "answer" and answering else 0
        )
        try:
            trace.data_class = self._data_class(request)
            trace.query, trace.k, trace.mode = await self._body(request, event, default_k)
            with anyio.fail_after(deadline):
                # A thread cannot be stopped: at the deadline the request is
                # answered and the thread's late result dropped (each call in it
                # has its own timeout too).
                vector = await anyio.to_thread.run_sync(
                    self._embed, token, trace.data_class, trace.query, abandon_on_cancel=True
                )
                trace.index, trace.binding, trace.hits = await anyio.to_thread.run_sync(
                    self._search,
                    principal,
                    trace.query,
                    vector,
                    trace.k,
                    trace.mode,
                    abandon_on_cancel=True,
                )
                if event == "answer":
                    await self._answer(trace, token)
        except Refusal as refusal:
            await self._record(trace, [], refusal.status, refusal.code)
            return _error(refusal.status, refusal.code, refusal.message, request_id)
        except TimeoutError:
            await self._record(trace, [], 504, "timeout")
            return _error(504, "timeout", f"the {event} took over {deadline:g} s", request_id)
        except RetrievalError as exc:
            status, code = _status_of(exc)
            await self._record(trace, [], status, code)
            return _error(status, code, str(exc)[:300], request_id)
        if not await self._record(trace, trace.hits, 200, "ok"):
            return _error(
                503,
                "log_unavailable",
                "the retrieval log cannot record this request; nothing was returned",
                request_id,
            )
        body: dict[str, object] = {"index": trace.index, "binding": trace.binding}
        if event == "search":
            body |= {"object": "list", "data": [_chunk(h) for h in trace.hits]}
        else:
            body |= {
                "object": "retrieval.answer",
                "answer": trace.answer,
                "model": trace.model,
                "sources": [
                    {
                        "n": n,
                        "doc_id": h.doc_id,
                        "chunk_id": h.chunk_id,
                        "title": h.title,
                        "source": h.source,
                        "data_class": h.data_class,
                    }
                    for n, h in enumerate(trace.hits, start=1)
                ],
            }
        return Response(
            json.dumps(body).encode(),
            200,
            headers={REQUEST_ID_HEADER: request_id},
            media_type=_JSON,
        )

    async def _answer(self, trace: Trace, token: str) -> None:
        """The completion over the reader's passages; none asked when nothing is readable."""
        answering = self.config.answer
        assert answering is not None and self.completer_for is not None
        context, used = context_of(trace.hits, answering.max_context_chars)
        trace.hits = used
        if not used:
            trace.answer, trace.model = None, None
            return
        # The completion carries the passages: labelled with the most
        # sensitive of the reader's label and their classes.
        labels = [trace.data_class] if trace.data_class else []
        label = logs.most_sensitive(
            labels + [hit.data_class for hit in used], self.config.log.classes
        )
        completer = self.completer_for(token, label)
        text, model = await anyio.to_thread.run_sync(
            completer.complete, prompt_of(trace.query, context), abandon_on_cancel=True
        )
        trace.answer, trace.model = text.strip(), model

    async def health(self, request: Request) -> Response:
        healthy = bool(self.sink.healthy)
        alias = self.config.search.alias
        target = await anyio.to_thread.run_sync(self.backend.alias_target, alias)
        status = "ok" if healthy and target else ("no index" if healthy else "log unhealthy")
        return Response(
            json.dumps({"status": status, "index": target}).encode(),
            200 if status == "ok" else 503,
            media_type=_JSON,
        )

    # -- steps ----------------------------------------------------------------

    @staticmethod
    def _token(request: Request) -> str:
        authorization = request.headers.get("authorization", "")
        if len(authorization) > MAX_TOKEN_BYTES:
            raise Refusal(401, "token_too_large", "the Authorization header is too large")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(401, "missing_token", "expected 'Authorization: Bearer <token>'")
        return token.strip()

    async def _verify(self, token: str) -> Principal:
        try:
            return await self.verifier.verify(token)
        except GatewayError as error:
            raise Refusal(error.status, error.code, error.message[:300]) from None

    async def _body(self, request: Request, event: str, default_k: int) -> tuple[str, int, str]:
        limits = self.config.search
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_request_bytes:
            raise Refusal(
                413, "request_too_large", f"the body is over {limits.max_request_bytes} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(10.0):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_request_bytes:
                        raise Refusal(
                            413,
                            "request_too_large",
                            f"the body is over {limits.max_request_bytes} bytes",
                        )
                    chunks.append(chunk)
        except ClientDisconnect:
            raise Refusal(400, "client_gone", "the client went away while sending") from None
        except TimeoutError:
            raise Refusal(408, "body_timeout", "the body did not arrive within 10 s") from None
        try:
            body: Any = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            raise Refusal(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Refusal(400, "invalid_json", "the body must be a JSON object")
        text_key = "query" if event == "search" else "question"
        allowed = {text_key, "k"} | ({"mode"} if event == "search" else set())
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise Refusal(400, "unknown_field", f"unknown field {unknown[0][:40]!r}")
        query = body.get(text_key)
        if not isinstance(query, str) or not query.strip():
            raise Refusal(400, f"invalid_{text_key}", f"'{text_key}' must be a non-empty string")
        if len(query) > limits.max_query_chars:
            raise Refusal(
                400,
                f"{text_key}_too_long",
                f"'{text_key}' is over {limits.max_query_chars} characters",
            )
        k = body.get("k", default_k)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_k:
            raise Refusal(400, "invalid_k", f"'k' must be an integer from 1 to {limits.max_k}")
        mode = body.get("mode", "hybrid")
        if mode not in MODES:
            raise Refusal(400, "invalid_mode", "'mode' must be hybrid, vector or lexical")
        return query, k, str(mode)

    def _embed(self, token: str, data_class: str | None, text: str) -> list[float]:
        (vector,) = self.embedder_for(token, data_class).embed([text])
        return vector

    def _data_class(self, request: Request) -> str | None:
        """The reader's label of the question: one of the log's data classes, once."""
        values = request.headers.getlist(DATA_CLASS_HEADER)
        if not values:
            return None
        classes = self.config.log.classes
        if len(values) > 1 or values[0].strip() not in classes:
            raise Refusal(
                400,
                "invalid_data_class",
                f"{DATA_CLASS_HEADER} must be sent once, one of: {', '.join(classes)}",
            )
        return values[0].strip()

    def _search(
        self, principal: Principal, text: str, vector: list[float], k: int, mode: str
    ) -> tuple[str, str, list[Hit]]:
        query = Query(
            text=text,
            vector=vector,
            embedding_digest=self.config.embedding.digest,
            principals=principals_of(principal.user, principal.groups),
            k=k,
            mode=mode,  # type: ignore[arg-type]
            candidates=max(k, self.config.search.candidates),
        )
        index, binding, hits = self.backend.search_in(self.config.search.alias, query)
        return index, binding.digest, hits

    async def _record(self, trace: Trace, hits: list[Hit], status: int, outcome: str) -> bool:
        record = logs.search_record(
            request_id=trace.request_id,
            user=trace.principal.user,
            groups=sorted(trace.principal.groups),
            query=trace.query,
            k=trace.k,
            mode=trace.mode,
            index=trace.index,
            binding=trace.binding,
            hits=hits,
            status=status,
            outcome=outcome,
            config=self.config.log,
            event=trace.event,
            answer=trace.answer if status == 200 else None,
            model=trace.model,
        )
        try:
            await self.sink.append(record)
        except Exception as exc:  # no record, no answer
            log.error("retrieval log append failed for %s: %s", trace.request_id, exc)
            return False
        return True


def _chunk(hit: Hit) -> dict[str, object]:
    return {
        "chunk_id": hit.chunk_id,
        "doc_id": hit.doc_id,
        "title": hit.title,
        "heading": hit.heading,
        "text": hit.text,
        "source": hit.source,
        "data_class": hit.data_class,
        "score": hit.score,
    }


def _status_of(error: RetrievalError) -> tuple[int, str]:
    if isinstance(error, IndexNotFound):
        return 503, "no_index"
    if isinstance(error, BindingMismatch):
        return 409, "binding_mismatch"
    if isinstance(error, QueryError):
        return 400, "invalid_query"
    return error.status, type(error).__name__.lower()


def build_app(
    service: RetrievalService | None = None,
    *,
    starting: Callable[[], AbstractAsyncContextManager[RetrievalService]] | None = None,
) -> Starlette:
    """The ASGI app of ``service``, or of the service ``starting`` makes for the app's lifespan."""
    if (service is None) == (starting is None):
        raise ValueError("give a service or a way to start one, not both")
    held: list[RetrievalService] = [service] if service is not None else []

    def current() -> RetrievalService:
        if not held:
            raise RuntimeError("the retrieval service has not started")
        return held[0]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if starting is None:
            yield
            return
        async with starting() as started:
            held.append(started)
            try:
                yield
            finally:
                held.clear()

    async def search(request: Request) -> Response:
        return await current().search(request)

    async def answer(request: Request) -> Response:
        return await current().answer(request)

    async def health(request: Request) -> Response:
        return await current().health(request)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(
            exc.status_code,
            code,
            f"{request.method} {request.url.path[:100]!r}: {exc.detail}",
            uuid.uuid4().hex,
        )

    return Starlette(
        routes=[
            Route("/v1/retrieval/search", search, methods=["POST"]),
            Route("/v1/retrieval/answer", answer, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: on_http_error},
        lifespan=lifespan,
    )
