"""The canary split: weights hold over many users, and a user stays put."""

from __future__ import annotations

from collections import Counter

import pytest

from sovereign.gateway.canary import BUCKETS, CanarySplit, bucket
from sovereign.gateway.routing import Router
from tests.unit.gateway.conftest import DIGEST_A, DIGEST_B, Harness, chat, make_config

USERS = [f"user-{i}" for i in range(10_000)]


def _split(router: Router) -> Counter[str]:
    return Counter(router.target("tiny", "general", user).version for user in USERS)


def test_five_percent_of_ten_thousand_users_get_the_canary() -> None:
    counts = _split(Router(make_config()))
    assert 400 <= counts["canary"] <= 600  # 5 % +- 1 %
    assert counts["stable"] + counts["canary"] == len(USERS)


def test_a_user_always_gets_the_same_version() -> None:
    router = Router(make_config())
    for user in USERS[:200]:
        versions = {router.target("tiny", "general", user).version for _ in range(5)}
        assert len(versions) == 1


def test_raising_the_canary_weight_only_moves_users_onto_it() -> None:
    split5 = CanarySplit([("stable", 95), ("canary", 5)])
    split25 = CanarySplit([("stable", 75), ("canary", 25)])
    buckets = [bucket("s", "tiny", user) for user in USERS]
    before = {b for b in buckets if split5.choose(b) == "canary"}
    after = {b for b in buckets if split25.choose(b) == "canary"}
    assert before < after
    assert 2300 <= sum(split25.choose(b) == "canary" for b in buckets) <= 2700


def test_buckets_are_spread_and_salted() -> None:
    assert all(0 <= bucket("s", "m", u) < BUCKETS for u in USERS[:100])
    moved = sum(bucket("a", "tiny", u) != bucket("b", "tiny", u) for u in USERS[:100])
    assert moved > 90


@pytest.mark.parametrize(("weights", "expected"), [((0, 100), "canary"), ((100, 0), "stable")])
def test_a_reload_changes_the_split_for_new_requests(
    harness: Harness, weights: tuple[int, int], expected: str
) -> None:
    data = make_config().model_dump(mode="json")
    for version, weight in zip(data["models"]["tiny"]["versions"], weights, strict=True):
        version["weight"] = weight
    harness.gateway.reload(make_config(models=data["models"]))
    with harness.client() as client:
        for user in ("a", "b", "c"):
            headers = harness.auth(preferred_username=user)
            assert client.post("/v1/chat/completions", json=chat(), headers=headers).is_success
    assert harness.backends.who_received() == [f"tiny-{expected}-general"]
    assert {r["backend_version"] for r in harness.audit.records} == {expected}


def _pinning_config(**routing: object) -> dict[str, object]:
    data = make_config().model_dump(mode="json")
    data["routing"].update({"version_pin_groups": ["evaluators"], **routing})
    return data


def test_an_evaluator_gets_the_version_it_names_whatever_its_bucket(harness: Harness) -> None:
    harness.gateway.reload(make_config(routing=_pinning_config()["routing"]))
    with harness.client() as client:
        for version in ("canary", "stable", "canary"):
            answer = client.post(
                "/v1/chat/completions",
                json=chat(),
                headers={
                    **harness.auth(preferred_username="svc-eval", groups=["evaluators"]),
                    "X-Sovereign-Model-Version": version,
                },
            )
            assert answer.is_success, answer.text
    assert sorted(harness.backends.who_received()) == ["tiny-canary-general", "tiny-stable-general"]
    admitted = [r for r in harness.audit.records if r["event"] == "admitted"]
    assert [r["backend_version"] for r in admitted] == ["canary", "stable", "canary"]
    # What the upgrade's SLO gate reads: requests per version and status.
    scrape = harness.gateway.metrics.registry.get_sample_value
    labels = {"model": "tiny", "status": "200"}
    assert scrape("sovereign_gateway_version_requests_total", {**labels, "version": "canary"}) == 2
    assert scrape("sovereign_gateway_version_requests_total", {**labels, "version": "stable"}) == 1


@pytest.mark.parametrize(
    ("groups", "values", "status", "code"),
    [
        (["staff"], ["canary"], 403, "version_pin_denied"),
        (["evaluators"], ["nightly"], 400, "unknown_model_version"),
        (["evaluators"], ["canary", "stable"], 400, "duplicate_model_version"),
        (["evaluators"], ["x" * 5000], 400, "unknown_model_version"),
    ],
)
def test_a_version_pin_is_refused_unless_allowed_and_known(
    harness: Harness, groups: list[str], values: list[str], status: int, code: str
) -> None:
    harness.gateway.reload(make_config(routing=_pinning_config()["routing"]))
    headers = list(harness.auth(groups=groups).items())
    headers += [("X-Sovereign-Model-Version", value) for value in values]
    with harness.client() as client:
        answer = client.post("/v1/chat/completions", json=chat(), headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert len(answer.text) < 1000  # the client's value is cut in the answer
    assert harness.backends.who_received() == []


def test_a_pinned_version_with_every_backend_drained_is_refused_not_swapped(
    harness: Harness,
) -> None:
    data = _pinning_config()
    harness.gateway.reload(
        make_config(routing=data["routing"], drained=["http://tiny-canary-general"])
    )
    with harness.client() as client:
        answer = client.post(
            "/v1/chat/completions",
            json=chat(),
            headers={
                **harness.auth(groups=["evaluators"]),
                "X-Sovereign-Model-Version": "canary",
            },
        )
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "no_backend"
    assert harness.backends.who_received() == []


def test_every_answer_names_the_version_and_digest_that_gave_it(harness: Harness) -> None:
    with harness.client() as client:
        embedded = client.post(
            "/v1/embeddings", json={"model": "embed", "input": ["abc"]}, headers=harness.auth()
        )
        with client.stream(
            "POST", "/v1/chat/completions", json=chat(stream=True), headers=harness.auth()
        ) as streamed:
            streamed.read()
    assert embedded.status_code == 200, embedded.text
    assert embedded.headers["x-sovereign-model-version"] == "v1"
    assert embedded.headers["x-sovereign-model-digest"] == DIGEST_B
    assert streamed.status_code == 200
    version = streamed.headers["x-sovereign-model-version"]
    assert (
        streamed.headers["x-sovereign-model-digest"]
        == {
            "stable": DIGEST_A,
            "canary": DIGEST_B,
        }[version]
    )
