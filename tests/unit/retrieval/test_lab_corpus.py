"""The lab's corpus (files/corpus) through the whole pipeline on the embedded backend.

Every document is detected, parsed, chunked and ingested with its access
list; each demo query of the manifest, asked as alice and as bob, must never
return a document the asker may not read and must return the ones expected.
The embedder here is the tests' feature-hashing stand-in (conftest.py): what
is tested is the access lists and the pipeline, not the model's quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sovereign.retrieval.acl import principals_of
from sovereign.retrieval.backend import Query
from sovereign.retrieval.chunk import ChunkerConfig
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.ingest import Ingestor, load_manifest

from .conftest import HashEmbedder

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "files" / "corpus" / "manifest.yml"
USERS = {"alice": ["analysts"], "bob": ["analysts", "risk-officers"]}
DEMO = yaml.safe_load(MANIFEST.read_text())["demo_queries"]


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedBackend:
    backend = EmbeddedBackend(tmp_path_factory.mktemp("lab-corpus"))
    report = Ingestor(backend, HashEmbedder(), ChunkerConfig(), "chunks").run(
        load_manifest(MANIFEST)
    )
    assert len(report.added) == len(yaml.safe_load(MANIFEST.read_text())["documents"])
    return backend


@pytest.mark.parametrize("demo", DEMO, ids=[d["question"][:40] for d in DEMO])
@pytest.mark.parametrize("user", sorted(USERS))
def test_each_user_gets_what_they_may_read_and_never_more(
    corpus_index: EmbeddedBackend, demo: dict[str, object], user: str
) -> None:
    embedder = HashEmbedder()
    question = str(demo["question"])
    query = Query(
        text=question,
        vector=embedder.vector(question),
        embedding_digest=embedder.digest,
        principals=principals_of(user, USERS[user]),
        k=10,
    )
    found = {hit.doc_id for hit in corpus_index.search("chunks", query)}
    expect = demo["expect_for"].get(user, [])  # type: ignore[attr-defined]
    never = demo.get("never_for", {}).get(user, [])  # type: ignore[attr-defined]
    assert set(expect) <= found
    assert not set(never) & found


def test_alice_and_bob_get_different_results_for_the_same_question(
    corpus_index: EmbeddedBackend,
) -> None:
    embedder = HashEmbedder()
    question = str(DEMO[0]["question"])
    results = {}
    for user, groups in USERS.items():
        query = Query(
            question, embedder.vector(question), embedder.digest, principals_of(user, groups)
        )
        results[user] = {hit.doc_id for hit in corpus_index.search("chunks", query)}
    assert results["alice"] != results["bob"]
    assert results["bob"] - results["alice"]
