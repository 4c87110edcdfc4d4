"""The bootstrap scripts' choice of where torch's CPU wheel comes from."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "torch-source.sh"


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "SOVEREIGN_WHEEL_DIR": str(tmp_path / "none")}
    return subprocess.run(
        ["bash", str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, check=False
    )


class _Index(http.server.BaseHTTPRequestHandler):
    """A stand-in for PyTorch's CPU index: only /cpu/torch/ exists."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/cpu/torch/" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cpu"
    finally:
        server.shutdown()
        server.server_close()


def test_a_local_wheel_directory_comes_first(tmp_path: Path, index: str) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    result = _run(tmp_path, PIP_FIND_LINKS=str(wheels), TORCH_INDEX_URL=index)
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["--find-links", str(wheels)]


def test_without_one_pytorchs_cpu_index_is_used(tmp_path: Path, index: str) -> None:
    result = _run(tmp_path, TORCH_INDEX_URL=index)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["--extra-index-url", index]


def test_neither_fails_with_one_line_naming_both(tmp_path: Path) -> None:
    result = _run(tmp_path, TORCH_INDEX_URL="http://127.0.0.1:9/cpu")
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "PIP_FIND_LINKS" in line and "http://127.0.0.1:9/cpu" in line
