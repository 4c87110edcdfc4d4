"""Parsers: PDF (pypdf), DOCX (python-docx), HTML (selectolax) and text.

Each turns a document into blocks of text under the heading they sit under,
so a chunk knows its section. Every parser is bounded: bytes in, pages,
uncompressed size of a DOCX, characters out. The parsers' versions are part
of every index's binding (``parser_digest``): a new parser version builds a
new index instead of mixing two extractions of the same corpus.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from importlib.metadata import version

from sovereign.retrieval import detect
from sovereign.retrieval.digests import canonical_digest
from sovereign.retrieval.errors import DocumentError, DocumentTooLarge

# Bumped when this module's extraction changes (what counts as a heading,
# what is stripped): it changes the parser digest like a library upgrade.
PARSER_SCHEMA = 1
MAX_BYTES = 32 * 1024 * 1024
MAX_PAGES = 2000
MAX_DOCX_UNCOMPRESSED = 64 * 1024 * 1024
MAX_CHARS = 4_000_000
_HTML_DROP = "script, style, nav, header, footer, aside, noscript, template, form, svg"
_HTML_BLOCKS = "h1, h2, h3, h4, h5, h6, p, li, tr, pre, blockquote, dt, dd"
_SPACE = re.compile(r"[ \t\u00a0]+")


@dataclass(frozen=True)
class Block:
    """A run of text and the heading it sits under ("" before the first one)."""

    heading: str
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    mime: str
    title: str
    blocks: tuple[Block, ...]

    @property
    def chars(self) -> int:
        return sum(len(b.text) for b in self.blocks)


def parser_versions() -> dict[str, str]:
    """The libraries and this module's schema: what the parser digest is made of."""
    return {
        "schema": str(PARSER_SCHEMA),
        "pypdf": version("pypdf"),
        "python-docx": version("python-docx"),
        "selectolax": version("selectolax"),
        "filetype": version("filetype"),
    }


def parser_digest() -> str:
    return canonical_digest(parser_versions())


def parse(data: bytes, name: str = "") -> ParsedDocument:
    """Detect the type of ``data`` and extract its blocks (DocumentError when unreadable)."""
    if len(data) > MAX_BYTES:
        raise DocumentTooLarge(f"{name[:120]!r}: {len(data)} bytes, more than {MAX_BYTES}")
    mime = detect.detect(data, name)
    try:
        if mime == detect.PDF:
            title, blocks = _pdf(data)
        elif mime == detect.DOCX:
            title, blocks = _docx(data)
        elif mime == detect.HTML:
            title, blocks = _html(data.decode("utf-8"))
        else:
            title, blocks = _text(data.decode("utf-8"))
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is the document's
        raise DocumentError(
            f"{name[:120]!r}: the {mime} parser failed: {type(exc).__name__}"
        ) from exc
    kept = tuple(b for b in blocks if b.text)
    parsed = ParsedDocument(mime=mime, title=_clean(title)[:300], blocks=kept)
    if parsed.chars > MAX_CHARS:
        raise DocumentTooLarge(f"{name[:120]!r}: {parsed.chars} characters, more than {MAX_CHARS}")
    if not kept:
        raise DocumentError(f"{name[:120]!r}: no text found (a scanned PDF needs OCR first)")
    return parsed


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _pdf(data: bytes) -> tuple[str, list[Block]]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise DocumentError("an encrypted PDF cannot be ingested; supply it decrypted")
    if len(reader.pages) > MAX_PAGES:
        raise DocumentTooLarge(f"{len(reader.pages)} pages, more than {MAX_PAGES}")
    meta = reader.metadata
    title = str(meta.title) if meta is not None and meta.title else ""
    blocks = []
    chars = 0
    for number, page in enumerate(reader.pages, start=1):
        text = "\n".join(_clean(line) for line in page.extract_text().splitlines())
        chars += len(text)
        if chars > MAX_CHARS:
            raise DocumentTooLarge(f"more than {MAX_CHARS} characters by page {number}")
        blocks.append(Block(heading=f"page {number}", text=text.strip()))
    return title, blocks


def _docx(data: bytes) -> tuple[str, list[Block]]:
    import docx
    from docx.table import Table

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_DOCX_UNCOMPRESSED:
        raise DocumentTooLarge(f"unpacks to {unpacked} bytes, more than {MAX_DOCX_UNCOMPRESSED}")
    document = docx.Document(io.BytesIO(data))
    title = document.core_properties.title or ""
    blocks: list[Block] = []
    heading = ""
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = [_clean(cell.text) for cell in row.cells]
                blocks.append(Block(heading, " | ".join(c for c in cells if c)))
            continue
        text = _clean(item.text)
        style = item.style.name if item.style is not None and item.style.name else ""
        if style.startswith(("Heading", "Title")):
            heading = text
            title = title or (text if style == "Title" else "")
        else:
            blocks.append(Block(heading, text))
    return title, blocks


def _html(markup: str) -> tuple[str, list[Block]]:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(markup)
    title_node = tree.css_first("title")
    title = title_node.text() if title_node is not None else ""
    for node in tree.css(_HTML_DROP):
        node.decompose()
    blocks: list[Block] = []
    heading = ""
    root = tree.body if tree.body is not None else tree.root
    if root is None:
        return title, blocks
    for node in root.css(_HTML_BLOCKS):
        tag = node.tag
        if tag == "tr":
            cells = [_clean(cell.text(separator=" ")) for cell in node.css("th, td")]
            blocks.append(Block(heading, " | ".join(c for c in cells if c)))
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            heading = _clean(node.text(separator=" "))
            title = title or heading
        elif tag == "li" and node.css_first("p") is not None:
            continue  # its paragraphs are blocks of their own
        elif node.parent is not None and node.parent.tag in ("td", "th"):
            continue  # inside a table row, taken whole
        else:
            blocks.append(Block(heading, _clean(node.text(separator=" "))))
    return title, blocks


def _text(text: str) -> tuple[str, list[Block]]:
    title = ""
    heading = ""
    blocks: list[Block] = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.strip() for line in paragraph.strip().splitlines()]
        if not lines:
            continue
        if lines[0].startswith("#"):
            heading = lines[0].lstrip("#").strip()
            title = title or heading
            lines = lines[1:]
        body = _clean(" ".join(lines))
        if body:
            blocks.append(Block(heading, body))
    return title, blocks
