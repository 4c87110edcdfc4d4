"""Shared test set-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # ansible-playbook and molecule live beside the interpreter running the
    # tests (.venv/bin); put them first on PATH so `.venv/bin/pytest` works
    # without activating the virtualenv, as `make test` does.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
