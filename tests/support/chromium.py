"""Headless Chromium for tests: the DOM of a page as a browser built it.

Debian's ``chromium`` (``make test-packages`` installs it), one process per
page with ``--dump-dom``: it loads the URL, runs the page, prints the
serialised DOM and exits. The profile lives in a directory the test owns;
the switches keep it from reaching out (component updates, sync, field
trials), which a machine without Internet access would otherwise wait on.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BINARIES = ("chromium", "chromium-browser")
MISSING_REASON = "chromium is not installed: make test-packages installs Debian's chromium"


def binary() -> str | None:
    """The Chromium to run, or None when there is none."""
    for name in BINARIES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def dump_dom(url: str, profile: Path, timeout_s: float = 60.0) -> str:
    """The DOM of ``url`` after it loaded, as HTML; AssertionError with
    Chromium's last words when it fails or runs past ``timeout_s``."""
    path = binary()
    assert path is not None, MISSING_REASON
    command = [
        path,
        "--headless",
        # Tests run as root in containers, where Chromium's sandbox cannot
        # start; the pages are the test's own, on loopback.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"chromium did not render {url} in {timeout_s:g} s") from exc
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"chromium exited {done.returncode} on {url}: {stderr[-2000:]}"
    return done.stdout.decode()
