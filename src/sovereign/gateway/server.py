"""Running the gateway: open its services, serve HTTP(S), reload on SIGHUP.

One process serves with one uvicorn worker on uvloop + httptools; the role
runs as many replicas as it wants behind its load balancer, all sharing the
quota state in Redis. The services are opened before the listener starts, so
a bad audit directory or key stops the start with one clear line. SIGHUP
re-reads the configuration file: a valid one replaces the routing, canary
weights, admission and quota policy for new requests; an invalid one is
logged and the running policy stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import redis.asyncio
import uvicorn
import uvloop
from prometheus_client import start_http_server
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import ASGIApp

from sovereign.audit.errors import AuditError
from sovereign.audit.log import AuditLog
from sovereign.gateway.app import Gateway, create_app
from sovereign.gateway.config import GatewayConfig, Logging, load_config
from sovereign.gateway.errors import ConfigError, StartupError
from sovereign.gateway.http_limits import protocol_for
from sovereign.gateway.identity import OidcVerifier
from sovereign.gateway.metrics import GatewayMetrics
from sovereign.gateway.quota import QuotaStore
from sovereign.gateway.redis_client import RedisClient
from sovereign.gateway.upstream import UpstreamClient, build_client, build_httpx_client

log = logging.getLogger(__name__)

REDIS_CONNECTIONS = 64  # Redis runs one script at a time: more would only queue there
REDIS_TIMEOUT_S = 2.0  # for a pooled connection, and for an answer
REDIS_CONNECT_TIMEOUT_S = 1.0


class _JsonFormatter(logging.Formatter):
    """Access lines are JSON already; other records become one JSON line each."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "sovereign.gateway.access":
            return record.getMessage()
        line: dict[str, object] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(config: Logging) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)


def reload_config(gateway: Gateway, path: Path) -> bool:
    """Re-read ``path`` into the running gateway; False (and logged) if invalid."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        gateway.metrics.config_reloads.labels("invalid").inc()
        log.error("configuration reload refused, keeping the running policy: %s", exc)
        return False
    gateway.reload(config)
    gateway.metrics.config_reloads.labels("ok").inc()
    log.info("configuration reloaded from %s", path)
    return True


@asynccontextmanager
async def open_gateway(
    config: GatewayConfig,
    metrics: GatewayMetrics,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    idp_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Gateway]:
    """The gateway with its audit log, quota store and HTTP clients open."""
    # httpx logs every request at INFO: far too chatty for a proxy.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    async with AsyncExitStack() as stack:
        audit_config = config.audit
        try:
            audit = await AuditLog.open(
                audit_config.directory,
                signing_key=audit_config.signing_key,
                checkpoint_every=audit_config.checkpoint_every,
                checkpoint_interval_s=audit_config.checkpoint_interval_s,
                retention_days=audit_config.retention_days,
                default_retention_days=audit_config.default_retention_days,
                mirror=audit_config.checkpoint_mirror,
            )
        except AuditError as exc:
            raise StartupError(f"cannot open the audit log: {exc}") from exc
        audit.on_batch = metrics.audit_write.observe
        # Read at every scrape: the log's own state, not the last /healthz call's.
        metrics.audit_healthy.set_function(lambda: 1.0 if audit.healthy else 0.0)
        stack.push_async_callback(audit.close)
        quota = QuotaStore(_redis_client(config.redis_url), prefix=config.quotas.key_prefix)
        stack.push_async_callback(quota.aclose)
        upstream: UpstreamClient = (
            build_client(config.upstream)
            if upstream_transport is None
            else build_httpx_client(config.upstream, upstream_transport)
        )
        stack.push_async_callback(upstream.aclose)
        verifier = None
        oidc = config.identity.oidc
        if oidc is not None:
            verify: ssl.SSLContext | bool = True
            if oidc.ca_bundle is not None:
                verify = ssl.create_default_context(cafile=str(oidc.ca_bundle))
            idp = httpx.AsyncClient(verify=verify, transport=idp_transport, trust_env=False)
            stack.push_async_callback(idp.aclose)
            verifier = OidcVerifier(oidc, idp)
            await verifier.warm_up()
        gateway = Gateway(
            config,
            quota=quota,
            audit=audit,
            upstream=upstream,
            verifier=verifier,
            metrics=metrics,
        )
        try:
            yield gateway
        finally:
            await gateway.aclose()  # before the audit log closes (exit stack order)


def _redis_client(url: str) -> RedisClient | redis.asyncio.Redis:
    """The quota store's Redis client: the lean one, or redis-py for URL options it lacks.

    Fail closed, and fast: no retries or back-off hidden in the client; the
    request that finds Redis down is refused (503) at once. A burst waits for
    one of the pooled connections rather than being refused.
    """
    try:
        return RedisClient.from_url(
            url,
            max_connections=REDIS_CONNECTIONS,
            timeout=REDIS_TIMEOUT_S,
            connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        )
    except ValueError as exc:
        log.info("quota store uses redis-py: %s", exc)
    except (OSError, ssl.SSLError) as exc:  # ssl_ca_certs unreadable
        raise StartupError(f"cannot set up TLS to Redis: {exc}") from exc
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_CONNECTIONS,
        timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return redis.asyncio.Redis.from_pool(pool)


class _Server(uvicorn.Server):
    """uvicorn.Server that ends on SIGTERM/SIGINT without re-raising the signal.

    uvicorn re-raises a captured signal once its graceful shutdown is done,
    which kills the process before ``open_gateway`` closes the audit log: the
    last records would stay outside any signed checkpoint. Here the signal
    only ends the serve loop; the process then exits normally.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def uvicorn_config(app: ASGIApp, config: GatewayConfig) -> uvicorn.Config:
    """How the gateway serves HTTP: httptools with the head limits of
    ``config.http`` (see :mod:`sovereign.gateway.http_limits`)."""
    tls = config.tls
    return uvicorn.Config(
        app,
        host=config.listen.host,
        port=config.listen.port,
        http=protocol_for(config.http),
        lifespan="off",
        # The peer address must be the socket's: trusted-header mode
        # depends on it, so X-Forwarded-For is never believed.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        backlog=4096,
        timeout_keep_alive=75,
    )


async def _serve(path: Path, config: GatewayConfig, metrics: GatewayMetrics) -> None:
    async with open_gateway(config, metrics) as gateway:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, reload_config, gateway, path)
        server = _Server(uvicorn_config(create_app(gateway), config))
        log.info("gateway listening on %s:%s", config.listen.host, config.listen.port)
        await server.serve()


def serve(path: Path) -> None:
    """Load, validate and serve until SIGTERM/SIGINT. Raises ConfigError, StartupError."""
    config = load_config(path)
    configure_logging(config.logging)
    metrics = GatewayMetrics()
    if config.metrics_listen is not None:
        try:
            start_http_server(
                config.metrics_listen.port, config.metrics_listen.host, registry=metrics.registry
            )
        except OSError as exc:
            raise StartupError(
                f"cannot listen for metrics on {config.metrics_listen.host}:"
                f"{config.metrics_listen.port}: {exc.strerror}"
            ) from exc
    uvloop.run(_serve(path, config, metrics))
