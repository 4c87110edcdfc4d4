#!/usr/bin/env python3
"""Print an inventory's network flow matrix as a Markdown table.

Usage: scripts/flow-matrix.py INVENTORY_DIR

Reads the inventory with ansible-inventory (its groups and variables as
written: ports are literal in an inventory) and prints the table of
src/sovereign/inventory/flows.py's matrix, as docs/network.md shows it for
the example datacenter. Run from the project's virtualenv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from sovereign.inventory import flows

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    program = shutil.which("ansible-inventory", path=str(Path(sys.executable).parent))
    program = program or shutil.which("ansible-inventory")
    if program is None:
        print("flow-matrix: ansible-inventory not found: run from .venv", file=sys.stderr)
        return 1
    listed = subprocess.run(
        [program, "-i", argv[0], "--list", "--export"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
    )
    if listed.returncode != 0:
        print(f"flow-matrix: ansible-inventory failed: {listed.stderr.strip()}", file=sys.stderr)
        return 1
    data = json.loads(listed.stdout)
    groups: dict[str, list[str]] = {}

    def hosts_of(group: str) -> list[str]:
        node = data.get(group, {})
        found = list(node.get("hosts", []))
        for child in node.get("children", []):
            found.extend(hosts_of(child))
        return sorted(set(found))

    for group in data:
        if group != "_meta":
            groups[group] = hosts_of(group)
    hostvars: dict[str, dict[str, object]] = {host: {} for host in groups.get("all", [])}
    # --export keeps group variables on their groups: apply them the way
    # Ansible does for what the matrix reads (all first, then the others).
    order = ["all"] + sorted(g for g in groups if g not in ("all", "ungrouped"))
    for group in order:
        for host in groups.get(group, []):
            hostvars[host].update(data.get(group, {}).get("vars", {}))
    for host, variables in data.get("_meta", {}).get("hostvars", {}).items():
        hostvars.setdefault(host, {}).update(variables)
    sys.stdout.write(flows.markdown(hostvars, groups))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
