#!/usr/bin/env python3
"""Render the lab's retrieval corpus from its sources.

Each document of manifest.yml has its text in ``src/<id>.md`` (a small
subset of Markdown: ``#`` headings, paragraphs, ``- `` lists and one pipe
table) and is rendered into the format its ``path`` names: PDF (fpdf2),
DOCX (python-docx), HTML (the standard library) or plain Markdown.

The output is deterministic: every date in it is the document's ``updated``
date, PDFs are written uncompressed, and DOCX archives are rewritten with
the members in their order, one fixed timestamp and fixed attributes, so
the bytes depend on the sources and on the fpdf2 and python-docx versions
pinned in requirements-dev.txt, not on the clock. (A DOCX is deflated:
stored, python-docx's template styles alone take 800 KB. A Python built on
zlib-ng instead of zlib would deflate to other bytes.) tests/unit/test_corpus.py checks that the
committed files are what this script renders.

    python files/corpus/build.py            # rewrite the files beside it
    python files/corpus/build.py --check    # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import io
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import docx
import yaml
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Pt
from fpdf import FPDF
from fpdf.enums import XPos, YPos

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.yml"
SOURCES = HERE / "src"
AUTHOR = "Aldermoor Bank"
CREATOR = "Sovereign lab corpus (files/corpus/build.py)"
SUFFIXES = (".pdf", ".docx", ".html", ".md")
# The intranet's boilerplate around every HTML page: a parser that indexes
# it has failed to strip navigation (sovereign.retrieval.parse drops it).
NAV = (
    ("Intranet home", "https://intranet.aldermoor.example/"),
    ("Policies", "https://intranet.aldermoor.example/policies"),
    ("Procedures", "https://intranet.aldermoor.example/procedures"),
    ("Service Desk", "https://intranet.aldermoor.example/service-desk"),
)


@dataclass(frozen=True)
class Entry:
    """One document of the manifest (the fields build.py uses)."""

    id: str
    path: str
    title: str
    data_class: str
    source: str
    updated: dt.date

    @property
    def stamp(self) -> dt.datetime:
        """The document's one timestamp: its ``updated`` date at 09:00 UTC."""
        return dt.datetime.combine(self.updated, dt.time(9, 0), tzinfo=dt.UTC)


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    rows: tuple[tuple[str, ...], ...]  # the first row holds the column headings


Block = Heading | Paragraph | Bullets | Table


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    """The manifest's documents, checked enough to render them."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries = []
    for raw in data["documents"]:
        entry = Entry(
            id=str(raw["id"]),
            path=str(raw["path"]),
            title=str(raw["title"]),
            data_class=str(raw["data_class"]),
            source=str(raw["source"]),
            updated=dt.date.fromisoformat(str(raw["updated"])),
        )
        if Path(entry.path).suffix not in SUFFIXES or "/" in entry.path:
            raise ValueError(
                f"{entry.id}: path {entry.path!r} is not a file name ending {SUFFIXES}"
            )
        entries.append(entry)
    return entries


def parse_source(text: str) -> list[Block]:
    """Blocks of a source: paragraphs are separated by blank lines."""
    blocks: list[Block] = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line.strip() for line in chunk.strip().splitlines() if line.strip()]
        if not lines:
            continue
        if len(lines) == 1 and lines[0].startswith("#"):
            marks = lines[0].split(" ", 1)[0]
            blocks.append(Heading(level=len(marks), text=lines[0][len(marks) :].strip()))
        elif all(line.startswith("- ") for line in lines):
            blocks.append(Bullets(tuple(line[2:].strip() for line in lines)))
        elif all(line.startswith("|") for line in lines):
            rows = [
                tuple(cell.strip() for cell in line.strip("|").split("|"))
                for line in lines
                if not set(line) <= set("|-: ")
            ]
            blocks.append(Table(tuple(rows)))
        else:
            blocks.append(Paragraph(" ".join(lines)))
    return blocks


def _check(entry: Entry, blocks: Sequence[Block]) -> None:
    first = blocks[0] if blocks else None
    if not isinstance(first, Heading) or first.level != 1 or first.text != entry.title:
        raise ValueError(f"{entry.id}: the source must open with '# {entry.title}'")


def _footer(entry: Entry) -> str:
    return f"{AUTHOR} | {entry.data_class.capitalize()} | {entry.updated.isoformat()}"


class _Pdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", size=8)
        self.cell(0, 10, f"{self.footer_text} | page {self.page_no()}", align="C")


def render_pdf(entry: Entry, blocks: Sequence[Block]) -> bytes:
    pdf = _Pdf(format="A4")
    pdf.footer_text = _footer(entry)
    pdf.set_compression(False)
    pdf.set_creation_date(entry.stamp)
    pdf.set_title(entry.title)
    pdf.set_author(AUTHOR)
    pdf.set_subject(f"{entry.data_class}; {entry.source}")
    pdf.set_keywords(entry.id)
    pdf.set_creator(CREATOR)
    pdf.set_lang("en")
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    sizes = {1: 16.0, 2: 12.5, 3: 11.0}
    for block in blocks:
        if isinstance(block, Heading):
            pdf.set_font("Helvetica", style="B", size=sizes.get(block.level, 11.0))
            pdf.ln(2 if block.level > 1 else 0)
            pdf.multi_cell(0, 7, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
        elif isinstance(block, Paragraph):
            pdf.set_font("Helvetica", size=10)
            pdf.multi_cell(0, 5, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(2)
        elif isinstance(block, Bullets):
            pdf.set_font("Helvetica", size=10)
            for item in block.items:
                pdf.set_x(pdf.l_margin + 4)
                pdf.multi_cell(0, 5, f"- {item}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(2)
        else:
            pdf.set_font("Helvetica", size=9)
            with pdf.table(text_align="LEFT", line_height=5) as table:
                for cells in block.rows:
                    row = table.row()
                    for cell in cells:
                        row.cell(cell)
            pdf.ln(2)
    return bytes(pdf.output())


def render_docx(entry: Entry, blocks: Sequence[Block]) -> bytes:
    document = docx.Document()
    props = document.core_properties
    props.title = entry.title
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.category = entry.data_class
    props.subject = entry.source
    props.keywords = entry.id
    props.comments = CREATOR
    props.identifier = entry.id
    props.language = "en-GB"
    props.revision = 1
    props.created = entry.stamp.replace(tzinfo=None)
    props.modified = entry.stamp.replace(tzinfo=None)
    props.last_printed = entry.stamp.replace(tzinfo=None)
    section = document.sections[0]
    # Page furniture, outside the body the parser reads.
    section.header.paragraphs[0].text = f"{AUTHOR} | {entry.data_class.capitalize()}"
    footer = section.footer.paragraphs[0]
    footer.text = _footer(entry)
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for block in blocks:
        if isinstance(block, Heading):
            document.add_heading(block.text, level=0 if block.level == 1 else block.level - 1)
        elif isinstance(block, Paragraph):
            document.add_paragraph(block.text)
        elif isinstance(block, Bullets):
            for item in block.items:
                document.add_paragraph(item, style="List Bullet")
        else:
            table = document.add_table(rows=len(block.rows), cols=len(block.rows[0]))
            table.style = "Table Grid"
            for r, cells in enumerate(block.rows):
                for c, text in enumerate(cells):
                    cell = table.cell(r, c)
                    cell.text = text
                    if r == 0:
                        for run in cell.paragraphs[0].runs:
                            run.bold = True
                            run.font.size = Pt(10)
    out = io.BytesIO()
    document.save(out)
    return _normalise_zip(out.getvalue(), entry.stamp)


def _normalise_zip(data: bytes, stamp: dt.datetime) -> bytes:
    """The same archive, members in the same order, with one fixed timestamp."""
    date_time = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target,
    ):
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=date_time)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.create_system = 3
            member.external_attr = 0o644 << 16
            target.writestr(member, source.read(info.filename))
    return out.getvalue()


def render_html(entry: Entry, blocks: Sequence[Block]) -> bytes:
    esc = html.escape
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"\n  <li>{esc(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}\n</ul>")
        else:
            head = "".join(f"<th>{esc(cell)}</th>" for cell in block.rows[0])
            rows = "".join(
                "\n    <tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in cells) + "</tr>"
                for cells in block.rows[1:]
            )
            body.append(
                f"<table>\n  <thead>\n    <tr>{head}</tr>\n  </thead>\n"
                f"  <tbody>{rows}\n  </tbody>\n</table>"
            )
    nav = "".join(f'\n    <li><a href="{esc(url)}">{esc(name)}</a></li>' for name, url in NAV)
    page = f"""<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<title>{esc(entry.title)}</title>
