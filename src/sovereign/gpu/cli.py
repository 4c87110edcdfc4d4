"""``sovereign gpu check``: a GPU node's tool outputs judged against what
it must be; the facts and every problem (with its figure) as JSON.

    sovereign gpu check --smi smi.xml [--nvlink nvlink.txt] [--dcgm diag.json] \\
        [--kernel-log kmsg.txt] [--expect expect.json]

Exit status: 0 the node passes, 1 it fails a check, 2 an input cannot be
read (named on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sovereign.gpu import report
from sovereign.gpu.check import DEFAULTS, check


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(report.MAX_BYTES + 1)
    return data


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign gpu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("check", help="judge a node's nvidia-smi, NVLink, DCGM and Xid outputs")
    run.add_argument("--smi", required=True, help="nvidia-smi -q -x output")
    run.add_argument("--nvlink", help="nvidia-smi nvlink -s output")
    run.add_argument("--dcgm", help="dcgmi diag -r N -j output")
    run.add_argument("--kernel-log", help="journalctl -k -b (the Xids since boot)")
    run.add_argument(
        "--expect", help=f"JSON object of expectations ({', '.join(sorted(DEFAULTS))})"
    )
    args = parser.parse_args(list(argv))
    readers: dict[str, tuple[str | None, Callable[[bytes], Any]]] = {
        "smi": (args.smi, report.parse_smi),
        "nvlink": (args.nvlink, report.parse_nvlink),
        "dcgm": (args.dcgm, report.parse_dcgm),
        "xids": (args.kernel_log, report.parse_xids),
    }
    facts: dict[str, Any] = {}
    try:
        for key, (path, parse) in readers.items():
            if path is not None:
                facts[key] = parse(_read(path))
        expect = json.loads(Path(args.expect).read_text(encoding="utf-8")) if args.expect else {}
        if not isinstance(expect, dict):
            raise ValueError("--expect: must hold a JSON object")
        verdict = check(facts, expect)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"sovereign gpu check: {exc}\n")
        return 2
    json.dump({"facts": facts, **verdict}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    for problem in verdict["problems"]:
        sys.stderr.write(problem["message"] + "\n")
    return 0 if verdict["passed"] else 1
