"""Draining backends for a rolling release: no new request reaches a drained
backend, another version answers where the chosen one has nothing live (and
the audit says which), open requests are counted per backend, and the drain
file is read, bounded, at start and on reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from sovereign.gateway.config import MAX_DRAIN_FILE_BYTES, load_config, load_drain
from sovereign.gateway.errors import ConfigError
from tests.unit.gateway.conftest import (
    BASE_CONFIG,
    DIGEST_B,
    Clock,
    FakeIdp,
    Harness,
    chat,
    make_config,
)

STAFF = {"groups": ["staff"], "preferred_username": "dana"}


def ask(harness: Harness, model: str = "tiny") -> Any:
    with harness.client() as client:
        return client.post("/v1/chat/completions", json=chat(model), headers=harness.auth(**STAFF))


def test_a_drained_backend_takes_no_new_request_and_another_version_answers(
    idp: FakeIdp, clock: Clock
) -> None:
    # dana's bucket picks "stable" (95 %); its only general backend is drained.
    harness = Harness(make_config(drained=["http://tiny-stable-general"]), idp, clock=clock)
    for _ in range(3):
        response = ask(harness)
        assert response.status_code == 200, response.text
    assert harness.backends.who_received() == ["tiny-canary-general"]
    admitted = [r for r in harness.audit.records if r["event"] == "admitted"]
    assert {record["backend_version"] for record in admitted} == {"canary"}
    assert {record["model_digest"] for record in admitted} == {DIGEST_B}


def test_every_backend_drained_is_a_503_that_names_the_model_and_is_audited(
    idp: FakeIdp, clock: Clock
) -> None:
    drained = ["http://tiny-stable-general", "http://tiny-canary-general"]
    harness = Harness(make_config(drained=drained), idp, clock=clock)
    response = ask(harness)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_backend"
    assert "model 'tiny'" in response.json()["error"]["message"]
    assert harness.backends.who_received() == []
    assert harness.audit.records[-1]["event"] == "rejected"


def test_a_version_without_the_tier_is_allowed_and_falls_back(idp: FakeIdp, clock: Clock) -> None:
    # Mid-rollout: the new release runs on the general tier's nodes only.
    models = BASE_CONFIG["models"] | {}
    tiny = dict(models["tiny"])
    tiny["versions"] = [
        tiny["versions"][0] | {"weight": 5},
        tiny["versions"][1]
        | {"weight": 95, "backends": {"general": ["http://tiny-canary-general"]}},
    ]
    harness = Harness(make_config(models={**models, "tiny": tiny}), idp, clock=clock)
    headers = harness.auth(groups=["clinicians"], preferred_username="ravi")
    headers["X-Sovereign-Data-Class"] = "phi"
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=chat(), headers=headers)
    assert response.status_code == 200, response.text
    assert harness.backends.who_received() == ["tiny-stable-restricted"]


def test_open_requests_are_counted_per_backend_and_exported(harness: Harness) -> None:
    backend = harness.backends["tiny-stable-general"]
    seen: list[dict[str, int]] = []
    original = backend.handle

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(dict(harness.gateway.in_flight))
        return original(request)

    backend.handle = handle  # type: ignore[method-assign]
    assert ask(harness).status_code == 200
    assert seen == [{"http://tiny-stable-general": 1}]
    assert harness.gateway.in_flight == {}
    scrape = harness.gateway.metrics.registry.get_sample_value
    labels = {"backend": "http://tiny-stable-general"}
    assert scrape("sovereign_gateway_backend_in_flight", labels) == 0
    assert scrape("sovereign_gateway_backend_drained", labels) == 0
    harness.gateway.reload(make_config(drained=["http://tiny-stable-general"]))
    assert scrape("sovereign_gateway_backend_drained", labels) == 1


def test_the_drain_file_is_read_at_load_and_missing_means_none(tmp_path: Path) -> None:
    import yaml

    drain = tmp_path / "drain.yml"
    path = tmp_path / "gateway.yml"
    path.write_text(yaml.safe_dump(BASE_CONFIG | {"drain_file": str(drain)}), encoding="utf-8")
    assert load_config(path).drained == []
    drain.write_text("drained:\n  - http://tiny-stable-general\n", encoding="utf-8")
    assert load_config(path).drained == ["http://tiny-stable-general"]
    drain.write_text("", encoding="utf-8")
    assert load_drain(drain) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- http://a\n", "expected 'drained:'"),
        ("drained: http://a\n", "expected 'drained:'"),
        ("drained: [1]\n", "expected 'drained:'"),
        ("drained: []\nother: 1\n", "expected 'drained:'"),
        ("drained: [\n", "not valid YAML"),
        ("drained: ['" + "a" * MAX_DRAIN_FILE_BYTES + "']\n", "larger than"),
    ],
)
def test_a_bad_drain_file_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    drain = tmp_path / "drain.yml"
    drain.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as raised:
        load_drain(drain)
    assert str(drain) in str(raised.value)
