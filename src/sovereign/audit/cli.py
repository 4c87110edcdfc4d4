"""``sovereign audit``: verify a tamper-evident audit log, prune expired segments.

Exit codes: 0 ok, 1 the log does not verify (or pruning failed), 2 bad
arguments. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from sovereign.audit.errors import EXIT_BAD_ARGUMENTS, AuditError, AuditUsageError
from sovereign.audit.layout import is_data_class
from sovereign.audit.retention import prune
from sovereign.audit.signing import load_signer, load_verifier
from sovereign.audit.verify import verify

PROG = "sovereign audit"
EPILOG = "exit codes: 0 ok, 1 the log does not verify or pruning failed, 2 bad arguments"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise AuditUsageError(f"{message} (see {self.prog} --help)")


def _retention(text: str) -> tuple[str, int]:
    name, sep, days = text.partition("=")
    if not sep or not is_data_class(name) or not days.isdigit() or int(days) < 1:
        raise argparse.ArgumentTypeError(f"expected CLASS=DAYS (DAYS at least 1), got {text!r}")
    return name, int(days)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser(
        "verify", help="verify an audit directory, a chain directory or a segment file"
    )
    check.add_argument("path", type=Path, metavar="DIR_OR_FILE")
    check.add_argument("--public-key", type=Path, required=True, help="P-256 public key (PEM)")
    check.add_argument(
        "--allow-unsigned-tail",
        action="store_true",
        help="accept entries after the last checkpoint (a log still being written)",
    )
    check.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        help="the writer's checkpoint mirror (audit.checkpoint_mirror): a chain gone, or cut "
        "before the last checkpoint it holds, is found",
    )

    cut = commands.add_parser("prune", help="remove segments older than their class's retention")
    cut.add_argument("directory", type=Path, metavar="DIR")
    cut.add_argument("--signing-key", type=Path, required=True, help="P-256 private key (PEM)")
    cut.add_argument(
        "--retention",
        type=_retention,
        action="append",
        default=[],
        metavar="CLASS=DAYS",
        help="days to keep a data class (repeat per class)",
    )
    cut.add_argument(
        "--default-days",
        type=int,
        default=3650,
        metavar="N",
        help="days to keep classes not named by --retention (default 3650)",
    )
    return parser


def _run(args: argparse.Namespace, out: TextIO) -> None:
    if args.command == "verify":
        report = verify(
            args.path,
            load_verifier(args.public_key),
            allow_unsigned_tail=args.allow_unsigned_tail,
            checkpoints=args.checkpoints,
        )
        out.write(f"OK: {args.path}: {report.summary()}\n")
    elif args.command == "prune":
        if not args.directory.is_dir():
            raise AuditUsageError(f"{args.directory} is not a directory")
        removed = prune(
            args.directory,
            signer=load_signer(args.signing_key),
            retention_days=dict(args.retention),
            default_retention_days=args.default_days,
        )
        for path in removed:
            out.write(f"removed {path}\n")
        out.write(f"OK: {len(removed)} expired segment(s) removed\n")


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        _run(args, out)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_ARGUMENTS
    except AuditError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    return 0
