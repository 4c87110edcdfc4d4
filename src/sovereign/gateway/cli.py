"""``sovereign gateway``: serve the inference gateway, or check its configuration.

``set-models CONFIG MODELS`` replaces the model table of a configuration
file (a rolling release moves a node to its new release this way, then
reloads the gateway); the whole result is validated before it atomically
replaces the file, and it prints ``changed`` or ``unchanged``.

``check-config NEW --running OLD`` also prints how a running gateway takes
the change: ``reload`` (SIGHUP, in-flight requests kept) or ``restart``
with the start-only keys that changed (the gateway role picks its handler
from it).

Exit codes: 0 ok, 1 start-up failure (audit directory, key, listener), 2 bad
arguments or an invalid configuration (every problem is named, one a line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from sovereign.gateway.config import load_config, needs_restart, set_models
from sovereign.gateway.errors import EXIT_BAD_CONFIG, ConfigError, StartupError

PROG = "sovereign gateway"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="run the gateway (SIGHUP reloads the policy)")
    serve.add_argument("--config", type=Path, required=True, help="the gateway's YAML file")
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)
    check.add_argument(
        "--running",
        type=Path,
        help="the configuration running now: print 'reload' or 'restart: KEYS' for the change",
    )
    models = commands.add_parser(
        "set-models", help="replace the model table of a configuration file (JSON table)"
    )
    models.add_argument("config", type=Path)
    models.add_argument("models", type=Path, help="JSON file: the new 'models' table")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command == "check-config":
            config = load_config(args.config)
            rules = len(config.routing.rules)
            out.write(f"OK: {args.config} ({len(config.models)} models, {rules} rules)\n")
            if args.running is not None:
                try:
                    running = load_config(args.running)
                except ConfigError:
                    out.write("restart: the running configuration cannot be read\n")
                else:
                    keys = needs_restart(running, config)
                    out.write(f"restart: {', '.join(keys)}\n" if keys else "reload\n")
        elif args.command == "set-models":
            changed = set_models(args.config, args.models)
            out.write("changed\n" if changed else "unchanged\n")
        else:
            from sovereign.gateway.server import serve

            serve(args.config)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_CONFIG
    except _UsageError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return EXIT_BAD_CONFIG
    except ConfigError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except StartupError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
