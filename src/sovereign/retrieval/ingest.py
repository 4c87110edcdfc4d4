"""Ingestion: a corpus manifest in, an index bound to what built it out.

The manifest lists every source document with its access list and metadata
(files/corpus/manifest.yml is the lab's). A run computes the binding of the
parser, chunker configuration and embedding model in use; the index of that
binding is created when missing and brought to the manifest: documents whose
bytes, access list or metadata changed are parsed, chunked, embedded and
replaced, documents no longer listed are removed. Only when every document is
in does the alias move to the index (one atomic step), so readers never see a
half-built index; the previous index stays for rollback until pruned.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sovereign.retrieval.acl import Acl
from sovereign.retrieval.backend import Backend
from sovereign.retrieval.binding import IndexBinding, check_alias
from sovereign.retrieval.chunk import ChunkerConfig, DocumentInfo, chunk
from sovereign.retrieval.digests import canonical_digest
from sovereign.retrieval.embedding import Embedder
from sovereign.retrieval.errors import ManifestError
from sovereign.retrieval.parse import MAX_BYTES, parse, parser_digest

DOC_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
DATA_CLASS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_DOCUMENTS = 100_000
MAX_FIELD = 512


@dataclass(frozen=True)
class SourceDocument:
    """A document to ingest: its bytes and what travels with them into each chunk."""

    info: DocumentInfo
    name: str
    data: bytes

    @property
    def digest(self) -> str:
        """Changes when the bytes, the access list or any metadata changes."""
        return canonical_digest(
            {
                "sha256": hashlib.sha256(self.data).hexdigest(),
                "name": self.name,
                "title": self.info.title,
                "source": self.info.source,
                "data_class": self.info.data_class,
                "updated": self.info.updated,
                "acl": list(self.info.acl.principals),
            }
        )


def load_manifest(path: Path) -> list[SourceDocument]:
    """The manifest's documents, read and checked; ManifestError names entry and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot be read: {exc}") from exc
    entries = raw.get("documents") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: 'documents' must be a non-empty list")
    if len(entries) > MAX_DOCUMENTS:
        raise ManifestError(f"{path}: more than {MAX_DOCUMENTS} documents")
    base = path.parent.resolve()
    documents: list[SourceDocument] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries):
        where = f"{path.name}: documents[{number}]"
        document = _document(entry, base, where)
        if document.info.doc_id in seen:
            raise ManifestError(f"{where}.id: {document.info.doc_id!r} is listed twice")
        seen.add(document.info.doc_id)
        documents.append(document)
    return documents


def _document(entry: object, base: Path, where: str) -> SourceDocument:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: must be a mapping")
    doc_id = _field(entry, "id", where)
    if not DOC_ID.match(doc_id):
        raise ManifestError(f"{where}.id: lower-case letters, digits, . _ -")
    data_class = _field(entry, "data_class", where)
    if not DATA_CLASS.match(data_class):
        raise ManifestError(f"{where}.data_class: lower-case letters, digits, _ -")
    acl = entry.get("acl")
    if not isinstance(acl, dict) or set(acl) - {"users", "groups"}:
        raise ManifestError(f"{where}.acl: a mapping of users and groups")
    users, groups = acl.get("users") or [], acl.get("groups") or []
    if not isinstance(users, list) or not isinstance(groups, list):
        raise ManifestError(f"{where}.acl: users and groups are lists")
    relative = _field(entry, "path", where)
    file = (base / relative).resolve()
    if not file.is_relative_to(base):
        raise ManifestError(f"{where}.path: {relative!r} is outside the manifest's directory")
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise ManifestError(f"{where}.path: {size} bytes, more than {MAX_BYTES}")
        data = file.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{where}.path: {relative!r} cannot be read: {exc.strerror}") from exc
    info = DocumentInfo(
        doc_id=doc_id,
        title=_field(entry, "title", where),
        source=_field(entry, "source", where),
        data_class=data_class,
        updated=str(entry.get("updated", "")),
        acl=Acl.of(users, groups, where=f"{where}.acl"),
    )
    return SourceDocument(info=info, name=relative, data=data)


def _field(entry: dict[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD:
        raise ManifestError(f"{where}.{key}: a non-empty string of at most {MAX_FIELD} characters")
    return value.strip()


@dataclass
class IngestReport:
    alias: str
    index: str
    binding: IndexBinding
    created: bool = False
    switched_from: str | None = None
    switched: bool = False
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks: int = 0

    @property
    def changed(self) -> bool:
        return self.created or self.switched or bool(self.added or self.updated or self.removed)


@dataclass
class Ingestor:
    backend: Backend
    embedder: Embedder
    chunker: ChunkerConfig
    alias: str

    def binding(self) -> IndexBinding:
        return IndexBinding(
            parser_digest=parser_digest(),
            chunker_digest=self.chunker.digest,
            embedding_model=self.embedder.model,
            embedding_digest=self.embedder.digest,
            dimension=self.embedder.dimension,
        )

    def run(self, documents: Sequence[SourceDocument]) -> IngestReport:
        alias = check_alias(self.alias)
        binding = self.binding()
        index = binding.index_name(alias)
        report = IngestReport(alias=alias, index=index, binding=binding)
        report.created = self.backend.create_index(index, binding)
        stored = self.backend.document_digests(index)
        listed = {d.info.doc_id for d in documents}
        for document in documents:
            before = stored.get(document.info.doc_id)
            if before == document.digest:
                report.unchanged += 1
                continue
            parsed = parse(document.data, document.name)
            chunks = chunk(parsed, document.info, self.chunker)
            vectors = self.embedder.embed([c.embed_text for c in chunks])
            self.backend.write(
                index,
                chunks,
                vectors,
                {document.info.doc_id: document.digest},
                self.embedder.digest,
            )
            (report.added if before is None else report.updated).append(document.info.doc_id)
            report.chunks += len(chunks)
        gone = sorted(set(stored) - listed)
        if gone:
            self.backend.delete_documents(index, gone)
            report.removed = gone
        current = self.backend.alias_target(alias)
        if current != index:
            self.backend.switch_alias(alias, index)
            report.switched, report.switched_from = True, current
        return report

    def prune(self, keep: int = 2) -> list[str]:
        """Drop the oldest indexes of the alias beyond the live one and ``keep - 1`` others."""
        live = self.backend.alias_target(self.alias)
        others = [i for i in self.backend.indexes(self.alias) if i != live]
        dropped = others[: max(0, len(others) - (keep - 1))]
        for index in dropped:
            self.backend.drop_index(index)
        return dropped
