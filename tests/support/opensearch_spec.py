"""Validate OpenSearch REST request bodies against OpenSearch's own API
specification, offline.

The specification (opensearch-project/opensearch-api-specification, OpenAPI
3.1 split into one YAML file per namespace and schema category) is vendored
under ``tests/fixtures/opensearch-api-spec/``: only the files the request
bodies below reach through ``$ref``. Every file is loaded into one
``referencing.Registry`` (JSON Schema 2020-12) under its ``file://`` URI, so
the specification's relative references (``../schemas/x.yaml#/...``)
resolve as written, and a body is validated with jsonschema's
``Draft202012Validator``.

The specification never says ``additionalProperties: false``: a misspelled
optional key (``"methd"`` for ``"method"``) validates clean. Strict mode (the
default) also walks the body beside its schema and rejects a key that no
schema declares where the schema does declare ``properties`` (and allows no
additional ones). Where ``anyOf``/``oneOf`` leave the shape open, the
branches the value validates against are used (all of them when none does),
and a key declared by any of them is accepted.

    validate_request("indices.create", {"settings": {...}, "mappings": {...}})
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "opensearch-api-spec" / "spec"

JSON = "application/json"
NDJSON = "application/x-ndjson"

# Operation -> (namespace file, content type) of its request body.
OPERATIONS: dict[str, tuple[str, str]] = {
    "bulk": ("namespaces/_core.yaml", NDJSON),
    "count": ("namespaces/_core.yaml", JSON),
    "delete_by_query": ("namespaces/_core.yaml", JSON),
    "search": ("namespaces/_core.yaml", JSON),
    "indices.create": ("namespaces/indices.yaml", JSON),
    "indices.put_index_template": ("namespaces/indices.yaml", JSON),
    "indices.put_settings": ("namespaces/indices.yaml", JSON),
    "indices.update_aliases": ("namespaces/indices.yaml", JSON),
    "snapshot.create_repository": ("namespaces/snapshot.yaml", JSON),
    "cluster.put_settings": ("namespaces/cluster.yaml", JSON),
    "search_pipeline.put": ("namespaces/search_pipeline.yaml", JSON),
}

# A bulk body alternates action lines and, for these actions, a data line.
_BULK_ACTIONS = ("index", "create", "update", "delete")
_BULK_WITH_DATA = ("index", "create", "update")
_BULK_SCHEMAS = "schemas/_core.bulk.yaml#/components/schemas/"


class SpecViolation(AssertionError):
    """A request body the OpenSearch API specification does not allow."""


@dataclass(frozen=True)
class _Spec:
    """The loaded specification: each file's contents by URI, and the registry."""

    documents: Mapping[str, Any]
    registry: Registry[Any]


def _uri(relative: str) -> str:
    return f"{SPEC_DIR.as_uri()}/{relative}"


@functools.cache
def _spec() -> _Spec:
    """Load every vendored file once (a few seconds; tests share the result)."""
    documents: dict[str, Any] = {}
    for path in sorted(SPEC_DIR.rglob("*.yaml")):
        documents[path.as_uri()] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not documents:
        raise FileNotFoundError(f"{SPEC_DIR}: the vendored OpenSearch API specification is missing")
    registry: Registry[Any] = Registry().with_resources(
        (uri, DRAFT202012.create_resource(contents)) for uri, contents in documents.items()
    )
    return _Spec(documents=documents, registry=registry.crawl())


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _lookup(spec: _Spec, uri: str) -> Any:
    """The schema at ``uri`` (a file URI with a JSON pointer fragment)."""
    document_uri, fragment = urldefrag(uri)
    node = spec.documents[document_uri]
    for token in fragment.lstrip("/").split("/") if fragment else []:
        key = token.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def body_schema_uri(operation: str) -> str:
    """The URI of ``operation``'s request body schema in the vendored files."""
    if operation not in OPERATIONS:
        raise KeyError(f"{operation!r} is not a known operation (known: {sorted(OPERATIONS)})")
    namespace, content_type = OPERATIONS[operation]
    pointer = "/".join(
        ("components", "requestBodies", _escape(operation), "content", _escape(content_type))
    )
    return f"{_uri(namespace)}#/{pointer}/schema"


