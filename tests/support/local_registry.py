"""A throwaway CNCF distribution registry on 127.0.0.1: TLS and htpasswd auth.

Debian's ``docker-registry`` (distribution 2.8) with a CA and server
certificate made here. Used by the integration tests and by
``bench/model_pull.py``; nothing leaves loopback.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.keys import write_ec_key_pair, write_test_tls

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
MISSING_REASON = "needs Debian's docker-registry: apt-get install docker-registry"
USER, PASSWORD = "publisher", "correct horse battery staple"


class RegistryUnavailable(RuntimeError):
    """The registry cannot run here; the message says what to install."""


@dataclass(frozen=True)
class LocalRegistry:
    address: str
    ca: Path
    user: str = USER
    password: str = PASSWORD


def write_key_pair(directory: Path) -> tuple[Path, Path]:
    """A fresh EC P-256 signing key pair as ``(model.key, model.pub)``."""
    return write_ec_key_pair(directory, "model", private_suffix=".key")


def _htpasswd_line() -> str:
    tool = shutil.which("htpasswd")
    if tool is None:
        raise RegistryUnavailable("needs htpasswd: apt-get install apache2-utils")
    return subprocess.run(
        [tool, "-nbB", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_registry(work: Path) -> Iterator[LocalRegistry]:
    """Run a TLS + htpasswd registry storing under ``work`` until the block ends."""
    if not REGISTRY_BINARY.exists():
        raise RegistryUnavailable(MISSING_REASON)
    ca, cert, key = write_test_tls(work)
    (work / "htpasswd").write_text(_htpasswd_line() + "\n")
    port = _free_port()
    (work / "config.yml").write_text(
        f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {work / "data"}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
  secret: throwaway-test-secret
  tls: {{certificate: {cert}, key: {key}}}
auth:
  htpasswd: {{realm: sovereign, path: {work / "htpasswd"}}}
"""
    )
    address = f"127.0.0.1:{port}"
    with (work / "registry.log").open("w") as log:
        process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(work / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(address, ca, process, work / "registry.log")
            yield LocalRegistry(address, ca)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_until_up(address: str, ca: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    context = ssl.create_default_context(cafile=str(ca))
    while True:
        try:
            with httpx.Client(verify=context) as client:
                if client.get(f"https://{address}/v2/").status_code == 401:
                    return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"registry did not start: {log.read_text()}")
        time.sleep(0.1)
