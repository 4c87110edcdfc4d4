"""A throwaway redis-server on 127.0.0.1, for tests and benchmarks.

Debian's ``redis-server`` in a temporary directory, on a free loopback port,
with persistence off (``--save ''``, ``--appendonly no``). Nothing leaves
loopback; the server is gone when the context ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_BINARY = Path("/usr/bin/redis-server")
MISSING_REASON = "needs Debian's redis-server: apt-get install redis-server"


class RedisUnavailable(RuntimeError):
    """redis-server cannot run here; the message says what to install."""


def binary() -> str | None:
    """The redis-server to run, or None when there is none."""
    if REDIS_BINARY.exists():
        return str(REDIS_BINARY)
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """Start redis-server; yields its URL (``redis://127.0.0.1:PORT/0``).

    Raises RedisUnavailable when the binary is missing or it does not start.
    """
    program = binary()
    if program is None:
        raise RedisUnavailable(MISSING_REASON)
    with tempfile.TemporaryDirectory(prefix="sovereign-redis-") as directory:
        port = free_port()
        command = [
            program,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", directory,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(Path(directory) / "redis.log"),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + timeout
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = Path(directory, "redis.log")
                    detail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                    raise RedisUnavailable(f"redis-server did not start on port {port}: {detail}")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
