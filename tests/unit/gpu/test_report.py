"""Reading NVIDIA's tools: real outputs where they could be found, and the
H200 fixture built from a real H200's ``nvidia-smi -q`` (tests/fixtures/gpu/
README.md says which is which); bad nodes are the good fixtures edited."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sovereign.gpu import report
from sovereign.gpu.check import check, check_expect

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
H200 = FIXTURES / "h200-hgx-8gpu_590.48.01_built-from-real-q-text.xml"
H200_EXPECT = {
    "driver_version": "590.48.01",
    "gpu_count": 8,
    "product": "H200",
    "nvlinks_per_gpu": 18,
    "fabric": True,
}


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def h200_nvlink(gpus: int = 8, inactive: tuple[int, int] | None = None) -> str:
    """The real H100 capture's per-GPU block, repeated for an 8-GPU node."""
    block = read("h100-80gb-hbm3_590.48.01_nvlink-s.txt").splitlines()
    lines: list[str] = []
    for index in range(gpus):
        lines.append(
            f"GPU {index}: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-00000000000{index})"
        )
        for line in block[1:]:
            if inactive == (index, int(re.findall(r"Link (\d+)", line)[0])):
                line = re.sub(r"[\d.]+ GB/s", "<inactive>", line)
            lines.append(line)
    return "\n".join(lines) + "\n"


def good_facts() -> dict[str, Any]:
    return {
        "smi": report.parse_smi(H200.read_text(encoding="utf-8")),
        "nvlink": report.parse_nvlink(h200_nvlink()),
        "dcgm": report.parse_dcgm(read("dcgm-4.x_diag-r1-j_pass_built-from-dcgm-source.json")),
        "xids": report.parse_xids(""),
    }


def test_the_h200_node_reads_and_passes() -> None:
    facts = good_facts()
    smi = facts["smi"]
    assert smi["driver_version"] == "590.48.01"
    assert smi["cuda_version"] == "13.1"
    assert len(smi["gpus"]) == 8
    first = smi["gpus"][0]
    assert first["bus_id"] == "0000:18:00"
    assert first["product_name"] == "NVIDIA H200"
    assert (first["pcie_gen_current"], first["pcie_width_current"]) == (5, 16)
    assert first["ecc_mode"] is True
    assert first["ecc_volatile"] == {"uncorrectable": 0, "correctable": 0}
    assert first["remapped_rows"] is True
    assert (first["fabric_state"], first["fabric_status"]) == ("Completed", "Success")
    assert [g["up"] for g in facts["nvlink"]] == [18] * 8
    # The DCGM fixture saw 550.54.15: the difference from the pin is named.
    assert [p["message"] for p in check(facts, H200_EXPECT)["problems"]] == [
        "node: driver version DCGM detected is 550.54.15, expected 590.48.01"
    ]
    facts["dcgm"]["driver_version"] = "590.48.01"
    assert check(facts, H200_EXPECT) == {"passed": True, "problems": [], "gpus": 8}


def test_the_real_a100_capture_reads_in_its_older_layout() -> None:
    smi = report.parse_smi(read("a100-sxm4-80gb_535.54.03_nvidia-smi-q-x.xml"))
    gpu = smi["gpus"][0]
    assert smi["driver_version"] == "535.54.03"
    assert gpu["product_name"] == "NVIDIA A100-SXM4-80GB"
    assert gpu["ecc_volatile"]["uncorrectable"] == 0
    # Row remapping reads N/A on this MIG-enabled capture: not judged.
    assert gpu["remapped_rows"] is False
    assert gpu["mig_mode"] is True
    verdict = check(smi and {"smi": smi}, {"driver_version": "535.54.03"})
    checks = {p["check"] for p in verdict["problems"]}
    # One GPU kept of the four attached (the capture's contributor cut it),
    # persistence off and MIG on: each named.
    assert checks == {"GPUs listed of those attached", "persistence mode", "MIG mode"}


@pytest.mark.parametrize(
    ("name", "uncorrectable"),
    [
        ("rtx3080_595.58.03_nvidia-smi-q-x_v13dtd.xml", None),
        ("quadro-p400_418.43_nvidia-smi-q-x_old-ecc-layout.xml", None),
    ],
)
def test_other_real_layouts_read(name: str, uncorrectable: int | None) -> None:
    smi = report.parse_smi(read(name))
    assert smi["gpus"], name
    assert smi["gpus"][0]["ecc_volatile"]["uncorrectable"] == uncorrectable


