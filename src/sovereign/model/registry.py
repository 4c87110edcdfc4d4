"""A small OCI distribution client over httpx: what publish and pull need, and resume.

Uploads go in PATCH chunks; when a connection breaks, the client asks the
registry how far the upload got (GET on the upload URL, ``Range`` header) and
goes on from there. Downloads go to a ``.part`` file; an interrupted one,
in this process or the next, continues with ``Range: bytes=N-``, and the
SHA-256 is computed while streaming (the bytes already on disk are hashed
first). Basic auth is sent pre-emptively over TLS; a Bearer challenge
(token servers in front of Harbor or distribution) is answered too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from sovereign.model.credentials import Credentials
from sovereign.model.errors import (
    AuthenticationError,
    DigestMismatchError,
    RegistryError,
    TransferError,
    UsageError,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_READ_SIZE = 1024 * 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class TransferStats:
    """What went over the wire (payload bytes only), for tests and the benchmark."""

    bytes_sent: int = 0
    bytes_received: int = 0
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    resumes: int = 0


def _registry_message(response: httpx.Response) -> str:
    try:
        errors = json.loads(response.read()).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or ""
    except (ValueError, AttributeError, httpx.HTTPError):
        return ""


class RegistryClient:
    """One registry, one set of credentials; use as a context manager."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        ca_bundle: Path | None = None,
        plain_http: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        max_attempts: int = 5,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if chunk_size <= 0 or max_attempts <= 0:
            raise UsageError("chunk size and attempts must be positive")
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot use CA bundle {ca_bundle}: {exc}") from exc
        self.registry = registry
        self.stats = TransferStats()
        self._credentials = credentials
        self._authorization = credentials.basic_header() if credentials else None
        self._max_attempts = max_attempts
        self._chunk_size = chunk_size
        scheme = "http" if plain_http else "https"
        self._http = httpx.Client(
            base_url=f"{scheme}://{registry}",
            verify=verify,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,  # blob stores redirect; httpx drops auth across hosts
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- requests and auth ------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        for attempt in range(2):
            request_headers = dict(headers or {})
            if self._authorization:
                request_headers["Authorization"] = self._authorization
            try:
                request = self._http.build_request(
                    method, url, headers=request_headers, content=content
                )
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise TransferError(
                    f"{method} {self.registry}: connection failed: {exc or type(exc).__name__}"
                ) from exc
            except httpx.HTTPError as exc:
                raise RegistryError(f"{method} {self.registry}: {exc}") from exc
            if response.status_code != 401 or attempt == 1:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            self._authenticate(challenge)
        raise AssertionError("unreachable")

    def _authenticate(self, challenge: str) -> None:
        scheme, _, params_text = challenge.partition(" ")
        if self._credentials is None:
            raise AuthenticationError(
                f"{self.registry} requires authentication: pass --username with "
                "--password-stdin, set SOVEREIGN_REGISTRY_USERNAME/PASSWORD, or use "
                "--registry-config",
                401,
            )
        if scheme.lower() == "basic":
            if self._authorization == self._credentials.basic_header():
                raise AuthenticationError(
                    f"{self.registry} rejected the credentials of {self._credentials.username!r}",
                    401,
                )
            self._authorization = self._credentials.basic_header()
            return
        if scheme.lower() != "bearer":
            raise AuthenticationError(f"{self.registry} asks for unsupported auth {scheme!r}")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        realm = params.pop("realm", "")
        if not realm:
            raise AuthenticationError(f"{self.registry} sent a Bearer challenge without realm")
        try:
            answer = self._http.get(
                realm,
                params=params,
                headers={"Authorization": self._credentials.basic_header()},
            )
        except httpx.HTTPError as exc:
            raise AuthenticationError(f"token server {realm} failed: {exc}") from exc
        if answer.status_code != 200:
            raise AuthenticationError(
                f"token server {realm} refused {self._credentials.username!r} "
                f"(HTTP {answer.status_code})",
                answer.status_code,
            )
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError) as exc:
            raise AuthenticationError(f"token server {realm} sent no JSON token") from exc
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"token server {realm} sent no token")
        self._authorization = f"Bearer {token}"

    def _fail(self, response: httpx.Response, what: str) -> RegistryError:
        detail = _registry_message(response)
        suffix = f": {detail}" if detail else ""
        status = response.status_code
        if status in (401, 403):
            return AuthenticationError(f"{what}: access denied (HTTP {status}){suffix}", status)
        return RegistryError(f"{what}: HTTP {status}{suffix}", status)

    # -- blobs --------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}")
        response.close()
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"checking blob {digest} in {repository}")

    def _absolute(self, location: str) -> str:
        return str(self._http.base_url.join(location))

    def _start_upload(self, repository: str) -> str:
        response = self._send("POST", f"/v2/{repository}/blobs/uploads/")
        response.close()
        if response.status_code != 202 or "Location" not in response.headers:
            raise self._fail(response, f"starting an upload to {repository}")
        return self._absolute(response.headers["Location"])

    def _upload_offset(self, location: str) -> tuple[str, int]:
        """Ask the registry how many bytes of an upload it holds."""
        response = self._send("GET", location)
        response.close()
        if response.status_code != 204:
            raise self._fail(response, "asking for upload progress")
        location = self._absolute(response.headers.get("Location", location))
        # distribution answers "0-0" for an empty upload: treat it as nothing held.
        _, _, end = response.headers.get("Range", "0-0").partition("-")
        end_value = int(end) if end.isdigit() else 0
        return location, end_value + 1 if end_value > 0 else 0

    def push_blob_file(self, repository: str, path: Path, digest: str, size: int) -> bool:
        """Upload ``path`` as blob ``digest`` in chunks unless present; True if uploaded."""
        if self.blob_exists(repository, digest):
            self.stats.blobs_skipped += 1
            return False
        location = self._start_upload(repository)
        offset, failures = 0, 0
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        with handle:
            while offset < size:
                handle.seek(offset)
                chunk = handle.read(min(self._chunk_size, size - offset))
                if not chunk:
                    raise DigestMismatchError(f"{path} shrank while it was uploaded")
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                }
                try:
                    response = self._send("PATCH", location, headers=headers, content=chunk)
                    response.close()
                except TransferError:
                    failures += 1
                    if failures >= self._max_attempts:
                        raise
                    self.stats.resumes += 1
                    location, offset = self._upload_offset(location)
                    continue
                if response.status_code == 416:
                    failures += 1
                    if failures >= self._max_attempts:
                        raise self._fail(response, f"uploading {path}")
                    location, offset = self._upload_offset(location)
                    continue
                if response.status_code != 202:
                    raise self._fail(response, f"uploading {path}")
                self.stats.bytes_sent += len(chunk)
                location = self._absolute(response.headers.get("Location", location))
                offset += len(chunk)
        self._finish_upload(location, digest, b"", what=str(path))
        self.stats.blobs_uploaded += 1
        return True

    def push_blob_bytes(self, repository: str, data: bytes) -> str:
        """Upload a small blob in one request (config, signature); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.blob_exists(repository, digest):
            self.stats.blobs_skipped += 1
            return digest
        location = self._start_upload(repository)
        self._finish_upload(location, digest, data, what=digest)
        self.stats.bytes_sent += len(data)
        self.stats.blobs_uploaded += 1
        return digest

    def _finish_upload(self, location: str, digest: str, data: bytes, *, what: str) -> None:
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        response = self._send(
            "PUT",
            str(url),
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )
        response.close()
        if response.status_code == 400 and "DIGEST_INVALID" in _registry_message(response):
            raise DigestMismatchError(f"{what} changed while it was uploaded (registry: digest)")
        if response.status_code != 201:
            raise self._fail(response, f"finishing the upload of {what}")

    def fetch_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        part: Path,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Download a blob into ``part``, resuming what is there; verify size and SHA-256.

        On a digest or size mismatch the part file is removed and
        DigestMismatchError raised. On a broken connection the bytes received
        are kept, so the next call resumes; within one call it retries up to
        ``max_attempts`` times.
        """
        hasher = hashlib.sha256()
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        if have:
            with part.open("rb") as existing:
                while block := existing.read(_READ_SIZE):
                    hasher.update(block)
        failures = 0
        with part.open("ab") as out:
            while have < size:
                headers = {"Range": f"bytes={have}-"} if have else {}
                try:
                    response = self._send(
                        "GET", f"/v2/{repository}/blobs/{digest}", headers=headers, stream=True
                    )
                except TransferError:
                    failures += 1
                    if failures >= self._max_attempts:
                        raise
                    self.stats.resumes += 1
                    continue
                try:
                    if response.status_code == 200 and have:
                        # The server ignored the range: start over rather than append twice.
                        out.truncate(0)
                        out.seek(0)
                        hasher, have = hashlib.sha256(), 0
                    elif response.status_code == 206:
                        start = response.headers.get("Content-Range", "").removeprefix("bytes ")
                        if not start.startswith(f"{have}-"):
                            raise RegistryError(
                                f"blob {digest}: asked for bytes {have}- but got {start!r}"
                            )
                    elif response.status_code != 200:
                        raise self._fail(response, f"downloading blob {digest}")
                    for block in response.iter_bytes():  # as received: nothing buffered is lost
                        out.write(block)
                        hasher.update(block)
                        have += len(block)
                        self.stats.bytes_received += len(block)
                        if have > size:
                            break
                        if on_progress is not None:
                            on_progress(len(block))
                except httpx.TransportError as exc:
                    out.flush()
                    failures += 1
                    if failures >= self._max_attempts:
                        raise TransferError(
                            f"downloading blob {digest} from {self.registry} broke off at "
                            f"byte {have} of {size} ({exc or type(exc).__name__}); run the "
                            "same pull again to resume"
                        ) from exc
                    self.stats.resumes += 1
                    continue
                finally:
                    response.close()
                if have >= size:
                    break
                # The body ended early without an error: resume from where it stopped.
                failures += 1
                if failures >= self._max_attempts:
                    raise TransferError(
                        f"blob {digest} ended at byte {have} of {size}; run the same pull "
                        "again to resume"
                    )
                self.stats.resumes += 1
            out.flush()
            os.fsync(out.fileno())
        actual = "sha256:" + hasher.hexdigest()
        if have != size or actual != digest:
            part.unlink()
            raise DigestMismatchError(
                f"blob {digest} is corrupt: received {have} bytes hashing to {actual} "
                f"(expected {size} bytes); nothing was kept"
            )

    # -- manifests -------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, body: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        response = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Content-Type": OCI_MANIFEST},
            content=body,
        )
        response.close()
        if response.status_code != 201:
            raise self._fail(response, f"pushing the manifest to {repository}:{reference}")
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise RegistryError(f"registry stored the manifest as {echoed}, expected {digest}")
        return digest

    def get_manifest(self, repository: str, digest: str) -> dict[str, Any]:
        response = self._send(
            "GET", f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        )
        try:
            if response.status_code == 404:
                raise RegistryError(f"{self.registry}/{repository}@{digest} does not exist", 404)
            if response.status_code != 200:
                raise self._fail(response, f"fetching manifest {digest}")
            body = response.read()
        except httpx.HTTPError as exc:
            raise TransferError(f"fetching manifest {digest} failed: {exc}") from exc
        finally:
            response.close()
        if len(body) > MAX_MANIFEST_SIZE:
            raise RegistryError(f"manifest {digest} is larger than {MAX_MANIFEST_SIZE} bytes")
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise DigestMismatchError(
                f"manifest from {self.registry}/{repository} hashes to {actual}, not {digest}"
            )
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise RegistryError(f"manifest {digest} is not JSON") from exc
        if not isinstance(document, dict):
            raise RegistryError(f"manifest {digest} is not a JSON object")
        return document
