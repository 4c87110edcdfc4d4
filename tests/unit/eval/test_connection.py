"""Endpoint settings, secret files and the token source."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from sovereign.eval import connection as conn
from sovereign.eval.connection import (
    Connection,
    TokenSettings,
    TokenSource,
    check_url,
    error_reason,
    read_secret,
)
from sovereign.eval.errors import TokenError, UsageError

from .fakeserver import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME, FakeBackend, running


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("gateway/v1", False, "is not an http(s) URL"),
        ("file:///etc/passwd", False, "is not an http(s) URL"),
        ("https://user:pw@gw/v1", True, "must not carry credentials"),
        ("https://gw/v1?x=1", False, "must not have a query or fragment"),
        ("http://gw.example/v1", True, "would carry a secret in clear text"),
    ],
)
def test_bad_urls(url: str, secret: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, "--base-url", secret_bearing=secret)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1/", "http://localhost/v1", "http://[::1]:80/v1"]
)
def test_plain_http_with_a_secret_only_to_loopback(url: str) -> None:
    assert check_url(url, "--base-url", secret_bearing=True) == url.rstrip("/")


def test_plain_http_to_a_backend_without_a_token() -> None:
    assert check_url("http://gpu1:8000/v1", "--base-url", secret_bearing=False)


def test_read_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\r\nsecond line ignored\n")
    assert read_secret(path, "client secret") == "s3cret"
    path.write_text("\n")
    with pytest.raises(UsageError, match=f"{path}: the client secret file is empty"):
        read_secret(path, "client secret")
    path.write_bytes(b"x" * (conn.MAX_SECRET_BYTES + 1))
    with pytest.raises(UsageError, match="larger than"):
        read_secret(path, "client secret")
    with pytest.raises(UsageError, match="cannot read the password: No such file"):
        read_secret(tmp_path / "absent", "password")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (TokenSettings(token_file=Path("t"), token_url="https://idp/t"), "not both"),
        (TokenSettings(client_id="c"), "--client-id need(s) --token-url"),
        (TokenSettings(token_url="https://idp/t", client_id="c"), "needs --client-id and"),
        (
            TokenSettings(
                token_url="https://idp/t",
                client_id="c",
                client_secret_file=Path("s"),
                username="u",
            ),
            "needs both --username and --password-file",
        ),
        (
            TokenSettings(
                token_url="http://idp.example/t", client_id="c", client_secret_file=Path("s")
            ),
            "would carry a secret in clear text",
        ),
    ],
)
def test_token_settings_must_make_one_way(settings: TokenSettings, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings.check()
    assert message in str(caught.value)


def test_connection_settings_round_trip_through_model_args(tmp_path: Path) -> None:
    original = Connection(
        base_url="https://gw.example/v1/",
        tokens=TokenSettings(
            token_url="https://idp.example/oauth2/token",
            client_id="c",
            client_secret_file=tmp_path / "s",
            username="u",
            password_file=tmp_path / "p",
            scope="openid",
        ),
        cacert=tmp_path / "ca.pem",
        timeout_s=12.5,
        max_response_bytes=4096,
        resolve=(("gw.example", 443, "10.0.0.5"), ("idp.example", 443, "fd00::7")),
    )
    args = original.as_model_args()
    assert all(isinstance(value, str) for value in args.values())
    assert Connection.from_model_args(original.base_url, args) == original
    assert original.url == "https://gw.example/v1"


def test_bad_connection_numbers() -> None:
    with pytest.raises(UsageError, match="--timeout"):
        Connection("http://127.0.0.1/v1", TokenSettings(), timeout_s=0)
    with pytest.raises(UsageError, match="--max-response-bytes"):
        Connection("http://127.0.0.1/v1", TokenSettings(), max_response_bytes=10)


def test_a_bad_ca_bundle_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(UsageError, match=f"{bogus}: cannot load the CA bundle"):
        conn.tls_context(bogus)
    with pytest.raises(UsageError, match="cannot load the CA bundle: No such file"):
        conn.tls_context(tmp_path / "absent.pem")


def source(settings: TokenSettings) -> TokenSource:
    return TokenSource(settings, verify=ssl.create_default_context(), timeout_s=5)


def grant_settings(origin: str, tmp_path: Path, *, password: bool) -> TokenSettings:
    (tmp_path / "secret").write_text(CLIENT_SECRET)
    (tmp_path / "password").write_text(PASSWORD)
    return TokenSettings(
        token_url=f"{origin}/oauth2/token",
        client_id=CLIENT_ID,
        client_secret_file=tmp_path / "secret",
        username=USERNAME if password else None,
        password_file=tmp_path / "password" if password else None,
        scope="openid",
    )


def test_a_token_is_fetched_once_and_again_after_invalidation(tmp_path: Path) -> None:
    backend = FakeBackend({})
    with running(backend) as origin:
        tokens = source(grant_settings(origin, tmp_path, password=True))
        assert tokens.bearer() == "tok-1"
        assert tokens.bearer() == "tok-1"
        tokens.invalidate()
        assert tokens.bearer() == "tok-2"
    assert [grant["grant_type"] for grant in backend.grants] == ["password", "password"]


def test_a_token_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    backend = FakeBackend({})
    now = [1000.0]
    with running(backend) as origin:
        tokens = TokenSource(
            grant_settings(origin, tmp_path, password=False),
            verify=ssl.create_default_context(),
            clock=lambda: now[0],
        )
        assert tokens.bearer() == "tok-1"
        # expires_in is 3600: it is fetched anew 30 seconds before
        now[0] += 3600 - conn.TOKEN_REFRESH_MARGIN_S - 1
        assert tokens.bearer() == "tok-1"
        now[0] += 1
        assert tokens.bearer() == "tok-2"
    assert backend.grants[0] == {
        "grant_type": "client_credentials",
        "scope": "openid",
        "client": CLIENT_ID,
    }


def test_a_refused_grant_says_why(tmp_path: Path) -> None:
    with running(FakeBackend({})) as origin:
        settings = grant_settings(origin, tmp_path, password=True)
        (tmp_path / "password").write_text("wrong")
        with pytest.raises(TokenError) as caught:
            source(settings).bearer()
    assert (
        f"token endpoint {origin}/oauth2/token refused the password grant for eval-bot: "
        "HTTP 400: invalid_grant: bad user credentials"
    ) == str(caught.value)


def test_an_unreachable_token_endpoint(tmp_path: Path) -> None:
    settings = grant_settings("http://127.0.0.1:9", tmp_path, password=False)
    with pytest.raises(TokenError, match="ConnectError"):
        source(settings).bearer()


def test_a_token_file_is_read_and_reread_after_invalidation(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("tok-a\n")
    tokens = source(TokenSettings(token_file=path))
    assert tokens.bearer() == "tok-a"
    path.write_text("tok-b\n")
    assert tokens.bearer() == "tok-a"
    tokens.invalidate()
    assert tokens.bearer() == "tok-b"
    path.write_text("two words\n")
    tokens.invalidate()
    with pytest.raises(TokenError, match="holds characters a bearer token cannot"):
        tokens.bearer()


def test_no_token_settings_send_no_token() -> None:
    assert source(TokenSettings()).bearer() is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"error": {"message": "model not found"}}', "model not found"),
        (b'{"error": "invalid_client"}', "invalid_client"),
        (b'{"error": "x", "error_description": "why"}', "x: why"),
        (b"<html>\x1b[31mboom</html>", "<html>?[31mboom</html>"),
        (b"y" * 500, "y" * 200 + "..."),
    ],
)
def test_error_reasons_are_bounded_and_printable(body: bytes, reason: str) -> None:
    assert error_reason(body) == reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lab-gateway:443:172.18.0.5", ("lab-gateway", 443, "172.18.0.5")),
        ("Lab-Admin:8443:[fd00::5]", ("lab-admin", 8443, "fd00::5")),
    ],
)
def test_parse_resolve(text: str, expected: tuple[str, int, str]) -> None:
    assert conn.parse_resolve(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "lab-gateway",
        "lab-gateway:443",
        "lab-gateway:https:1.2.3.4",
        ":443:1.2.3.4",
        "lab-gateway:443:not-an-address",
        "lab-gateway:0:1.2.3.4",
    ],
)
def test_bad_resolve(text: str) -> None:
    with pytest.raises(UsageError, match="expected HOST:PORT:ADDRESS"):
        conn.parse_resolve(text)
