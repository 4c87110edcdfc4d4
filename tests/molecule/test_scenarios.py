"""Every molecule scenario of the repository, one test each.

``make test`` runs them after lint and unit tests so that the whole run ends
in pytest's summary line. Each scenario runs molecule's full sequence
(.config/molecule/config.yml): create, converge, idempotence, check on the
converged host, side effect, verify, destroy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("SOVEREIGN_BASE_IMAGE", "sovereign/base:bookworm")
# The serving nodes' image: the base image with the lab's vLLM runtime staged.
VLLM_IMAGE = os.environ.get("SOVEREIGN_VLLM_IMAGE", "sovereign/vllm-node:bookworm")
# Beside another scenario on two cores the platform takes about 25 minutes.
TIMEOUT_S = 2700


def label_of(project: Path) -> str:
    """``roles/<name>`` for a role's scenario, ``platform`` for the root's."""
    return "platform" if project == ROOT else project.relative_to(ROOT).as_posix()


def scenarios() -> list[pytest.ParameterSet]:
    """One test per scenario directory. A role whose molecule/<scenario> links
    to another role's shares that scenario (one converge of both, both
    verifies): it runs once, from the directory it really is in."""
    # The platform's first: the longest, it starts at once on its own
    # worker under `make test` (tests/conftest.py).
    found = sorted(ROOT.glob("molecule/*/molecule.yml")) + sorted(
        ROOT.glob("roles/*/molecule/*/molecule.yml")
    )
    by_directory: dict[Path, list[str]] = {}
    for molecule_yml in found:
        project = molecule_yml.parent.parent.parent
        by_directory.setdefault(molecule_yml.resolve().parent, []).append(label_of(project))
    params = []
    for directory, names in by_directory.items():
        scenario = directory.name
        project = directory.parent.parent
        own = label_of(project)
        shared = [name.removeprefix("roles/") for name in names if name != own]
        label = own + ("+" + "+".join(shared) if shared else "")
        params.append(pytest.param(project, scenario, id=f"{label}:{scenario}"))
    return params


def docker_ready() -> str | None:
    """Why molecule cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI: run `make test`, which installs and starts docker.io"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers: run `make test` (or `make docker`)"
    for image, target in ((BASE_IMAGE, "base-image"), (VLLM_IMAGE, "vllm-image")):
        probe = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False
        )
        if probe.returncode != 0:
            return f"image {image} is missing: run `make {target}`"
    return None


@pytest.mark.molecule
@pytest.mark.parametrize(("project", "scenario"), scenarios())
def test_molecule_scenario(project: Path, scenario: str, tmp_path: Path) -> None:
    reason = docker_ready()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, NO_COLOR="1", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(
        ["molecule", "test", "--scenario-name", scenario],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    log = tmp_path / "molecule.log"
    log.write_text(result.stdout + result.stderr, encoding="utf-8")
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-150:])
    assert result.returncode == 0, f"molecule test failed (full log: {log}):\n{tail}"
