from __future__ import annotations

from pathlib import Path

import pytest

from sovereign.inventory.argspec import load_role_spec, load_role_specs
from sovereign.inventory.errors import SpecError


def write_spec(roles: Path, role: str, text: str) -> Path:
    meta = roles / role / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text(text, encoding="utf-8")
    return roles / role


def test_loads_main_options_and_required(tmp_path: Path) -> None:
    role = write_spec(
        tmp_path,
        "pki",
        """
argument_specs:
  main:
    options:
      pki_ca_host: {type: str, required: true}
      pki_valid_days: {type: int, default: 365}
""",
    )
    spec = load_role_spec(role)
    assert spec.role == "pki"
    assert spec.prefix == "pki_"
    assert set(spec.options) == {"pki_ca_host", "pki_valid_days"}
    assert spec.required_options() == ["pki_ca_host"]


def test_loads_every_role_that_has_a_spec(tmp_path: Path) -> None:
    write_spec(tmp_path, "a", "argument_specs: {main: {options: {a_x: {type: str}}}}")
    (tmp_path / "no_spec" / "tasks").mkdir(parents=True)
    assert list(load_role_specs(tmp_path)) == ["a"]


def test_the_real_roles_load() -> None:
    roles = Path(__file__).resolve().parents[3] / "roles"
    specs = load_role_specs(roles)
    assert {"common", "pki"} <= set(specs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("argument_specs: [", "is not valid YAML"),
        ("- a list", "expected a mapping with 'argument_specs'"),
        ("argument_specs: {other: {}}", "has no 'argument_specs.main' entry point"),
        (
            "argument_specs: {main: {options: [a]}}",
            "'argument_specs.main.options' must be a mapping",
        ),
        ("argument_specs: {main: {options: {x: 1}}}", "option 'x' must be a mapping"),
    ],
)
def test_malformed_specs_name_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    role = write_spec(tmp_path, "bad", text)
    with pytest.raises(SpecError, match=message) as caught:
        load_role_spec(role)
    assert str(role / "meta" / "argument_specs.yml") in str(caught.value)


def test_a_missing_roles_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="roles directory not found"):
        load_role_specs(tmp_path / "nowhere")


def test_an_unreadable_spec_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "r" / "meta" / "argument_specs.yml").mkdir(parents=True)
    with pytest.raises(SpecError, match="cannot be read"):
        load_role_spec(tmp_path / "r")
