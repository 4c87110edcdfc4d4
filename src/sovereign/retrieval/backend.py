"""The one interface both search backends keep (tests/unit/retrieval/test_contract.py).

A backend stores chunks with their vectors and access lists in indexes named
by their binding, moves aliases atomically, and answers two ranked searches
with the reader's access list applied inside the search: by vector (k
nearest) and by words (BM25). ``search`` checks the query against the
index's binding, runs both and fuses them with reciprocal rank fusion here,
so the two backends rank the same way.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sovereign.retrieval.binding import IndexBinding, check_name
from sovereign.retrieval.chunk import Chunk
from sovereign.retrieval.errors import BindingMismatch, IndexNotFound, QueryError

Mode = Literal["hybrid", "vector", "lexical"]
MAX_K = 100
MAX_CANDIDATES = 200
MAX_QUERY_CHARS = 2000
MAX_TERMS = 32
RRF_K = 60
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Query:
    """A reader's search: its text, its vector and whose model made it, its principals."""

    text: str
    vector: Sequence[float]
    embedding_digest: str
    principals: frozenset[str]
    k: int = 10
    mode: Mode = "hybrid"
    candidates: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise QueryError(f"k: between 1 and {MAX_K}")
        if not isinstance(self.candidates, int) or not self.k <= self.candidates <= MAX_CANDIDATES:
            raise QueryError(f"candidates: between k and {MAX_CANDIDATES}")
        if not self.text.strip() or len(self.text) > MAX_QUERY_CHARS:
            raise QueryError(f"the query is empty or over {MAX_QUERY_CHARS} characters")
        if self.mode not in ("hybrid", "vector", "lexical"):
            raise QueryError("mode: hybrid, vector or lexical")


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    title: str
    heading: str
    text: str
    source: str
    data_class: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Ranked:
    """One result of one of the two searches: a chunk and its rank-ordering score."""

    hit: Hit
    score: float


def lexical_terms(text: str) -> list[str]:
    """The query's words, lower-cased, de-duplicated, bounded: safe to hand to any engine."""
    seen: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) <= 64 and word not in seen:
            seen.append(word)
        if len(seen) == MAX_TERMS:
            break
    return seen


class Backend(abc.ABC):
    """Indexes, aliases and the two filtered searches; ``search`` is the same for all."""

    name: str

    @abc.abstractmethod
    def create_index(self, index: str, binding: IndexBinding) -> bool:
        """Create ``index`` bound to ``binding``; False when it exists with the same binding."""

    @abc.abstractmethod
    def binding(self, index: str) -> IndexBinding:
        """The binding stored in ``index`` (IndexNotFound when there is none)."""

    @abc.abstractmethod
    def indexes(self, alias: str) -> list[str]:
        """Every index built for ``alias`` (``<alias>-<digest>``), oldest first."""

    @abc.abstractmethod
    def drop_index(self, index: str) -> None:
        """Delete ``index``; refused while an alias points at it."""

    @abc.abstractmethod
    def alias_target(self, alias: str) -> str | None:
        """The index ``alias`` points at, or None."""

    @abc.abstractmethod
    def switch_alias(self, alias: str, index: str) -> None:
        """Point ``alias`` at ``index`` in one atomic step (readers see old or new)."""

    @abc.abstractmethod
    def _write(
        self,
        index: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        doc_digests: dict[str, str],
    ) -> None:
        """Replace every chunk of the documents in ``doc_digests`` with ``chunks``; record digests.

        One transaction where the engine has them: a reader sees a document's
        old chunks or its new ones."""

    @abc.abstractmethod
    def delete_documents(self, index: str, doc_ids: Sequence[str]) -> int:
        """Remove every chunk of ``doc_ids``; the number of chunks removed."""

    @abc.abstractmethod
    def document_digests(self, index: str) -> dict[str, str]:
        """doc id -> digest of what the document was ingested from (source, ACL, metadata)."""

    @abc.abstractmethod
    def count(self, index: str) -> int:
        """Chunks in ``index``."""

    @abc.abstractmethod
    def _vector(self, index: str, query: Query) -> list[Ranked]:
        """Up to ``query.candidates`` nearest allowed chunks, best first."""

    @abc.abstractmethod
    def _lexical(self, index: str, terms: list[str], query: Query) -> list[Ranked]:
        """Up to ``query.candidates`` allowed chunks matching any term, BM25 order."""

    def resolve(self, name: str) -> str:
        """The index ``name`` is, or an alias points at."""
        target = self.alias_target(check_name(name))
        return target if target is not None else name

    def write(
        self,
        index: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        doc_digests: dict[str, str],
        embedding_digest: str,
    ) -> None:
        """Store chunks, refused unless the vectors come from the index's embedding model."""
        binding = self.binding(index)
        if len(chunks) != len(vectors):
            raise BindingMismatch(f"{len(chunks)} chunks but {len(vectors)} vectors")
        for vector in vectors:
            binding.check_query(embedding_digest, len(vector))
        if chunks:
            self._write(index, chunks, vectors, doc_digests)

    def search(self, name: str, query: Query) -> list[Hit]:
        """The reader's best ``k`` chunks of the index (or alias) ``name``."""
        return self.search_in(name, query)[2]

    def search_in(self, name: str, query: Query) -> tuple[str, IndexBinding, list[Hit]]:
        """The index ``name`` resolved to, its binding, and the reader's best ``k`` chunks."""
        index = self.resolve(name)
        binding = self.binding(index)
        binding.check_query(query.embedding_digest, len(query.vector))
        return index, binding, self._best(index, query)

    def _best(self, index: str, query: Query) -> list[Hit]:
        if not query.principals:
            return []
        lists: dict[str, list[Ranked]] = {}
        if query.mode in ("hybrid", "vector"):
            lists["vector"] = self._vector(index, query)
        if query.mode in ("hybrid", "lexical"):
            terms = lexical_terms(query.text)
            lists["lexical"] = self._lexical(index, terms, query) if terms else []
        if query.mode != "hybrid":
            (only,) = lists.values()
            return [
                _with(r.hit, r.score, {query.mode: rank})
                for rank, r in enumerate(only[: query.k], 1)
            ]
        return fuse(lists, query.k)


def fuse(lists: dict[str, list[Ranked]], k: int) -> list[Hit]:
    """Reciprocal rank fusion (score = sum of 1 / (60 + rank)); ties by chunk id."""
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    hits: dict[str, Hit] = {}
    for source, ranked in lists.items():
        for rank, item in enumerate(ranked, start=1):
            cid = item.hit.chunk_id
            hits.setdefault(cid, item.hit)
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (RRF_K + rank)
            ranks.setdefault(cid, {})[source] = rank
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
    return [_with(hits[cid], scores[cid], ranks[cid]) for cid in order]


def _with(hit: Hit, score: float, ranks: dict[str, int]) -> Hit:
    return Hit(
        chunk_id=hit.chunk_id,
        doc_id=hit.doc_id,
        title=hit.title,
        heading=hit.heading,
        text=hit.text,
        source=hit.source,
        data_class=hit.data_class,
        score=round(score, 6),
        ranks=ranks,
    )


def require_index(found: bool, index: str) -> None:
    if not found:
        raise IndexNotFound(f"no index {index[:80]!r}")
