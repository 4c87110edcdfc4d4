"""Exceptions of the evaluation runner.

Every error carries the exit code that reports it, so the promotion pipeline can
tell a regression (1) from a mistake in its own input (2) and from a run that
could not measure anything (3). Third-party errors (httpx, json, jsonschema,
Inspect AI, the OS) are mapped to these at the boundary.
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3


class EvalError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = EXIT_RUN_FAILED


class UsageError(EvalError):
    """The command line, a dataset, a result file or a secret file is wrong."""

    exit_code = EXIT_USAGE


class DatasetError(UsageError):
    """A dataset (or its gate sidecar) is invalid; the message names file, line and field."""


class ResultFileError(UsageError):
    """A result file cannot be read, or cannot be compared with another one."""


class RuntimeFileError(UsageError):
    """The ``--runtime`` JSON (what the serving node runs) is invalid."""


class TokenError(EvalError):
    """No bearer token could be obtained from the token endpoint."""


class BackendError(EvalError):
    """The gateway or backend failed, refused or answered something unusable."""


class WriteError(EvalError):
    """A result or metrics file could not be written."""
