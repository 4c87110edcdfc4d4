#!/usr/bin/python3
"""A webhook receiver for Alertmanager that appends each notification to a file.

The lab's receiver, and a last-resort record where no pager is wired yet:
one JSON line per notification, with the time it arrived. Standard library
only; it listens on loopback (Alertmanager runs on the same host), reads
bodies of at most MAX_BODY bytes within TIMEOUT_S seconds, keeps only
Alertmanager's webhook fields and answers 400 to anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
TIMEOUT_S = 10
FIELDS = ("receiver", "status", "groupLabels", "commonLabels", "commonAnnotations", "alerts")
_LOCK = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    out = ""
    timeout = TIMEOUT_S

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/alerts":
            return self._answer(404, "post to /alerts")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._answer(411, "Content-Length required")
        if not 0 < length <= MAX_BODY:
            return self._answer(413, f"body must be 1 to {MAX_BODY} bytes")
        try:
            message = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            return self._answer(400, "body is not JSON")
        if not isinstance(message, dict) or not isinstance(message.get("alerts"), list):
            return self._answer(400, "not an Alertmanager webhook notification")
        record = {"received": time.time(), **{k: message.get(k) for k in FIELDS}}
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        with _LOCK, open(self.out, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return self._answer(200, "recorded")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}"[:512] + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9095", help="HOST:PORT")
    parser.add_argument("--out", required=True, help="file the notifications are appended to")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    Sink.out = args.out
    server = ThreadingHTTPServer((host, int(port)), Sink)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
