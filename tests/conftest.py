"""Shared test set-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:
    # Importing ansible replaces sys.intern with a patch object, and
    # torch._dynamo (imported lazily by transformers) then refuses to wrap
    # it. Tests of both live in one process: load dynamo before any test
    # module imports ansible.
    import torch._dynamo  # noqa: F401
except ImportError:  # torch is optional for most tests
    pass


def pytest_configure(config: pytest.Config) -> None:
    # ansible-playbook and molecule live beside the interpreter running the
    # tests (.venv/bin); put them first on PATH so `.venv/bin/pytest` works
    # without activating the virtualenv, as `make test` does.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
