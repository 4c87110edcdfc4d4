"""`sovereign gateway serve` as the service runs it: SIGTERM closes the audit log.

A real process, a real redis-server and a real audit directory: after
SIGTERM the last records must sit under a signed closing checkpoint, so a
strict verification (no unsigned tail allowed) passes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from sovereign.audit.cli import main as audit_main
from tests.support import redis_server
from tests.support.keys import write_ec_key_pair
from tests.support.ready import wait_until_ok
from tests.support.redis_server import free_port


@pytest.fixture
def redis_url() -> Iterator[str]:
    if redis_server.binary() is None:
        pytest.skip(redis_server.MISSING_REASON)
    with redis_server.redis_server() as url:
        yield url


def test_sigterm_writes_the_closing_checkpoint(tmp_path: Path, redis_url: str) -> None:
    private, public = write_ec_key_pair(tmp_path, "signing")
    port = free_port()
    config: dict[str, object] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics_listen": None,
        "identity": {"trusted_header": {"enabled": True, "proxies": ["127.0.0.1/32"]}},
        "redis_url": redis_url,
        "models": {
            "tiny": {
                "versions": [
                    {
                        "name": "stable",
                        "weight": 100,
                        "digest": "sha256:" + "1" * 64,
                        "backends": {"general": [f"http://127.0.0.1:{free_port()}"]},
                    }
                ]
            }
        },
        "tiers": {"general": {}},
        "routing": {
            "data_classes": ["internal"],
            "rules": [{"name": "everyday", "data_classes": ["internal"], "tier": "general"}],
        },
        "audit": {"directory": str(tmp_path / "audit"), "signing_key": str(private)},
    }
    path = tmp_path / "gateway.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [sys.executable, "-m", "sovereign.gateway", "serve", "--config", str(path)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        try:
            wait_until_ok(process, f"http://127.0.0.1:{port}/healthz", "the gateway")
            body = {"model": "tiny", "prompt": "hi", "max_tokens": 1}
            # Refused (no rule admits "unclassified"): one audited rejection each.
            for _ in range(3):
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/v1/completions",
                    json=body,
                    headers={"X-Sovereign-User": "alice"},
                )
                assert answer.status_code == 403
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        errors = process.stderr.read().decode() if process.stderr else ""
    assert code == 0, errors
    strict = audit_main(["verify", str(tmp_path / "audit"), "--public-key", str(public)])
    assert strict == 0
    assert os.listdir(tmp_path / "audit" / "unclassified")
