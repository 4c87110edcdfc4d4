"""A small OpenAI-compatible server (and OAuth2 token endpoint) on 127.0.0.1, for the runner.

It answers ``/v1/completions`` from a dict (prompt -> completion text), lists its
models, tells its vLLM version, and grants tokens by the password and
client-credentials grants. Everything it is asked is recorded for the tests to
check. Served by uvicorn in a thread (tests.support.uvicorn_thread), optionally
over TLS with a CA made for the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.keys import write_test_tls
from tests.support.uvicorn_thread import serving

ROOT = Path(__file__).resolve().parents[3]
TINY_QA = ROOT / "files" / "eval" / "tiny_qa.jsonl"
MODEL = "sovereign-tiny"
CLIENT_ID, CLIENT_SECRET = "sovereign-eval", "client-secret-for-tests"
USERNAME, PASSWORD = "eval-bot", "password-for-tests"
# A name only the certificate knows: reached with --resolve, as the lab's hosts are.
TLS_NAME = "gateway.sovereign.test"


def dataset_answers(path: Path = TINY_QA) -> dict[str, str]:
    """prompt -> the completion a perfect model gives (one space, then the target)."""
    answers = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        answers[record["input"]] = " " + record["target"]
    return answers


def half_wrong(answers: dict[str, str]) -> dict[str, str]:
    """Every second answer replaced by a wrong one: half the items right."""
    return {
        prompt: text if index % 2 == 0 else " I do not know"
        for index, (prompt, text) in enumerate(answers.items())
    }


@dataclass
class FakeBackend:
    """What the server answers and what it was asked."""

    answers: dict[str, str]
    models: list[str] = field(default_factory=lambda: [MODEL])
    version: str | None = "0.32.0"
    require_token: bool = False
    expired_tokens: set[str] = field(default_factory=set)
    # prompt -> alternative answers for its 2nd, 3rd... request (not reproducible)
    flaky: dict[str, list[str]] = field(default_factory=dict)
    delay_s: float = 0.0
    status: int = 200
    pad_bytes: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    grants: list[dict[str, str]] = field(default_factory=list)
    asked: Counter[str] = field(default_factory=Counter)
    issued: int = 0

    def _authorised(self, request: Request) -> bool:
        if not self.require_token:
            return True
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        return (
            header.startswith("Bearer ")
            and token.startswith("tok-")
            and (token not in self.expired_tokens)
        )

    async def completions(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        if not self._authorised(request):
            return JSONResponse({"error": {"message": "invalid token"}}, status_code=401)
        body = await request.json()
        self.requests.append(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return JSONResponse({"error": {"message": "backend on fire"}}, self.status)
        prompt = body["prompt"]
        self.asked[prompt] += 1
        text = self.answers.get(prompt, " no idea")
        later = self.flaky.get(prompt)
        if later and self.asked[prompt] > 1:
            text = later[(self.asked[prompt] - 2) % len(later)]
        answer = {
            "id": f"cmpl-{len(self.requests)}",
            "object": "text_completion",
            "model": body["model"],
            "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            "padding": "x" * self.pad_bytes,
        }
        return JSONResponse(answer)

    async def list_models(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": {"message": "invalid token"}}, status_code=401)
        data = [
            {"id": name, "object": "model", "owned_by": "vllm", "root": f"/models/{name}"}
            for name in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def get_version(self, request: Request) -> Response:
        if self.version is None:
            return JSONResponse({"error": {"message": "no such endpoint"}}, status_code=404)
        return JSONResponse({"version": self.version})

    async def token(self, request: Request) -> Response:
        # application/x-www-form-urlencoded, parsed by hand: starlette's form
        # parser needs python-multipart, which the project does not install.
        form = dict(parse_qsl((await request.body()).decode("ascii"), strict_parsing=True))
        auth = request.headers.get("authorization", "")
        try:
            client = base64.b64decode(auth.removeprefix("Basic ")).decode()
        except ValueError:
            client = ""
        grant = {key: str(value) for key, value in form.items() if key != "password"}
        grant["client"] = client.partition(":")[0]
        self.grants.append(grant)
        if client != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "password":
            if form.get("username") != USERNAME or form.get("password") != PASSWORD:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "bad user credentials"},
                    status_code=400,
                )
        elif form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        self.issued += 1
        return JSONResponse(
            {"access_token": f"tok-{self.issued}", "token_type": "Bearer", "expires_in": 3600}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/version", self.get_version, methods=["GET"]),
                Route("/oauth2/token", self.token, methods=["POST"]),
            ]
        )


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> TLSFiles:
    """A CA and a server certificate it signed, for 127.0.0.1 and :data:`TLS_NAME`."""
    return TLSFiles(*write_test_tls(directory, [TLS_NAME]))


@contextmanager
def running(backend: FakeBackend, tls: TLSFiles | None = None) -> Iterator[str]:
    """Serve ``backend`` on a free loopback port; yields its origin (``http(s)://127.0.0.1:N``)."""
    config = uvicorn.Config(
        backend.app(),
        host="127.0.0.1",
        port=0,
        log_level="error",
        lifespan="off",
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    with serving(config) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
