"""Which Redis client ``serve`` gives the quota store."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio

from sovereign.gateway.errors import StartupError
from sovereign.gateway.redis_client import RedisClient
from sovereign.gateway.server import REDIS_CONNECTIONS, REDIS_TIMEOUT_S, _redis_client


def test_the_lean_client_serves_the_urls_it_understands() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://redis.example:6380/1", "unix:///run/r.sock"):
        client = _redis_client(url)
        assert isinstance(client, RedisClient)
        assert client.timeout == REDIS_TIMEOUT_S


def test_redis_py_serves_urls_with_options_the_lean_client_lacks() -> None:
    client = _redis_client("redis://127.0.0.1:6379/0?socket_keepalive=true")
    assert isinstance(client, redis.asyncio.Redis)
    assert client.connection_pool.max_connections == REDIS_CONNECTIONS


def test_an_unreadable_redis_ca_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="TLS to Redis"):
        _redis_client(f"rediss://redis.example/0?ssl_ca_certs={tmp_path / 'missing.pem'}")
