"""A GPU node's health, read from NVIDIA's own tools into plain facts.

- :func:`parse_smi`: ``nvidia-smi -q -x`` (the XML every driver branch
  prints; its schema moved between branches, so every element is looked up
  by name and every leaf may be ``N/A``): driver and CUDA versions, and per
  GPU its model, persistence, PCIe link, ECC mode and counters, retired
  pages, remapped rows, MIG mode and fabric state.
- :func:`parse_nvlink`: ``nvidia-smi nvlink -s``: per GPU, links up and
  inactive.
- :func:`parse_dcgm`: ``dcgmi diag -r N -j`` (DCGM 3 and 4): every test's
  status per GPU with its warnings.
- :func:`parse_xids`: NVIDIA's ``NVRM: Xid`` kernel log lines since boot,
  each classed fatal or not by NVIDIA's own resolution table.

Inputs come from the node: every size, count and string is bounded, and a
document that is not what the tool prints raises :class:`GpuReportError`
naming what is wrong. :mod:`sovereign.gpu.check` turns the facts into
verdicts with their figures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree

MAX_BYTES = 8 * 1024 * 1024
MAX_GPUS = 64
MAX_TEXT = 200
MAX_XIDS = 1000


class GpuReportError(ValueError):
    """An output that cannot be read as the tool's."""


def _text(value: str | None) -> str | None:
    """A leaf's text, or None for a missing or ``N/A`` value (bounded)."""
    if value is None:
        return None
    value = value.strip()
    if not value or value in {"N/A", "None", "[N/A]", "Not Supported", "[Not Supported]"}:
        return None
    return value[:MAX_TEXT]


def _find(node: ElementTree.Element, path: str) -> str | None:
    found = node.find(path)
    return None if found is None else _text(found.text)


def _int(node: ElementTree.Element, path: str) -> int | None:
    value = _find(node, path)
    if value is None:
        return None
    match = re.match(r"^(\d+)", value)
    return int(match[1]) if match else None


def _flag(node: ElementTree.Element, path: str) -> bool | None:
    value = _find(node, path)
    if value is None:
        return None
    return value.lower() in {"enabled", "yes", "active"}


def _bounded(data: str | bytes, what: str) -> str:
    if len(data) > MAX_BYTES:
        raise GpuReportError(f"{what}: {len(data)} bytes, more than {MAX_BYTES}")
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def normal_bus_id(value: str) -> str:
    """``0000:b3:00`` from nvidia-smi's ``00000000:B3:00.0`` or an Xid line's
    ``0000:b3:00`` (the kernel log has no function number)."""
    match = re.match(r"^(?:[0-9a-fA-F]*([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})", value)
    if not match:
        return value.lower()[:MAX_TEXT]
    return f"{(match[1] or '0000').lower()}:{match[2].lower()}:{match[3].lower()}"


# ECC counters of the three layouts the drivers print: R515-R536
# (sram_uncorrectable), R555 on (sram_uncorrectable_parity and _secded),
# and the single/double-bit trees of older drivers.
_UNCORRECTABLE = (
    "sram_uncorrectable",
    "sram_uncorrectable_parity",
    "sram_uncorrectable_secded",
    "dram_uncorrectable",
    "double_bit/total",
)
_CORRECTABLE = ("sram_correctable", "dram_correctable", "single_bit/total")


def _ecc(node: ElementTree.Element, scope: str) -> dict[str, int | None]:
    base = f"ecc_errors/{scope}/"

    def total(names: Iterable[str]) -> int | None:
        values = [_int(node, base + name) for name in names]
        known = [value for value in values if value is not None]
        return sum(known) if known else None

    return {"uncorrectable": total(_UNCORRECTABLE), "correctable": total(_CORRECTABLE)}


