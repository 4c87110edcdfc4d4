"""Strict type checks of inventory values against an argument-spec option.

Ansible's own argument-spec validation converts on the way in: the string
``"vim"`` becomes the list ``["vim"]`` and ``"yes"`` becomes ``True``. In an
inventory that is almost always a mistake (a list written as a scalar, a
quoted boolean), so this check is strict: the YAML type must already be the
declared type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_SCALAR_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def describe(value: Any) -> str:
    """Name a value's YAML type the way an inventory author thinks of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(path: str, value: Any, option: Mapping[str, Any]) -> list[str]:
    """Return the problems of ``value`` against one option spec; empty when it fits."""
    kind = option.get("type", "str")
    problems = _check_type(path, value, kind, option)
    if problems:
        return problems
    choices = option.get("choices")
    if choices is not None:
        candidates = value if kind == "list" else [value]
        for candidate in candidates:
            if candidate not in choices:
                allowed = ", ".join(repr(choice) for choice in choices)
                problems.append(f"{path}: {_preview(candidate)} is not one of {allowed}")
    return problems


def _check_type(path: str, value: Any, kind: str, option: Mapping[str, Any]) -> list[str]:
    if kind == "raw":
        return []
    if value is None:
        if option.get("required"):
            return [f"{path}: is required but is null"]
        # An explicit null leaves the role's default in force only for
        # options documented as nullable; everything else must be set.
        if "default" in option and option["default"] is None:
            return []
        return [
            f"{path}: is null; remove it to keep the role default, or set a value of type {kind}"
        ]
    if kind in ("str", "path"):
        return _expect(path, value, str)
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("yes", "no", "true", "false", "on", "off"):
            hint = "write true or false unquoted"
            return [f"{path}: expected a boolean, got the string {value!r}; {hint}"]
        return _expect(path, value, bool)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {describe(value)} ({_preview(value)})"]
        return []
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{path}: expected a number, got {describe(value)} ({_preview(value)})"]
        return []
    if kind == "list":
        return _check_list(path, value, option)
    if kind == "dict":
        return _check_dict(path, value, option)
    return [
        f"{path}: the role's argument spec uses type {kind!r}, which the validator does not know"
    ]


def _expect(path: str, value: Any, expected: type) -> list[str]:
    if isinstance(value, bool) and expected is not bool:
        return [f"{path}: expected {_SCALAR_NAMES[expected]}, got a boolean ({value!r})"]
    if not isinstance(value, expected):
        return [
            f"{path}: expected {_SCALAR_NAMES[expected]}, got {describe(value)} ({_preview(value)})"
        ]
    return []


def _check_list(path: str, value: Any, option: Mapping[str, Any]) -> list[str]:
    if isinstance(value, str) or isinstance(value, Mapping) or not isinstance(value, Sequence):
        hint = ""
        if isinstance(value, str):
            hint = f"; write it as a YAML list: [{value}]"
        return [f"{path}: expected a list, got {describe(value)} ({_preview(value)}){hint}"]
    elements = option.get("elements")
    if elements is None:
        return []
    element_spec: dict[str, Any] = {"type": elements, "required": True}
    if "options" in option:
        element_spec["options"] = option["options"]
    problems: list[str] = []
    for index, item in enumerate(value):
        problems.extend(check_value(f"{path}[{index}]", item, element_spec))
    return problems


def _check_dict(path: str, value: Any, option: Mapping[str, Any]) -> list[str]:
    if not isinstance(value, Mapping):
        return [f"{path}: expected a mapping, got {describe(value)} ({_preview(value)})"]
    suboptions = option.get("options")
    if suboptions is None:
        return []
    problems: list[str] = []
    for key in value:
        if key not in suboptions:
            known = ", ".join(sorted(suboptions))
            problems.append(f"{path}: unknown key {key!r} (known keys: {known})")
    for key, suboption in suboptions.items():
        if key in value:
            problems.extend(check_value(f"{path}.{key}", value[key], suboption))
        elif suboption.get("required"):
            problems.append(f"{path}: missing required key {key!r}")
    return problems
