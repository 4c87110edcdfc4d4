"""Chunking: windows of words with overlap, never across a section heading.

The configuration (window, overlap, how the embedded text is composed) is
part of every index's binding (``ChunkerConfig.digest``): changing it builds
a new index instead of mixing chunks of two shapes under one alias.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from sovereign.retrieval.acl import Acl
from sovereign.retrieval.digests import canonical_digest
from sovereign.retrieval.errors import DocumentTooLarge, ManifestError
from sovereign.retrieval.parse import Block, ParsedDocument

# Bumped when the composition of a chunk's text changes.
CHUNK_SCHEMA = 1


@dataclass(frozen=True)
class ChunkerConfig:
    """Window and overlap in words; a bound on chunks per document."""

    window_words: int = 160
    overlap_words: int = 32
    max_chunks_per_document: int = 5000

    def __post_init__(self) -> None:
        if not 16 <= self.window_words <= 2048:
            raise ManifestError("chunker.window_words: between 16 and 2048")
        if not 0 <= self.overlap_words < self.window_words // 2 + 1:
            raise ManifestError("chunker.overlap_words: 0 up to half the window")
        if not 1 <= self.max_chunks_per_document <= 100_000:
            raise ManifestError("chunker.max_chunks_per_document: between 1 and 100000")

    @property
    def digest(self) -> str:
        return canonical_digest({"schema": CHUNK_SCHEMA, **asdict(self)})


@dataclass(frozen=True)
class DocumentInfo:
    """What a source document carries into every chunk besides its text."""

    doc_id: str
    title: str
    source: str
    data_class: str
    updated: str
    acl: Acl


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    ordinal: int
    heading: str
    text: str
    doc: DocumentInfo

    @property
    def embed_text(self) -> str:
        """The text the embedding model sees: title and section give a chunk its context."""
        context = " - ".join(part for part in (self.doc.title, self.heading) if part)
        return f"{context}\n{self.text}" if context else self.text

    @property
    def content_sha256(self) -> str:
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()


def chunk(parsed: ParsedDocument, info: DocumentInfo, config: ChunkerConfig) -> list[Chunk]:
    """The document's chunks, in order; DocumentTooLarge past the per-document bound."""
    chunks: list[Chunk] = []
    step = config.window_words - config.overlap_words
    for heading, words in _sections(parsed.blocks):
        start = 0
        while True:
            window = words[start : start + config.window_words]
            if len(chunks) >= config.max_chunks_per_document:
                raise DocumentTooLarge(
                    f"{info.doc_id}: more than {config.max_chunks_per_document} chunks"
                )
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=f"{info.doc_id}#{ordinal}",
                    ordinal=ordinal,
                    heading=heading,
                    text=" ".join(window),
                    doc=info,
                )
            )
            if start + config.window_words >= len(words):
                break
            start += step
    return chunks


def _sections(blocks: tuple[Block, ...]) -> list[tuple[str, list[str]]]:
    """Consecutive blocks under the same heading, as one list of words each."""
    sections: list[tuple[str, list[str]]] = []
    for block in blocks:
        words = block.text.split()
        if not words:
            continue
        if sections and sections[-1][0] == block.heading:
            sections[-1][1].extend(words)
        else:
            sections.append((block.heading, words))
    return sections
