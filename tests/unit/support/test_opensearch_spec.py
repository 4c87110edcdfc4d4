"""tests/support/opensearch_spec.py: request bodies checked against the vendored
OpenSearch API specification, with and without strict keys."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.opensearch_spec import SpecViolation, body_schema_uri, validate_request

KNN_INDEX: dict[str, Any] = {
    "settings": {
        "index": {
            "knn": True,
            "knn.algo_param.ef_search": 100,
            "number_of_shards": 1,
            "number_of_replicas": 1,
        }
    },
    "mappings": {
        "properties": {
            "embedding": {
                "type": "knn_vector",
                "dimension": 384,
                "method": {
                    "name": "hnsw",
                    "engine": "faiss",
                    "space_type": "cosinesimil",
                    "parameters": {"m": 16, "ef_construction": 100},
                },
            },
            "text": {"type": "text"},
            "acl": {"type": "keyword"},
            "doc_id": {"type": "keyword"},
        }
    },
}


def test_a_knn_index_passes() -> None:
    validate_request("indices.create", KNN_INDEX)


def test_a_misspelled_key_is_rejected_in_strict_mode_only() -> None:
    body = copy.deepcopy(KNN_INDEX)
    embedding = body["mappings"]["properties"]["embedding"]
    embedding["methd"] = embedding.pop("method")
    # The specification itself allows any extra key: only strict mode sees it.
    validate_request("indices.create", body, strict=False)
    with pytest.raises(SpecViolation) as raised:
        validate_request("indices.create", body)
    message = str(raised.value)
    assert message.startswith("indices.create: $.mappings.properties.embedding.methd:")
    assert "did you mean 'method'?" in message


def test_a_wrong_type_is_rejected() -> None:
    body = copy.deepcopy(KNN_INDEX)
    body["mappings"]["properties"]["embedding"]["dimension"] = "384 floats"
    where = r"^indices\.create: \$\.mappings\.properties\.embedding\.dimension: "
    with pytest.raises(SpecViolation, match=where + ".*integer"):
        validate_request("indices.create", body, strict=False)


def test_a_missing_required_key_is_rejected() -> None:
    body = copy.deepcopy(KNN_INDEX)
    del body["mappings"]["properties"]["embedding"]["dimension"]
    with pytest.raises(SpecViolation, match="indices.create"):
        validate_request("indices.create", body)


def test_a_filtered_knn_search_passes() -> None:
    validate_request(
        "search",
        {
            "size": 10,
            "query": {
                "knn": {
                    "embedding": {
                        "vector": [0.1, 0.2, 0.3],
                        "k": 10,
                        "filter": {
                            "bool": {
                                "must": [
                                    {"terms": {"acl": ["grp-a", "grp-b"]}},
                                    {"term": {"lang": "de"}},
                                ]
                            }
                        },
                    }
                }
            },
        },
    )


def test_a_misspelled_search_key_is_rejected() -> None:
    with pytest.raises(SpecViolation, match=r"search: \$\.qurey: .*did you mean 'query'"):
        validate_request("search", {"qurey": {"match_all": {}}})


def test_an_alias_swap_passes() -> None:
    validate_request(
        "indices.update_aliases",
        {
            "actions": [
                {"remove": {"index": "chunks_v1", "alias": "chunks"}},
                {"add": {"index": "chunks_v2", "alias": "chunks", "is_write_index": True}},
            ]
        },
    )


def test_an_alias_with_a_wrong_type_is_rejected() -> None:
    with pytest.raises(SpecViolation, match="indices.update_aliases"):
        body = {"actions": [{"add": {"index": 5, "alias": "x"}}]}
        validate_request("indices.update_aliases", body)


def test_bulk_lines_pass_and_a_bad_action_line_is_rejected() -> None:
    lines: list[dict[str, Any]] = [
        {"index": {"_index": "chunks_v2", "_id": "1"}},
        {"text": "a", "embedding": [0.1, 0.2], "acl": ["grp-a"]},
        {"update": {"_index": "chunks_v2", "_id": "2"}},
        {"doc": {"acl": ["grp-b"]}},
        {"delete": {"_index": "chunks_v2", "_id": "3"}},
    ]
    validate_request("bulk", lines)
    with pytest.raises(SpecViolation, match=r"bulk: \$\[0\]\.index\._idd: .*'_id'"):
        validate_request("bulk", [{"index": {"_index": "chunks_v2", "_idd": "1"}}, {"text": "a"}])
    with pytest.raises(SpecViolation, match=r"bulk: \$\[0\]: 'index' needs a data line"):
        validate_request("bulk", [{"index": {"_index": "chunks_v2"}}])


def test_settings_and_repository_bodies() -> None:
    validate_request("snapshot.create_repository", {"type": "fs", "settings": {"location": "/srv"}})
    breaker = {"knn.memory.circuit_breaker.limit": "50%"}
    validate_request("cluster.put_settings", {"persistent": breaker})
    validate_request("indices.put_settings", {"index": {"knn.algo_param.ef_search": 100}})
    with pytest.raises(SpecViolation, match="snapshot.create_repository"):
        validate_request("snapshot.create_repository", {"settings": {"location": "/srv"}})


def test_an_unknown_operation_is_named() -> None:
    with pytest.raises(KeyError, match="indices.creat"):
        body_schema_uri("indices.creat")
