"""Verdicts on a GPU node's facts (:mod:`sovereign.gpu.report`), each with
the failing figure, against what the node must be: the pinned driver, the
GPU count and model of its platform, a full PCIe link, ECC on and clean,
no retired page or row-remap failure, no fatal Xid since boot, every NVLink
up, persistence on, the fabric trained on NVSwitch systems, DCGM's
diagnostic passed.

``playbooks/validate_gpu.yml`` drains a node that fails any of them and
reports the problems; ``sovereign gpu check`` prints the same on a node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sovereign.gpu.report import MAX_TEXT

# What an expectation may set, and its default (None: not checked).
DEFAULTS: dict[str, Any] = {
    "driver_version": None,
    "gpu_count": None,
    "product": None,
    # The link must run at what the device and the slot allow: current ==
    # max unless a minimum is given.
    "pcie_gen_min": None,
    "pcie_width_min": None,
    "ecc": True,
    "ecc_volatile_uncorrectable_max": 0,
    "ecc_aggregate_uncorrectable_max": 0,
    "retired_pages_max": 0,
    # Rows remapped for uncorrectable errors are spare rows in use; the
    # GPU is replaced when remapping fails. Above this many the site's RMA
    # policy applies.
    "remapped_rows_uncorrectable_max": 8,
    "xid_nonfatal_max": 10,
    "nvlinks_per_gpu": None,
    "persistence_mode": True,
    "mig_mode": False,
    "fabric": False,
    "dcgm": True,
}


_TYPES: dict[str, tuple[type, ...]] = {
    "driver_version": (str,),
    "product": (str,),
    "ecc": (bool,),
    "persistence_mode": (bool,),
    "mig_mode": (bool,),
    "fabric": (bool,),
    "dcgm": (bool,),
}


def check_expect(expect: object, where: str = "sovereign_gpu_expect") -> list[str]:
    """Problems of an expectation mapping: unknown keys, wrong types
    (whole numbers >= 0 for counts and limits)."""
    if not isinstance(expect, Mapping):
        return [f"{where}: must be a mapping (got {type(expect).__name__})"]
    problems = [
        f"{where}.{key}: unknown; it takes {sorted(DEFAULTS)}"
        for key in sorted(set(expect) - set(DEFAULTS), key=str)
    ]
    for key, value in expect.items():
        if key not in DEFAULTS or value is None:
            continue
        types = _TYPES.get(key)
        if types is not None:
            if not isinstance(value, types):
                problems.append(f"{where}.{key}: {value!r} must be a {types[0].__name__}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{where}.{key}: {value!r} must be a whole number >= 0")
    return problems


def _problem(gpu: object, check: str, figure: object, expected: object) -> dict[str, Any]:
    where = f"GPU {gpu}" if gpu is not None else "node"
    return {
        "gpu": gpu,
        "check": check,
        "figure": figure,
        "expected": expected,
        "message": f"{where}: {check} is {figure!s:.{MAX_TEXT}}, expected {expected}",
    }


def _gpu_problems(gpu: Mapping[str, Any], want: Mapping[str, Any]) -> list[dict[str, Any]]:
    bus = gpu.get("bus_id")
    found: list[dict[str, Any]] = []

    def need(check: str, figure: object, ok: bool, expected: object) -> None:
        if not ok:
            found.append(_problem(bus, check, figure, expected))

    if want["product"]:
        name = gpu.get("product_name") or ""
        need("product_name", name or "unknown", want["product"] in name, f"a {want['product']}")
    gen, gen_max = gpu.get("pcie_gen_current"), gpu.get("pcie_gen_max")
    gen_floor = want["pcie_gen_min"] or gen_max
    if gen_floor is not None:
        need("PCIe generation", gen, gen is not None and gen >= gen_floor, f">= {gen_floor}")
    width, width_max = gpu.get("pcie_width_current"), gpu.get("pcie_width_max")
    width_floor = want["pcie_width_min"] or width_max
    if width_floor is not None:
        need("PCIe width", width, width is not None and width >= width_floor, f">= x{width_floor}")
    if want["ecc"]:
        need("ECC mode", gpu.get("ecc_mode"), gpu.get("ecc_mode") is True, True)
        need(
            "ECC mode pending",
            gpu.get("ecc_mode_pending"),
            gpu.get("ecc_mode_pending") is True,
            True,
        )
    for scope, limit in (
        ("volatile", want["ecc_volatile_uncorrectable_max"]),
        ("aggregate", want["ecc_aggregate_uncorrectable_max"]),
    ):
        count = (gpu.get(f"ecc_{scope}") or {}).get("uncorrectable")
        if limit is not None and count is not None:
            need(f"uncorrectable ECC errors ({scope})", count, count <= limit, f"<= {limit}")
    if gpu.get("sram_threshold_exceeded"):
        need("SRAM error threshold exceeded", True, False, False)
    for key, label in (("retired_pages_dbe", "double-bit"), ("retired_pages_sbe", "single-bit")):
        count = gpu.get(key)
        limit = want["retired_pages_max"]
        if limit is not None and count is not None:
            need(f"retired pages ({label})", count, count <= limit, f"<= {limit}")
    need(
        "page retirement pending",
        gpu.get("retirement_pending"),
        not gpu.get("retirement_pending"),
        False,
    )
    if gpu.get("remapped_rows"):
        need(
            "row remapping failure",
            gpu.get("remapped_rows_failure"),
            gpu.get("remapped_rows_failure") is False,
            False,
        )
        need(
            "row remapping pending (reset the GPU)",
            gpu.get("remapped_rows_pending"),
            gpu.get("remapped_rows_pending") is False,
            False,
        )
        count = gpu.get("remapped_rows_uncorrectable")
        limit = want["remapped_rows_uncorrectable_max"]
        if limit is not None and count is not None:
            need("rows remapped for uncorrectable errors", count, count <= limit, f"<= {limit}")
    if want["persistence_mode"] is not None:
        need(
            "persistence mode",
            gpu.get("persistence_mode"),
            gpu.get("persistence_mode") is want["persistence_mode"],
            want["persistence_mode"],
        )
    if want["mig_mode"] is not None:
        need(
            "MIG mode",
            gpu.get("mig_mode"),
            bool(gpu.get("mig_mode")) is want["mig_mode"],
            want["mig_mode"],
        )
    if want["fabric"]:
        state = f"{gpu.get('fabric_state')}/{gpu.get('fabric_status')}"
        need(
            "fabric state",
            state,
            gpu.get("fabric_state") == "Completed" and gpu.get("fabric_status") == "Success",
            "Completed/Success",
        )
    return found


def check(facts: Mapping[str, Any], expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every problem of a node's ``facts`` ({smi, nvlink?, dcgm?, xids?})
    against ``expect`` (:data:`DEFAULTS` for what it leaves out)."""
    wrong = check_expect(expect or {})
    if wrong:
        raise ValueError("; ".join(wrong))
    want = {**DEFAULTS, **dict(expect or {})}
    problems: list[dict[str, Any]] = []
    smi = facts.get("smi") or {}
    gpus = smi.get("gpus") or []
    if want["driver_version"] and smi.get("driver_version") != want["driver_version"]:
        problems.append(
            _problem(None, "driver version", smi.get("driver_version"), want["driver_version"])
        )
    if want["gpu_count"] is not None and len(gpus) != want["gpu_count"]:
        problems.append(_problem(None, "GPU count", len(gpus), want["gpu_count"]))
    attached = smi.get("attached_gpus")
    if attached is not None and attached != len(gpus):
        problems.append(_problem(None, "GPUs listed of those attached", len(gpus), attached))
    for gpu in gpus:
        problems.extend(_gpu_problems(gpu, want))

    nvlink = facts.get("nvlink")
    if want["nvlinks_per_gpu"] and nvlink is not None:
        if len(nvlink) != len(gpus):
            problems.append(_problem(None, "GPUs with NVLink status", len(nvlink), len(gpus)))
        for entry in nvlink:
            up = entry.get("up", 0)
            if up != want["nvlinks_per_gpu"] or entry.get("inactive"):
                figure = f"{up} up, {entry.get('inactive', 0)} inactive" + (
                    f" ({entry['note']})" if entry.get("note") else ""
                )
                problems.append(
                    _problem(
                        f"#{entry.get('index')}",
                        "NVLinks",
                        figure,
                        f"{want['nvlinks_per_gpu']} up",
                    )
                )

    xids = facts.get("xids")
    if xids is not None:
        for xid in [x for x in xids if x.get("fatal")][:20]:
            problems.append(
                _problem(xid.get("bus_id"), "fatal Xid since boot", xid.get("xid"), "none")
            )
        nonfatal = [x for x in xids if not x.get("fatal")]
        limit = want["xid_nonfatal_max"]
        if limit is not None and len(nonfatal) > limit:
            problems.append(
                _problem(None, "non-fatal Xids since boot", len(nonfatal), f"<= {limit}")
            )

    dcgm = facts.get("dcgm")
    if want["dcgm"] and dcgm is not None:
        if dcgm.get("runtime_error"):
            problems.append(_problem(None, "DCGM diagnostic", dcgm["runtime_error"], "it runs"))
        if not dcgm.get("tests") and not dcgm.get("runtime_error"):
            problems.append(_problem(None, "DCGM diagnostic tests", 0, "at least one"))
        for test in dcgm.get("tests") or []:
            failing = [e for e in test.get("entities") or [] if e.get("status") == "Fail"]
            if test.get("status") not in ("Pass", "Skip") or failing:
                for entity in failing or [{"gpu": None, "warnings": []}]:
                    said = "; ".join(entity.get("warnings") or []) or test.get("status")
                    problems.append(
                        _problem(
                            entity.get("gpu"),
                            f"DCGM {test.get('name')}",
                            f"Fail ({said})",
                            "Pass",
                        )
                    )
        detected = dcgm.get("driver_version")
        if want["driver_version"] and detected and detected != want["driver_version"]:
            problems.append(
                _problem(None, "driver version DCGM detected", detected, want["driver_version"])
            )
    return {"passed": not problems, "problems": problems, "gpus": len(gpus)}
