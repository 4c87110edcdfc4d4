"""The result lines of perftest's ``ib_write_bw`` and ``ib_send_lat``, read
and judged against a hardware profile's thresholds.

Both tools print a table between dashed rules: a header line naming the
columns (``#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec]
MsgRate[Mpps]`` with ``--report_gbits``; ``#bytes #iterations t_min[usec]
t_max[usec] t_typical[usec] t_avg[usec] t_stdev[usec] 99% percentile[usec]
99.9% percentile[usec]``) then one line of figures per message size. The
header is read, not assumed, so a column added by a newer perftest does
not shift the figures; a result in MB/sec (run without --report_gbits) is
refused rather than misread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_OUTPUT = 256 * 1024
# A header cell: a name, optionally with a unit in brackets; "99%
# percentile[usec]" has a space inside.
_CELL = re.compile(
    r"(#bytes|#iterations|\d+(?:\.\d+)?% percentile\[[^\]]+\]|[A-Za-z_ ]+?\[[^\]]+\]|[A-Za-z_]+)"
)


class PerftestError(ValueError):
    """An output that is not a perftest result table."""


def _columns(header: str) -> list[str]:
    cells = [cell.strip() for cell in _CELL.findall(header)]
    return [cell for cell in cells if cell]


def parse(output: str | bytes) -> dict[str, Any]:
    """``{"columns": [...], "rows": [{column: number}]}`` of the last table."""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    if len(output) > MAX_OUTPUT:
        raise PerftestError(
            f"perftest output is {len(output)} characters; at most {MAX_OUTPUT} are read"
        )
    columns: list[str] = []
    rows: list[dict[str, float]] = []
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("#bytes"):
            columns = _columns(stripped)
            rows = []
            continue
        if not columns or not stripped or not stripped[0].isdigit():
            continue
        figures = stripped.split()
        if len(figures) != len(columns):
            continue
        try:
            rows.append(
                {column: float(figure) for column, figure in zip(columns, figures, strict=True)}
            )
        except ValueError:
            continue
    if not rows:
        raise PerftestError(
            "no perftest result table in the output "
            "(did the test run? is this ib_write_bw/ib_send_lat?)"
        )
    return {"columns": columns, "rows": rows[:64]}


def bandwidth_gbps(result: Mapping[str, Any]) -> float:
    """The average bandwidth of the largest message size, in Gb/s."""
    column = "BW average[Gb/sec]"
    if column not in result["columns"]:
        raise PerftestError(
            f"no {column!r} column (found {', '.join(result['columns'])[:200]}): "
            "run ib_write_bw with --report_gbits"
        )
    row = max(result["rows"], key=lambda row: row["#bytes"])
    return float(row[column])


def latency_us(result: Mapping[str, Any]) -> dict[str, float]:
    """Typical and 99th percentile latency of the smallest message size."""
    wanted = {"typical": "t_typical[usec]", "p99": "99% percentile[usec]"}
    missing = [column for column in wanted.values() if column not in result["columns"]]
    if missing:
        raise PerftestError(f"no {', '.join(missing)} column in the ib_send_lat output")
    row = min(result["rows"], key=lambda row: row["#bytes"])
    return {name: float(row[column]) for name, column in wanted.items()}


def judge(write_bw: str, send_lat: str, thresholds: Mapping[str, Any], pair: str) -> dict[str, Any]:
    """The pair's figures and every threshold they miss, each naming its figure."""
    figures = {
        "write_bw_gbps": bandwidth_gbps(parse(write_bw)),
        **{f"send_lat_{name}_us": value for name, value in latency_us(parse(send_lat)).items()},
    }
    problems = []
    minimum = thresholds.get("write_bw_gbps_min")
    if minimum is not None and figures["write_bw_gbps"] < float(minimum):
        problems.append(
            f"{pair}: ib_write_bw average {figures['write_bw_gbps']:.2f} Gb/s, "
            f"expected >= {minimum}"
        )
    for name in ("typical", "p99"):
        maximum = thresholds.get(f"send_lat_{name}_us_max")
        value = figures[f"send_lat_{name}_us"]
        if maximum is not None and value > float(maximum):
            problems.append(f"{pair}: ib_send_lat {name} {value:.2f} us, expected <= {maximum}")
    return {"pair": pair, "figures": figures, "problems": problems, "passed": not problems}
