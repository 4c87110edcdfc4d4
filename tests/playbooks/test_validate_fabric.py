"""playbooks/validate_fabric.yml run for real against the example inventory's
two H200 nodes, on this machine: perftest's tools are stand-ins on PATH (the
server side waits, the client side prints a result table), so the play
pairs the nodes, starts the server on the second, runs the client on the
first against the second's RoCE address, and judges the figures against
the hardware profile's thresholds, failing a slow pair with its figure."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.playbooks.test_validate import run_local
from tests.unit.gpu.test_perftest import SEND_LAT, WRITE_BW

CLIENT, SERVER = "fra1-gpu05.dc.example.internal", "fra1-gpu06.dc.example.internal"
TOOL = """#!/bin/sh
# perftest stand-in: the last argument is the server's address on a client.
echo "$0 $*" >> "$FAKE_FABRIC_DIR/calls"
last=$(eval echo "\\${$#}")
case "$last" in
  10.*) cat "$FAKE_FABRIC_DIR/$(basename "$0").txt" ;;
  *) sleep 1 ;;
esac
"""


def run(tmp_path: Path, write_bw: str) -> tuple[int, str, str]:
    directory = tmp_path / "fabric"
    bin_dir = tmp_path / "bin"
    directory.mkdir()
    bin_dir.mkdir()
    (directory / "ib_write_bw.txt").write_text(write_bw, encoding="utf-8")
    (directory / "ib_send_lat.txt").write_text(SEND_LAT, encoding="utf-8")
    for name in ("ib_write_bw", "ib_send_lat"):
        path = bin_dir / name
        path.write_text(TOOL, encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    result = run_local(
        f"{CLIENT},{SERVER}",
        "playbooks/validate_fabric.yml",
        bin_dir,
        {"FAKE_FABRIC_DIR": str(directory)},
    )
    calls = (
        (directory / "calls").read_text(encoding="utf-8") if (directory / "calls").exists() else ""
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split()), calls


def test_a_good_pair_passes_with_its_figures(tmp_path: Path) -> None:
    code, said, calls = run(tmp_path, WRITE_BW)
    assert code == 0, said
    assert f"{CLIENT} -> {SERVER}: ib_write_bw 388.41 Gb/s, ib_send_lat typical 1.76 us" in said
    # The server on the pair's second node, the client at its first NIC's address,
    # both on mlx5_0 and GID index 3, with the same options.
    assert "ib_write_bw -d mlx5_0 -x 3 -F --report_gbits -q 4 -s 65536 -D 10 -p 18515\n" in calls
    assert (
        "ib_write_bw -d mlx5_0 -x 3 -F --report_gbits -q 4 -s 65536 -D 10 -p 18515 10.40.1.16"
        in calls
    )
    assert "ib_send_lat -d mlx5_0 -x 3 -F -s 2 -n 10000 -p 18516 10.40.1.16" in calls


def test_a_slow_pair_fails_with_its_figure(tmp_path: Path) -> None:
    code, said, _ = run(tmp_path, WRITE_BW.replace("388.41", "197.20"))
    assert code != 0
    assert f"{CLIENT} -> {SERVER}: ib_write_bw average 197.20 Gb/s, expected >= 360" in said, said
