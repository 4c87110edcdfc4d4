"""The contract every search backend keeps, run on each (conftest.py's ``backend``).

The embedded backend always runs it; OpenSearch when a cluster is given
(SOVEREIGN_OPENSEARCH_URL, which the opensearch role's scenario sets).
"""

from __future__ import annotations

import pytest

from sovereign.retrieval.acl import Acl, principals_of
from sovereign.retrieval.backend import Backend, Query
from sovereign.retrieval.binding import IndexBinding
from sovereign.retrieval.errors import BindingMismatch, IndexNotFound

from .conftest import HashEmbedder, binding_for, make_chunk

EVERYONE = Acl.of(groups=["staff"])
RARE = Acl.of(groups=["rare"])
BOB = Acl.of(users=["bob"])


def build(backend: Backend, embedder: HashEmbedder, docs: dict[str, tuple[str, Acl]]) -> str:
    binding = binding_for(embedder)
    index = binding.index_name("chunks")
    backend.create_index(index, binding)
    for doc_id, (text, acl) in docs.items():
        chunks = [make_chunk(doc_id, 0, text, acl)]
        backend.write(
            index, chunks, embedder.embed([text]), {doc_id: "sha256:" + "00" * 32}, embedder.digest
        )
    return index


def query(embedder: HashEmbedder, text: str, who: frozenset[str], **kw: object) -> Query:
    return Query(
        text=text,
        vector=embedder.vector(text),
        embedding_digest=embedder.digest,
        principals=who,
        **kw,  # type: ignore[arg-type]
    )


def test_create_index_is_idempotent_and_keeps_its_binding(
    backend: Backend, embedder: HashEmbedder
) -> None:
    binding = binding_for(embedder)
    index = binding.index_name("chunks")
    assert backend.create_index(index, binding) is True
    assert backend.create_index(index, binding) is False
    assert backend.binding(index) == binding
    other = binding_for(embedder, chunker="sha256:" + "99" * 32)
    with pytest.raises(BindingMismatch):
        backend.create_index(index, other)
    with pytest.raises(IndexNotFound):
        backend.binding("chunks-000000000000")


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_acl_filter_is_applied_inside_the_search_so_k_results_come_back(
    backend: Backend, embedder: HashEmbedder, mode: str
) -> None:
    # 400 chunks about passwords anyone may read, 12 only the "rare" group may:
    # a filter after a top-k search would find none of them among the best 10.
    docs = {
        f"open-{i}": (f"password policy rotation rule number {i}", EVERYONE) for i in range(400)
    }
    docs |= {f"rare-{i}": (f"password vault escrow note {i} for the few", RARE) for i in range(12)}
    index = build(backend, embedder, docs)
    who = principals_of("carol", ["rare"])
    hits = backend.search(index, query(embedder, "password policy rotation", who, k=10, mode=mode))
    assert len(hits) == 10
    assert {h.doc_id.split("-")[0] for h in hits} == {"rare"}


def test_user_and_group_entries_decide_who_sees_a_chunk(
    backend: Backend, embedder: HashEmbedder
) -> None:
    index = build(
        backend,
        embedder,
        {
            "limits": ("corporate loan approval limit is five million", BOB),
            "handbook": ("loan applications are filed at the branch", EVERYONE),
        },
    )
    text = "corporate loan approval limit"
    for_bob = backend.search(index, query(embedder, text, principals_of("bob", ["staff"])))
    for_alice = backend.search(index, query(embedder, text, principals_of("alice", ["staff"])))
    assert [h.doc_id for h in for_bob][0] == "limits"
    assert [h.doc_id for h in for_alice] == ["handbook"]
    assert backend.search(index, query(embedder, text, frozenset())) == []
    assert backend.search(index, query(embedder, text, principals_of("eve", ["nobody"]))) == []


def test_hits_carry_the_documents_metadata_and_ranks(
    backend: Backend, embedder: HashEmbedder
) -> None:
    index = build(backend, embedder, {"pw": ("passwords expire after ninety days", EVERYONE)})
    (hit,) = backend.search(
        index, query(embedder, "when do passwords expire", principals_of("a", ["staff"]))
    )
    assert (hit.chunk_id, hit.doc_id, hit.source, hit.data_class) == (
        "pw#0",
        "pw",
        "dms://pw",
        "internal",
    )
    assert hit.text == "passwords expire after ninety days"
    assert set(hit.ranks) == {"vector", "lexical"}


