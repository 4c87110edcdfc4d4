"""Registry credentials: explicit ones, the environment, or a docker-style config file."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sovereign.model.errors import UsageError

USERNAME_ENV = "SOVEREIGN_REGISTRY_USERNAME"
PASSWORD_ENV = "SOVEREIGN_REGISTRY_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """Basic-auth credentials for one registry (the password never shows in repr)."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def default_config_path(environ: Mapping[str, str]) -> Path:
    """Where docker looks: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def from_config_file(path: Path, registry: str) -> Credentials | None:
    """Credentials for ``registry`` from a docker-style ``config.json`` (``auths`` only)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read registry credentials from {path}: {exc}") from exc
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v2/"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str):
            try:
                username, sep, password = (
                    base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise UsageError(f"{path}: auths[{key!r}].auth is not base64") from exc
            if sep:
                return Credentials(username, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


def resolve(
    registry: str,
    *,
    username: str | None = None,
    password: str | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """First of: explicit username/password, the environment, the config file."""
    env = os.environ if environ is None else environ
    username = username or env.get(USERNAME_ENV)
    password = password if password is not None else env.get(PASSWORD_ENV)
    if username:
        if password is None:
            raise UsageError(
                f"a registry username was given but no password: use --password-stdin "
                f"or set {PASSWORD_ENV}"
            )
        return Credentials(username, password)
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"registry credentials file {config_file} does not exist")
    return from_config_file(config_file or default_config_path(env), registry)
