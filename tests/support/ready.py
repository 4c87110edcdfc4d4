"""Waiting for a process the test started to answer over HTTP."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_ok(
    process: subprocess.Popen[bytes], url: str, what: str, timeout_s: float = 30.0
) -> None:
    """Return once ``url`` answers 200; AssertionError naming ``what`` when the
    process exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"{what} exited before it answered {url}"
        assert time.monotonic() < deadline, f"{what} did not answer {url} in {timeout_s:g} s"
        time.sleep(0.1)
