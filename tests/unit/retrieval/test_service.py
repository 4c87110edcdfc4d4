"""The retrieval API in process (Starlette TestClient): identity, bounds, ACLs, the log."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sovereign.gateway.errors import AuthenticationError
from sovereign.gateway.identity import Principal
from sovereign.retrieval import cli, logs
from sovereign.retrieval.chunk import ChunkerConfig
from sovereign.retrieval.config import ServiceConfig, parse_config
from sovereign.retrieval.embedded import EmbeddedBackend
from sovereign.retrieval.embedding import Embedder
from sovereign.retrieval.errors import EmbeddingError, ManifestError
from sovereign.retrieval.ingest import Ingestor, load_manifest
from sovereign.retrieval.service import RetrievalService, build_app
from tests.support.keys import write_ec_key_pair

from .conftest import HashEmbedder

ROOT = Path(__file__).resolve().parents[3]
USERS = {
    "alice-token": Principal("alice", frozenset({"analysts"}), "retail", "oidc"),
    "bob-token": Principal("bob", frozenset({"analysts", "risk-officers"}), "risk", "oidc"),
    "eve-token": Principal("eve", frozenset({"Visitors Group"}), None, "oidc"),
}
QUESTION = "Who reviews suspicious transactions?"


class Verifier:
    async def verify(self, token: str) -> Principal:
        if token not in USERS:
            raise AuthenticationError("the token's signature does not verify")
        return USERS[token]


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []
        self.failing = False
        self.healthy = True

    async def append(self, record: dict[str, object]) -> object:
        if self.failing:
            raise OSError("disk full")
        self.records.append(record)
        return None


def config_for(tmp_path: Path) -> ServiceConfig:
    return parse_config(
        {
            "backend": {"type": "embedded", "root": str(tmp_path / "db")},
            "embedding": {
                "gateway_url": "https://gateway.example",
                "model": "hash-embedder",
                "release": "hash-1",
                "digest": HashEmbedder().digest,
                "dimension": HashEmbedder().dimension,
            },
            "oidc": {"issuer": "https://idp.example", "audience": "sovereign"},
            "search": {"max_k": 10},
            "log": {
                "directory": str(tmp_path / "log"),
                "retention_days": {"internal": 30, "confidential": 365},
            },
        },
        "test",
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("service")
    backend = EmbeddedBackend(root / "db")
    Ingestor(backend, HashEmbedder(), ChunkerConfig(), "chunks").run(
        load_manifest(ROOT / "files" / "corpus" / "manifest.yml")
    )
    return root


class Harness:
    def __init__(self, root: Path, embedder: Embedder | None = None) -> None:
        self.config = config_for(root)
        self.sink = Sink()
        self.tokens_seen: list[str] = []

        self.labels_seen: list[str | None] = []

        def embedder_for(token: str, data_class: str | None) -> Embedder:
            self.tokens_seen.append(token)
            self.labels_seen.append(data_class)
            return embedder or HashEmbedder()

        service = RetrievalService(
            self.config,
            EmbeddedBackend(root / "db"),
            Verifier(),
            embedder_for,
            self.sink,
        )
        self.client = TestClient(build_app(service), raise_server_exceptions=False)

    def search(self, token: str | None, body: object, **headers: str) -> Any:
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post("/v1/retrieval/search", content=content, headers=headers)


def test_alice_and_bob_get_what_their_access_lists_allow(corpus: Path) -> None:
    harness = Harness(corpus)
    found = {}
    for user in ("alice", "bob"):
        response = harness.search(f"{user}-token", {"query": QUESTION, "k": 10})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["index"].startswith("chunks-") and body["binding"].startswith("sha256:")
        found[user] = {hit["doc_id"] for hit in body["data"]}
    assert "suspicious-transaction-review" in found["bob"]
    assert "suspicious-transaction-review" not in found["alice"]
    assert harness.tokens_seen == ["alice-token", "bob-token"]  # each embedded as itself
    alice, bob = harness.sink.records
    assert (alice["user"], alice["status"], alice["data_class"]) == ("alice", 200, "internal")
    assert bob["data_class"] == "confidential"
    assert "query" not in alice and alice["query_chars"] == len(QUESTION)
    results = bob["results"]
    assert isinstance(results, list)
    assert {r["doc_id"] for r in results} == found["bob"]


def test_a_reader_with_no_usable_group_gets_nothing_not_an_error(corpus: Path) -> None:
    response = Harness(corpus).search("eve-token", {"query": QUESTION})
    assert response.status_code == 200 and response.json()["data"] == []


@pytest.mark.parametrize(
    ("token", "body", "status", "code"),
    [
        (None, {"query": QUESTION}, 401, "missing_token"),
        ("forged", {"query": QUESTION}, 401, "invalid_token"),
        ("x" * 20000, {"query": QUESTION}, 401, "token_too_large"),
        ("alice-token", b"{not json", 400, "invalid_json"),
        ("alice-token", [QUESTION], 400, "invalid_json"),
        ("alice-token", {"query": QUESTION, "filter": {"acl": "*"}}, 400, "unknown_field"),
        ("alice-token", {"query": ""}, 400, "invalid_query"),
        ("alice-token", {"query": "x" * 1001}, 400, "query_too_long"),
        ("alice-token", {"query": QUESTION, "k": 11}, 400, "invalid_k"),
        ("alice-token", {"query": QUESTION, "k": True}, 400, "invalid_k"),
        ("alice-token", {"query": QUESTION, "mode": "sql"}, 400, "invalid_mode"),
        ("alice-token", b"{" + b" " * 20000 + b"}", 413, "request_too_large"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(
    corpus: Path, token: str | None, body: object, status: int, code: str
) -> None:
    response = Harness(corpus).search(token, body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "x-request-id" in response.headers


def test_a_search_the_log_cannot_record_returns_nothing(corpus: Path) -> None:
    harness = Harness(corpus)
    harness.sink.failing = True
    response = harness.search("bob-token", {"query": QUESTION})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "log_unavailable"
    assert "data" not in response.json()


def test_a_query_embedded_by_another_model_is_refused_and_logged(corpus: Path) -> None:
    other = HashEmbedder(model="hash-embedder", digest="sha256:" + "77" * 32)
    harness = Harness(corpus, embedder=other)
    # The service checks the configured digest; an index of another model refuses it.
    harness.config = harness.config.model_copy(
        update={"embedding": harness.config.embedding.model_copy(update={"digest": other.digest})}
    )
    service = RetrievalService(
        harness.config,
        EmbeddedBackend(corpus / "db"),
        Verifier(),
        lambda token, data_class: other,
        harness.sink,
    )
    client = TestClient(build_app(service))
    response = client.post(
        "/v1/retrieval/search",
        json={"query": QUESTION},
        headers={"authorization": "Bearer bob-token"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "binding_mismatch"
    assert harness.sink.records[-1]["outcome"] == "binding_mismatch"


def test_an_embedding_failure_is_a_502(corpus: Path) -> None:
    class Broken(HashEmbedder):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            raise EmbeddingError("the gateway answered 429 to /v1/embeddings")

    response = Harness(corpus, embedder=Broken()).search("alice-token", {"query": QUESTION})
    assert response.status_code == 502


def test_health_names_the_live_index(corpus: Path, tmp_path: Path) -> None:
    ok = Harness(corpus).client.get("/healthz")
    assert ok.status_code == 200 and ok.json()["index"].startswith("chunks-")
    assert Harness(tmp_path).client.get("/healthz").status_code == 503
    assert Harness(corpus).client.get("/v1/retrieval/nothing").status_code == 404


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    raw = config_for(tmp_path).model_dump(mode="json")
    raw["search"]["alias"] = "Bad Alias"
    with pytest.raises(ManifestError, match="search.alias"):
        parse_config(raw, "retrieval.yml")
    raw = config_for(tmp_path).model_dump(mode="json")
    raw["backend"]["type"] = "elastic"
    with pytest.raises(ManifestError, match="backend"):
        parse_config(raw, "retrieval.yml")


def test_reading_the_logs_is_itself_recorded_first(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    path = tmp_path / "retrieval.yml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    record = logs.search_record(
        request_id="r1",
        user="bob",
        groups=["risk-officers"],
        query=QUESTION,
        k=5,
        mode="hybrid",
        index="chunks-abc",
        binding="sha256:" + "0" * 64,
        hits=[],
        status=200,
        outcome="ok",
        config=config.log,
    )

    async def write() -> None:
        sink = await logs.open_log(config.log)
        await sink.append(record)
        await sink.close()

    asyncio.run(write())
    out = io.StringIO()
    argv = ["logs", "read", "--config", str(path), "--reader", "auditor-1", "--reason", "INC-42"]
    assert cli.main(argv, out) == 0
    (printed,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed["request_id"] == "r1" and printed["query_sha256"] != QUESTION
    # In a directory of its own: a reader never opens a second writer on the
    # directory the running service writes.
    assert not (tmp_path / "log" / logs.ACCESS_CLASS).exists()
    access = (tmp_path / "log-access" / logs.ACCESS_CLASS).glob("*.jsonl")
    text = "".join(p.read_text() for p in access)
    assert '"reader":"auditor-1"' in text and '"reason":"INC-42"' in text


def test_pruning_needs_the_signing_key_and_leaves_the_live_log_alone(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    path = tmp_path / "retrieval.yml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    out = io.StringIO()
    assert cli.main(["logs", "prune", "--config", str(path)], out) != 0
    private, _ = write_ec_key_pair(tmp_path, "log-signing")
    data = config.model_dump(mode="json")
    data["log"]["signing_key"] = str(private)
    path.write_text(json.dumps(data))

    async def write() -> None:
        sink = await logs.open_log(parse_config(data, "test").log)
        await sink.append(
            logs.search_record(
                request_id="r1", user="bob", groups=[], query=QUESTION, k=1, mode="hybrid",
                index=None, binding=None, hits=[], status=200, outcome="ok",
                config=parse_config(data, "test").log,
            )
        )  # fmt: skip
        await sink.close()

    asyncio.run(write())
    before = sorted(p.name for p in (tmp_path / "log").rglob("*"))
    assert cli.main(["logs", "prune", "--config", str(path)], out) == 0
    # Today's records are within every retention: nothing removed, nothing written.
    assert sorted(p.name for p in (tmp_path / "log").rglob("*")) == before


def test_the_ingest_command_reports_and_a_second_run_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_for(tmp_path)
    path = tmp_path / "retrieval.yml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    token = tmp_path / "token"
    token.write_text("svc-ingest-token\n")
    monkeypatch.setattr(cli, "make_embedder", lambda config, bearer: HashEmbedder())
    manifest = ROOT / "files" / "corpus" / "manifest.yml"
    argv = [
        "ingest",
        "--config",
        str(path),
        "--manifest",
        str(manifest),
        "--token-file",
        str(token),
    ]
    runs = []
    for _ in range(2):
        out = io.StringIO()
        assert cli.main(argv, out) == 0
        runs.append(json.loads(out.getvalue()))
    assert runs[0]["changed"] and len(runs[0]["added"]) == 10 and runs[0]["switched_from"] is None
    assert not runs[1]["changed"] and runs[1]["unchanged"] == 10
    assert runs[0]["index"] == runs[1]["index"]
    bad = ["ingest", "--config", str(tmp_path / "missing.yml"), "--manifest", str(manifest)]
    assert cli.main(bad, io.StringIO()) == 1


def test_a_search_past_its_deadline_is_a_504_at_the_deadline(corpus: Path) -> None:
    import time

    class Slow(HashEmbedder):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            time.sleep(3)
            return super().embed(texts)

    harness = Harness(corpus, embedder=Slow())
    raw = harness.config.model_dump(mode="json")
    raw["search"]["timeout_s"] = 0.5
    config = parse_config(raw, "test")
    service = RetrievalService(
        config,
        EmbeddedBackend(corpus / "db"),
        Verifier(),
        lambda token, data_class: Slow(),
        harness.sink,
    )
    started = time.monotonic()
    response = TestClient(build_app(service)).post(
        "/v1/retrieval/search",
        json={"query": QUESTION},
        headers={"authorization": "Bearer bob-token"},
    )
    assert response.status_code == 504 and time.monotonic() - started < 2.5
    assert harness.sink.records[-1]["outcome"] == "timeout"


def test_a_started_service_writes_its_real_log_and_closes_it_on_shutdown(
    corpus: Path, tmp_path: Path
) -> None:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from sovereign.audit.errors import AuditWriteError

    config = config_for(tmp_path).model_copy(update={"backend": config_for(corpus).backend})
    opened: list[object] = []

    @asynccontextmanager
    async def starting() -> AsyncIterator[RetrievalService]:
        sink = await logs.open_log(config.log)
        opened.append(sink)
        try:
            yield RetrievalService(config, EmbeddedBackend(corpus / "db"), Verifier(),
                                   lambda token, data_class: HashEmbedder(), sink)  # fmt: skip
        finally:
            await sink.close()

    with TestClient(build_app(starting=starting)) as client:
        response = client.post(
            "/v1/retrieval/search", json={"query": QUESTION},
            headers={"authorization": "Bearer bob-token"},
        )  # fmt: skip
        assert response.status_code == 200
    (sink,) = opened
    written = "".join(p.read_text() for p in (tmp_path / "log").glob("*/*.jsonl"))
    assert '"user":"bob"' in written and response.json()["index"] in written

    async def append_after_close() -> None:
        await sink.append({"data_class": "internal"})  # type: ignore[attr-defined]

    with pytest.raises(AuditWriteError, match="closed"):
        asyncio.run(append_after_close())
    with pytest.raises(ValueError):
        build_app()


def test_the_ingestion_grant_asks_for_the_openid_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    from sovereign.eval import connection

    asked: list[connection.TokenSettings] = []

    class Source:
        def __init__(self, settings: connection.TokenSettings, verify: object) -> None:
            asked.append(settings)

        def bearer(self) -> str:
            return "token"

    monkeypatch.setattr(connection, "TokenSource", Source)
    argv = ["ingest", "--config", "c", "--manifest", "m", "--token-url", "https://idp/token"]
    bearer = cli._service_bearer(cli.build_parser().parse_args(argv))
    assert bearer() == "token"
    # The lab's IdP refuses a password grant without a scope (invalid_scope).
    assert asked[0].scope == "openid"


def test_the_readers_label_goes_on_to_the_gateway_and_a_bad_one_is_refused(
    corpus: Path,
) -> None:
    harness = Harness(corpus)
    labelled = harness.search(
        "bob-token", {"query": QUESTION}, **{"x-sovereign-data-class": "confidential"}
    )
    assert labelled.status_code == 200, labelled.text
    assert harness.search("alice-token", {"query": QUESTION}).status_code == 200
    assert harness.labels_seen == ["confidential", None]
    bad = harness.search("bob-token", {"query": QUESTION}, **{"x-sovereign-data-class": "secret"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_data_class"
