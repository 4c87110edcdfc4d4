"""What served the run: each value from the first source that states it, null otherwise."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from sovereign.eval import runtime
from sovereign.eval.errors import RuntimeFileError
from sovereign.eval.runtime import gather, load_runtime_file


def write_json(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "runtime.json"
    path.write_text(json.dumps(document))
    return path


def fake_tool(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_nothing_stated_is_null(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr(runtime, "VLLM_DISTRIBUTIONS", ("surely-not-installed-vllm",))
    recorded = gather(model_digest=None, runtime_file=None, backend_version=None)
    assert recorded.as_json() == {key: None for key in runtime.RUNTIME_KEYS} | {"sources": {}}


def test_precedence_of_the_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_tool(tmp_path, "nvidia-smi", "echo 570.86.15; echo 570.86.15")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runtime, "VLLM_DISTRIBUTIONS", ("pytest",))  # an installed one
    path = write_json(
        tmp_path, {"model_digest": "sha256:file", "cuda_version": "12.8", "vllm_version": None}
    )
    recorded = gather(
        model_digest="sha256:flag", runtime_file=path, backend_version={"version": "0.32.0"}
    ).as_json()
    assert recorded["model_digest"] == "sha256:flag"
    assert recorded["cuda_version"] == "12.8"
    assert recorded["vllm_version"] == "0.32.0"
    assert recorded["driver_version"] == "570.86.15"  # one GPU model: one version
    assert recorded["torch_version"] is None
    assert recorded["sources"] == {
        "model_digest": "command line",
        "cuda_version": f"runtime file {path}",
        "vllm_version": "backend GET /version",
        "driver_version": "nvidia-smi on this host",
    }
    without_backend = gather(model_digest=None, runtime_file=path, backend_version=None)
    assert without_backend.values["vllm_version"] == __import__("pytest").__version__
    assert without_backend.values["model_digest"] == "sha256:file"
    quiet = gather(model_digest=None, runtime_file=None, backend_version=None, probe_local=False)
    assert quiet.values["driver_version"] is None and quiet.values["vllm_version"] is None


@pytest.mark.parametrize(
    "script",
    [
        "echo 'NVIDIA-SMI has failed because it could not communicate with the driver'; exit 9",
        "echo",
        "echo 'No devices were found'",
        "exec sleep 30",
    ],
)
def test_a_failing_nvidia_smi_gives_null(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str
) -> None:
    fake_tool(tmp_path, "nvidia-smi", script)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runtime, "NVIDIA_SMI_TIMEOUT_S", 0.2)
    assert runtime.local_driver_version() is None


def test_two_driver_versions_are_both_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_tool(tmp_path, "nvidia-smi", "echo 570.86.15; echo 550.54.14")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert runtime.local_driver_version() == "550.54.14,570.86.15"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected an object with keys model_digest"),
        ({"cuda": "12.8"}, "unknown key 'cuda' (known: model_digest, vllm_version"),
        ({"cuda_version": 12.8}, "cuda_version: expected a string or null, got 12.8"),
        ({"cuda_version": ""}, "cuda_version: must be a non-empty string"),
        ({"node": "x" * 257}, "node: must be a non-empty string of at most 256"),
    ],
)
def test_bad_runtime_files(tmp_path: Path, document: Any, message: str) -> None:
    path = write_json(tmp_path, document)
    with pytest.raises(RuntimeFileError) as caught:
        load_runtime_file(path)
    assert str(caught.value) == f"{path}: {message}" or message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_unreadable_and_oversized_runtime_files(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFileError, match="cannot read the runtime file"):
        load_runtime_file(tmp_path / "absent.json")
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (runtime.MAX_RUNTIME_BYTES + 1))
    with pytest.raises(RuntimeFileError, match="larger than"):
        load_runtime_file(path)
    path.write_text("{nope")
    with pytest.raises(RuntimeFileError, match="not JSON"):
        load_runtime_file(path)


def test_backend_version_is_read_only_from_a_version_answer() -> None:
    assert runtime.backend_vllm_version({"version": "0.32.0"}) == "0.32.0"
    assert runtime.backend_vllm_version({"version": 3}) is None
    assert runtime.backend_vllm_version({"status": "ok"}) is None
    assert runtime.backend_vllm_version(None) is None


def test_values_are_bounded() -> None:
    recorded = runtime.Runtime()
    recorded.offer("node", "n" * 1000, "somewhere")
    assert recorded.values["node"] == "n" * runtime.MAX_VALUE_CHARS