@functools.cache
def _validator(uri: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": uri}, registry=_spec().registry)


def _path(parts: Sequence[str | int]) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _check_schema(operation: str, uri: str, body: object, prefix: Sequence[str | int]) -> None:
    errors = list(_validator(uri).iter_errors(body))
    if not errors:
        return
    error = best_match(errors)
    where = _path([*prefix, *error.absolute_path])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise SpecViolation(f"{operation}: {where}: {error.message}{more}")


# --- strict mode --------------------------------------------------------------


def _flatten(spec: _Spec, uris: Sequence[str], instance: object) -> list[tuple[str, Any]]:
    """The schemas that apply to ``instance``: references followed, allOf
    expanded, and of anyOf/oneOf the branches the instance is valid against
    (every branch when none is)."""
    flat: list[tuple[str, Any]] = []
    pending = list(uris)
    seen: set[str] = set()
    while pending:
        uri = pending.pop(0)
        if uri in seen:
            continue
        seen.add(uri)
        schema = _lookup(spec, uri)
        if not isinstance(schema, Mapping):
            flat.append((uri, schema))
            continue
        flat.append((uri, schema))
        if isinstance(schema.get("$ref"), str):
            pending.append(urljoin(uri, schema["$ref"]))
        for index, _ in enumerate(schema.get("allOf", [])):
            pending.append(f"{uri}/allOf/{index}")
        for keyword in ("anyOf", "oneOf"):
            count = len(schema.get(keyword, []))
            branches = [f"{uri}/{keyword}/{index}" for index in range(count)]
            valid = [branch for branch in branches if _validator(branch).is_valid(instance)]
            pending.extend(valid or branches)
    return flat


def _undeclared(
    spec: _Spec, uris: Sequence[str], instance: object, path: list[str | int]
) -> Iterator[tuple[list[str | int], list[str]]]:
    """Each key of ``instance`` no applicable schema declares, with the keys
    that are declared there."""
    flat = _flatten(spec, uris, instance)
    if isinstance(instance, Mapping):
        declared: list[str] = []
        closed = False
        open_ = False
        for _, schema in flat:
            if schema is True or (isinstance(schema, Mapping) and not schema):
                open_ = True
            if not isinstance(schema, Mapping):
                continue
            if "properties" in schema or "patternProperties" in schema:
                closed = True
                declared.extend(schema.get("properties", {}))
            if schema.get("additionalProperties", False) is not False:
                open_ = True
        for key, value in instance.items():
            children: list[str] = []
            for uri, schema in flat:
                if not isinstance(schema, Mapping):
                    continue
                properties = schema.get("properties", {})
                if key in properties:
                    children.append(f"{uri}/properties/{_escape(key)}")
                    continue
                patterns = schema.get("patternProperties", {})
                matched = [p for p in patterns if re.search(p, key)]
                children.extend(f"{uri}/patternProperties/{_escape(p)}" for p in matched)
                extra = schema.get("additionalProperties")
                if not matched and isinstance(extra, Mapping):
                    children.append(f"{uri}/additionalProperties")
            if children:
                yield from _undeclared(spec, children, value, [*path, key])
            elif closed and not open_:
                yield [*path, key], sorted(set(declared))
    elif isinstance(instance, list):
        for index, item in enumerate(instance):
            children = []
            for uri, schema in flat:
                if not isinstance(schema, Mapping):
                    continue
                prefix_items = schema.get("prefixItems", [])
                if index < len(prefix_items):
                    children.append(f"{uri}/prefixItems/{index}")
                elif isinstance(schema.get("items"), Mapping):
                    children.append(f"{uri}/items")
            if children:
                yield from _undeclared(spec, children, item, [*path, index])


def _check_strict(operation: str, uri: str, body: object, prefix: Sequence[str | int]) -> None:
    for where, declared in _undeclared(_spec(), [uri], body, list(prefix)):
        key = str(where[-1])
        close = difflib.get_close_matches(key, declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecViolation(
            f"{operation}: {_path(where)}: key {key!r} is not declared by the API "
            f"specification{hint} (declared there: {declared})"
        )


def _check_bulk_lines(body: object, strict: bool) -> None:
    """Strict mode for bulk: each action line against OperationContainer, each
    update's data line against UpdateAction; index/create documents are free."""
    if not isinstance(body, list):
        return
    index = 0
    while index < len(body):
        line = body[index]
        actions = [key for key in line if key in _BULK_ACTIONS] if isinstance(line, dict) else []
        if not (isinstance(line, dict) and len(line) == 1 and actions):
            raise SpecViolation(
                f"bulk: {_path([index])}: expected an action line with one of "
                f"{list(_BULK_ACTIONS)}, got {line!r}"
            )
        operation = _uri(_BULK_SCHEMAS + "OperationContainer")
        _check_schema("bulk", operation, line, [index])
        if strict:
            _check_strict("bulk", operation, line, [index])
        action = actions[0]
        if action in _BULK_WITH_DATA:
            if index + 1 >= len(body):
                raise SpecViolation(f"bulk: {_path([index])}: {action!r} needs a data line")
            if action == "update":
                update = _uri(_BULK_SCHEMAS + "UpdateAction")
                _check_schema("bulk", update, body[index + 1], [index + 1])
                if strict:
                    _check_strict("bulk", update, body[index + 1], [index + 1])
            elif not isinstance(body[index + 1], dict):
                raise SpecViolation(f"bulk: {_path([index + 1])}: a document must be an object")
            index += 2
        else:
            index += 1


def validate_request(operation: str, body: object, *, strict: bool = True) -> None:
    """Raise :class:`SpecViolation` unless ``body`` is a valid request body of
    ``operation`` (e.g. ``"indices.create"``; ``"bulk"`` takes the ndjson
    lines as a list of dicts). The message names the operation and the JSON
    path of the first problem. ``strict`` also rejects undeclared keys."""
    uri = body_schema_uri(operation)
    _check_schema(operation, uri, body, [])
    if operation == "bulk":
        _check_bulk_lines(body, strict)
    elif strict:
        _check_strict(operation, uri, body, [])
