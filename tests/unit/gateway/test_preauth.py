"""Refusals before authentication are cheap, rate-limited and of bounded audit cost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from sovereign.audit.log import AuditLog
from sovereign.gateway import preauth
from sovereign.gateway.app import Gateway, create_app
from sovereign.gateway.config import PreAuth
from sovereign.gateway.identity import OidcVerifier
from sovereign.gateway.preauth import THROTTLED, PreAuthGuard
from tests.unit.gateway.conftest import (
    BACKEND_HOSTS,
    BASE_CONFIG,
    Clock,
    FakeIdp,
    Harness,
    chat,
    make_config,
)
from tests.unit.gateway.fakes import Backends, FakeQuotaStore

MIB = 1024 * 1024
FLOOD = 10_000
# What the flood may add to the audit directory: the individually audited
# refusals of one interval (each under 2 KiB: messages are bounded), one
# summary record and the log's own checkpoint lines.
AUDIT_BOUND = PreAuth().audit_records_per_interval * 2048 + 16 * 1024


class Tick:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_address_past_its_bucket_is_throttled_until_it_refills() -> None:
    clock = Tick()
    guard = PreAuthGuard(PreAuth(failures_per_minute=60, burst=3), clock=clock)
    verdicts = [guard.failure("198.51.100.7", "invalid_token", 401) for _ in range(4)]
    assert [v.throttled for v in verdicts] == [False, False, False, True]
    assert verdicts[-1].retry_after >= 1
    assert not guard.failure("198.51.100.8", "invalid_token", 401).throttled  # another address
    clock.now += 1.0  # 60 a minute: one token a second
    assert not guard.failure("198.51.100.7", "invalid_token", 401).throttled
    assert guard.failure("198.51.100.7", "invalid_token", 401).throttled


def test_past_the_audit_budget_refusals_are_counted_in_one_summary() -> None:
    clock = Tick()
    guard = PreAuthGuard(
        PreAuth(audit_records_per_interval=2, burst=1000, summary_interval_s=10), clock=clock
    )
    audited = [guard.failure(f"192.0.2.{i % 3}", "invalid_token", 401).audited for i in range(7)]
    assert audited == [True, True, False, False, False, False, False]
    assert guard.pending == 5 and not guard.due()
    clock.now = 10.0
    assert guard.due()
    summary = guard.roll("schema")
    assert summary is not None
    assert summary["event"] == "rejected_summary" and summary["count"] == 5
    assert summary["by_reason"] == {"invalid_token": 5}
    assert summary["by_status"] == {"401": 5}
    assert summary["individually_audited"] == 2
    assert sum(p["count"] for p in summary["top_peers"]) == 5  # type: ignore[attr-defined]
    # A new interval: the budget is back, nothing is pending.
    assert guard.pending == 0 and guard.roll("schema") is None
    assert guard.failure("192.0.2.1", "invalid_token", 401).audited


def test_memory_per_address_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preauth, "MAX_PEERS", 5)
    guard = PreAuthGuard(PreAuth(audit_records_per_interval=1))
    for index in range(50):
        guard.failure(f"2001:db8::{index:x}", "invalid_token", 401)
    summary = guard.roll("schema")
    assert summary is not None and summary["count"] == 49
    assert summary["distinct_peers"] == 6  # five counted by address, the rest together
    assert len(guard._buckets) == 5


async def _asgi(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, peer: str
) -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would hand it over."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode()), *headers],
        "client": (peer, 40000),
        "server": ("127.0.0.1", 8080),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    done = asyncio.Event()
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _records(directory: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(directory.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "record" in entry:
                records.append(entry["record"])
    return records


def test_a_flood_of_forged_tokens_costs_a_bounded_audit_and_valid_users_are_served(
    idp: FakeIdp, tmp_path: Path
) -> None:
    directory = tmp_path / "audit"
    config = make_config(audit={"directory": str(directory), "full_text_data_classes": []})
    # A forged token with a 1 MiB key id, and one small enough to be parsed and
    # checked (an unknown, long key id): both kinds of refusal are in the flood.
    huge = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "k" * MIB})
    small = jwt.encode(
        idp.claims(), idp.keys["k1"], algorithm="RS256", headers={"kid": "\n" + "z" * 4000}
    )
    peer = "198.51.100.66"

    async def run() -> tuple[list[tuple[int, bytes]], int, int]:
        audit = await AuditLog.open(directory, signing_key=None)
        assert config.identity.oidc is not None
        gateway = Gateway(
            config,
            quota=FakeQuotaStore(),
            audit=audit,
            upstream=httpx.AsyncClient(transport=Backends(*BACKEND_HOSTS).transport()),
            verifier=OidcVerifier(
                config.identity.oidc, httpx.AsyncClient(transport=idp.transport())
            ),
        )
        app = create_app(gateway)
        body = json.dumps(chat()).encode()
        before = _size(directory)
        answers: list[tuple[int, bytes]] = []
        valid_status = 0
        for start in range(0, FLOOD, 500):
            batch = [
                _asgi(
                    app,
                    "POST",
                    "/v1/chat/completions",
                    [(b"authorization", f"Bearer {huge if i % 2 else small}".encode())],
                    body,
                    peer,
                )
                for i in range(start, start + 500)
            ]
            if start == FLOOD // 2:  # mid-flood, from the flooding address itself
                good = [(b"authorization", f"Bearer {idp.token()}".encode())]
                batch.append(_asgi(app, "POST", "/v1/chat/completions", good, body, peer))
            results = await asyncio.gather(*batch)
            if start == FLOOD // 2:
                valid_status = results.pop()[0]
            answers.extend(results)
        await gateway.aclose()
        await audit.close()
        return answers, valid_status, _size(directory) - before

    answers, valid_status, grown = asyncio.run(run())
    assert valid_status == 200
    assert {status for status, _ in answers} <= {401, 429}
    assert sum(status == 429 for status, _ in answers) > FLOOD * 0.9
    assert max(len(body) for _, body in answers) < 1024  # no key id comes back
    assert grown <= AUDIT_BOUND, f"the audit directory grew {grown} bytes"
    records = _records(directory)
    rejected = [r for r in records if r["event"] == "rejected"]
    (summary,) = [r for r in records if r["event"] == "rejected_summary"]
    assert len(rejected) <= PreAuth().audit_records_per_interval
    assert len(rejected) + summary["count"] == FLOOD
    assert summary["by_reason"][THROTTLED] > FLOOD * 0.9
    assert summary["top_peers"][0] == {"peer": peer, "count": summary["count"]}
    assert all(r["peer"] == peer and len(json.dumps(r)) < 2048 for r in rejected)
    assert [r["event"] for r in records].count("completed") == 1  # the valid one


def test_the_oversized_token_is_refused_without_being_parsed(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json=chat(),
            headers={"Authorization": "Bearer " + "x" * 20000},
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_too_large"
    (record,) = harness.audit.records
    assert record["peer"] == "192.0.2.10" and "x" * 100 not in json.dumps(record)


def test_an_oversized_declared_body_is_refused_before_authentication(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=b"{}",
            headers={"Content-Length": "999999999"},
        )
    assert response.status_code == 413
    assert harness.audit.records[0]["user"] is None


@pytest.mark.parametrize("path", ["/openapi.json", "/v1/models"])
def test_the_api_description_and_model_list_need_a_caller(harness: Harness, path: str) -> None:
    with harness.client() as client:
        anonymous = client.get(path)
        known = client.get(path, headers=harness.auth())
    assert anonymous.status_code == 401 and known.status_code == 200
    (record,) = harness.audit.records
    assert record["event"] == "rejected" and record["reason"] == "missing_token"


def test_a_site_can_make_the_api_description_public(idp: FakeIdp, clock: Clock) -> None:
    config = make_config(public_paths=["/openapi.json"])
    harness = Harness(config, idp, clock=clock)
    with harness.client() as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/v1/models").status_code == 401
    assert BASE_CONFIG.get("public_paths") is None