def edit(path: str, value: str, gpu: int = 0) -> str:
    """The H200 fixture with one leaf of one GPU changed."""
    text = H200.read_text(encoding="utf-8")
    blocks = text.split("\t<gpu id=")
    tag = path.rsplit("/", 1)[-1]
    blocks[gpu + 1] = re.sub(
        rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", blocks[gpu + 1], count=1
    )
    return "\t<gpu id=".join(blocks)


@pytest.mark.parametrize(
    ("xml", "check_name", "figure"),
    [
        (
            edit("ecc_errors/volatile/dram_uncorrectable", "2", gpu=3),
            "uncorrectable ECC errors (volatile)",
            2,
        ),
        (edit("ecc_mode/current_ecc", "Disabled"), "ECC mode", False),
        (edit("pcie_gen/current_link_gen", "3", gpu=5), "PCIe generation", 3),
        (edit("link_widths/current_link_width", "8x"), "PCIe width", 8),
        (edit("remapped_rows/remapped_row_failure", "Yes"), "row remapping failure", True),
        (
            edit("remapped_rows/remapped_row_pending", "Yes"),
            "row remapping pending (reset the GPU)",
            True,
        ),
        (edit("remapped_rows/remapped_row_unc", "9"), "rows remapped for uncorrectable errors", 9),
        (edit("persistence_mode", "Disabled"), "persistence mode", False),
        (edit("fabric/state", "In Progress"), "fabric state", "In Progress/Success"),
        (edit("product_name", "NVIDIA H100 80GB HBM3"), "product_name", "NVIDIA H100 80GB HBM3"),
    ],
)
def test_each_bad_figure_fails_the_node_and_is_named(
    xml: str, check_name: str, figure: object
) -> None:
    facts = good_facts() | {"smi": report.parse_smi(xml)}
    facts["dcgm"]["driver_version"] = "590.48.01"
    verdict = check(facts, H200_EXPECT)
    assert verdict["passed"] is False
    assert [(p["check"], p["figure"]) for p in verdict["problems"]] == [(check_name, figure)]
    assert check_name in verdict["problems"][0]["message"]


def test_a_missing_gpu_fails_the_count() -> None:
    text = H200.read_text(encoding="utf-8")
    blocks = text.split("\t<gpu id=")
    missing = "\t<gpu id=".join(blocks[:-1]) + "\n</nvidia_smi_log>\n"
    facts = good_facts() | {"smi": report.parse_smi(missing)}
    facts["dcgm"]["driver_version"] = "590.48.01"
    verdict = check(facts, H200_EXPECT)
    messages = [p["message"] for p in verdict["problems"]]
    assert "node: GPU count is 7, expected 8" in messages
    assert "node: GPUs listed of those attached is 7, expected 8" in messages
    assert "node: GPUs with NVLink status is 8, expected 7" in messages


def test_nvlink_down_mig_and_all_inactive_are_named() -> None:
    gpus = report.parse_nvlink(h200_nvlink(inactive=(2, 7)))
    assert (gpus[2]["up"], gpus[2]["inactive"]) == (17, 1)
    facts = good_facts() | {"nvlink": gpus}
    facts["dcgm"]["driver_version"] = "590.48.01"
    assert [p["message"] for p in check(facts, H200_EXPECT)["problems"]] == [
        "GPU #2: NVLinks is 17 up, 1 inactive, expected 18 up"
    ]
    mig = report.parse_nvlink(read("h100-mig_590.48.01_nvlink-s.txt"))
    assert mig == [
        {
            "index": 0,
            "uuid": "gpu-00000000-0000-0000-0000-000000000000",
            "up": 0,
            "inactive": 0,
            "rates_gbps": [],
            "note": "mig",
        }
    ]
    down = report.parse_nvlink(
        "GPU 0: NVIDIA A100 (UUID: GPU-1)\n"
        "NVML: Unable to retrieve NVLink information as all links are inActive\n"
    )
    assert down[0]["note"] == "all_inactive"


def test_xids_are_read_and_classed_by_nvidia_s_table() -> None:
    xids = report.parse_xids(read("xid-kernel-log-lines.txt"))
    assert [(x["bus_id"], x["xid"], x["fatal"]) for x in xids] == [
        ("0000:01:00", 94, False),
        ("0000:01:00", 94, False),
        ("0000:01:00", 95, True),
        ("0000:44:00", 79, True),
        ("0000:2b:00", 79, True),
        ("0000:10:1c", 63, False),
        ("0000:05:00", 79, True),
        ("0000:01:00", 8, False),
    ]
    facts = good_facts() | {"xids": xids}
    facts["dcgm"]["driver_version"] = "590.48.01"
    problems = check(facts, H200_EXPECT)["problems"]
    assert [(p["gpu"], p["figure"]) for p in problems] == [
        ("0000:01:00", 95),
        ("0000:44:00", 79),
        ("0000:2b:00", 79),
        ("0000:05:00", 79),
    ]
    assert report.normal_bus_id("00000000:B3:00.0") == report.normal_bus_id("0000:b3:00")


