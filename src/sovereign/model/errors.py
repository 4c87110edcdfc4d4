"""Exceptions of the model tooling.

Every error carries the CLI exit code that reports it, so scripts and the
Ansible roles can tell an unsigned model from a tampered one without parsing
text. Third-party errors (httpx, model_signing, cryptography, the OS) are
mapped to these at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_INVALID_SIGNATURE = 3
EXIT_UNSIGNED = 4
EXIT_CONTENTS_DIFFER = 5


class ModelError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = EXIT_FAILURE


class UsageError(ModelError):
    """The command line, a key file or a reference is wrong."""

    exit_code = EXIT_BAD_ARGUMENTS


class KeyFileError(UsageError):
    """A signing or verification key cannot be used."""


class BadReferenceError(UsageError):
    """An OCI reference cannot be parsed, or names a tag where a digest is needed."""


class InvalidSignatureError(ModelError):
    """The signature is not valid for the given public key."""

    exit_code = EXIT_INVALID_SIGNATURE


class UnsignedError(ModelError):
    """The model carries no signature."""

    exit_code = EXIT_UNSIGNED


class ContentsDifferError(ModelError):
    """The files on disk (or a blob) are not the ones that were pinned."""

    exit_code = EXIT_CONTENTS_DIFFER

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


class LayoutError(ContentsDifferError):
    """A model directory holds something that is not a regular file (symlink, device...)."""


class DigestMismatchError(ContentsDifferError):
    """Bytes received from a registry do not hash to the digest that was asked for."""


class SigningError(ModelError):
    """Signing failed for a reason other than the key or the directory layout."""


class RegistryError(ModelError):
    """The registry answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(RegistryError):
    """The registry refused our credentials, or wants some and we have none."""


class TransferError(RegistryError):
    """The connection broke during a transfer; running the command again resumes it."""


class PullError(ModelError):
    """A pull cannot proceed (destination exists, another pull holds the lock...)."""
