"""The OpenSearch backend: k-NN and BM25 in one cluster, behind the same contract.

Each chunk is one document of the index: its text fields, its vector
(``knn_vector``), and its access list as a multi-valued keyword field. The
vector search is a ``knn`` query with the access list as its ``filter``
(OpenSearch's efficient filtering: the filter is applied during the graph
search, so k allowed chunks come back when k exist); the lexical search is a
``match`` inside a ``bool`` whose ``filter`` is the same access list. The two
ranked lists are fused in ``Backend.search`` exactly as for the embedded
backend. Every request body comes from a function of this module, and the
tests validate each against OpenSearch's published API specification
(tests/support/opensearch_spec.py).

Besides its chunks an index holds one record per source document
(``kind: document``: its id and ingestion digest), so a re-run knows what
changed. The binding is the mapping's ``_meta``; an alias switch is one
``_aliases`` call (atomic in OpenSearch).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from sovereign.retrieval.backend import Backend, Hit, Query, Ranked
from sovereign.retrieval.binding import IndexBinding, check_alias, check_name
from sovereign.retrieval.chunk import Chunk
from sovereign.retrieval.errors import BackendError, BindingMismatch, IndexNotFound

NAMESPACE = re.compile(r"^[a-z0-9_-]{0,32}$")
PAGE = 1000
_SOURCE = ["chunk_id", "doc_id", "title", "heading", "text", "source", "data_class"]


@dataclass(frozen=True)
class KnnSettings:
    """The HNSW graph of each index (the opensearch role's defaults, docs/opensearch.md)."""

    engine: Literal["faiss", "lucene"] = "faiss"
    m: int = 16
    ef_construction: int = 128
    ef_search: int = 100
    shards: int = 1
    replicas: int = 1


# -- request bodies: pure functions, validated against the API specification ------


def index_body(binding: IndexBinding, knn: KnnSettings) -> dict[str, Any]:
    """``PUT /<index>``: settings, the chunk mapping and the binding in ``_meta``."""
    keyword = {"type": "keyword"}
    return {
        "settings": {
            "index": {
                "number_of_shards": knn.shards,
                "number_of_replicas": knn.replicas,
                "knn": True,
                "knn.algo_param.ef_search": knn.ef_search,
            }
        },
        "mappings": {
            "dynamic": "strict",
            "_meta": {"sovereign_binding": binding.to_json()},
            "properties": {
                "kind": keyword,
                "chunk_id": keyword,
                "doc_id": keyword,
                "digest": keyword,
                "acl": keyword,
                "ordinal": {"type": "integer"},
                "title": {"type": "text"},
                "heading": {"type": "text"},
                "text": {"type": "text"},
                "source": keyword,
                "data_class": keyword,
                "updated": keyword,
                "embedding": {
                    "type": "knn_vector",
                    "dimension": binding.dimension,
                    "method": {
                        "name": "hnsw",
                        "engine": knn.engine,
                        "space_type": "cosinesimil",
                        "parameters": {"m": knn.m, "ef_construction": knn.ef_construction},
                    },
                },
            },
        },
    }


def bulk_lines(
    index: str,
    chunks: Sequence[Chunk],
    vectors: Sequence[Sequence[float]],
    doc_digests: dict[str, str],
) -> list[dict[str, Any]]:
    """``POST /_bulk``: each chunk and each document record, by id (a re-write replaces)."""
    lines: list[dict[str, Any]] = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        doc = chunk.doc
        lines.append({"index": {"_index": index, "_id": "chunk:" + chunk.chunk_id}})
        lines.append(
            {
                "kind": "chunk",
                "chunk_id": chunk.chunk_id,
                "doc_id": doc.doc_id,
                "ordinal": chunk.ordinal,
                "acl": list(doc.acl.principals),
                "title": doc.title,
                "heading": chunk.heading,
                "text": chunk.text,
                "source": doc.source,
                "data_class": doc.data_class,
                "updated": doc.updated,
                "embedding": [float(v) for v in vector],
            }
        )
    for doc_id, digest in doc_digests.items():
        lines.append({"index": {"_index": index, "_id": "document:" + doc_id}})
        lines.append({"kind": "document", "doc_id": doc_id, "digest": digest})
    return lines


def _allowed(principals: frozenset[str]) -> list[dict[str, Any]]:
    return [{"terms": {"acl": sorted(principals)}}, {"term": {"kind": "chunk"}}]


def knn_body(query: Query) -> dict[str, Any]:
    """``POST /<index>/_search``: k nearest, the access list applied inside the k-NN search."""
    return {
        "size": query.candidates,
        "_source": _SOURCE,
        "query": {
            "knn": {
                "embedding": {
                    "vector": [float(v) for v in query.vector],
                    "k": query.candidates,
                    "filter": {"bool": {"filter": _allowed(query.principals)}},
                }
            }
        },
    }


def lexical_body(terms: list[str], query: Query) -> dict[str, Any]:
    """``POST /<index>/_search``: BM25 over title, heading and text, same access list."""
    return {
        "size": query.candidates,
        "_source": _SOURCE,
        "query": {
            "bool": {
                "must": [
                    {
                        "multi_match": {
                            "query": " ".join(terms),
                            "fields": ["title", "heading", "text"],
                            "operator": "or",
                        }
                    }
                ],
                "filter": _allowed(query.principals),
            }
        },
    }


def documents_body(doc_ids: Sequence[str]) -> dict[str, Any]:
    """``POST /<index>/_delete_by_query``: every chunk and record of these documents."""
    return {"query": {"terms": {"doc_id": list(doc_ids)}}}


def stale_chunks_body(doc_ids: Sequence[str], keep: Sequence[str]) -> dict[str, Any]:
    """``_delete_by_query``: chunks of rewritten documents that the rewrite did not produce."""
    return {
        "query": {
            "bool": {
                "filter": [{"terms": {"doc_id": list(doc_ids)}}, {"term": {"kind": "chunk"}}],
                "must_not": [{"terms": {"chunk_id": list(keep)}}],
            }
        }
    }


def records_body(after: str | None) -> dict[str, Any]:
    """``_search``: a page of document records, in doc id order (``search_after``)."""
    body: dict[str, Any] = {
        "size": PAGE,
        "_source": ["doc_id", "digest"],
        "query": {"term": {"kind": "document"}},
        "sort": ["doc_id"],
    }
    if after is not None:
        body["search_after"] = [after]
    return body


def count_body(doc_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """``POST /<index>/_count``: chunks only (of these documents, when given)."""
    chunks: list[dict[str, Any]] = [{"term": {"kind": "chunk"}}]
    if doc_ids is not None:
        chunks.append({"terms": {"doc_id": list(doc_ids)}})
    return {"query": {"bool": {"filter": chunks}}}


def alias_body(alias: str, index: str, current: str | None) -> dict[str, Any]:
    """``POST /_aliases``: remove and add in one atomic call."""
    actions: list[dict[str, Any]] = []
    if current is not None:
        actions.append({"remove": {"index": current, "alias": alias}})
    actions.append({"add": {"index": index, "alias": alias}})
    return {"actions": actions}


# -- the backend ---------------------------------------------------------------------


class OpenSearchBackend(Backend):
    """A cluster reached over HTTPS with basic auth (the opensearch role's users)."""

    name = "opensearch"

    def __init__(
        self,
        url: str,
        auth: tuple[str, str] | None,
        verify: str | bool = True,
        knn: KnnSettings | None = None,
        namespace: str = "",
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not NAMESPACE.match(namespace):
            raise BackendError("namespace: lower-case letters, digits, _ and -")
        self.knn = knn or KnnSettings()
        self.namespace = namespace
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            auth=auth,
            verify=verify,
            timeout=timeout_s,
            transport=transport,
            headers={"content-type": "application/json"},
        )

    def _full(self, name: str) -> str:
        return self.namespace + check_name(name)

    def _short(self, name: str) -> str:
        return name.removeprefix(self.namespace)

    def _call(
        self, method: str, path: str, body: object = None, ok404: bool = False, **params: str
    ) -> Any:
        content = None
        headers = {}
        if isinstance(body, list):
            content = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in body)
            headers["content-type"] = "application/x-ndjson"
        elif body is not None:
            content = json.dumps(body, separators=(",", ":"))
        try:
            response = self._client.request(
                method, path, content=content, headers=headers, params=params or None
            )
        except httpx.HTTPError as exc:
            raise BackendError(f"OpenSearch could not be reached: {type(exc).__name__}") from exc
        if response.status_code == 404 and ok404:
            return None
        if response.status_code == 404:
            raise IndexNotFound(f"OpenSearch: {path[:100]} not found")
        if response.status_code >= 300:
            raise BackendError(
                f"OpenSearch answered {response.status_code} to {method} {path[:100]}: "
                f"{response.text[:300]!r}"
            )
        return response.json() if response.content else {}

    def create_index(self, index: str, binding: IndexBinding) -> bool:
        if self._call("HEAD", "/" + self._full(index), ok404=True) is not None:
            if self.binding(index) != binding:
                raise BindingMismatch(f"index {index!r} exists with another binding")
            return False
        self._call("PUT", "/" + self._full(index), index_body(binding, self.knn))
        return True

    def binding(self, index: str) -> IndexBinding:
        full = self._full(index)
        answer = self._call("GET", f"/{full}/_mapping")
        try:
            (mapping,) = answer.values()
            stored = mapping["mappings"]["_meta"]["sovereign_binding"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IndexNotFound(f"index {index!r} has no binding") from exc
        return IndexBinding.from_json(stored)

    def indexes(self, alias: str) -> list[str]:
        pattern = self._full(check_alias(alias)) + "-*"
        answer = self._call("GET", f"/{pattern}/_settings/index.creation_date", ok404=True) or {}
        created = {
            name: int(value["settings"]["index"]["creation_date"]) for name, value in answer.items()
        }
        return [self._short(n) for n in sorted(created, key=lambda n: (created[n], n))]

    def drop_index(self, index: str) -> None:
        full = self._full(index)
        aliases = self._call("GET", f"/{full}/_alias")
        for value in aliases.values():
            if value.get("aliases"):
                name = self._short(next(iter(value["aliases"])))
                raise BindingMismatch(f"index {index!r} is in use by alias {name!r}")
        self._call("DELETE", "/" + full)

    def alias_target(self, alias: str) -> str | None:
        answer = self._call("GET", "/_alias/" + self._full(alias), ok404=True)
        if not answer:
            return None
        if len(answer) != 1:
            raise BackendError(f"alias {alias!r} points at {len(answer)} indexes")
        return self._short(next(iter(answer)))

    def switch_alias(self, alias: str, index: str) -> None:
        check_alias(alias)
        if self._call("HEAD", "/" + self._full(index), ok404=True) is None:
            raise IndexNotFound(f"no index {index!r} to point {alias!r} at")
        current = self.alias_target(alias)
        body = alias_body(
            self._full(alias), self._full(index), None if current is None else self._full(current)
        )
        self._call("POST", "/_aliases", body)

    def _write(
        self,
        index: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        doc_digests: dict[str, str],
    ) -> None:
        full = self._full(index)
        answer = self._call(
            "POST", "/_bulk", bulk_lines(full, chunks, vectors, doc_digests), refresh="wait_for"
        )
        if answer.get("errors"):
            failed: object = next(
                (i for item in answer.get("items", []) for i in item.values() if i.get("error")), {}
            )
            raise BackendError(f"OpenSearch refused part of a bulk write: {str(failed)[:300]}")
        self._call(
            "POST",
            f"/{full}/_delete_by_query",
            stale_chunks_body(list(doc_digests), [c.chunk_id for c in chunks]),
            refresh="true",
        )

    def delete_documents(self, index: str, doc_ids: Sequence[str]) -> int:
        if not doc_ids:
            return 0
        full = self._full(index)
        chunks = self._call("POST", f"/{full}/_count", count_body(doc_ids))["count"]
        self._call("POST", f"/{full}/_delete_by_query", documents_body(doc_ids), refresh="true")
        return int(chunks)

    def document_digests(self, index: str) -> dict[str, str]:
        out: dict[str, str] = {}
        after: str | None = None
        while True:
            answer = self._call("POST", f"/{self._full(index)}/_search", records_body(after))
            hits = answer["hits"]["hits"]
            for hit in hits:
                out[str(hit["_source"]["doc_id"])] = str(hit["_source"]["digest"])
            if len(hits) < PAGE:
                return out
            after = str(hits[-1]["sort"][0])

    def count(self, index: str) -> int:
        return int(self._call("POST", f"/{self._full(index)}/_count", count_body())["count"])

    def _ranked(self, index: str, body: dict[str, Any]) -> list[Ranked]:
        answer = self._call("POST", f"/{self._full(index)}/_search", body)
        ranked = []
        for hit in answer["hits"]["hits"]:
            source = hit["_source"]
            score = float(hit["_score"])
            ranked.append(
                Ranked(
                    hit=Hit(
                        chunk_id=str(source["chunk_id"]),
                        doc_id=str(source["doc_id"]),
                        title=str(source["title"]),
                        heading=str(source.get("heading", "")),
                        text=str(source["text"]),
                        source=str(source["source"]),
                        data_class=str(source["data_class"]),
                        score=score,
                    ),
                    score=score,
                )
            )
        return sorted(ranked, key=lambda r: (-r.score, r.hit.chunk_id))

    def _vector(self, index: str, query: Query) -> list[Ranked]:
        return self._ranked(index, knn_body(query))

    def _lexical(self, index: str, terms: list[str], query: Query) -> list[Ranked]:
        return self._ranked(index, lexical_body(terms, query))

    def drop_everything_with_prefix(self) -> None:
        """Tests only: delete every index of this backend's namespace."""
        if not self.namespace:
            raise BackendError("refusing to drop every index without a namespace")
        answer = self._call("GET", f"/{self.namespace}*/_settings", ok404=True) or {}
        for name in answer:
            self._call("DELETE", "/" + name, ok404=True)
