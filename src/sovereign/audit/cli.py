"""``sovereign audit``: verify a tamper-evident audit log, prune expired segments,
append one record (a change record of ``playbooks/upgrade.yml``).

Exit codes: 0 ok, 1 the log does not verify (or pruning failed), 2 bad
arguments. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from sovereign.audit.errors import EXIT_BAD_ARGUMENTS, AuditError, AuditUsageError
from sovereign.audit.layout import is_data_class, make_directory
from sovereign.audit.log import AuditLog
from sovereign.audit.retention import prune
from sovereign.audit.signing import load_signer, load_verifier
from sovereign.audit.verify import verify

PROG = "sovereign audit"
EPILOG = "exit codes: 0 ok, 1 the log does not verify, pruning or appending failed, 2 bad arguments"
# A record handed to `append` on its standard input: one JSON object.
MAX_APPEND_BYTES = 256 * 1024


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
    add = commands.add_parser(
        "append",
        help="append one JSON record (standard input) to a log, signed and fsync'd",
    )
    add.add_argument("directory", type=Path, metavar="DIR")
    add.add_argument("--signing-key", type=Path, required=True, help="P-256 private key (PEM)")
    add.add_argument(
        "--data-class",
        default="change",
        help="the chain the record joins (default change)",
    )
    return parser


def _read_record(stream: TextIO) -> dict[str, object]:
    text = stream.read(MAX_APPEND_BYTES + 1)
    if len(text) > MAX_APPEND_BYTES:
        raise AuditUsageError(f"the record is larger than {MAX_APPEND_BYTES} bytes")
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise AuditUsageError(f"the record on standard input is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise AuditUsageError("the record on standard input must be a JSON object")
    return record


async def _append(directory: Path, key: Path, record: dict[str, object]) -> str:
    log = await AuditLog.open(directory, signing_key=key)
    try:
        receipt = await log.append(record)
    finally:
        await log.close()
    return f"{record['data_class']} #{receipt.sequence} {receipt.hash}"


def _run_append(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    if not is_data_class(args.data_class):
        raise AuditUsageError(f"--data-class {args.data_class!r} is not a valid chain name")
    record = _read_record(stdin)
    if "data_class" in record and record["data_class"] != args.data_class:
        raise AuditUsageError("the record's data_class differs from --data-class")
    record["data_class"] = args.data_class
    make_directory(args.directory)
    # One writer at a time: two runs appending at once would fork the chain.
    with open(args.directory / ".append.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        written = asyncio.run(_append(args.directory, args.signing_key, record))
    out.write(f"OK: appended {written}\n")


def _run(args: argparse.Namespace, out: TextIO, stdin: TextIO = sys.stdin) -> None:
    if args.command == "append":
        _run_append(args, out, stdin)
    elif args.command == "verify":
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
    stdin: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        _run(args, out, stdin or sys.stdin)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_ARGUMENTS
    except AuditError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    return 0
