"""Every molecule scenario of the repository, one test each.

``make test`` runs them after lint and unit tests so that the whole run ends
in pytest's summary line. Each scenario runs molecule's full sequence
(.config/molecule/config.yml): create, converge, idempotence, check on the
converged host, side effect, verify, destroy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("SOVEREIGN_BASE_IMAGE", "sovereign/base:bookworm")
# The serving nodes' image: the base image with the lab's vLLM runtime staged.
VLLM_IMAGE = os.environ.get("SOVEREIGN_VLLM_IMAGE", "sovereign/vllm-node:bookworm")
# Beside another scenario on two cores the platform takes about 46 minutes
# (day 2 included); a run slowed by other work on the machine has taken 75.
# The watchdog catches a hung run, within CI's 90 minutes.
TIMEOUT_S = 4800
# Scenarios that need release artifacts no test machine can download: each
# runs only when the environment names them (roles/opensearch/README.md).
NEEDS_ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "roles/opensearch": ("SOVEREIGN_OPENSEARCH_TARBALL", "SOVEREIGN_OPENSEARCH_PLUGINS_DIR"),
}
# molecule's "INFO     [default > converge] Executing" and "... Executed: ...".
ACTION = re.compile(r"\[[^\]>]+ > ([a-z_]+)\] (Executing|Executed)")


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


def missing_environment(project: Path) -> str | None:
    """Why the scenario of ``project`` cannot run without more inputs, or None."""
    missing = [
        name for name in NEEDS_ENVIRONMENT.get(label_of(project), ()) if not os.environ.get(name)
    ]
    if not missing:
        return None
    return (
        "needs an artifact: release files no machine here can download; "
        f"set {' and '.join(missing)} to run it"
    )


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
def test_molecule_scenario(
    project: Path, scenario: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    reason = missing_environment(project) or docker_ready()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, NO_COLOR="1", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    log = tmp_path / "molecule.log"
    started = time.monotonic()
    actions: list[tuple[str, float]] = []
    begun: dict[str, float] = {}
    tail: list[str] = []
    # Every line of the log carries its second since the start, so a slow
    # part of a scenario shows where its time went.
    with (
        log.open("w", encoding="utf-8") as out,
        subprocess.Popen(
            ["molecule", "test", "--scenario-name", scenario],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc,
    ):
        assert proc.stdout is not None
        watchdog = threading.Timer(TIMEOUT_S, proc.kill)
        watchdog.start()
        for line in proc.stdout:
            now = time.monotonic() - started
            out.write(f"[{now:6.0f}s] {line}")
            out.flush()  # the log of a running scenario can be followed
            tail = [*tail[-149:], line.rstrip("\n")]
            found = ACTION.search(line)
            if found and found[2] == "Executing":
                begun[found[1]] = now
            elif found and found[1] in begun:
                actions.append((found[1], now - begun.pop(found[1])))
        returncode = proc.wait()
        watchdog.cancel()
    if time.monotonic() - started >= TIMEOUT_S:
        tail.append(f"killed after {TIMEOUT_S} s")
    request.node.user_properties.append(("molecule_actions", actions))
    text = "\n".join(tail)
    assert returncode == 0, f"molecule test failed (full log: {log}):\n{text}"
