"""Shared test set-up."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from pathlib import Path

import pluggy
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


# Skips that stay skips under CI=true: only what no machine of this project
# can have (a GPU, an artifact that cannot be fetched here). Their reasons
# start with one of these and name what enables the test.
CI_ALLOWED_SKIPS = ("needs hardware:", "needs an artifact:")


def _ci_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under ``make test`` in CI (CI=true) every part the command installs
    (Docker, the base image, Redis, the registry, torch) must be there: a skip
    for its absence is turned into a failure that names it."""
    if not report.skipped or os.environ.get("CI") != "true" or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if reason.startswith(CI_ALLOWED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI=true, where `make test` installs what this test needs: {reason}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    _ci_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pluggy.Result[pytest.CollectReport], None]:
    outcome = yield
    _ci_failure(outcome.get_result())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``make test`` (pytest-xdist, ``--dist loadgroup``, two workers)
    the tests that start no containers run as one group, in order, on one
    worker, and each molecule scenario is a unit of its own: the platform
    scenario, collected first, takes the other worker while the unit tests
    and then the role scenarios run beside it. The two sides take about
    the same time, and the wall time is about half the serial one."""
    for item in items:
        if "molecule" not in item.keywords:
            item.add_marker(pytest.mark.xdist_group("unit"))


_SCENARIO_TIMES: list[tuple[str, float, str, str]] = []
_STARTED = time.monotonic()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each molecule scenario's time (create to destroy) for the summary."""
    if report.when == "call" and "molecule" in report.keywords:
        name = report.nodeid.split("[", 1)[-1].rstrip("]")
        actions: list[tuple[str, float]] = dict(report.user_properties).get(  # type: ignore[assignment]
            "molecule_actions", []
        )
        detail = ", ".join(f"{action} {seconds:.0f}" for action, seconds in actions)
        _SCENARIO_TIMES.append((name, report.duration, report.outcome, detail))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """`make test` ends with each scenario's time, then pytest's summary line."""
    if not _SCENARIO_TIMES:
        return
    terminalreporter.section("molecule scenario times")
    for name, seconds, outcome, detail in _SCENARIO_TIMES:
        terminalreporter.write_line(f"{seconds:7.0f} s  {name}  ({outcome})")
        if detail:
            terminalreporter.write_line(f"           {detail}")
    total = sum(seconds for _, seconds, _, _ in _SCENARIO_TIMES)
    terminalreporter.write_line(f"{total:7.0f} s  all scenarios, one after another")
    wall = time.monotonic() - _STARTED
    terminalreporter.write_line(f"{wall:7.0f} s  this pytest run, wall clock")
