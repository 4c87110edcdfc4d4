"""The gateway over real sockets (uvicorn in a thread), and configuration reload."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from sovereign.gateway.app import Gateway, create_app
from sovereign.gateway.server import reload_config
from tests.support import uvicorn_thread
from tests.support.redis_server import free_port
from tests.unit.gateway.conftest import BASE_CONFIG, FakeIdp, Harness, chat, make_config
from tests.unit.gateway.fakes import FakeAuditLog, FakeQuotaStore


class Gate:
    """Holds the backend's second event until the test has seen the first."""

    def __init__(self) -> None:
        self.open = threading.Event()


def _backend(gate: Gate) -> Starlette:
    async def completions(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b'data: {"choices": [{"delta": {"content": "first"}}]}\n\n'
            while not gate.open.is_set():
                await asyncio.sleep(0.01)
            yield b'data: {"choices": [{"delta": {"content": "second"}}]}\n\n'
            usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            yield b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def _run(app: Starlette) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server, thread = uvicorn_thread.start(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            loop="asyncio",
            http="httptools",
            proxy_headers=False,
        )
    )
    return server, thread, f"http://127.0.0.1:{port}"


def test_a_stream_is_passed_through_as_it_arrives(idp: FakeIdp) -> None:
    gate = Gate()
    backend, backend_thread, backend_url = _run(_backend(gate))
    models = json.loads(json.dumps(BASE_CONFIG["models"]))
    for version in models["tiny"]["versions"]:
        version["backends"]["general"] = [backend_url]
    config = make_config(models=models)
    quota, audit = FakeQuotaStore(), FakeAuditLog()
    harness = Harness(config, idp, clock=time.monotonic)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Gateway]:
        async with httpx.AsyncClient() as upstream:
            yield Gateway(
                config, quota=quota, audit=audit, upstream=upstream, verifier=harness.verifier
            )

    server, thread, url = _run(create_app(lifespan=lifespan))
    try:
        with (
            httpx.Client(base_url=url, timeout=10) as client,
            client.stream(
                "POST", "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
            ) as response,
        ):
            assert response.status_code == 200
            chunks = response.iter_raw()
            first = next(chunks)
            assert b"first" in first and b"second" not in first  # before the backend goes on
            gate.open.set()
            rest = b"".join(chunks)
        assert b"second" in rest and rest.endswith(b"data: [DONE]\n\n")
        assert b'"usage"' not in first + rest
        deadline = time.monotonic() + 5  # the books are kept after the last byte
        while not quota.settled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(quota.settled.values()) == [7]
        assert audit.events() == ["admitted", "completed"]
    finally:
        gate.open.set()
        for each, runner in ((server, thread), (backend, backend_thread)):
            each.should_exit = True
            runner.join(timeout=10)


def test_reload_takes_a_valid_file_and_refuses_an_invalid_one(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yml"
    data = json.loads(json.dumps(BASE_CONFIG))
    data["models"]["tiny"]["versions"][0]["weight"] = 50
    data["models"]["tiny"]["versions"][1]["weight"] = 50
    path.write_text(yaml.safe_dump(data))
    assert reload_config(harness.gateway, path)
    assert harness.gateway.policy.config.models["tiny"].versions[1].weight == 50
    data["routing"]["rules"][1]["tier"] = "gold"
    path.write_text(yaml.safe_dump(data))
    assert not reload_config(harness.gateway, path)
    assert harness.gateway.policy.config.models["tiny"].versions[1].weight == 50


def test_team_quota_limits_are_exported_and_follow_a_reload(
    harness: Harness, tmp_path: Path
) -> None:
    registry = harness.gateway.metrics.registry

    def limit(team: str, window: str) -> float | None:
        labels = {"team": team, "window": window}
        return registry.get_sample_value("sovereign_gateway_quota_limit", labels)

    assert limit("*", "day") == 1000000
    assert limit("*", "minute") is None  # no team limit per minute: unlimited
    path = tmp_path / "gateway.yml"
    data = json.loads(json.dumps(BASE_CONFIG))
    # An override names only what it changes; null lifts a limit.
    data["quotas"]["teams"] = {
        "risk": {"tokens_per_month": 9000000},
        "lab": {"tokens_per_day": None},
    }
    path.write_text(yaml.safe_dump(data))
    assert reload_config(harness.gateway, path)
    assert limit("risk", "day") == 1000000 and limit("risk", "month") == 9000000
    assert limit("lab", "day") is None
    data["quotas"].pop("teams")
    path.write_text(yaml.safe_dump(data))
    assert reload_config(harness.gateway, path)
    assert limit("risk", "day") is None and limit("*", "day") == 1000000
