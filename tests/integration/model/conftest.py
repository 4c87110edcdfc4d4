"""The registry the model integration tests publish to and pull from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local_registry import RegistryUnavailable, local_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``(host:port, CA bundle)`` of a running TLS + htpasswd registry."""
    try:
        with local_registry(tmp_path_factory.mktemp("registry")) as running:
            yield running.address, running.ca
    except RegistryUnavailable as exc:
        pytest.skip(str(exc))
