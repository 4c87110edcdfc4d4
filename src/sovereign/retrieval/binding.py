"""What an index is bound to: parser, chunker configuration, embedding model.

The binding is written into the index when it is created (SQLite metadata,
OpenSearch mapping ``_meta``) and read back before every search and write:
vectors of another embedding model, or chunks of another parser or chunker,
never enter or query an index built with different ones. Each binding has
its own index name, so a change of any part builds a new index beside the
live one; the alias moves to it in one atomic step when it is complete.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from sovereign.retrieval.digests import canonical_digest
from sovereign.retrieval.errors import BindingMismatch, IndexNotFound, ManifestError

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Lower case: OpenSearch index and alias names must be.
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
# An index is "<alias>-<12 hex>"; both are names a search may be given.
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
MAX_DIMENSION = 4096


@dataclass(frozen=True)
class IndexBinding:
    parser_digest: str
    chunker_digest: str
    embedding_model: str
    embedding_digest: str
    dimension: int

    def __post_init__(self) -> None:
        for field in ("parser_digest", "chunker_digest", "embedding_digest"):
            if not DIGEST.match(getattr(self, field)):
                raise ManifestError(f"binding.{field}: not a sha256:<64 hex> digest")
        if not MODEL_NAME.match(self.embedding_model):
            raise ManifestError("binding.embedding_model: invalid model name")
        if not isinstance(self.dimension, int) or not 1 <= self.dimension <= MAX_DIMENSION:
            raise ManifestError(f"binding.dimension: between 1 and {MAX_DIMENSION}")

    @property
    def digest(self) -> str:
        return canonical_digest(asdict(self))

    def index_name(self, alias: str) -> str:
        """``<alias>-<12 hex of the binding's digest>``: one name per binding."""
        check_alias(alias)
        return f"{alias}-{self.digest.removeprefix('sha256:')[:12]}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: object) -> IndexBinding:
        if not isinstance(value, dict) or set(value) != set(cls.__dataclass_fields__):
            raise ManifestError("the index's stored binding is missing or malformed")
        return cls(**value)

    def check_query(self, embedding_digest: str, dimension: int) -> None:
        """BindingMismatch unless a query vector comes from this index's embedding model."""
        if embedding_digest != self.embedding_digest:
            raise BindingMismatch(
                f"the query was embedded by {embedding_digest[:19]}..., this index by "
                f"{self.embedding_model} ({self.embedding_digest[:19]}...): refused"
            )
        if dimension != self.dimension:
            raise BindingMismatch(
                f"the query vector has {dimension} dimensions, the index {self.dimension}"
            )


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise ManifestError("alias: lower-case letters, digits, _ and -, starting with a letter")
    return alias


def check_name(name: str) -> str:
    """An alias or index name (IndexNotFound for anything else: no such index)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise IndexNotFound(f"no index or alias {str(name)[:80]!r}")
    return name
