"""The OpenSearch backend without a cluster: each request body against OpenSearch's
published API specification, and the client's handling of answers (httpx
MockTransport). The contract suite (test_contract.py) runs it against a real
cluster when SOVEREIGN_OPENSEARCH_URL names one (conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from sovereign.retrieval.acl import Acl, principals_of
from sovereign.retrieval.backend import Query
from sovereign.retrieval.errors import BackendError, BindingMismatch, IndexNotFound
from sovereign.retrieval.opensearch import (
    KnnSettings,
    OpenSearchBackend,
    alias_body,
    bulk_lines,
    count_body,
    documents_body,
    index_body,
    knn_body,
    lexical_body,
    records_body,
    stale_chunks_body,
)
from tests.support.opensearch_spec import validate_request

from .conftest import HashEmbedder, binding_for, make_chunk

EMBEDDER = HashEmbedder()
QUERY = Query(
    text="corporate loan limit",
    vector=EMBEDDER.vector("corporate loan limit"),
    embedding_digest=EMBEDDER.digest,
    principals=principals_of("bob", ["analysts", "risk-officers"]),
)
CHUNK = make_chunk("limits", 0, "loans above five million", Acl.of(groups=["risk-officers"]))


@pytest.mark.parametrize("engine", ["faiss", "lucene"])
def test_the_index_body_is_valid_and_carries_the_binding(engine: str) -> None:
    knn = KnnSettings(engine=engine, m=24, ef_construction=256)  # type: ignore[arg-type]
    body = index_body(binding_for(EMBEDDER), knn)
    validate_request("indices.create", body)
    method = body["mappings"]["properties"]["embedding"]["method"]
    assert (method["engine"], method["parameters"]) == (engine, {"m": 24, "ef_construction": 256})
    assert body["mappings"]["_meta"]["sovereign_binding"] == binding_for(EMBEDDER).to_json()


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("search", knn_body(QUERY)),
        ("search", lexical_body(["corporate", "loan"], QUERY)),
        ("search", records_body(None)),
        ("search", records_body("limits")),
        ("delete_by_query", documents_body(["limits"])),
        ("delete_by_query", stale_chunks_body(["limits"], ["limits#0"])),
        ("count", count_body()),
        ("count", count_body(["limits"])),
        ("indices.update_aliases", alias_body("chunks", "chunks-abc", "chunks-old")),
        ("indices.update_aliases", alias_body("chunks", "chunks-abc", None)),
        (
            "bulk",
            bulk_lines("chunks-abc", [CHUNK], EMBEDDER.embed([CHUNK.text]), {"limits": "sha256:x"}),
        ),
    ],
)
def test_every_request_body_is_valid_against_the_specification(
    operation: str, body: object
) -> None:
    validate_request(operation, body)


def test_the_knn_filter_is_the_readers_access_list_inside_the_knn_query() -> None:
    knn = knn_body(QUERY)["query"]["knn"]["embedding"]
    assert knn["k"] == QUERY.candidates
    assert knn["filter"]["bool"]["filter"][0] == {
        "terms": {"acl": ["group:analysts", "group:risk-officers", "user:bob"]}
    }


Handler = Callable[[httpx.Request], httpx.Response]


def backend(handler: Handler) -> OpenSearchBackend:
    return OpenSearchBackend(
        "https://search.example:9200", ("u", "p"), transport=httpx.MockTransport(handler)
    )


def test_create_index_puts_the_body_once_and_checks_an_existing_binding() -> None:
    binding = binding_for(EMBEDDER)
    index = binding.index_name("chunks")
    seen: list[tuple[str, str]] = []
    exists = False

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal exists
        seen.append((request.method, request.url.path))
        if request.method == "HEAD":
            return httpx.Response(200 if exists else 404)
        if request.method == "PUT":
            validate_request("indices.create", json.loads(request.content))
            exists = True
            return httpx.Response(200, json={"acknowledged": True})
        meta = {"sovereign_binding": binding_for(EMBEDDER, chunker="sha256:" + "99" * 32).to_json()}
        return httpx.Response(200, json={index: {"mappings": {"_meta": meta}}})

    client = backend(handle)
    assert client.create_index(index, binding) is True
    with pytest.raises(BindingMismatch):
        client.create_index(index, binding)
    assert seen[:2] == [("HEAD", f"/{index}"), ("PUT", f"/{index}")]


def test_the_alias_switch_is_one_call_removing_and_adding() -> None:
    bodies: list[object] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(200)
        if request.url.path == "/_alias/chunks":
            return httpx.Response(200, json={"chunks-old": {"aliases": {"chunks": {}}}})
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"acknowledged": True})

    backend(handle).switch_alias("chunks", "chunks-new")
    assert bodies == [
        {
            "actions": [
                {"remove": {"index": "chunks-old", "alias": "chunks"}},
                {"add": {"index": "chunks-new", "alias": "chunks"}},
            ]
        }
    ]


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (httpx.Response(404, json={"error": "no such index"}), IndexNotFound, "not found"),
        (httpx.Response(429, json={"error": "circuit_breaking_exception"}), BackendError, "429"),
        (httpx.Response(401, text="Unauthorized"), BackendError, "401"),
    ],
)
def test_answers_are_mapped_to_the_services_errors(
    answer: httpx.Response, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        backend(lambda request: answer).count("chunks-abc")


def test_an_unreachable_cluster_and_a_partial_bulk_are_backend_errors() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(BackendError, match="could not be reached"):
        backend(down).count("chunks-abc")

    def partial(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("_mapping"):
            meta = {"sovereign_binding": binding_for(EMBEDDER).to_json()}
            return httpx.Response(200, json={"chunks-abc": {"mappings": {"_meta": meta}}})
        item = {"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}
        return httpx.Response(200, json={"errors": True, "items": [item]})

    with pytest.raises(BackendError, match="mapper_parsing_exception"):
        backend(partial).write(
            "chunks-abc",
            [CHUNK],
            EMBEDDER.embed([CHUNK.text]),
            {"limits": "sha256:x"},
            EMBEDDER.digest,
        )