def _gpu(node: ElementTree.Element) -> dict[str, Any]:
    bus_id = node.get("id") or _find(node, "pci/pci_bus_id") or ""
    link = "pci/pci_gpu_link_info/"
    remapped = node.find("remapped_rows")
    has_remapper = remapped is not None and len(remapped) > 0
    return {
        "bus_id": normal_bus_id(bus_id),
        "product_name": _find(node, "product_name"),
        "architecture": _find(node, "product_architecture"),
        "uuid": _find(node, "uuid"),
        "serial": _find(node, "serial"),
        "persistence_mode": _flag(node, "persistence_mode"),
        "mig_mode": _flag(node, "mig_mode/current_mig"),
        "pcie_gen_current": _int(node, link + "pcie_gen/current_link_gen"),
        "pcie_gen_max": _int(node, link + "pcie_gen/max_link_gen"),
        "pcie_width_current": _int(node, link + "link_widths/current_link_width"),
        "pcie_width_max": _int(node, link + "link_widths/max_link_width"),
        "pcie_replays": _int(node, "pci/replay_counter"),
        "ecc_mode": _flag(node, "ecc_mode/current_ecc"),
        "ecc_mode_pending": _flag(node, "ecc_mode/pending_ecc"),
        "ecc_volatile": _ecc(node, "volatile"),
        "ecc_aggregate": _ecc(node, "aggregate"),
        "sram_threshold_exceeded": _flag(node, "ecc_errors/aggregate/sram_threshold_exceeded"),
        "retired_pages_dbe": _int(node, "retired_pages/double_bit_retirement/retired_count"),
        "retired_pages_sbe": _int(
            node, "retired_pages/multiple_single_bit_retirement/retired_count"
        ),
        "retirement_pending": _flag(node, "retired_pages/pending_retirement"),
        "remapped_rows": has_remapper,
        "remapped_rows_correctable": _int(node, "remapped_rows/remapped_row_corr"),
        "remapped_rows_uncorrectable": _int(node, "remapped_rows/remapped_row_unc"),
        "remapped_rows_pending": _flag(node, "remapped_rows/remapped_row_pending"),
        "remapped_rows_failure": _flag(node, "remapped_rows/remapped_row_failure"),
        "fabric_state": _find(node, "fabric/state"),
        "fabric_status": _find(node, "fabric/status"),
        "recovery_action": _find(node, "gpu_recovery_action"),
    }


def parse_smi(data: str | bytes) -> dict[str, Any]:
    """The facts of one ``nvidia-smi -q -x`` document."""
    text = _bounded(data, "nvidia-smi -q -x")
    # The DOCTYPE names a DTD nvidia-smi does not ship beside the output:
    # drop it, so no parser ever tries to resolve anything.
    text = re.sub(r"<!DOCTYPE[^>\[]*(\[[^\]]*\])?\s*>", "", text, count=1)
    if "<!ENTITY" in text:
        raise GpuReportError("nvidia-smi -q -x: declares entities, which nvidia-smi never prints")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise GpuReportError(f"nvidia-smi -q -x: not XML ({exc})") from exc
    if root.tag != "nvidia_smi_log":
        raise GpuReportError(
            f"nvidia-smi -q -x: root element {root.tag[:MAX_TEXT]!r}, not 'nvidia_smi_log'"
        )
    gpus = root.findall("gpu")
    if len(gpus) > MAX_GPUS:
        raise GpuReportError(f"nvidia-smi -q -x: {len(gpus)} GPUs, more than {MAX_GPUS}")
    return {
        "driver_version": _find(root, "driver_version"),
        "cuda_version": _find(root, "cuda_version"),
        "attached_gpus": _int(root, "attached_gpus"),
        "gpus": [_gpu(gpu) for gpu in gpus],
    }


_NVLINK_GPU = re.compile(r"^GPU (\d+): (.{1,200}?) \(UUID: (GPU-[0-9a-fA-F-]{1,64})\)\s*$")
_NVLINK_LINK = re.compile(r"^\s*Link\s+(\d{1,3}):\s*(?:([\d.]{1,12})\s*GB/s|(<inactive>))\s*$")


def parse_nvlink(data: str | bytes) -> list[dict[str, Any]]:
    """Per GPU of ``nvidia-smi nvlink -s``: index, UUID, links up (with
    their GB/s) and inactive, and why no link was listed (``mig``, or
    ``all_inactive``)."""
    text = _bounded(data, "nvidia-smi nvlink -s")
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        header = _NVLINK_GPU.match(line)
        if header:
            if len(gpus) >= MAX_GPUS:
                raise GpuReportError(f"nvidia-smi nvlink -s: more than {MAX_GPUS} GPUs")
            gpus.append(
                {
                    "index": int(header[1]),
                    "uuid": header[3].lower(),
                    "up": 0,
                    "inactive": 0,
                    "rates_gbps": [],
                    "note": None,
                }
            )
            continue
        if not gpus:
            continue
        link = _NVLINK_LINK.match(line)
        if link and link[3]:
            gpus[-1]["inactive"] += 1
        elif link:
            gpus[-1]["up"] += 1
            gpus[-1]["rates_gbps"].append(float(link[2]))
        elif re.search(r"not supported for Devices in MIG mode", line, re.IGNORECASE):
            gpus[-1]["note"] = "mig"
        elif re.search(r"all links are inactive", line, re.IGNORECASE):
            gpus[-1]["note"] = "all_inactive"
    return gpus


