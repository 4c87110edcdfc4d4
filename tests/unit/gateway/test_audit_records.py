"""Audit: two records per served request, one per refusal, and fail closed."""

from __future__ import annotations

from sovereign.audit.log import AuditLog
from tests.unit.gateway.conftest import Harness, Live, chat


def test_an_audit_failure_refuses_the_request_before_any_backend(harness: Harness) -> None:
    harness.audit.fail = True
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
        health = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert harness.backends.who_received() == []
    # The reservation is refunded.
    assert list(harness.quota.reserved) == harness.quota.released
    assert health.status_code == 503


def test_a_served_request_has_admitted_then_completed(harness: Harness) -> None:
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=harness.auth())
    request_id = response.headers["x-request-id"]
    assert harness.audit.events(request_id) == ["admitted", "completed"]
    admitted, completed = harness.audit.records
    for key in (
        "user", "team", "groups", "time", "endpoint", "model", "model_digest", "tier",
        "backend_version", "rule", "data_class", "admission", "prompt_sha256",
        "prompt_tokens_estimate", "reserved_tokens",
    ):  # fmt: skip
        assert key in admitted, key
    assert completed["status"] == 200
    assert (completed["prompt_tokens"], completed["completion_tokens"]) == (11, 3)
    assert completed["backend_version"] == admitted["backend_version"]
    assert len(str(completed["response_sha256"])) == 64


def test_the_real_audit_log_records_and_fails_closed_when_closed(live: Live) -> None:
    with live.client() as client:
        # Healthy from the start, before anyone asked /healthz.
        assert live.metrics.registry.get_sample_value("sovereign_gateway_audit_healthy") == 1
        ok = client.post("/v1/chat/completions", json=chat(), headers=live.auth())
        assert ok.status_code == 200, ok.text
        # Each of its two records waited for a batch's fsync, and the metrics saw it.
        registry = live.metrics.registry
        batches = registry.get_sample_value("sovereign_gateway_audit_write_seconds_count")
        assert batches is not None and 1 <= batches <= 2
        took = registry.get_sample_value("sovereign_gateway_audit_write_seconds_sum")
        assert took is not None and 0 < took < 10
        assert live.gateway is not None and client.portal is not None
        audit = live.gateway.audit
        assert isinstance(audit, AuditLog)
        client.portal.call(audit.close)
        refused = client.post("/v1/chat/completions", json=chat(), headers=live.auth())
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "audit_unavailable"
    assert sum(len(b.received) for b in live.backends.by_host.values()) == 1
    events = [(r["event"], r["request_id"]) for r in live.audit_records()]
    assert events == [
        ("admitted", ok.headers["x-request-id"]),
        ("completed", ok.headers["x-request-id"]),
    ]


def test_the_health_gauge_follows_a_failing_write_and_its_recovery(live: Live) -> None:
    with live.client() as client:
        assert live.gateway is not None
        audit = live.gateway.audit
        assert isinstance(audit, AuditLog)
        writer = audit._writer
        write = writer.write

        def unwritable(batch: object) -> object:
            raise OSError(13, "Permission denied")

        writer.write = unwritable  # type: ignore[method-assign, assignment]
        refused = client.post("/v1/chat/completions", json=chat(), headers=live.auth())
        gauge = live.metrics.registry.get_sample_value("sovereign_gateway_audit_healthy")
        writer.write = write  # type: ignore[method-assign]
        served = client.post("/v1/chat/completions", json=chat(), headers=live.auth())
        again = live.metrics.registry.get_sample_value("sovereign_gateway_audit_healthy")
    assert refused.status_code == 503 and gauge == 0
    assert served.status_code == 200 and again == 1
