"""The gateway with the backend pool it serves with, against a real backend on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from sovereign.gateway.app import Gateway, create_app
from sovereign.gateway.upstream_pool import BackendPool, PoolLimits
from tests.unit.gateway.conftest import BASE_CONFIG, FakeIdp, Harness, chat, make_config
from tests.unit.gateway.fakes import FakeAuditLog, FakeQuotaStore, sse_events

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


class Backend:
    """An HTTP/1.1 backend in a thread of its own; ``mode`` picks its answers."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = json.loads(await reader.readexactly(length))
                if self.mode == "slow":
                    await asyncio.sleep(1)
                    return
                if not body.get("stream"):
                    answer = json.dumps({"choices": [], "usage": USAGE}).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
                    )
                    continue
                events = sse_events("hi", 2, USAGE)
                if self.mode == "cut":
                    events = events[:40]
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(events), events)
                )
                if self.mode == "cut":
                    await writer.drain()
                    return
                writer.write(b"0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    def stop(self) -> None:
        async def shut() -> None:
            assert self.server is not None
            self.server.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    backend = Backend()
    yield backend
    backend.stop()


@contextmanager
def client_for(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(gateway), client=("192.0.2.10", 40000)) as client:
        try:
            yield client
        finally:
            client.portal.call(gateway.upstream.aclose)  # type: ignore[union-attr]


def _gateway(idp: FakeIdp, backend: Backend) -> tuple[Harness, Gateway, FakeQuotaStore]:
    models = json.loads(json.dumps(BASE_CONFIG["models"]))
    for version in models["tiny"]["versions"]:
        version["backends"]["general"] = [backend.url]
    config = make_config(models=models)
    harness = Harness(config, idp, clock=lambda: 0.0)
    quota = FakeQuotaStore()
    gateway = Gateway(
        config,
        quota=quota,
        audit=FakeAuditLog(),
        upstream=BackendPool(PoolLimits(read_timeout_s=0.2)),
        verifier=harness.verifier,
    )
    return harness, gateway, quota


def test_answers_and_streams_go_through_one_kept_alive_connection(
    idp: FakeIdp, backend: Backend
) -> None:
    harness, gateway, quota = _gateway(idp, backend)
    with client_for(gateway) as client:
        for _ in range(3):
            plain = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
            assert plain.status_code == 200 and plain.json()["usage"] == USAGE
        streamed = client.post(
            "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
        )
        assert streamed.status_code == 200
        assert streamed.content.endswith(b"data: [DONE]\n\n") and b'"usage"' not in streamed.content
    assert backend.connections == 1
    assert sorted(quota.settled.values()) == [7, 7, 7, 7]


@pytest.mark.parametrize(("mode", "status"), [("slow", 504), ("cut", 502)])
def test_backend_failures_through_the_pool(
    idp: FakeIdp, backend: Backend, mode: str, status: int
) -> None:
    harness, gateway, quota = _gateway(idp, backend)
    backend.mode = mode
    with client_for(gateway) as client:
        if mode == "slow":
            response = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
            assert response.status_code == status
            assert response.json()["error"]["code"] == "upstream_timeout"
            assert quota.released == list(quota.reserved)
        else:
            response = client.post(
                "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
            )
            assert response.status_code == 200  # the status line was out
            last = response.content.rstrip().rsplit(b"\n\n", 1)[-1]
            assert json.loads(last.removeprefix(b"data: "))["error"]["code"] == "bad_gateway"
    audit = gateway.audit
    assert isinstance(audit, FakeAuditLog)
    assert audit.records[-1]["status"] == status