def parse_dcgm(data: str | bytes) -> dict[str, Any]:
    """``dcgmi diag -r N -j`` of DCGM 3 or 4: its version, the driver it
    saw, a runtime error when it could not run, and every test with its
    overall status and each GPU's status and warnings. In JSON a warning is
    reported as ``Fail`` (DCGM's own rule), so the status is the verdict;
    dcgmi's exit code is not (226 for any finding)."""
    text = _bounded(data, "dcgmi diag")
    start = text.find("{")
    if start < 0:
        raise GpuReportError("dcgmi diag: no JSON document in the output")
    try:
        doc = json.loads(text[start:])
    except json.JSONDecodeError as exc:
        raise GpuReportError(f"dcgmi diag: not JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise GpuReportError("dcgmi diag: the JSON is not an object")
    key = next((k for k in ("DCGM Diagnostic", "DCGM GPU Diagnostic") if k in doc), None)
    if key is None or not isinstance(doc[key], dict):
        raise GpuReportError(
            "dcgmi diag: no 'DCGM Diagnostic' (4.x) or 'DCGM GPU Diagnostic' (3.x)"
        )
    body = doc[key]
    found = doc.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else doc
    tests: list[dict[str, Any]] = []
    for category in body.get("test_categories") or []:
        if not isinstance(category, dict):
            continue
        for test in category.get("tests") or []:
            if not isinstance(test, dict) or len(tests) >= 200:
                continue
            results = [r for r in test.get("results") or [] if isinstance(r, dict)][:MAX_GPUS]
            entities = [
                {
                    "gpu": r.get("entity_id", r.get("gpu_id")),
                    "status": str(r.get("status", ""))[:MAX_TEXT],
                    "warnings": [
                        str(w.get("warning") or w.get("warnings") or "")[:MAX_TEXT]
                        for w in (r.get("warnings") or [])[:10]
                        if isinstance(w, dict)
                    ],
                }
                for r in results
            ]
            summary = test.get("test_summary")
            status = (
                summary.get("status")
                if isinstance(summary, dict)
                else ("Fail" if any(e["status"] == "Fail" for e in entities) else "Pass")
            )
            tests.append(
                {
                    "category": str(category.get("category", ""))[:MAX_TEXT],
                    "name": str(test.get("name", ""))[:MAX_TEXT],
                    "status": str(status)[:MAX_TEXT],
                    "entities": entities,
                }
            )
    runtime_error = body.get("runtime_error")
    return {
        "version": _text(str(metadata.get("version", body.get("version", ""))) or None),
        "driver_version": _text(str(metadata.get("Driver Version Detected", "")) or None),
        "runtime_error": str(runtime_error)[:MAX_TEXT] if runtime_error else None,
        "tests": tests,
    }


_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})"
    r"(?: GPU-I:\d+)?(?: GPU-CI:\d+)?\): (\d{1,4}),\s*(.*)$"
)
_FALLEN = re.compile(r"NVRM: The NVIDIA GPU ([0-9a-fA-F:.]{7,16}).*has fallen off the bus")

# NVIDIA's resolution table for Ampere and later (its Xid catalog's
# "immediate action"; NVSentinel's mapping): these need a GPU reset or a
# reboot. 63 (a row queued for remapping), 92 and 94 (contained) do not.
FATAL_XIDS = frozenset(
    {46, 48, 62, 64, 74, 79, 95, 109, 110, 119, 120, 136, 140, 143}
    | set(range(144, 151))
    | {155, 156, 158, 160}
)


def parse_xids(data: str | bytes) -> list[dict[str, Any]]:
    """Every Xid of a kernel log (``journalctl -k -b``), first ones first,
    at most MAX_XIDS (the rest counted in the last entry's ``more``)."""
    text = _bounded(data, "kernel log")
    found: list[dict[str, Any]] = []
    extra = 0
    for line in text.splitlines():
        match = _XID.search(line)
        fallen = None if match else _FALLEN.search(line)
        if not (match or fallen):
            continue
        if len(found) >= MAX_XIDS:
            extra += 1
            continue
        if match:
            xid = int(match[2])
            found.append(
                {
                    "bus_id": normal_bus_id(match[1]),
                    "xid": xid,
                    "fatal": xid in FATAL_XIDS,
                    "text": match[3].strip()[:MAX_TEXT],
                }
            )
        elif fallen:
            found.append(
                {
                    "bus_id": normal_bus_id(fallen[1]),
                    "xid": 79,
                    "fatal": True,
                    "text": "GPU has fallen off the bus",
                }
            )
    if extra and found:
        found[-1]["more"] = extra
    return found
