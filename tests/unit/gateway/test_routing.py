"""The routing matrix: data class x group x model -> tier (default deny)."""

from __future__ import annotations

import pytest

from sovereign.gateway.identity import Principal
from sovereign.gateway.routing import Router
from tests.unit.gateway.conftest import BASE_CONFIG, Clock, FakeIdp, Harness, chat, make_config

ALLOW = [
    # (groups, data class, model, tier the backend must be in, rule)
    (["clinicians"], "phi", "tiny", "restricted", "phi-on-restricted"),
    (["staff"], "public", "tiny", "general", "everyday"),
    (["staff"], "internal", "tiny", "general", "everyday"),
    (["staff"], None, "tiny", "general", "everyday"),
    (["clinicians"], "internal", "tiny", "general", "everyday"),
    (["researchers"], "internal", "big", "restricted", "big-for-researchers"),
    (["researchers"], None, "big", "restricted", "big-for-researchers"),
    (["contractors", "clinicians"], "public", "tiny", "general", "everyday"),
]

DENY = [
    # (groups, data class, model, status, words the message must contain)
    (["staff"], "phi", "tiny", 403, "no routing rule admits data class 'phi' for groups [staff]"),
    (["staff"], "internal", "big", 403, "on model 'big'"),
    (["clinicians"], None, "tiny", 403, "must label every request"),
    # "unclassified" is the absence of a label, not a label.
    (["clinicians"], "unclassified", "tiny", 403, "must label every request"),
    (["contractors", "clinicians"], "phi", "tiny", 403, "'no-phi-for-contractors' denies"),
    (["staff"], "secret", "tiny", 400, "unknown data class 'secret'"),
    ([], "phi", "big", 403, "for groups [(none)]"),
]


def _send(
    harness: Harness, groups: list[str], data_class: str | None, model: str
) -> tuple[int, str]:
    headers = harness.auth(groups=groups, preferred_username=f"u-{'-'.join(groups)}")
    if data_class is not None:
        headers["X-Sovereign-Data-Class"] = data_class
    with harness.client() as client:
        response = client.post("/v1/chat/completions", json=chat(model), headers=headers)
    return response.status_code, response.text


@pytest.mark.parametrize(("groups", "data_class", "model", "tier", "rule"), ALLOW)
def test_admitted_requests_reach_a_backend_of_their_tier(
    harness: Harness,
    groups: list[str],
    data_class: str | None,
    model: str,
    tier: str,
    rule: str,
) -> None:
    status, text = _send(harness, groups, data_class, model)
    assert status == 200, text
    (host,) = harness.backends.who_received()
    assert host.startswith(f"{model}-") and host.endswith(f"-{tier}")
    admitted = harness.audit.records[0]
    assert admitted["event"] == "admitted"
    assert (admitted["rule"], admitted["tier"]) == (rule, tier)
    assert admitted["data_class"] == (data_class or "unclassified")
    assert str(admitted["model_digest"]).startswith("sha256:")


@pytest.mark.parametrize(("groups", "data_class", "model", "status", "words"), DENY)
def test_refused_requests_reach_no_backend(
    harness: Harness,
    groups: list[str],
    data_class: str | None,
    model: str,
    status: int,
    words: str,
) -> None:
    got, text = _send(harness, groups, data_class, model)
    assert got == status, text
    assert words in text
    assert harness.backends.who_received() == []
    (record,) = harness.audit.records
    assert record["event"] == "rejected"
    assert record["data_class"] == (data_class if status == 403 and data_class else "unclassified")


def test_full_text_is_audited_only_where_the_policy_says(harness: Harness) -> None:
    assert _send(harness, ["clinicians"], "phi", "tiny")[0] == 200
    assert _send(harness, ["staff"], "public", "tiny")[0] == 200
    phi_admitted, phi_completed, public_admitted, public_completed = harness.audit.records
    assert "hello" in str(phi_admitted["request"])
    assert "tiny-" in str(phi_completed["response"])
    assert "request" not in public_admitted and "response" not in public_completed
    assert len(str(public_admitted["prompt_sha256"])) == 64


def test_models_lists_what_the_caller_may_use(harness: Harness) -> None:
    with harness.client() as client:
        staff = client.get("/v1/models", headers=harness.auth(groups=["staff"])).json()
        research = client.get("/v1/models", headers=harness.auth(groups=["researchers"])).json()
    assert [m["id"] for m in staff["data"]] == ["embed", "tiny"]
    assert [m["id"] for m in research["data"]] == ["big", "embed", "tiny"]


def test_no_rules_means_nothing_is_admitted() -> None:
    config = make_config()
    config = config.model_copy(update={"routing": config.routing.model_copy(update={"rules": []})})
    router = Router(config)
    principal = Principal("a", frozenset({"staff"}), None, "oidc")
    with pytest.raises(Exception, match="no routing rule admits"):
        router.decide(principal, "tiny", "public")


def test_a_data_class_sent_twice_is_refused_even_if_both_agree(harness: Harness) -> None:
    for labels in (["phi", "public"], ["phi", "phi"]):
        headers = [
            *harness.auth(groups=["clinicians"]).items(),
            *(("X-Sovereign-Data-Class", label) for label in labels),
        ]
        with harness.client() as client:
            response = client.post("/v1/chat/completions", json=chat(), headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "duplicate_data_class"
    assert harness.backends.who_received() == []


def test_the_policy_can_narrow_the_labels_that_satisfy_the_requirement(
    idp: FakeIdp, clock: Clock
) -> None:
    routing = {**BASE_CONFIG["routing"], "required_labels": ["phi"]}
    harness = Harness(make_config(routing=routing), idp, clock=clock)
    assert _send(harness, ["clinicians"], "public", "tiny")[0] == 403
    assert _send(harness, ["clinicians"], "phi", "tiny")[0] == 200
