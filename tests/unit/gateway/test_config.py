"""The configuration: the sample loads; every problem names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sovereign.gateway.config import load_config, parse_config
from sovereign.gateway.errors import ConfigError
from tests.unit.gateway.conftest import BASE_CONFIG, make_config

SAMPLE = Path(__file__).parents[3] / "docs" / "gateway.example.yml"


def _sample(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    # TLS files must exist: point them at files made here.
    for name in ("cert", "key"):
        (tmp_path / name).write_text("x")
        data["tls"][name] = str(tmp_path / name)
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "gateway.yml")
    return list(caught.value.problems)


def test_the_sample_configuration_is_valid(tmp_path: Path) -> None:
    config = parse_config(_sample(tmp_path), str(SAMPLE))
    assert config.models["llama-3.1-70b"].versions[1].weight == 5
    assert config.identity.oidc is not None and config.identity.oidc.claims.groups


def test_the_test_configuration_is_valid() -> None:
    assert make_config().routing.rules[0].action == "deny"


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("routing", "rules", 1, "tier"), "gold", "routing.rules[1].tier: unknown tier 'gold'"),
        (
            ("models", "tiny", "versions", 1, "weight"),
            6,
            "models.tiny.versions: weights sum to 101",
        ),
        (
            ("identity", "trusted_header", "proxies"),
            ["10.0.0.0/33"],
            "identity.trusted_header.proxies: '10.0.0.0/33' is not an address or a network",
        ),
        (("identity", "oidc", "algorithms"), ["RS256", "HS256"], "not allowed: HS256"),
        (("identity", "oidc", "algorithms"), ["none"], "identity.oidc.algorithms: not allowed"),
        (("routing", "rules", 2, "models"), ["huge"], "routing.rules[2].models: unknown model"),
        (("routing", "rules", 1, "data_classes"), ["phi", "pii"], "unknown data class 'pii'"),
        (("admission", "max_tokens_cap"), 0, "admission.max_tokens_cap: Input should be greater"),
        (("admission", "max_token_cap"), 5, "admission.max_token_cap: unknown key"),
        (("models", "tiny", "versions", 0, "digest"), "abc", "versions[0].digest: expected"),
        (("redis_url"), "http://redis", "redis_url: expected redis://"),
        (("routing", "data_classes"), ["public", "bad class"], "routing.data_classes[1]"),
    ],
)
def test_each_problem_names_its_key(path: Any, value: object, problem: str) -> None:
    import copy

    data = copy.deepcopy(BASE_CONFIG)
    keys = path if isinstance(path, tuple) else (path,)
    target: Any = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    problems = _problems(data)
    assert any(problem in line for line in problems), problems


def test_a_rule_naming_a_model_missing_from_its_tier_is_refused() -> None:
    import copy

    data = copy.deepcopy(BASE_CONFIG)
    data["routing"]["rules"][3]["models"] = ["big"]
    assert any("has no backend in tier 'general'" in p for p in _problems(data))


def test_all_problems_are_reported_at_once() -> None:
    import copy

    data = copy.deepcopy(BASE_CONFIG)
    data["routing"]["rules"][1]["tier"] = "gold"
    data["routing"]["rules"][2]["tier"] = "silver"
    assert len(_problems(data)) == 2


def test_missing_required_keys_are_named() -> None:
    assert "models: Field required" in _problems({"identity": {}, "redis_url": "redis://x"})


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("listen: [\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(bad)
