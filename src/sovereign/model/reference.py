"""OCI references: ``registry[:port]/repository[:tag][@sha256:digest]``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sovereign.model.errors import BadReferenceError

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REGISTRY = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference; the registry is always explicit (no Docker Hub default)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)


def parse_reference(text: str) -> Reference:
    """Parse ``text``; the error names what part is wrong."""
    rest, _, digest = text.partition("@")
    if digest and not DIGEST.match(digest):
        raise BadReferenceError(
            f"{text!r}: digest must be sha256: followed by 64 lowercase hex digits"
        )
    registry, slash, path = rest.partition("/")
    if not slash or not path:
        raise BadReferenceError(
            f"{text!r}: expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], "
            "e.g. registry.example:5000/models/llama@sha256:..."
        )
    if not _REGISTRY.match(registry) or not (
        "." in registry or ":" in registry or registry == "localhost"
    ):
        raise BadReferenceError(
            f"{text!r}: {registry!r} is not a registry host[:port]; name the registry "
            "explicitly (there is no default registry)"
        )
    repository, tag = path, None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise BadReferenceError(f"{text!r}: {tag!r} is not a valid tag")
    for component in repository.split("/"):
        if not _COMPONENT.match(component):
            raise BadReferenceError(
                f"{text!r}: repository component {component!r} must be lowercase "
                "letters and digits, separated by '.', '_', '__' or '-'"
            )
    return Reference(registry, repository, tag, digest or None)


def require_digest(reference: Reference) -> str:
    """The digest of a reference that must be pinned; tags are refused."""
    if reference.digest is None:
        raise BadReferenceError(
            f"{reference}: pull needs a digest-pinned reference "
            f"({reference.registry}/{reference.repository}@sha256:...); tags can move, "
            "so they are refused"
        )
    return reference.digest
