"""An in-process OCI registry for httpx.MockTransport: enough of distribution for tests."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx


class _Dropping(httpx.SyncByteStream):
    """Sends ``data`` up to ``cut`` bytes, then breaks the connection."""

    def __init__(self, data: bytes, cut: int) -> None:
        self._data, self._cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        yield self._data[: self._cut]
        raise httpx.RemoteProtocolError("peer closed connection mid-body")


@dataclass
class FakeRegistry:
    username: str | None = None
    password: str | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # blob digest -> body bytes sent
    drop_blob_at: dict[str, int] = field(default_factory=dict)  # digest -> cut, once
    drop_patch_once: bool = False
    corrupt: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _authorised(self, request: httpx.Request) -> bool:
        if self.username is None:
            return True
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return bool(request.headers.get("Authorization") == f"Basic {token}")

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if not self._authorised(request):
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        path = request.url.path
        if m := re.fullmatch(r"/v2/(.+)/blobs/uploads/", path):
            upload = uuid.uuid4().hex
            self.uploads[upload] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/{m[1]}/blobs/uploads/{upload}"})
        if m := re.fullmatch(r"/v2/(.+)/blobs/uploads/([0-9a-f]+)", path):
            return self._upload(request, m[1], m[2])
        if m := re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", path):
            return self._blob(request, m[2])
        if m := re.fullmatch(r"/v2/(.+)/manifests/(.+)", path):
            return self._manifest(request, m[2])
        return httpx.Response(404)

    def _upload(self, request: httpx.Request, repo: str, upload: str) -> httpx.Response:
        held = self.uploads[upload]
        location = {"Location": f"/v2/{repo}/blobs/uploads/{upload}"}
        if request.method == "GET":
            end = max(len(held) - 1, 0)
            return httpx.Response(204, headers={**location, "Range": f"0-{end}"})
        body = request.read()
        if request.method == "PATCH":
            start = int(request.headers["Content-Range"].split("-")[0])
            if start != len(held):
                return httpx.Response(416)
            held.extend(body)
            if self.drop_patch_once:
                self.drop_patch_once = False
                raise httpx.WriteError("connection reset during PATCH")
            return httpx.Response(202, headers={**location, "Range": f"0-{len(held) - 1}"})
        if request.method == "PUT":
            held.extend(body)
            digest = request.url.params["digest"]
            if "sha256:" + hashlib.sha256(held).hexdigest() != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            self.blobs[digest] = bytes(held)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(405)

    def _blob(self, request: httpx.Request, digest: str) -> httpx.Response:
        if digest not in self.blobs:
            return httpx.Response(404)
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(self.blobs[digest]))})
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        start, status, headers = 0, 200, {}
        if m := re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", "")):
            start, status = int(m[1]), 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        cut = self.drop_blob_at.pop(digest, None)
        if cut is not None:
            self.served[digest] = self.served.get(digest, 0) + cut
            return httpx.Response(status, headers=headers, stream=_Dropping(body, cut))
        self.served[digest] = self.served.get(digest, 0) + len(body)
        return httpx.Response(status, headers=headers, content=body)

    def _manifest(self, request: httpx.Request, reference: str) -> httpx.Response:
        if request.method == "PUT":
            body = request.read()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            document = json.loads(body)
            for descriptor in [document["config"], *document["layers"]]:
                if descriptor["digest"] not in self.blobs:
                    return httpx.Response(400, json={"errors": [{"code": "MANIFEST_BLOB_UNKNOWN"}]})
            self.manifests[digest] = body
            if not reference.startswith("sha256:"):
                self.tags[reference] = digest
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        digest = self.tags.get(reference, reference)
        if digest not in self.manifests:
            return httpx.Response(404)
        return httpx.Response(200, content=self.manifests[digest])
