"""The opensearch role's two retrieval accounts against a live cluster: the
ingestion's writes a whole corpus (create, bulk, alias switch, pruning), the
service's searches it and can write nothing. Runs where a cluster made by
the role is given (the opensearch scenario's verify sets the variables
named in conftest.py); the grants are checked without one in
tests/playbooks/test_render_opensearch.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sovereign.retrieval.acl import principals_of
from sovereign.retrieval.backend import Query
from sovereign.retrieval.chunk import ChunkerConfig
from sovereign.retrieval.errors import BackendError
from sovereign.retrieval.ingest import Ingestor, load_manifest
from sovereign.retrieval.opensearch import KnnSettings, OpenSearchBackend

from .conftest import (
    OPENSEARCH_ACCOUNTS,
    OPENSEARCH_CA,
    OPENSEARCH_URL,
    OPENSEARCH_WANTS,
    HashEmbedder,
    opensearch_account,
)

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "files/corpus/manifest.yml"

pytestmark = pytest.mark.skipif(
    not (OPENSEARCH_URL and OPENSEARCH_CA and OPENSEARCH_ACCOUNTS),
    reason="needs an artifact: an OpenSearch cluster made by roles/opensearch (none can be "
    "downloaded here); its scenario does: " + OPENSEARCH_WANTS,
)

# Inside the role's index patterns (chunks*), one name per run.
ALIAS = f"chunks-accounts{os.getpid()}"


def account(name: str) -> OpenSearchBackend:
    return opensearch_account(name, knn=KnnSettings(replicas=0))


@pytest.fixture
def ingested() -> Iterator[str]:
    """The corpus ingested by the ingestion's account; the live index's name."""
    writer = account("ingest")
    first = Ingestor(writer, HashEmbedder(), ChunkerConfig(), ALIAS)
    report = first.run(load_manifest(MANIFEST))
    assert report.chunks > 0
    # Another chunker: a new index, the alias switched to it, the old dropped.
    second = Ingestor(writer, HashEmbedder(), ChunkerConfig(window_words=80), ALIAS)
    live = second.run(load_manifest(MANIFEST)).index
    assert second.prune(keep=1) == [report.index]
    assert writer.alias_target(ALIAS) == live
    try:
        yield live
    finally:
        remove = {"actions": [{"remove": {"index": live, "alias": ALIAS}}]}
        writer._call("POST", "/_aliases", remove)
        writer.drop_index(live)


def test_the_service_account_searches_what_the_ingestion_wrote(ingested: str) -> None:
    reader = account("retriever")
    embedder = HashEmbedder()
    question = str(
        yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["demo_queries"][0]["question"]
    )
    found = {}
    for user, groups in {"alice": ["analysts"], "bob": ["analysts", "risk-officers"]}.items():
        query = Query(
            question, embedder.vector(question), embedder.digest, principals_of(user, groups)
        )
        index, _, hits = reader.search_in(ALIAS, query)
        assert index == ingested
        found[user] = {hit.doc_id for hit in hits}
    assert found["bob"] - found["alice"]


def test_the_service_account_cannot_write(ingested: str) -> None:
    reader = account("retriever")
    with pytest.raises(BackendError, match="403"):
        reader.switch_alias(ALIAS, ingested)
    with pytest.raises(BackendError, match="403"):
        reader._call("DELETE", "/" + ingested)
    with pytest.raises(BackendError, match="403"):
        Ingestor(reader, HashEmbedder(), ChunkerConfig(window_words=40), ALIAS).run(
            load_manifest(MANIFEST)
        )
