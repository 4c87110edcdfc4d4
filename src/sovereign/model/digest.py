"""Per-file SHA-256 digests of a model directory, and how two sets of them differ.

The digest manifest is deterministic: relative POSIX paths, sorted, each with
its size and SHA-256. Only regular files count; a symlink, socket, FIFO or
device anywhere in the tree is refused, because a loader would follow it to
bytes nobody pinned. The signature file is not content and is left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sovereign.model.errors import ContentsDifferError, LayoutError, UsageError

SIGNATURE_FILE = "model.sig"
FORMAT = "sovereign.model.digests/v1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileDigest:
    """One file of a model: where it is, how big, and its SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DigestManifest:
    """The files of a model directory, sorted by path."""

    files: tuple[FileDigest, ...]

    def by_path(self) -> dict[str, FileDigest]:
        return {item.path: item for item in self.files}

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "files": [
                {"path": item.path, "size": item.size, "sha256": item.sha256} for item in self.files
            ],
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "digest manifest") -> DigestManifest:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{source} is not JSON: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise UsageError(
                f'{source} is not a digest manifest (expected "format": {FORMAT!r}); '
                "make one with `sovereign model digest DIR`"
            )
        entries = document.get("files")
        if not isinstance(entries, list):
            raise UsageError(f'{source}: "files" must be a list')
        files: list[FileDigest] = []
        for index, entry in enumerate(entries):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("path"), str)
                or not isinstance(entry.get("size"), int)
                or not isinstance(entry.get("sha256"), str)
                or not _HEX64.match(entry["sha256"])
            ):
                raise UsageError(
                    f"{source}: files[{index}] needs path (string), size (integer) "
                    "and sha256 (64 lowercase hex digits)"
                )
            files.append(FileDigest(entry["path"], entry["size"], entry["sha256"]))
        return cls(tuple(sorted(files, key=lambda item: item.path)))


@dataclass(frozen=True)
class Differences:
    """Files that are missing, extra or changed compared to what was pinned."""

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.changed)

    def lines(self) -> list[str]:
        return (
            [f"missing: {path}" for path in self.missing]
            + [f"extra: {path}" for path in self.extra]
            + [f"changed: {path}" for path in self.changed]
        )

    def raise_if_any(self, what: str) -> None:
        if self:
            counts = ", ".join(
                f"{len(group)} {label}"
                for label, group in (
                    ("missing", self.missing),
                    ("extra", self.extra),
                    ("changed", self.changed),
                )
                if group
            )
            raise ContentsDifferError(f"{what} ({counts})", self.lines())


def compare(expected: Mapping[str, str], actual: Mapping[str, str]) -> Differences:
    """Compare two ``path -> sha256`` mappings."""
    return Differences(
        missing=tuple(sorted(set(expected) - set(actual))),
        extra=tuple(sorted(set(actual) - set(expected))),
        changed=tuple(
            sorted(path for path in set(expected) & set(actual) if expected[path] != actual[path])
        ),
    )


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, Path, int]]:
    with os.scandir(root) as entries:
        for entry in entries:
            relative = f"{prefix}{entry.name}"
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise LayoutError(
                    f"{relative} is a symlink; a model directory holds regular files only "
                    "(copy the target in place of the link)"
                )
            if stat.S_ISDIR(mode):
                yield from _walk(Path(entry.path), f"{relative}/")
            elif stat.S_ISREG(mode):
                yield relative, Path(entry.path), entry.stat(follow_symlinks=False).st_size
            else:
                raise LayoutError(
                    f"{relative} is a special file (socket, FIFO or device); "
                    "a model directory holds regular files only"
                )


def list_files(root: Path, *, include_signature: bool = False) -> list[tuple[str, Path, int]]:
    """Every regular file under ``root`` as ``(relative POSIX path, path, size)``, sorted."""
    try:
        mode = root.lstat().st_mode
    except OSError as exc:
        raise UsageError(f"{root}: {exc.strerror}") from exc
    if not stat.S_ISDIR(mode):
        raise UsageError(f"{root} is not a directory")
    try:
        found = sorted(_walk(root, ""))
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    if include_signature:
        return found
    return [item for item in found if item[0] != SIGNATURE_FILE]


def hash_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in large blocks."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def digest_directory(root: Path, *, workers: int | None = None) -> DigestManifest:
    """Hash every content file of a model directory (files in parallel)."""
    files = list_files(root)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(pool.map(lambda item: hash_file(item[1]), files))
    return DigestManifest(
        tuple(
            FileDigest(relative, size, sha)
            for (relative, _, size), sha in zip(files, hashes, strict=True)
        )
    )
