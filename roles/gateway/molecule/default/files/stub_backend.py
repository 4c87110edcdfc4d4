"""A stand-in for vLLM and the IdP's discovery endpoints, for the molecule scenario.

Serves, on one loopback port:
  GET  /.well-known/openid-configuration, /jwks.json  (the public key in argv[2])
  POST /v1/completions, /v1/chat/completions          (a fixed answer with usage;
                                                       SSE when "stream" is true)
  GET  /seen                                          (headers of the last request)
Runs with the sovereign virtualenv's Python (cryptography, PyJWT).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import RSAAlgorithm

PORT = int(sys.argv[1])
ISSUER = f"http://127.0.0.1:{PORT}"
JWK = json.loads(RSAAlgorithm.to_jwk(load_pem_public_key(Path(sys.argv[2]).read_bytes())))
JWK.update({"kid": "molecule-1", "alg": "RS256", "use": "sig"})
SEEN: dict[str, str] = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/.well-known/openid-configuration":
            self._json(200, {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks.json"})
        elif self.path == "/jwks.json":
            self._json(200, {"keys": [JWK]})
        elif self.path == "/seen":
            self._json(200, SEEN)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        SEEN.clear()
        SEEN.update({key.lower(): value for key, value in self.headers.items()})
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        chat = self.path == "/v1/chat/completions"
        if not body.get("stream"):
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": "14 characters"}}
                if chat
                else {"index": 0, "text": " 14 characters"}
            )
            self._json(
                200,
                {
                    "id": "stub",
                    "object": "completion",
                    "model": body.get("model"),
                    "choices": [choice],
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [{"choices": [{"index": 0, "text": word}]} for word in (" 14", " characters")]
        events.append({"choices": [], "usage": usage})
        for event in events:
            self._chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
