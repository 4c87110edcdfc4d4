"""playbooks/validate_gpu.yml run for real against one H200 node of the
example inventory, on this machine: NVIDIA's tools are stand-ins on PATH
that print the fixtures of tests/fixtures/gpu (a good 8-GPU H200 node, then
each bad variant), so the play reads, judges and fails exactly as on a node.
What only a real node shows (the tools' own behaviour) is listed in
roles' READMEs; the parsing of real captures is tests/unit/gpu."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from tests.playbooks.test_validate import run_local
from tests.unit.gpu.test_report import H200, edit, h200_nvlink, read

HOST = "fra1-gpu05.dc.example.internal"
TOOLS = {
    "nvidia-smi": """#!/bin/sh
case "$1" in
  -q) cat "$FAKE_GPU_DIR/smi.xml" ;;
  nvlink) cat "$FAKE_GPU_DIR/nvlink.txt" ;;
  *) echo "nvidia-smi stand-in: $*" >&2; exit 2 ;;
esac
""",
    "dcgmi": """#!/bin/sh
cat "$FAKE_GPU_DIR/dcgm.json"
exit "$(cat "$FAKE_GPU_DIR/dcgm.rc")"
""",
    "journalctl": """#!/bin/sh
cat "$FAKE_GPU_DIR/kmsg.txt"
""",
}


def node(tmp_path: Path, smi: str, kmsg: str = "", dcgm_ok: bool = True) -> Path:
    directory = tmp_path / "gpu"
    directory.mkdir(exist_ok=True)
    (directory / "smi.xml").write_text(smi, encoding="utf-8")
    (directory / "nvlink.txt").write_text(h200_nvlink(), encoding="utf-8")
    dcgm = json.loads(read("dcgm-4.x_diag-r1-j_pass_built-from-dcgm-source.json"))
    dcgm["metadata"]["Driver Version Detected"] = "590.48.01"
    rc = "0"
    if not dcgm_ok:
        dcgm = json.loads(read("dcgm-4.2.3_diag-r1-j_GB10_fail_persistence.json"))
        dcgm["metadata"]["Driver Version Detected"] = "590.48.01"
        rc = "226"
    (directory / "dcgm.json").write_text(json.dumps(dcgm), encoding="utf-8")
    (directory / "dcgm.rc").write_text(rc, encoding="utf-8")
    (directory / "kmsg.txt").write_text(kmsg, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, script in TOOLS.items():
        path = bin_dir / name
        path.write_text(script, encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def run(tmp_path: Path, directory: Path) -> tuple[int, str]:
    result = run_local(
        HOST,
        "playbooks/validate_gpu.yml",
        tmp_path / "bin",
        {"FAKE_GPU_DIR": str(directory)},
        {"sovereign_gpu_drain_on_failure": False},
    )
    # The callback wraps long messages: compare with whitespace folded.
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_a_good_h200_node_passes(tmp_path: Path) -> None:
    code, said = run(tmp_path, node(tmp_path, H200.read_text(encoding="utf-8")))
    assert code == 0, said
    assert f"{HOST}: 8 x NVIDIA H200, driver 590.48.01, every check passed." in said


def without_last_gpu() -> str:
    blocks = H200.read_text(encoding="utf-8").split("\t<gpu id=")
    return "\t<gpu id=".join(blocks[:-1]) + "\n</nvidia_smi_log>\n"


@pytest.mark.parametrize(
    ("smi", "kmsg", "dcgm_ok", "figure"),
    [
        (without_last_gpu(), "", True, "node: GPU count is 7, expected 8"),
        (
            edit("ecc_errors/volatile/dram_uncorrectable", "4", gpu=6),
            "",
            True,
            "GPU 0000:ba:00: uncorrectable ECC errors (volatile) is 4, expected <= 0",
        ),
        (
            H200.read_text(encoding="utf-8"),
            "2026-12-04T10:00:00+0000 n kernel: NVRM: Xid (PCI:0000:9a:00): 79, GPU has fallen "
            "off the bus.",
            True,
            "GPU 0000:9a:00: fatal Xid since boot is 79, expected none",
        ),
        (
            H200.read_text(encoding="utf-8"),
            "",
            False,
            "GPU 0: DCGM software is Fail (Persistence Mode: Persistence mode for GPU 0 is",
        ),
        (
            re.sub("590.48.01</driver_version>", "590.44.01</driver_version>", H200.read_text()),
            "",
            True,
            "node: driver version is 590.44.01, expected 590.48.01",
        ),
    ],
    ids=["missing-gpu", "ecc-errors", "xid-79", "dcgm-fail", "driver-not-the-pin"],
)
def test_a_bad_node_fails_with_its_figure(
    tmp_path: Path, smi: str, kmsg: str, dcgm_ok: bool, figure: str
) -> None:
    code, said = run(tmp_path, node(tmp_path, smi, kmsg, dcgm_ok))
    assert code != 0
    assert f"{HOST} failed GPU validation: " in said, said
    assert figure in said, said
