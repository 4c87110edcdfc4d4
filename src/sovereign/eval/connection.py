"""Where the runner sends its requests and how it authenticates: settings, TLS, tokens.

Two kinds of endpoint speak the same OpenAI-compatible API: the gateway
(``https://<gateway>/v1``), reached as a service account with a bearer token,
and a vLLM backend (``http://<node>:<port>/v1``), reached directly without one.
The token comes from a file, or from the identity provider's token endpoint by
the OAuth2 password grant (a user account, as the lab's ``sovereign-cli`` client
does) or the client-credentials grant (a service client). Secrets are read from
files, never taken from the command line, never written to a log or a result.

Everything read from the network is bounded: response size, time per request.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from sovereign.eval.errors import BackendError, TokenError, UsageError

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
MAX_SECRET_BYTES = 64 * 1024
MAX_TOKEN_CHARS = 16 * 1024
MAX_ERROR_CHARS = 200
# A token is refreshed this long before the identity provider says it expires.
TOKEN_REFRESH_MARGIN_S = 30.0
LOOPBACK_NAMES = ("localhost",)
# The gateway's header that names one version of a model (its routing.py).
VERSION_HEADER = "X-Sovereign-Model-Version"
MODEL_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, *, secret_bearing: bool) -> str:
    """``url`` without a trailing slash; UsageError when it is not a plain http(s) URL.

    A URL that a secret (a token, a client secret) is sent to must be https,
    unless it names the loopback interface (tests, a tunnel).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} {url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{what} must not carry credentials; use the secret file options")
    if parts.query or parts.fragment:
        raise UsageError(f"{what} {url!r} must not have a query or fragment")
    if secret_bearing and parts.scheme != "https" and not is_loopback(parts.hostname):
        raise UsageError(
            f"{what} {url!r} would carry a secret in clear text: use https "
            "(plain http only to a loopback address)"
        )
    return url.rstrip("/")


def tls_context(cacert: Path | None) -> ssl.SSLContext:
    """Verify servers with ``cacert``, or with the system's CA store when it is None."""
    try:
        return ssl.create_default_context(cafile=str(cacert) if cacert else None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{cacert}: cannot load the CA bundle: {reason}") from exc


def read_secret(path: Path, what: str) -> str:
    """The first line of a secret file, without its line ending; UsageError naming the file."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    if len(data) > MAX_SECRET_BYTES:
        raise UsageError(f"{path}: the {what} file is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: the {what} is not UTF-8") from exc
    lines = text.splitlines()
    secret = lines[0] if lines else ""
    if not secret:
        raise UsageError(f"{path}: the {what} file is empty")
    return secret


def printable(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """A bounded, one-line rendering of text a server sent (for error messages)."""
    flat = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return flat + ("..." if len(text) > limit else "")


def read_bounded(chunks: Iterator[bytes], limit: int, what: str) -> bytes:
    """Join ``chunks``; BackendError once they exceed ``limit`` bytes."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BackendError(f"{what}: the answer is larger than {limit} bytes")
    return bytes(body)


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BackendError(f"{what}: the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise BackendError(f"{what}: the answer is not a JSON object")
    return document


def error_reason(body: bytes) -> str:
    """What an error body says, bounded: OpenAI ``error.message``, OAuth2 ``error``, or text."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return printable(body.decode("utf-8", "replace"))
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return printable(error["message"])
        if isinstance(error, str):
            description = document.get("error_description")
            if isinstance(description, str):
                return printable(f"{error}: {description}")
            return printable(error)
    return printable(body.decode("utf-8", "replace"))


Override = tuple[str, int, str]  # (host name, port, address to connect to)


def parse_resolve(text: str) -> Override:
    """curl's ``--resolve HOST:PORT:ADDRESS``; UsageError when it is not one."""
    host, _, rest = text.partition(":")
    port, _, address = rest.partition(":")
    address = address.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        address = ""
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or not address:
        raise UsageError(f"--resolve {text!r}: expected HOST:PORT:ADDRESS (an IP address)")
    return host.lower(), int(port), address


def _rewrite(request: httpx.Request, overrides: tuple[Override, ...]) -> None:
    """Connect to the overriding address; keep the name for the Host header and TLS."""
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    for host, override_port, address in overrides:
        if url.host == host and port == override_port:
            request.extensions = {**request.extensions, "sni_hostname": url.host}
            request.url = url.copy_with(host=address)
            return


class ResolvingTransport(httpx.HTTPTransport):
    """An HTTP transport that reaches some host names at given addresses (``--resolve``)."""

    def __init__(self, overrides: tuple[Override, ...], **options: Any) -> None:
        super().__init__(**options)
        self.overrides = overrides

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _rewrite(request, self.overrides)
        return super().handle_request(request)


class AsyncResolvingTransport(httpx.AsyncHTTPTransport):
    """The asynchronous :class:`ResolvingTransport`."""

    def __init__(self, overrides: tuple[Override, ...], **options: Any) -> None:
        super().__init__(**options)
        self.overrides = overrides

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _rewrite(request, self.overrides)
        return await super().handle_async_request(request)


@dataclass(frozen=True)
class TokenSettings:
    """Where the bearer token comes from: a file, or a grant at a token endpoint."""

    token_file: Path | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    scope: str | None = None

    @property
    def grant(self) -> str:
        if self.token_file is not None:
            return "token-file"
        if self.token_url is None:
            return "none"
        return "password" if self.username is not None else "client_credentials"

    def check(self) -> None:
        """UsageError when the options do not make exactly one way to get a token."""
        grant_options = {
            "--client-id": self.client_id,
            "--client-secret-file": self.client_secret_file,
            "--username": self.username,
            "--password-file": self.password_file,
        }
        if self.token_file is not None and self.token_url is not None:
            raise UsageError("give --token-file or --token-url, not both")
        if self.token_url is None:
            given = [name for name, value in grant_options.items() if value is not None]
            if given:
                raise UsageError(f"{', '.join(given)} need(s) --token-url")
            return
        check_url(self.token_url, "--token-url", secret_bearing=True)
        if self.client_id is None or self.client_secret_file is None:
            raise UsageError("--token-url needs --client-id and --client-secret-file")
        if (self.username is None) != (self.password_file is None):
            raise UsageError(
                "the password grant needs both --username and --password-file "
                "(leave both out for the client-credentials grant)"
            )

    def as_model_args(self) -> dict[str, str]:
        """The settings as strings (paths, names: no secret), for Inspect's model_args."""
        values = {
            "token_file": self.token_file,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret_file": self.client_secret_file,
            "username": self.username,
            "password_file": self.password_file,
            "scope": self.scope,
        }
        return {key: str(value) for key, value in values.items() if value is not None}

    @classmethod
    def from_model_args(cls, args: dict[str, Any]) -> TokenSettings:
        def path(key: str) -> Path | None:
            value = args.get(key)
            return Path(value) if value is not None else None

        def text(key: str) -> str | None:
            value = args.get(key)
            return str(value) if value is not None else None

        return cls(
            token_file=path("token_file"),
            token_url=text("token_url"),
            client_id=text("client_id"),
            client_secret_file=path("client_secret_file"),
            username=text("username"),
            password_file=path("password_file"),
            scope=text("scope"),
        )


class TokenSource:
    """The current bearer token: read from its file, or granted and refreshed before expiry.

    Thread-safe; the runner's requests share one token until it is near its
    expiry or a request is refused with 401, then the next caller fetches anew.
    """

    def __init__(
        self,
        settings: TokenSettings,
        *,
        verify: ssl.SSLContext,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        resolve: tuple[Override, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings.check()
        self.settings = settings
        self._resolve = resolve
        self._clock = clock
        self._verify = verify
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = float("inf")

    def invalidate(self) -> None:
        """Forget the token: the next :meth:`bearer` reads or fetches a new one."""
        with self._lock:
            self._token = None

    def bearer(self) -> str | None:
        """The token to send, or None where the endpoint takes none."""
        if self.settings.grant == "none":
            return None
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = self._obtain()
                self._expires_at = (
                    self._clock() + max(lifetime - TOKEN_REFRESH_MARGIN_S, 0.0)
                    if lifetime is not None
                    else float("inf")
                )
            return self._token

    def _obtain(self) -> tuple[str, float | None]:
        settings = self.settings
        if settings.token_file is not None:
            return _check_token(
                read_secret(settings.token_file, "token"), settings.token_file
            ), None
        assert settings.token_url is not None
        assert settings.client_id is not None and settings.client_secret_file is not None
        secret = read_secret(settings.client_secret_file, "client secret")
        form = {"grant_type": settings.grant}
        if settings.username is not None:
            assert settings.password_file is not None
            form["username"] = settings.username
            form["password"] = read_secret(settings.password_file, "password")
        if settings.scope:
            form["scope"] = settings.scope
        url = settings.token_url
        try:
            transport = ResolvingTransport(self._resolve, verify=self._verify)
            with httpx.Client(transport=transport, timeout=self._timeout_s) as client:
                with client.stream(
                    "POST",
                    url,
                    data=form,
                    auth=httpx.BasicAuth(settings.client_id, secret),
                    headers={"Accept": "application/json"},
                ) as response:
                    body = read_bounded(
                        response.iter_bytes(), self._max_response_bytes, f"token endpoint {url}"
                    )
        except httpx.HTTPError as exc:
            raise TokenError(f"token endpoint {url}: {type(exc).__name__}: {exc}") from exc
        except BackendError as exc:
            raise TokenError(str(exc)) from exc
        if response.status_code != 200:
            raise TokenError(
                f"token endpoint {url} refused the {settings.grant} grant for "
                f"{settings.username or settings.client_id}: HTTP {response.status_code}: "
                f"{error_reason(body)}"
            )
        try:
            document = parse_json_object(body, f"token endpoint {url}")
        except BackendError as exc:
            raise TokenError(str(exc)) from exc
        token = document.get("access_token")
        if not isinstance(token, str):
            raise TokenError(f"token endpoint {url}: the answer has no access_token")
        token_type = document.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise TokenError(
                f"token endpoint {url}: token_type {printable(str(token_type))!r}, not Bearer"
            )
        expires_in = document.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else None
        )
        return _check_token(token, url), lifetime


def _check_token(token: str, source: object) -> str:
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError(f"{source}: the token is empty or longer than {MAX_TOKEN_CHARS}")
    if not all("!" <= ch <= "~" for ch in token):
        raise TokenError(f"{source}: the token holds characters a bearer token cannot")
    return token


@dataclass(frozen=True)
class Connection:
    """The endpoint the runner evaluates and everything needed to talk to it."""

    base_url: str
    tokens: TokenSettings
    cacert: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    resolve: tuple[Override, ...] = ()
    # The gateway's X-Sovereign-Model-Version: measure this version of the
    # model (an upgrade's candidate, or the running one), not the user split.
    model_version: str | None = None

    def __post_init__(self) -> None:
        self.tokens.check()
        if self.model_version is not None and not MODEL_VERSION.fullmatch(self.model_version):
            raise UsageError(
                "--model-version must be a release name (letters, digits, '.', '_', '-'; "
                "at most 128)"
            )
        check_url(self.base_url, "--base-url", secret_bearing=self.tokens.grant != "none")
        if not self.timeout_s > 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if self.max_response_bytes < 1024:
            raise UsageError("--max-response-bytes must be at least 1024")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    def headers(self) -> dict[str, str]:
        """Headers every request of the run carries besides the token."""
        if self.model_version is None:
            return {}
        return {VERSION_HEADER: self.model_version}

    def token_source(self) -> TokenSource:
        return TokenSource(
            self.tokens,
            verify=tls_context(self.cacert),
            timeout_s=self.timeout_s,
            max_response_bytes=self.max_response_bytes,
            resolve=self.resolve,
        )

    def as_model_args(self) -> dict[str, str]:
        """What the Inspect provider needs to rebuild this connection (no secret)."""
        args = self.tokens.as_model_args()
        args["timeout_s"] = repr(self.timeout_s)
        args["max_response_bytes"] = str(self.max_response_bytes)
        if self.cacert is not None:
            args["cacert"] = str(self.cacert)
        if self.resolve:
            args["resolve"] = ",".join(f"{h}:{p}:[{a}]" for h, p, a in self.resolve)
        if self.model_version is not None:
            args["model_version"] = self.model_version
        return args

    @classmethod
    def from_model_args(cls, base_url: str, args: dict[str, Any]) -> Connection:
        cacert = args.get("cacert")
        return cls(
            base_url=base_url,
            tokens=TokenSettings.from_model_args(args),
            cacert=Path(cacert) if cacert is not None else None,
            timeout_s=float(args.get("timeout_s", DEFAULT_TIMEOUT_S)),
            max_response_bytes=int(args.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)),
            resolve=tuple(
                parse_resolve(item) for item in str(args.get("resolve", "")).split(",") if item
            ),
            model_version=(
                str(args["model_version"]) if args.get("model_version") is not None else None
            ),
        )


def get_json(
    connection: Connection, tokens: TokenSource, url: str, *, refusal_is_error: bool = True
) -> tuple[int, dict[str, Any] | None]:
    """GET ``url``: the status and, on 200, the JSON object (bounded).

    A 401 or 403 is a BackendError naming the token options, unless
    ``refusal_is_error`` is false (a probe of an optional endpoint).
    """
    headers = {"Accept": "application/json", **connection.headers()}
    bearer = tokens.bearer()
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        transport = ResolvingTransport(connection.resolve, verify=tls_context(connection.cacert))
        with httpx.Client(transport=transport, timeout=connection.timeout_s) as client:
            with client.stream("GET", url, headers=headers) as response:
                body = read_bounded(response.iter_bytes(), connection.max_response_bytes, url)
    except httpx.HTTPError as exc:
        raise BackendError(f"{url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        if response.status_code in (401, 403) and refusal_is_error:
            raise BackendError(
                f"{url}: HTTP {response.status_code}: {error_reason(body)} "
                "(check the token options)"
            )
        return response.status_code, None
    return 200, parse_json_object(body, url)
