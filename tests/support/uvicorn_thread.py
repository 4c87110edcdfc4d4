"""A uvicorn server in a thread, for tests that need real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


def start(config: uvicorn.Config) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve ``config`` in a daemon thread; returns once it listens."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread


def stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)


@contextmanager
def serving(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    server, thread = start(config)
    try:
        yield server
    finally:
        stop(server, thread)
