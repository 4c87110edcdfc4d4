"""Fixtures of the retrieval tests: a deterministic embedder and the backends.

``HashEmbedder`` is a test double of the embedding model: words hashed into
a fixed number of dimensions, normalised, so texts sharing words are close.
It stands in for the model only where the model's quality is not what a
test is about (ACLs, bindings, aliases, ranking plumbing); the lab and the
benchmark use the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovereign.retrieval.acl import Acl
from sovereign.retrieval.backend import Backend
from sovereign.retrieval.binding import IndexBinding
from sovereign.retrieval.chunk import Chunk, DocumentInfo
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.opensearch import OpenSearchBackend

OPENSEARCH_URL = os.environ.get("SOVEREIGN_OPENSEARCH_URL", "")
OPENSEARCH_CA = os.environ.get("SOVEREIGN_OPENSEARCH_CA", "")
# A YAML file, mode 0600: account name (admin, ingest, retriever) -> user and
# password. The passwords stay out of the environment, which Ansible writes
# into the module's command line (STYLE; tests/unit/test_repository.py).
OPENSEARCH_ACCOUNTS = os.environ.get("SOVEREIGN_OPENSEARCH_ACCOUNTS", "")
OPENSEARCH_WANTS = (
    "set SOVEREIGN_OPENSEARCH_URL, _CA and _ACCOUNTS (a 0600 YAML file: "
    "admin, ingest, retriever -> user, password)"
)


def opensearch_account(name: str, **settings: Any) -> OpenSearchBackend:
    """A client of the cluster in the environment, as one of its accounts."""
    path = Path(OPENSEARCH_ACCOUNTS)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others; chmod 0600 it")
    entry = (yaml.safe_load(path.read_text(encoding="utf-8")) or {})[name]
    return OpenSearchBackend(
        OPENSEARCH_URL,
        (str(entry["user"]), str(entry["password"])),
        verify=OPENSEARCH_CA or True,
        **settings,
    )


@dataclass
class HashEmbedder:
    model: str = "hash-embedder"
    digest: str = "sha256:" + "ab" * 32
    dimension: int = 64

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        values = [0.0] * self.dimension
        for word in re.findall(r"\w+", text.lower()):
            h = hashlib.sha256(word.encode()).digest()
            values[int.from_bytes(h[:4], "big") % self.dimension] += 1.0 if h[4] % 2 else -1.0
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        if norm == 1.0 and not any(values):
            values[0] = 1.0
        return [v / norm for v in values]


def binding_for(embedder: HashEmbedder, chunker: str = "sha256:" + "cd" * 32) -> IndexBinding:
    return IndexBinding(
        parser_digest="sha256:" + "ef" * 32,
        chunker_digest=chunker,
        embedding_model=embedder.model,
        embedding_digest=embedder.digest,
        dimension=embedder.dimension,
    )


def make_chunk(doc_id: str, ordinal: int, text: str, acl: Acl, title: str = "") -> Chunk:
    info = DocumentInfo(
        doc_id=doc_id,
        title=title or doc_id,
        source=f"dms://{doc_id}",
        data_class="internal",
        updated="2026-11-01",
        acl=acl,
    )
    return Chunk(chunk_id=f"{doc_id}#{ordinal}", ordinal=ordinal, heading="", text=text, doc=info)


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(params=["embedded", "opensearch"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend behind the one interface; OpenSearch needs a running cluster."""
    if request.param == "embedded":
        yield EmbeddedBackend(tmp_path / "retrieval")
        return
    if not (OPENSEARCH_URL and OPENSEARCH_ACCOUNTS):
        pytest.skip(
            "needs an artifact: an OpenSearch cluster (none can be downloaded here); "
            + OPENSEARCH_WANTS
        )
    backend = opensearch_account("admin", namespace=f"t{os.getpid()}")
    try:
        yield backend
    finally:
        backend.drop_everything_with_prefix()
