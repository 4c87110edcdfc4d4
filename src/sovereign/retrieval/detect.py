"""Content-type detection: the bytes decide, never the file name alone.

PDF and DOCX are recognised by their signatures (the ``filetype`` library),
HTML by its opening markup, text by being valid UTF-8 without control bytes.
A file whose name claims another type than its content is refused, so a
renamed executable cannot be ingested as "report.pdf".
"""

from __future__ import annotations

import re

import filetype  # type: ignore[import-untyped]

from sovereign.retrieval.errors import UnsupportedDocument

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
TEXT = "text/plain"
SUPPORTED = (PDF, DOCX, HTML, TEXT)

BY_SUFFIX = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".html": HTML,
    ".htm": HTML,
    ".txt": TEXT,
    ".md": TEXT,
    ".text": TEXT,
}
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
# Tab, newline, carriage return and form feed are text; other C0 controls
# (and NUL above all) are not.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f]")


def detect(data: bytes, name: str = "") -> str:
    """The MIME type of ``data``; UnsupportedDocument when none of SUPPORTED or the name lies."""
    found = _sniff(data)
    if found is None:
        guess = filetype.guess(data[:8192])
        what = guess.mime if guess is not None else "unknown binary content"
        raise UnsupportedDocument(
            f"{_short(name)}: {what} is not a supported type (PDF, DOCX, HTML, text)"
        )
    suffix = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    claimed = BY_SUFFIX.get(suffix)
    # Text in a .html file is still text; HTML named .txt is text to read as-is.
    compatible = claimed is None or claimed == found or {claimed, found} == {HTML, TEXT}
    if not compatible:
        raise UnsupportedDocument(
            f"{_short(name)}: the name says {claimed}, the content is {found}"
        )
    return found


def _sniff(data: bytes) -> str | None:
    guess = filetype.guess(data[:8192])
    if guess is not None:
        return guess.mime if guess.mime in (PDF, DOCX) else None
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _CONTROL.search(text):
        return None
    return HTML if head.startswith(_HTML_STARTS) else TEXT


def _short(name: str) -> str:
    return repr(name[:120]) if name else "document"
