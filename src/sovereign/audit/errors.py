"""Exceptions of the audit log.

Every error carries the CLI exit code that reports it. Third-party errors (the
OS, cryptography, json) are mapped to these at the boundary.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_ARGUMENTS = 2


class AuditError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = EXIT_FAILURE


class AuditUsageError(AuditError):
    """The command line, a setting or a key file is wrong."""

    exit_code = EXIT_BAD_ARGUMENTS


class AuditKeyError(AuditUsageError):
    """A signing or verification key cannot be used."""


class AuditWriteError(AuditError):
    """A record could not be made durable; the caller must refuse the request."""


class AuditPruneError(AuditError):
    """Expired segments could not be removed (nothing is removed without a signed record)."""


class AuditVerifyError(AuditError):
    """The log does not verify."""


class ChainBrokenError(AuditVerifyError):
    """The first entry at which a chain stops verifying.

    ``kind`` is one of the ``KIND_*`` constants of :mod:`sovereign.audit.verify`.
    """

    def __init__(self, path: Path, line: int, sequence: int | None, kind: str, reason: str) -> None:
        where = f"{path}:{line}" + (f": seq {sequence}" if sequence is not None else "")
        super().__init__(f"{where}: {kind}: {reason}")
        self.path = path
        self.line = line
        self.sequence = sequence
        self.kind = kind
        self.reason = reason
