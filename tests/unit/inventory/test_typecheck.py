from __future__ import annotations

from typing import Any

import pytest

from sovereign.inventory.typecheck import check_value, describe

SERVERS = {"type": "list", "elements": "str"}
ACCOUNTS = {
    "type": "list",
    "elements": "dict",
    "options": {
        "name": {"type": "str", "required": True},
        "system": {"type": "bool", "default": True},
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "a boolean"),
        (3, "an integer"),
        (1.5, "a number"),
        ("x", "a string"),
        ({}, "a mapping"),
        ([], "a list"),
    ],
)
def test_describe_names_yaml_types(value: Any, expected: str) -> None:
    assert describe(value) == expected


def test_a_list_passes() -> None:
    assert check_value("common_x", ["a", "b"], SERVERS) == []


def test_a_string_where_a_list_is_expected_fails_with_a_hint() -> None:
    problems = check_value("common_x", "ntp1.example", SERVERS)
    assert problems == [
        "common_x: expected a list, got a string ('ntp1.example'); "
        "write it as a YAML list: [ntp1.example]"
    ]


def test_list_elements_are_checked_with_their_index() -> None:
    assert check_value("common_x", ["a", 3], SERVERS) == [
        "common_x[1]: expected a string, got an integer (3)"
    ]


@pytest.mark.parametrize("text", ["yes", "no", "True", "off"])
def test_a_quoted_boolean_is_refused(text: str) -> None:
    problems = check_value("common_x_enabled", text, {"type": "bool"})
    assert problems == [
        f"common_x_enabled: expected a boolean, got the string {text!r}; "
        "write true or false unquoted"
    ]


def test_a_boolean_is_not_an_integer() -> None:
    assert check_value("n", True, {"type": "int"}) == [
        "n: expected an integer, got a boolean (True)"
    ]
    assert check_value("n", 7, {"type": "int"}) == []


def test_a_number_accepts_integers_but_not_strings() -> None:
    assert check_value("f", 2, {"type": "float"}) == []
    assert check_value("f", "2", {"type": "float"}) == ["f: expected a number, got a string ('2')"]


def test_a_string_is_not_a_boolean() -> None:
    assert check_value("s", False, {"type": "str"}) == [
        "s: expected a string, got a boolean (False)"
    ]


def test_nested_options_report_unknown_and_missing_keys() -> None:
    problems = check_value("common_accounts", [{"nmae": "svc"}], ACCOUNTS)
    assert problems == [
        "common_accounts[0]: unknown key 'nmae' (known keys: name, system)",
        "common_accounts[0]: missing required key 'name'",
    ]


def test_nested_option_types_are_checked() -> None:
    problems = check_value("common_accounts", [{"name": "svc", "system": "yes"}], ACCOUNTS)
    assert problems == [
        "common_accounts[0].system: expected a boolean, got the string 'yes'; "
        "write true or false unquoted"
    ]


def test_choices_are_enforced_for_scalars_and_list_elements() -> None:
    scalar = {"type": "str", "choices": ["upstream", "mirror"]}
    assert check_value("m", "mirror", scalar) == []
    assert check_value("m", "proxy", scalar) == ["m: 'proxy' is not one of 'upstream', 'mirror'"]
    listed = {"type": "list", "elements": "str", "choices": ["a", "b"]}
    assert check_value("l", ["a", "c"], listed) == ["l: 'c' is not one of 'a', 'b'"]


def test_null_is_refused_unless_the_default_is_null() -> None:
    assert check_value("x", None, {"type": "str", "default": "a"}) == [
        "x: is null; remove it to keep the role default, or set a value of type str"
    ]
    assert check_value("x", None, {"type": "str", "default": None}) == []
    assert check_value("x", None, {"type": "str", "required": True}) == [
        "x: is required but is null"
    ]


def test_a_mapping_where_a_list_is_expected_fails() -> None:
    assert check_value("l", {"a": 1}, {"type": "list"}) == [
        "l: expected a list, got a mapping ({'a': 1})"
    ]


def test_raw_accepts_anything_and_unknown_types_are_reported() -> None:
    assert check_value("r", {"a": [1]}, {"type": "raw"}) == []
    assert check_value("j", "x", {"type": "jsonarg"}) == [
        "j: the role's argument spec uses type 'jsonarg', which the validator does not know"
    ]


def test_long_values_are_shortened_in_messages() -> None:
    (problem,) = check_value("d", "x" * 200, {"type": "dict"})
    assert problem.endswith("...)")
    assert len(problem) < 120
