"""A throwaway Prometheus on 127.0.0.1, for tests.

Debian's ``prometheus`` (``make test-packages`` installs it) with a
configuration the test gives, its storage in the test's directory, on a free
loopback port; gone when the context ends. An AssertionError raised while it
runs (it would not start, a wait inside the context ran out) carries the end
of its log.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.ready import wait_until_ok
from tests.support.redis_server import free_port

MISSING_REASON = "prometheus is not installed: make test-packages installs Debian's prometheus"


def binary() -> str | None:
    """The prometheus to run, or None when there is none."""
    return shutil.which("prometheus")


@contextmanager
def running(work: Path, config: dict[str, Any], *flags: str) -> Iterator[str]:
    """Prometheus with ``config`` (and command-line ``flags``), files under
    ``work``; yields its base URL once it is ready."""
    path = binary()
    assert path is not None, MISSING_REASON
    (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                path,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            try:
                wait_until_ok(process, f"{url}/-/ready", "prometheus")
                yield url
            except AssertionError as exc:
                log.flush()
                raise AssertionError(f"{exc}: {log_path.read_text()[-2000:]}") from None
        finally:
            process.terminate()
            process.wait(timeout=10)