<meta name="author" content="{esc(AUTHOR)}">
<meta name="generator" content="{esc(CREATOR)}">
<meta name="dcterms.identifier" content="{esc(entry.id)}">
<meta name="dcterms.modified" content="{entry.updated.isoformat()}">
<meta name="classification" content="{esc(entry.data_class)}">
<link rel="canonical" href="{esc(entry.source)}">
<style>body {{ font-family: sans-serif; max-width: 48rem; margin: auto; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #999; padding: 0.3rem; }}
</style>
</head>
<body>
<header>
  <p>Aldermoor Bank intranet</p>
  <nav>
    <ul>{nav}
    </ul>
  </nav>
</header>
<main>
<article>
{chr(10).join(body)}
</article>
</main>
<footer>
  <p>{esc(_footer(entry))} | <a href="{esc(entry.source)}">{esc(entry.source)}</a></p>
  <p>Printed copies are uncontrolled. Check the intranet for the current version.</p>
</footer>
</body>
</html>
"""
    return page.encode("utf-8")


def render(entry: Entry, sources: Path = SOURCES) -> bytes:
    """The bytes of ``entry``'s file, rendered from ``sources/<id>.md``."""
    text = (sources / f"{entry.id}.md").read_text(encoding="utf-8")
    text.encode("latin-1")  # the PDF core fonts' alphabet; a stray character fails here
    blocks = parse_source(text)
    _check(entry, blocks)
    suffix = Path(entry.path).suffix
    if suffix == ".pdf":
        return render_pdf(entry, blocks)
    if suffix == ".docx":
        return render_docx(entry, blocks)
    if suffix == ".html":
        return render_html(entry, blocks)
    return text.encode("utf-8")


def build(out_dir: Path, manifest: Path = MANIFEST) -> list[Path]:
    """Render every document of ``manifest`` into ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in load_manifest(manifest):
        target = out_dir / entry.path
        target.write_bytes(render(entry, manifest.parent / "src"))
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside)")
    parser.add_argument(
        "--check", action="store_true", help="compare with the files in --out, write nothing"
    )
    args = parser.parse_args(argv)
    if not args.check:
        for path in build(args.out):
            print(f"{path}: {path.stat().st_size} bytes")
        return 0
    stale = [
        entry.path
        for entry in load_manifest()
        if not (args.out / entry.path).is_file()
        or (args.out / entry.path).read_bytes() != render(entry)
    ]
    for name in stale:
        print(f"{name}: stale; run python files/corpus/build.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
