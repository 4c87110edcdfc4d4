"""A client that leaves a stream stops the backend, and is charged and audited
for what was generated until then (real sockets: uvicorn, the backend pool)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from sovereign.gateway.app import Gateway, create_app
from sovereign.gateway.config import Listen
from sovereign.gateway.server import uvicorn_config
from sovereign.gateway.upstream import build_client
from tests.support import uvicorn_thread
from tests.support.redis_server import free_port
from tests.unit.gateway.conftest import BASE_CONFIG, FakeIdp, Harness, chat, make_config
from tests.unit.gateway.fakes import FakeAuditLog, FakeQuotaStore

TOKENS = 400  # the most the backend would generate: 8 s at one token per 20 ms
PROMPT = 5


class Generator:
    """A backend that generates one token every 20 ms until done or left."""

    def __init__(self) -> None:
        self.sent = 0
        self.stopped = threading.Event()
        self.asked: dict[str, object] = {}

    def app(self) -> Starlette:
        async def completions(request: Request) -> StreamingResponse:
            self.asked = await request.json()
            options = self.asked.get("stream_options")
            continuous = isinstance(options, dict) and bool(options.get("continuous_usage_stats"))

            async def events() -> AsyncIterator[bytes]:
                try:
                    for index in range(TOKENS):
                        event: dict[str, object] = {"choices": [{"delta": {"content": "t"}}]}
                        if continuous:
                            usage = {"prompt_tokens": PROMPT, "completion_tokens": index + 1}
                            event["usage"] = {**usage, "total_tokens": PROMPT + index + 1}
                        yield b"data: " + json.dumps(event).encode() + b"\n\n"
                        self.sent += 1
                        await asyncio.sleep(0.02)
                    yield b"data: [DONE]\n\n"
                finally:
                    self.stopped.set()

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
def generator() -> Iterator[tuple[Generator, str]]:
    backend = Generator()
    port = free_port()
    with uvicorn_thread.serving(
        uvicorn.Config(backend.app(), host="127.0.0.1", port=port, log_config=None)
    ):
        yield backend, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "http",
    [
        pytest.param(None, id="the gateway's server (its departure hook)"),
        pytest.param("h11", id="another ASGI server (a task waits for the disconnect)"),
    ],
)
def test_a_client_leaving_a_stream_stops_the_backend_and_is_charged_what_was_made(
    idp: FakeIdp, generator: tuple[Generator, str], http: str | None
) -> None:
    backend, backend_url = generator
    models = json.loads(json.dumps(BASE_CONFIG["models"]))
    for version in models["tiny"]["versions"]:
        version["backends"]["general"] = [backend_url]
    port = free_port()
    config = make_config(models=models).model_copy(
        update={"listen": Listen(host="127.0.0.1", port=port)}
    )
    quota, audit = FakeQuotaStore(), FakeAuditLog()
    harness = Harness(config, idp, clock=time.monotonic)

    # The pool the gateway serves with: it closes an unfinished answer's connection.
    gateway = Gateway(
        config,
        quota=quota,
        audit=audit,
        upstream=build_client(config.upstream),
        verifier=harness.verifier,
    )
    served = uvicorn_config(create_app(gateway), config)
    if http is not None:
        served.http = http
    with uvicorn_thread.serving(served):
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
            client.stream(
                "POST", "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
            ) as response,
        ):
            assert response.status_code == 200
            seen = 0
            for chunk in response.iter_raw():
                seen += chunk.count(b"data: ")
                if seen >= 5:
                    break  # and hang up
        left = time.monotonic()
        assert backend.stopped.wait(5), "the backend went on generating"
        assert time.monotonic() - left < 2
        generated = backend.sent
        assert generated < TOKENS // 2
        deadline = time.monotonic() + 5
        while audit.events() != ["admitted", "completed"] and time.monotonic() < deadline:
            time.sleep(0.01)
        completed = audit.records[-1]
        assert completed["outcome"] == "client_disconnected" and completed["status"] == 499
        # Charged from the backend's own running count, not the reservation.
        made = completed["completion_tokens"]
        assert isinstance(made, int) and 5 <= made <= generated
        assert list(quota.settled.values()) == [PROMPT + made]
        assert backend.asked["stream_options"] == {
            "include_usage": True,
            "continuous_usage_stats": True,
        }