def test_dcgm_failures_and_runtime_errors_fail_with_what_dcgm_said() -> None:
    failed = report.parse_dcgm(read("dcgm-4.2.3_diag-r1-j_GB10_fail_persistence.json"))
    assert failed["version"] == "4.2.3"
    problems = check({"dcgm": failed})["problems"]
    assert len(problems) == 1
    assert problems[0]["check"] == "DCGM software"
    assert "Persistence mode for GPU 0 is disabled" in problems[0]["figure"]
    old = report.parse_dcgm(read("dcgm-3.3.x_diag-r1-j_pass_built-from-dcgm-source.json"))
    assert [t["status"] for t in old["tests"]] == ["Pass"] * 9
    assert check({"dcgm": old})["passed"] is True
    broken = report.parse_dcgm(
        "Error: unable to connect\n"
        '{"DCGM Diagnostic": {"runtime_error": "host engine down", "version": "4.2.3"}}'
    )
    assert [p["figure"] for p in check({"dcgm": broken})["problems"]] == [
        "host engine down",
    ]


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (report.parse_smi, "<html/>", "root element 'html'"),
        (report.parse_smi, "not xml", "not XML"),
        (
            report.parse_smi,
            '<!DOCTYPE x [<!ENTITY a "b">]><nvidia_smi_log>&a;</nvidia_smi_log>',
            "not XML",
        ),
        (report.parse_smi, "<nvidia_smi_log>" + "<gpu/>" * 65 + "</nvidia_smi_log>", "65 GPUs"),
        (report.parse_smi, "x" * (report.MAX_BYTES + 1), "more than"),
        (report.parse_dcgm, "no json here", "no JSON document"),
        (report.parse_dcgm, '{"other": {}}', "no 'DCGM Diagnostic'"),
        (report.parse_dcgm, "{broken", "not JSON"),
    ],
)
def test_output_that_is_not_the_tool_s_is_refused(parse: Any, data: str, message: str) -> None:
    with pytest.raises(report.GpuReportError, match=None) as raised:
        parse(data)
    assert message in str(raised.value)


def test_unknown_or_mistyped_expectations_are_refused() -> None:
    with pytest.raises(ValueError, match=r"sovereign_gpu_expect.gpu_cont: unknown"):
        check({}, {"gpu_cont": 8})
    assert check_expect({"gpu_count": "8", "fabric": "yes", "pcie_gen_min": -1}) == [
        "sovereign_gpu_expect.gpu_count: '8' must be a whole number >= 0",
        "sovereign_gpu_expect.fabric: 'yes' must be a bool",
        "sovereign_gpu_expect.pcie_gen_min: -1 must be a whole number >= 0",
    ]
    assert check_expect(H200_EXPECT) == []


def test_a_flood_of_xids_is_bounded() -> None:
    lines = "\n".join(
        "NVRM: Xid (PCI:0000:18:00): 13, pid=1, Graphics Exception" for _ in range(1500)
    )
    xids = report.parse_xids(lines)
    assert len(xids) == report.MAX_XIDS
    assert xids[-1]["more"] == 500
    assert json.dumps(xids)


def test_the_cli_prints_the_verdict_and_exits_by_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sovereign.cli import main

    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps(H200_EXPECT), encoding="utf-8")
    nvlink = tmp_path / "nvlink.txt"
    nvlink.write_text(h200_nvlink(), encoding="utf-8")
    kmsg = tmp_path / "kmsg.txt"
    kmsg.write_text("kernel: NVRM: Xid (PCI:0000:2a:00): 79, GPU has fallen off the bus.\n")
    argv = ["gpu", "check", "--smi", str(H200), "--nvlink", str(nvlink), "--expect", str(expect)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["gpus"] == 8
    assert main([*argv, "--kernel-log", str(kmsg)]) == 1
    captured = capsys.readouterr()
    assert "GPU 0000:2a:00: fatal Xid since boot is 79, expected none" in captured.err
    assert main(["gpu", "check", "--smi", str(kmsg)]) == 2
    assert "not XML" in capsys.readouterr().err
