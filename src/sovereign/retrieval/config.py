"""The retrieval service's configuration: one typed object from the file the role templates.

Every key is checked at start-up; an unknown or bad key fails with its path
named (``backend.root: ...``), before the service answers anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sovereign.gateway.config import Oidc
from sovereign.retrieval.binding import ALIAS, DIGEST, MODEL_NAME
from sovereign.retrieval.errors import ManifestError

MAX_CONFIG_BYTES = 1 << 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # TLS of the service itself (the gateway host's proxy reaches it over TLS).
    certfile: Path | None = None
    keyfile: Path | None = None


class EmbeddedBackendConfig(_Model):
    type: Literal["embedded"] = "embedded"
    root: Path


class Knn(_Model):
    engine: Literal["faiss", "lucene"] = "faiss"
    m: int = Field(default=16, ge=2, le=128)
    ef_construction: int = Field(default=128, ge=2, le=4096)
    ef_search: int = Field(default=100, ge=1, le=4096)
    shards: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=1, ge=0, le=8)


class OpenSearchBackendConfig(_Model):
    type: Literal["opensearch"]
    url: str
    user: str
    password_file: Path
    ca_file: Path | None = None
    namespace: str = ""
    knn: Knn = Knn()
    timeout_s: float = Field(default=30.0, gt=0, le=300)


class Embedding(_Model):
    """The embedding model, reached through the gateway's /v1/embeddings."""

    gateway_url: str
    model: str
    # The release (the gateway's version header) and the digest of its weights.
    release: str
    digest: str
    dimension: int = Field(ge=1, le=4096)
    ca_file: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    # Texts per request (at most the gateway's admission.max_batch_size).
    batch_size: int = Field(default=32, ge=1, le=256)
    # The model's input length in tokens: longer texts are embedded by their
    # first tokens (vLLM's truncate_prompt_tokens) instead of refused.
    truncate_tokens: int | None = Field(default=None, ge=1, le=131072)

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not DIGEST.match(value):
            raise ValueError("not a sha256:<64 hex> digest")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError("not a model name")
        return value


class Search(_Model):
    alias: str = "chunks"
    max_k: int = Field(default=20, ge=1, le=100)
    default_k: int = Field(default=5, ge=1, le=100)
    candidates: int = Field(default=50, ge=1, le=200)
    max_request_bytes: int = Field(default=16384, ge=256, le=1 << 20)
    max_query_chars: int = Field(default=1000, ge=16, le=2000)
    # How long one search may take, embedding included, before a 504.
    timeout_s: float = Field(default=20.0, gt=0, le=120)

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        if not ALIAS.match(value):
            raise ValueError("lower-case letters, digits, _ and -, starting with a letter")
        return value


class RetrievalLog(_Model):
    """Who searched, which chunks came back: an audit log, kept per data class."""

    directory: Path
    signing_key: Path | None = None
    # Data classes from least to most sensitive: a search's record is filed
    # under the most sensitive class among its results.
    classes: list[str] = Field(
        default_factory=lambda: ["public", "internal", "confidential", "restricted"]
    )
    retention_days: dict[str, int] = Field(default_factory=dict)
    default_retention_days: int = Field(default=365, ge=1)
    # Who read the logs, why: a directory of its own (default the log
    # directory's sibling "<name>-access"), kept this long.
    access_directory: Path | None = None
    access_retention_days: int = Field(default=3650, ge=1)
    # Retrieval records hold hashes of the queries, never their text, unless a
    # class is listed here (an investigation may need the words).
    full_text_classes: list[str] = Field(default_factory=list)


class Answer(_Model):
    """Retrieval-augmented answers (``/v1/retrieval/answer``); absent: not offered."""

    # The model the gateway routes the completion to (a name of its model table).
    model: str
    default_k: int = Field(default=3, ge=1, le=20)
    # The context the passages may fill: the serving model's context length
    # minus the question and the answer (the lab's tiny model has 256 tokens).
    max_context_chars: int = Field(default=2000, ge=200, le=64000)
    max_tokens: int = Field(default=64, ge=1, le=2048)
    timeout_s: float = Field(default=60.0, gt=0, le=600)


class ServiceConfig(_Model):
    listen: Listen = Listen()
    backend: Annotated[EmbeddedBackendConfig | OpenSearchBackendConfig, Field(discriminator="type")]
    embedding: Embedding
    oidc: Oidc
    search: Search = Search()
    answer: Answer | None = None
    log: RetrievalLog


def parse_config(data: object, where: str) -> ServiceConfig:
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise ManifestError(f"{where}: {path}: {first['msg']}") from None


def load_config(path: Path) -> ServiceConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ManifestError(f"{path}: more than {MAX_CONFIG_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not YAML: {exc}") from exc
    return parse_config(data, str(path))
