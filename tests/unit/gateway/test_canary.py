"""The canary split: weights hold over many users, and a user stays put."""

from __future__ import annotations

from collections import Counter

import pytest

from sovereign.gateway.canary import BUCKETS, CanarySplit, bucket
from sovereign.gateway.routing import Router
from tests.unit.gateway.conftest import Harness, chat, make_config

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