def test_a_query_embedded_by_another_model_is_refused(
    backend: Backend, embedder: HashEmbedder
) -> None:
    index = build(backend, embedder, {"pw": ("passwords expire", EVERYONE)})
    other = HashEmbedder(model="other", digest="sha256:" + "77" * 32)
    with pytest.raises(BindingMismatch, match="refused"):
        backend.search(index, query(other, "passwords", principals_of("a", ["staff"])))
    narrow = HashEmbedder(dimension=32)
    with pytest.raises(BindingMismatch, match="dimensions"):
        backend.search(index, query(narrow, "passwords", principals_of("a", ["staff"])))
    with pytest.raises(BindingMismatch):
        backend.write(
            index,
            [make_chunk("x", 0, "text", EVERYONE)],
            other.embed(["text"]),
            {"x": "sha256:" + "00" * 32},
            other.digest,
        )


def test_rewriting_a_document_replaces_all_its_chunks(
    backend: Backend, embedder: HashEmbedder
) -> None:
    index = build(backend, embedder, {})
    digest = "sha256:" + "11" * 32
    three = [make_chunk("doc", i, f"part {i} of the badge policy", EVERYONE) for i in range(3)]
    backend.write(
        index, three, embedder.embed([c.text for c in three]), {"doc": digest}, embedder.digest
    )
    assert backend.count(index) == 3
    one = [make_chunk("doc", 0, "the badge policy, shorter", EVERYONE)]
    backend.write(
        index, one, embedder.embed([one[0].text]), {"doc": "sha256:" + "22" * 32}, embedder.digest
    )
    assert backend.count(index) == 1
    assert backend.document_digests(index) == {"doc": "sha256:" + "22" * 32}
    assert backend.delete_documents(index, ["doc"]) == 1
    assert backend.count(index) == 0
    assert backend.document_digests(index) == {}


def test_the_alias_moves_atomically_and_the_old_index_stays_for_rollback(
    backend: Backend, embedder: HashEmbedder
) -> None:
    old = build(backend, embedder, {"pw": ("passwords expire after ninety days", EVERYONE)})
    newer = binding_for(embedder, chunker="sha256:" + "98" * 32)
    new = newer.index_name("chunks")
    assert new != old
    backend.create_index(new, newer)
    assert backend.alias_target("chunks") is None
    backend.switch_alias("chunks", old)
    assert backend.resolve("chunks") == old
    backend.switch_alias("chunks", new)
    assert backend.alias_target("chunks") == new
    assert backend.indexes("chunks") == [old, new]
    who = principals_of("a", ["staff"])
    assert backend.search("chunks", query(embedder, "passwords", who)) == []
    assert len(backend.search(old, query(embedder, "passwords", who))) == 1
    with pytest.raises(BindingMismatch, match="in use"):
        backend.drop_index(new)
    with pytest.raises(IndexNotFound):
        backend.switch_alias("chunks", "chunks-000000000000")
    assert backend.alias_target("chunks") == new
    backend.drop_index(old)
    assert backend.indexes("chunks") == [new]


@pytest.mark.parametrize(
    "text",
    ['"unbalanced', "NEAR(a b)", "a AND OR NOT", "title:secret", "*", "-x", "ü ß 東京", "a'b;--"],
)
def test_odd_query_text_is_searched_as_words_never_as_syntax(
    backend: Backend, embedder: HashEmbedder, text: str
) -> None:
    index = build(backend, embedder, {"pw": ("passwords expire", EVERYONE)})
    hits = backend.search(
        index, query(embedder, text, principals_of("a", ["staff"]), mode="lexical")
    )
    assert hits == []


def test_binding_json_round_trip(embedder: HashEmbedder) -> None:
    binding = binding_for(embedder)
    assert IndexBinding.from_json(binding.to_json()) == binding
