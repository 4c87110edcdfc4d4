#!/usr/bin/env python3
"""Try TCP connections and say what happened to each (playbooks/check_flows.yml).

Takes a JSON list of {"address", "port"} as its argument (at most 4096), tries them
in parallel with a 3 s timeout each, prints a JSON list of "open" (connected),
"closed" (refused: the host answered, nothing listens) or "dropped" (no
answer: a firewall dropped it), in the same order. Standard library only.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import sys

TIMEOUT_S = 3.0
MAX_PROBES = 4096


def probe(address: str, port: int) -> str:
    try:
        with socket.create_connection((address, port), timeout=TIMEOUT_S):
            return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError:
        return "dropped"


def main() -> int:
    targets = json.loads(sys.argv[1][: 1 << 20])[:MAX_PROBES]
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        found = list(pool.map(lambda t: probe(str(t["address"]), int(t["port"])), targets))
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
