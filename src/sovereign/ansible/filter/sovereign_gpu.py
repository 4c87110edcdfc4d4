"""Filters of the GPU nodes, each a thin wrapper of ``sovereign.gpu``:

- ``sovereign_gpu_check``: a GPU node's tool outputs (as the validation
  tasks read them) judged: the facts and every problem with its figure
  (``playbooks/tasks/gpu_validate.yml``);
- ``sovereign_gpu_driver_plan``: the gpu_driver role's packages at their
  exact versions, its services and the node's platform, or the reason the
  pins are refused; ``sovereign_gpu_driver_missing`` (what of it the
  mirror lacks) and ``sovereign_gpu_driver_kernel_changes`` (kernel
  packages an install would bring: the role refuses them);
- ``sovereign_roce_plan``: the roce role's NICs checked, with the values
  its script applies;
- ``sovereign_perftest_judge``: a node pair's ib_write_bw and ib_send_lat
  outputs against the hardware profile's fabric thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from sovereign.gpu import driver, perftest, report, roce
from sovereign.gpu.check import check


def gpu_check(outputs: Mapping[str, Any], expect: Mapping[str, Any]) -> dict[str, Any]:
    """``outputs``: smi (nvidia-smi -q -x), and when read, nvlink, dcgm and
    kernel_log (strings); ``expect``: the checks' expectations."""
    readers = {
        "smi": ("smi", report.parse_smi),
        "nvlink": ("nvlink", report.parse_nvlink),
        "dcgm": ("dcgm", report.parse_dcgm),
        "xids": ("kernel_log", report.parse_xids),
    }
    facts: dict[str, Any] = {}
    try:
        for key, (name, parse) in readers.items():
            value = outputs.get(name)
            if value is not None:
                facts[key] = parse(str(value))
        verdict = check(facts, dict(expect or {}))
    except ValueError as exc:
        raise AnsibleFilterError(f"sovereign_gpu_check: {exc}") from exc
    return {"facts": facts, **verdict}


def gpu_driver_plan(pins: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return driver.plan(pins)
    except (driver.DriverPlanError, ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"sovereign_gpu_driver_plan: {exc}") from exc


def roce_plan(
    interfaces: object, defaults: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    try:
        return roce.plan(interfaces, defaults)
    except roce.RoceSettingsError as exc:
        raise AnsibleFilterError(f"sovereign_roce_plan: {exc}") from exc


def perftest_judge(
    write_bw: str, send_lat: str, thresholds: Mapping[str, Any], pair: str
) -> dict[str, Any]:
    try:
        return perftest.judge(write_bw, send_lat, dict(thresholds or {}), pair)
    except perftest.PerftestError as exc:
        raise AnsibleFilterError(f"sovereign_perftest_judge: {pair}: {exc}") from exc


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "sovereign_gpu_check": gpu_check,
            "sovereign_gpu_driver_plan": gpu_driver_plan,
            "sovereign_gpu_driver_missing": driver.missing_from_mirror,
            "sovereign_gpu_driver_kernel_changes": driver.kernel_changes,
            "sovereign_gpu_driver_off_pin": driver.off_pin,
            "sovereign_roce_plan": roce_plan,
            "sovereign_perftest_judge": perftest_judge,
        }
