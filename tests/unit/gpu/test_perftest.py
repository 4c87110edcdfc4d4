"""sovereign.gpu.perftest: ib_write_bw and ib_send_lat result tables read by
their header, and a node pair judged against the fabric thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovereign.gpu import perftest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "perftest"
WRITE_BW = (FIXTURES / "ib_write_bw_cx7-400g_built-from-perftest-format.txt").read_text(
    encoding="utf-8"
)
SEND_LAT = (FIXTURES / "ib_send_lat_cx7-400g_built-from-perftest-format.txt").read_text(
    encoding="utf-8"
)
THRESHOLDS = {"write_bw_gbps_min": 360, "send_lat_typical_us_max": 3.0, "send_lat_p99_us_max": 5.0}


def test_reads_the_bandwidth_table_by_its_header() -> None:
    result = perftest.parse(WRITE_BW)
    assert result["columns"] == [
        "#bytes",
        "#iterations",
        "BW peak[Gb/sec]",
        "BW average[Gb/sec]",
        "MsgRate[Mpps]",
    ]
    assert perftest.bandwidth_gbps(result) == pytest.approx(388.41)


def test_reads_the_latency_table_with_its_percentile_columns() -> None:
    result = perftest.parse(SEND_LAT)
    assert "99% percentile[usec]" in result["columns"]
    assert "99.9% percentile[usec]" in result["columns"]
    assert perftest.latency_us(result) == {
        "typical": pytest.approx(1.76),
        "p99": pytest.approx(2.01),
    }


def test_largest_size_for_bandwidth_smallest_for_latency() -> None:
    sweep = WRITE_BW.replace(
        " 65536      1851637",
        " 4096       5000          0.00               120.50		     3.677000\n"
        " 65536      1851637",
    )
    assert perftest.bandwidth_gbps(perftest.parse(sweep)) == pytest.approx(388.41)


def test_a_good_pair_passes() -> None:
    verdict = perftest.judge(WRITE_BW, SEND_LAT, THRESHOLDS, "gpu01->gpu02")
    assert verdict["passed"], verdict["problems"]
    assert verdict["figures"]["write_bw_gbps"] == pytest.approx(388.41)


def test_a_slow_pair_fails_with_its_figures() -> None:
    slow = WRITE_BW.replace("388.41", "197.20")
    late = SEND_LAT.replace("1.76     ", "3.90     ")
    verdict = perftest.judge(slow, late, THRESHOLDS, "gpu01->gpu02")
    assert not verdict["passed"]
    assert verdict["problems"] == [
        "gpu01->gpu02: ib_write_bw average 197.20 Gb/s, expected >= 360",
        "gpu01->gpu02: ib_send_lat typical 3.90 us, expected <= 3.0",
    ]


def test_megabytes_are_refused_rather_than_misread() -> None:
    mb = WRITE_BW.replace(
        "BW peak[Gb/sec]    BW average[Gb/sec]", "BW peak[MB/sec]    BW average[MB/sec]"
    )
    with pytest.raises(perftest.PerftestError, match="--report_gbits"):
        perftest.bandwidth_gbps(perftest.parse(mb))


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Couldn't connect to 10.40.1.12:18515\n"
        "Unable to open file descriptor for socket connection",
        " #bytes #iterations BW average[Gb/sec]\n garbage here\n",
    ],
)
def test_no_table_is_an_error_not_a_zero(output: str) -> None:
    with pytest.raises(perftest.PerftestError, match="no perftest result table"):
        perftest.parse(output)


def test_output_is_bounded() -> None:
    with pytest.raises(perftest.PerftestError, match="at most"):
        perftest.parse("x" * (perftest.MAX_OUTPUT + 1))
