"""``sovereign retrieval``: ingest a corpus, serve the retrieval API, read and prune its logs.

    sovereign retrieval ingest --config FILE --manifest FILE (--token-file F | --token-url ...)
    sovereign retrieval serve --config FILE
    sovereign retrieval logs read --config FILE --reader NAME --reason TEXT [--class C] [--days N]
    sovereign retrieval logs prune --config FILE

Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from sovereign.audit.errors import AuditError
from sovereign.eval.errors import EvalError
from sovereign.retrieval import logs
from sovereign.retrieval.answer import GatewayCompleter
from sovereign.retrieval.backend import Backend
from sovereign.retrieval.chunk import ChunkerConfig
from sovereign.retrieval.config import ServiceConfig, load_config
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.embedding import GatewayEmbedder
from sovereign.retrieval.errors import ManifestError, RetrievalError
from sovereign.retrieval.ingest import Ingestor, load_manifest
from sovereign.retrieval.opensearch import KnnSettings, OpenSearchBackend

MAX_SECRET_BYTES = 64 * 1024


def make_backend(
    config: ServiceConfig, user: str | None = None, password_file: Path | None = None
) -> Backend:
    """The configured backend. ``user`` and ``password_file`` replace the
    configuration's OpenSearch account: the service reads with a read-only
    account, the ingestion writes with one of its own (``ingest
    --backend-user``)."""
    spec = config.backend
    if spec.type == "embedded":
        if user or password_file:
            raise ManifestError("--backend-user: the embedded backend has no accounts")
        return EmbeddedBackend(spec.root)
    if bool(user) != bool(password_file):
        raise ManifestError("--backend-user and --backend-password-file go together")
    source = password_file or spec.password_file
    try:
        password = source.read_text(encoding="utf-8")[:MAX_SECRET_BYTES].strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"backend password file {source} cannot be read") from exc
    if not password:
        raise ManifestError(f"backend password file {source} is empty")
    return OpenSearchBackend(
        spec.url,
        (user or spec.user, password),
        verify=str(spec.ca_file) if spec.ca_file else True,
        knn=KnnSettings(**spec.knn.model_dump()),
        namespace=spec.namespace,
        timeout_s=spec.timeout_s,
    )


def make_embedder(
    config: ServiceConfig, bearer: Callable[[], str], data_class: str | None = None
) -> GatewayEmbedder:
    """The gateway's /v1/embeddings for the configured release, asked with ``bearer()``."""
    spec = config.embedding
    return GatewayEmbedder(
        base_url=spec.gateway_url,
        model=spec.model,
        release=spec.release,
        digest=spec.digest,
        dimension=spec.dimension,
        token=bearer,
        timeout_s=spec.timeout_s,
        verify=str(spec.ca_file) if spec.ca_file else True,
        batch_size=spec.batch_size,
        truncate_tokens=spec.truncate_tokens,
        data_class=data_class,
    )


def make_completer(
    config: ServiceConfig,
) -> Callable[[str, str | None], GatewayCompleter] | None:
    """The answers' completion client for a reader's token, when answers are configured."""
    answering = config.answer
    if answering is None:
        return None

    def completer(token: str, data_class: str | None = None) -> GatewayCompleter:
        return GatewayCompleter(
            base_url=config.embedding.gateway_url,
            model=answering.model,
            token=lambda: token,
            max_tokens=answering.max_tokens,
            timeout_s=answering.timeout_s,
            verify=str(config.embedding.ca_file) if config.embedding.ca_file else True,
            data_class=data_class,
        )

    return completer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sovereign retrieval", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="bring the index to a corpus manifest")
    ingest.add_argument("--config", type=Path, required=True)
    ingest.add_argument("--manifest", type=Path, required=True)
    ingest.add_argument("--window-words", type=int, default=ChunkerConfig.window_words)
    ingest.add_argument("--overlap-words", type=int, default=ChunkerConfig.overlap_words)
    ingest.add_argument("--keep", type=int, default=2, help="indexes kept per alias (live + older)")
    ingest.add_argument("--token-file", type=Path)
    ingest.add_argument("--token-url")
    ingest.add_argument("--client-id")
    ingest.add_argument("--client-secret-file", type=Path)
    ingest.add_argument("--username")
    ingest.add_argument("--password-file", type=Path)
    ingest.add_argument("--cacert", type=Path, help="CA bundle of the identity provider")
    ingest.add_argument("--scope", default="openid", help="scope to ask for (default openid)")
    ingest.add_argument(
        "--backend-user", help="OpenSearch account that writes the index (default: the config's)"
    )
    ingest.add_argument("--backend-password-file", type=Path, help="its password, in a file")
    serve = commands.add_parser("serve", help="serve the retrieval API")
    serve.add_argument("--config", type=Path, required=True)
    logs_parser = commands.add_parser("logs", help="the retrieval logs")
    logs_commands = logs_parser.add_subparsers(dest="logs_command", required=True)
    read = logs_commands.add_parser("read", help="print search records (the read is recorded)")
    read.add_argument("--config", type=Path, required=True)
    read.add_argument("--reader", required=True, help="who reads (recorded)")
    read.add_argument("--reason", required=True, help="why (recorded), e.g. a ticket")
    read.add_argument("--class", dest="classes", action="append", default=[])
    read.add_argument("--days", type=float, default=7.0)
    prune = logs_commands.add_parser("prune", help="remove records past their class's retention")
    prune.add_argument("--config", type=Path, required=True)
    return parser


