"""Exceptions of the inference gateway.

Every error a client can see is a :class:`GatewayError`: it carries the HTTP
status and the OpenAI-style ``type`` / ``code`` / ``param`` of the error body,
and its message names the limit or rule that refused the request. Third-party
errors (PyJWT, httpx, redis, the audit log, the OS) are mapped to these at the
boundary, so a client sees a clear error and status, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_CONFIG = 2


def bounded(value: object, limit: int = 64) -> str:
    """Client-controlled text as it may appear in an answer, a log line or an
    audit record: quoted and escaped like ``repr`` (control characters and
    lone surrogates become escapes, so they cannot forge a line), and cut to
    ``limit`` characters of the value with a note of the full length."""
    if value is None:
        return "None"
    text = value if isinstance(value, str) else str(type(value).__name__)
    if len(text) > limit:
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)


class GatewayError(Exception):
    """An error answered to the client as ``{"error": {...}}`` with ``status``."""

    status = 500
    type = "server_error"
    code = "internal_error"
    default_headers: dict[str, str] = {}

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        limit: str | None = None,
        limit_value: int | float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.limit = limit
        self.limit_value = limit_value
        self.headers = {**self.default_headers, **(headers or {})}

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadRequestError(GatewayError):
    """The request is malformed, or over a limit that is the client's to respect."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationError(GatewayError):
    """No valid identity: missing, malformed, expired or forged credentials."""

    status = 401
    type = "authentication_error"
    code = "invalid_token"
    default_headers = {"WWW-Authenticate": 'Bearer realm="sovereign"'}


class PermissionDeniedError(GatewayError):
    """The identity is known but the policy does not admit this request."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFoundError(GatewayError):
    """An unknown model or path."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeoutError(GatewayError):
    """The client did not send its request within the server's time limit."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLargeError(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimitError(GatewayError):
    """A quota is spent; ``Retry-After`` says when to come back."""

    status = 429
    type = "rate_limit_error"
    code = "quota_exceeded"


class UpstreamError(GatewayError):
    """The model backend failed or answered something unusable."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"


class ServiceUnavailableError(GatewayError):
    """A dependency the gateway must not serve without (audit, quota, IdP) is down."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class ConfigError(Exception):
    """The configuration file is unreadable or invalid; ``problems`` names each bad key."""

    exit_code = EXIT_BAD_CONFIG

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return "\n".join([super().__str__(), *(f"  {line}" for line in self.problems)])


class StartupError(Exception):
    """A service the gateway needs at start (audit directory, key, listener) is unusable."""

    exit_code = EXIT_FAILURE
