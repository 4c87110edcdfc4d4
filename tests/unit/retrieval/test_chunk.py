"""Chunking: overlapping windows inside sections; the config's digest binds the index."""

from __future__ import annotations

import pytest

from sovereign.retrieval.acl import Acl
from sovereign.retrieval.chunk import ChunkerConfig, DocumentInfo, chunk
from sovereign.retrieval.errors import DocumentTooLarge, ManifestError
from sovereign.retrieval.parse import Block, ParsedDocument

INFO = DocumentInfo("doc", "Title", "dms://doc", "internal", "2026-01-01", Acl.of(groups=["g"]))


def doc(*blocks: tuple[str, int]) -> ParsedDocument:
    made = []
    for heading, words in blocks:
        made.append(Block(heading, " ".join(f"{heading or 'w'}{i}" for i in range(words))))
    return ParsedDocument("text/plain", "Title", tuple(made))


def test_windows_overlap_and_cover_every_word() -> None:
    config = ChunkerConfig(window_words=20, overlap_words=5)
    chunks = chunk(doc(("a", 50)), INFO, config)
    words = [c.text.split() for c in chunks]
    assert [len(w) for w in words] == [20, 20, 20]
    assert words[0][-5:] == words[1][:5]
    covered = {w for ws in words for w in ws}
    assert covered == {f"a{i}" for i in range(50)}
    assert [c.chunk_id for c in chunks] == ["doc#0", "doc#1", "doc#2"]


def test_a_chunk_never_spans_two_sections_and_knows_its_heading() -> None:
    chunks = chunk(doc(("a", 5), ("b", 5)), INFO, ChunkerConfig(window_words=16, overlap_words=4))
    assert [(c.heading, c.text.split()[0]) for c in chunks] == [("a", "a0"), ("b", "b0")]
    assert chunks[1].embed_text.startswith("Title - b\n")
    assert chunks[0].doc.acl.principals == ("group:g",)


def test_the_per_document_bound_holds() -> None:
    with pytest.raises(DocumentTooLarge, match="more than 2 chunks"):
        chunk(
            doc(("a", 100)),
            INFO,
            ChunkerConfig(window_words=16, overlap_words=0, max_chunks_per_document=2),
        )


def test_the_digest_changes_with_the_configuration() -> None:
    assert ChunkerConfig().digest == ChunkerConfig().digest
    assert ChunkerConfig(window_words=100).digest != ChunkerConfig().digest


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_words": 8},
        {"window_words": 5000},
        {"overlap_words": 100},
        {"max_chunks_per_document": 0},
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ManifestError):
        ChunkerConfig(**kwargs)
