#!/usr/bin/env python3
"""Open a console page of the lab's Prometheus in headless Chromium and say,
per panel (data-panel), how many rows it shows or that it says "no data".

    check-consoles.py URL --user NAME --password-file FILE --spki HASH \\
        --expect-data PANEL [PANEL...]

Chromium trusts exactly the server's key (its SPKI hash) and logs in with
basic auth from the URL. Prints the panels as JSON; exits 1 when a panel
named by --expect-data is missing or has no data, 2 when Chromium fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit, urlunsplit


class Panels(HTMLParser):
    """Rows and "no data" markers, by the panel they follow."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, dict[str, int]] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if names.get("data-panel"):
            self._current = str(names["data-panel"])
            self.panels.setdefault(self._current, {"rows": 0, "nodata": 0})
        elif self._current is not None:
            if "data-row" in names:
                self.panels[self._current]["rows"] += 1
            if "data-nodata" in names:
                self.panels[self._current]["nodata"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--spki", required=True, help="base64 SHA-256 of the server's key")
    parser.add_argument("--expect-data", nargs="+", default=[])
    args = parser.parse_args()
    with open(args.password_file, encoding="utf-8") as handle:
        password = handle.read().strip()
    parts = urlsplit(args.url)
    netloc = f"{quote(args.user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    url = urlunsplit(parts._replace(netloc=netloc))
    with tempfile.TemporaryDirectory() as profile:
        command = [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}",
            f"--ignore-certificate-errors-spki-list={args.spki}", "--dump-dom", url,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, timeout=90, check=False)
        except subprocess.TimeoutExpired:
            print(f"chromium did not render {args.url} in 90 s", file=sys.stderr)
            return 2
    if done.returncode != 0:
        print(done.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
        return 2
    panels = Panels()
    panels.feed(done.stdout.decode(errors="replace"))
    print(json.dumps(panels.panels, sort_keys=True))
    empty = [name for name in args.expect_data if panels.panels.get(name, {"rows": 0})["rows"] == 0]
    if empty:
        print(f"panels without the lab's data: {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
