"""Ingestion: idempotent runs, incremental changes, a new index per binding, atomic switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sovereign.retrieval.acl import principals_of
from sovereign.retrieval.backend import Query
from sovereign.retrieval.chunk import ChunkerConfig
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.errors import AclError, ManifestError, UnsupportedDocument
from sovereign.retrieval.ingest import Ingestor, load_manifest

from .conftest import HashEmbedder


def write_corpus(root: Path, docs: dict[str, tuple[str, dict[str, list[str]]]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for doc_id, (text, acl) in docs.items():
        (root / f"{doc_id}.md").write_text(text)
        entries.append(
            {
                "id": doc_id,
                "path": f"{doc_id}.md",
                "title": doc_id.title(),
                "data_class": "internal",
                "source": f"dms://{doc_id}",
                "updated": "2026-11-01",
                "acl": acl,
            }
        )
    manifest = root / "manifest.yml"
    manifest.write_text(yaml.safe_dump({"documents": entries}))
    return manifest


CORPUS = {
    "passwords": ("# Passwords\n\nPasswords expire after 90 days.", {"groups": ["analysts"]}),
    "limits": ("# Limits\n\nCorporate loans above 5 million need the board.", {"groups": ["risk"]}),
}


def ingestor(tmp_path: Path, **kw: object) -> Ingestor:
    return Ingestor(
        backend=EmbeddedBackend(tmp_path / "db"),
        embedder=kw.get("embedder", HashEmbedder()),  # type: ignore[arg-type]
        chunker=kw.get("chunker", ChunkerConfig()),  # type: ignore[arg-type]
        alias="chunks",
    )


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    manifest = write_corpus(tmp_path / "corpus", CORPUS)
    first = ingestor(tmp_path).run(load_manifest(manifest))
    assert first.created and first.switched and first.switched_from is None
    assert sorted(first.added) == ["limits", "passwords"] and first.chunks == 2
    second = ingestor(tmp_path).run(load_manifest(manifest))
    assert not second.changed and second.unchanged == 2 and second.index == first.index


def test_changed_and_removed_documents_and_acls_are_brought_in(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    run = ingestor(tmp_path)
    first = run.run(load_manifest(write_corpus(corpus, CORPUS)))
    changed = {
        "passwords": ("# Passwords\n\nPasswords expire after 60 days.", {"groups": ["risk"]})
    }
    report = run.run(load_manifest(write_corpus(corpus, changed)))
    assert (report.updated, report.removed, report.switched) == (["passwords"], ["limits"], False)
    embedder = HashEmbedder()
    text = "when do passwords expire"
    as_analyst = Query(
        text, embedder.vector(text), embedder.digest, principals_of("a", ["analysts"])
    )
    assert run.backend.search("chunks", as_analyst) == []
    as_risk = Query(text, embedder.vector(text), embedder.digest, principals_of("b", ["risk"]))
    (hit,) = run.backend.search("chunks", as_risk)
    assert "60 days" in hit.text and first.index == report.index


@pytest.mark.parametrize(
    "change",
    [
        {"chunker": ChunkerConfig(window_words=64)},
        {"embedder": HashEmbedder(digest="sha256:" + "12" * 32)},
    ],
)
def test_a_new_chunker_or_embedding_model_builds_a_new_index_and_switches(
    tmp_path: Path, change: dict[str, object]
) -> None:
    manifest = write_corpus(tmp_path / "corpus", CORPUS)
    old = ingestor(tmp_path).run(load_manifest(manifest))
    changed = ingestor(tmp_path, **change)
    new = changed.run(load_manifest(manifest))
    assert new.created and new.switched and new.switched_from == old.index != new.index
    assert changed.backend.alias_target("chunks") == new.index
    assert changed.prune(keep=2) == []
    smaller = ChunkerConfig(window_words=32, overlap_words=8)
    third = ingestor(tmp_path, chunker=smaller).run(load_manifest(manifest))
    assert changed.prune(keep=2) == [old.index]
    assert changed.backend.indexes("chunks") == [new.index, third.index]


def test_a_failing_document_leaves_the_alias_on_the_old_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    manifest = write_corpus(corpus, CORPUS)
    old = ingestor(tmp_path).run(load_manifest(manifest))
    (corpus / "limits.md").write_bytes(b"\x7fELF\x02\x01" + b"\0" * 64)
    with pytest.raises(UnsupportedDocument):
        ingestor(tmp_path, chunker=ChunkerConfig(window_words=64)).run(load_manifest(manifest))
    assert EmbeddedBackend(tmp_path / "db").alias_target("chunks") == old.index


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda d: d.update(path="../../etc/passwd"), ManifestError, "outside the manifest"),
        (lambda d: d.update(acl={}), AclError, "empty access list"),
        (
            lambda d: d.update(acl={"users": ["ok"], "roles": ["x"]}),
            ManifestError,
            "users and groups",
        ),
        (lambda d: d.pop("title"), ManifestError, r"documents\[0\].title"),
        (lambda d: d.update(id="Bad Id"), ManifestError, r"documents\[0\].id"),
        (lambda d: d.update(path="missing.md"), ManifestError, "cannot be read"),
        (lambda d: d.update(data_class="Top Secret"), ManifestError, "data_class"),
    ],
)
def test_manifest_errors_name_the_entry_and_field(
    tmp_path: Path, edit: object, error: type[Exception], match: str
) -> None:
    manifest = write_corpus(tmp_path / "corpus", CORPUS)
    raw = yaml.safe_load(manifest.read_text())
    edit(raw["documents"][0])  # type: ignore[operator]
    manifest.write_text(yaml.safe_dump(raw))
    with pytest.raises(error, match=match):
        load_manifest(manifest)


def test_a_duplicate_id_is_refused(tmp_path: Path) -> None:
    manifest = write_corpus(tmp_path / "corpus", CORPUS)
    raw = yaml.safe_load(manifest.read_text())
    raw["documents"].append(raw["documents"][0])
    manifest.write_text(yaml.safe_dump(raw))
    with pytest.raises(ManifestError, match="listed twice"):
        load_manifest(manifest)
