"""Which account the CLI's backend uses: the service reads with the
configuration's, the ingestion writes with its own (--backend-user)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from sovereign.retrieval import cli
from sovereign.retrieval.config import ServiceConfig, parse_config
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.errors import ManifestError
from sovereign.retrieval.opensearch import OpenSearchBackend

DIGEST = "sha256:" + "a" * 64


def _config(tmp_path: Path, backend: dict[str, Any]) -> ServiceConfig:
    return parse_config(
        {
            "backend": backend,
            "embedding": {
                "gateway_url": "https://gateway.example",
                "model": "m",
                "release": "m-1",
                "digest": DIGEST,
                "dimension": 4,
            },
            "oidc": {"issuer": "https://idp.example", "audience": "sovereign"},
            "log": {"directory": str(tmp_path / "log")},
        },
        "test",
    )


def _opensearch(tmp_path: Path) -> ServiceConfig:
    (tmp_path / "reader.password").write_text("reader-secret\n", encoding="utf-8")
    return _config(
        tmp_path,
        {
            "type": "opensearch",
            "url": "https://search.example:9200",
            "user": "svc-retriever",
            "password_file": str(tmp_path / "reader.password"),
            "knn": {"engine": "lucene", "m": 24, "replicas": 0},
        },
    )


def _basic(backend: object) -> tuple[str, str]:
    assert isinstance(backend, OpenSearchBackend)
    request = httpx.Request("GET", "https://search.example:9200/")
    client = backend._client  # the credentials the requests will carry
    assert client.auth is not None
    flow = client.auth.sync_auth_flow(request)
    header = next(flow).headers["authorization"]
    user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    return user, password


def test_the_service_reads_with_the_configured_account(tmp_path: Path) -> None:
    backend = cli.make_backend(_opensearch(tmp_path))
    assert _basic(backend) == ("svc-retriever", "reader-secret")
    assert isinstance(backend, OpenSearchBackend)
    assert (backend.knn.engine, backend.knn.m, backend.knn.replicas) == ("lucene", 24, 0)


def test_the_ingestion_writes_with_its_own_account(tmp_path: Path) -> None:
    config = _opensearch(tmp_path)
    secret = tmp_path / "ingest.password"
    secret.write_text("ingest-secret\n", encoding="utf-8")
    args = cli.build_parser().parse_args(
        ["ingest", "--config", "c.yml", "--manifest", "m.yml", "--backend-user", "svc-ingest",
         "--backend-password-file", str(secret)]
    )  # fmt: skip
    backend = cli.make_backend(config, args.backend_user, args.backend_password_file)
    assert _basic(backend) == ("svc-ingest", "ingest-secret")


@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        ("svc-ingest", None, "go together"),
        (None, "ingest.password", "go together"),
        ("svc-ingest", "missing.password", "cannot be read"),
        ("svc-ingest", "empty.password", "is empty"),
    ],
)
def test_an_incomplete_or_unreadable_account_is_refused(
    tmp_path: Path, user: str | None, password: str | None, message: str
) -> None:
    config = _opensearch(tmp_path)
    (tmp_path / "ingest.password").write_text("x\n", encoding="utf-8")
    (tmp_path / "empty.password").write_text("\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        cli.make_backend(config, user, tmp_path / password if password else None)


def test_the_embedded_backend_has_no_accounts(tmp_path: Path) -> None:
    config = _config(tmp_path, {"type": "embedded", "root": str(tmp_path / "db")})
    assert isinstance(cli.make_backend(config), EmbeddedBackend)
    with pytest.raises(ManifestError, match="no accounts"):
        cli.make_backend(config, "svc-ingest", tmp_path / "x")
