"""Exceptions of the retrieval service.

Each carries the HTTP status the retrieval API answers with; third-party
errors (parsers, SQLite, httpx) are mapped to these at the boundary, so a
client sees a clear message and a 4xx for its own mistakes, never a trace.
"""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    status = 500


class DocumentError(RetrievalError):
    """A source document cannot be ingested: wrong type, too large, unreadable."""

    status = 422


class UnsupportedDocument(DocumentError):
    """The content is none of the supported types (PDF, DOCX, HTML, text)."""

    status = 415


class DocumentTooLarge(DocumentError):
    """A document exceeds a bound (bytes, pages, characters, chunks)."""

    status = 413


class ManifestError(RetrievalError):
    """A corpus manifest is invalid; the message names the entry and field."""

    status = 422


class AclError(ManifestError):
    """An access list is empty, too long or names an invalid principal."""


class BindingMismatch(RetrievalError):
    """A query or a write does not match the index's parser, chunker or embedding model."""

    status = 409


class IndexNotFound(RetrievalError):
    """No index (or alias) of that name exists."""

    status = 404


class QueryError(RetrievalError):
    """A query is malformed or out of bounds."""

    status = 400


class BackendError(RetrievalError):
    """The search backend failed or answered something unusable."""

    status = 502


class EmbeddingError(RetrievalError):
    """The embedding service failed, refused, or answered with another model."""

    status = 502