def _service_bearer(args: argparse.Namespace) -> Callable[[], str]:
    """The ingesting service account's token: from a file or the identity provider's grant."""
    from sovereign.eval.connection import TokenSettings, TokenSource, tls_context

    settings = TokenSettings(
        token_file=args.token_file,
        token_url=args.token_url,
        client_id=args.client_id,
        client_secret_file=args.client_secret_file,
        username=args.username,
        password_file=args.password_file,
        # An identity provider refuses a grant without a scope it knows.
        scope=args.scope if args.token_url else None,
    )
    source = TokenSource(settings, verify=tls_context(args.cacert))

    def bearer() -> str:
        value = source.bearer()
        if not value:
            raise RetrievalError("no bearer token for the gateway's /v1/embeddings")
        return value

    return bearer


def run_ingest(args: argparse.Namespace, out: TextIO) -> None:
    config = load_config(args.config)
    chunker = ChunkerConfig(window_words=args.window_words, overlap_words=args.overlap_words)
    ingestor = Ingestor(
        backend=make_backend(config, args.backend_user, args.backend_password_file),
        embedder=make_embedder(config, _service_bearer(args)),
        chunker=chunker,
        alias=config.search.alias,
    )
    report = ingestor.run(load_manifest(args.manifest))
    dropped = ingestor.prune(keep=args.keep)
    summary = {
        "changed": report.changed,
        "alias": report.alias,
        "index": report.index,
        "binding": report.binding.digest,
        "created": report.created,
        "switched_from": report.switched_from if report.switched else None,
        "added": report.added,
        "updated": report.updated,
        "removed": report.removed,
        "unchanged": report.unchanged,
        "chunks_written": report.chunks,
        "dropped_indexes": dropped,
    }
    out.write(json.dumps(summary, sort_keys=True) + "\n")


def run_serve(args: argparse.Namespace) -> None:
    import httpx
    import uvicorn

    from sovereign.gateway.identity import OidcVerifier
    from sovereign.retrieval.service import RetrievalService, build_app

    config = load_config(args.config)
    backend = make_backend(config)
    completer_for = make_completer(config)

    @asynccontextmanager
    async def running() -> AsyncIterator[RetrievalService]:
        # In uvicorn's event loop (the log's writer task lives there); the
        # log is closed, with its final checkpoints, when the server stops.
        sink = await logs.open_log(config.log)
        try:
            async with httpx.AsyncClient(
                verify=str(config.oidc.ca_bundle) if config.oidc.ca_bundle else True,
                timeout=config.oidc.timeout_s,
            ) as client:
                yield RetrievalService(
                    config,
                    backend,
                    OidcVerifier(config.oidc, client),
                    lambda token, data_class: make_embedder(config, lambda: token, data_class),
                    sink,
                    completer_for=completer_for,
                )
        finally:
            await sink.close()

    listen = config.listen
    uvicorn.run(
        build_app(starting=running),
        host=listen.host,
        port=listen.port,
        ssl_certfile=str(listen.certfile) if listen.certfile else None,
        ssl_keyfile=str(listen.keyfile) if listen.keyfile else None,
        lifespan="on",
        log_level="info",
    )


async def _read_logs(args: argparse.Namespace, out: TextIO) -> None:
    config = load_config(args.config)
    since = time.time() - args.days * 86400
    # The read is recorded before anything is printed: no record, no read.
    # One reader's writer at a time on the access log (never the service's).
    with open(logs.access_lock(config.log), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sink = await logs.open_access_log(config.log)
        try:
            await sink.append(logs.access_record(args.reader, args.reason, args.classes, since))
        finally:
            await sink.close()
    for record in logs.read_records(config.log.directory, args.classes, since):
        out.write(json.dumps(record, sort_keys=True) + "\n")


async def _prune(args: argparse.Namespace, out: TextIO) -> None:
    config = load_config(args.config)
    removed = await asyncio.to_thread(logs.prune, config.log)
    for path in removed:
        out.write(f"removed {path}\n")


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "ingest":
            run_ingest(args, out)
        elif args.command == "serve":
            run_serve(args)
        elif args.logs_command == "read":
            asyncio.run(_read_logs(args, out))
        else:
            asyncio.run(_prune(args, out))
    except (RetrievalError, AuditError, EvalError) as exc:
        print(f"sovereign retrieval: {exc}", file=sys.stderr)
        return 1
    return 0
