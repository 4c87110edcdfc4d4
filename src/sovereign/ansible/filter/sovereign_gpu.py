"""Filter ``sovereign_gpu_check``: a GPU node's tool outputs (as the
validation tasks read them) judged by ``sovereign.gpu``: the facts and
every problem with its figure (``playbooks/tasks/gpu_validate.yml``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from sovereign.gpu import report
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


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"sovereign_gpu_check": gpu_check}
