#!/usr/bin/env python3
"""Steady traffic through the SSO proxy and the gateway during a rollout.

Usage: loadgen.py URL TOKEN_FILE CA_FILE RESULT_FILE STOP_FILE

Sends one completion at a time, about 50 a minute (under the lab user's
60-a-minute quota), with the bearer token from TOKEN_FILE until
STOP_FILE exists or 15 minutes pass, then writes RESULT_FILE as JSON:
{"ok": n, "failed": n, "failures": [first 20 "status: text"]}. Every
request has a 60 s timeout; anything but a 200 with text is a failure.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BODY = json.dumps(
    {
        "model": "sovereign-tiny",
        "prompt": "Q: What is the minimum password length at Aldermoor Bank?\nA:",
        "max_tokens": 8,
        "temperature": 0,
    }
).encode()
LIMIT_S = 900


def main() -> int:
    url, token_file, ca_file, result_file, stop_file = sys.argv[1:6]
    token = Path(token_file).read_text(encoding="ascii").strip()
    context = ssl.create_default_context(cafile=ca_file)
    ok, failures = 0, []
    started = time.monotonic()
    while not Path(stop_file).exists() and time.monotonic() - started < LIMIT_S:
        request = urllib.request.Request(
            url,
            data=BODY,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60, context=context) as answer:
                text = json.loads(answer.read())["choices"][0]["text"]
            if text.strip():
                ok += 1
            else:
                failures.append("200: empty text")
        except urllib.error.HTTPError as exc:
            failures.append(f"{exc.code}: {exc.read()[:200]!r}")
        except (OSError, ValueError, KeyError, IndexError) as exc:
            failures.append(f"error: {exc!r}"[:200])
        time.sleep(1.2)
    result = {"ok": ok, "failed": len(failures), "failures": failures[:20]}
    Path(result_file).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
