"""Shared set-up of the evaluation runner's tests."""

from __future__ import annotations

import gc
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

EXTRA_REASON = "needs the eval extra (make venv installs it)"

# Two warnings Inspect AI 0.3.285 raises about itself, which filterwarnings =
# error would turn into failures: its retry policy calls tenacity 9.2's
# wait_exponential_jitter(initial=...), and each sample leaves its hook-event
# receive stream (inspect_ai/hooks/_hooks.py) unclosed. Modules that run
# Inspect set ``pytestmark = INSPECT_WARNINGS`` and call collect_garbage()
# after each run, so the streams go while these filters apply (a full
# collection takes about 0.2 s here: not after every test).
INSPECT_WARNINGS = [
    pytest.mark.filterwarnings(
        "ignore:The 'initial' parameter is deprecated, use 'multiplier' instead:DeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObjectReceiveStream\.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


@pytest.fixture(autouse=True)
def _inspect_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inspect AI keeps traces under $XDG_DATA_HOME: a throwaway one, not the user's."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def collect_garbage() -> None:
    """Free what an Inspect run left in reference cycles, inside the test that ran it."""
    gc.collect()


def run_cli(*argv: str | Path) -> CliResult:
    from sovereign.eval.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([str(arg) for arg in argv], stdout=out, stderr=err)
    if argv[:1] == ("run",):
        collect_garbage()
    return CliResult(code, out.getvalue(), err.getvalue())
