"""Parsers and content-type detection: the bytes decide, every bound holds."""

from __future__ import annotations

import io
import zipfile

import docx
import pytest

from sovereign.retrieval import detect
from sovereign.retrieval.errors import DocumentError, DocumentTooLarge, UnsupportedDocument
from sovereign.retrieval.parse import parse, parser_digest, parser_versions

HTML = b"""<!DOCTYPE html><html><head><title>Visitor policy</title>
<script>var secret = "not text";</script><style>p {color: red}</style></head>
<body><nav><a href="/">Intranet home</a></nav>
<h1>Visitors</h1><p>Visitors wear an <b>orange</b> badge.</p>
<h2>Escort</h2><ul><li>Always escorted</li><li><p>Signed in at reception</p></li></ul>
<table><tr><th>Area</th><th>Badge</th></tr><tr><td>Lobby</td><td>orange</td></tr></table>
<footer>Copyright Aldermoor Bank</footer></body></html>"""


def docx_bytes() -> bytes:
    document = docx.Document()
    document.core_properties.title = "Leave policy"
    document.add_heading("Annual leave", level=1)
    document.add_paragraph("Staff get 28 vacation days a year.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Grade"
    table.rows[0].cells[1].text = "Notice"
    document.add_heading("Notice", level=2)
    document.add_paragraph("Managers give 3 months notice.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_html_keeps_headings_paragraphs_and_tables_and_drops_boilerplate() -> None:
    parsed = parse(HTML, "visitors.html")
    assert parsed.mime == detect.HTML
    assert parsed.title == "Visitor policy"
    pairs = [(b.heading, b.text) for b in parsed.blocks]
    assert ("Visitors", "Visitors wear an orange badge.") in pairs
    assert ("Escort", "Always escorted") in pairs
    assert ("Escort", "Signed in at reception") in pairs
    assert ("Escort", "Lobby | orange") in pairs
    text = " ".join(t for _, t in pairs)
    assert "secret" not in text and "Intranet home" not in text and "Copyright" not in text


def test_docx_keeps_headings_in_order_with_tables() -> None:
    parsed = parse(docx_bytes(), "leave.docx")
    assert parsed.mime == detect.DOCX
    assert parsed.title == "Leave policy"
    assert [(b.heading, b.text) for b in parsed.blocks] == [
        ("Annual leave", "Staff get 28 vacation days a year."),
        ("Annual leave", "Grade | Notice"),
        ("Notice", "Managers give 3 months notice."),
    ]


def test_text_and_markdown_headings() -> None:
    parsed = parse(
        b"# Backups\n\nBackups are stored\nin the Leeds vault.\n\n## Patching\n\nMonthly.", "it.md"
    )
    assert parsed.title == "Backups"
    assert [(b.heading, b.text) for b in parsed.blocks] == [
        ("Backups", "Backups are stored in the Leeds vault."),
        ("Patching", "Monthly."),
    ]


@pytest.mark.parametrize(
    ("data", "name", "match"),
    [
        (b"\x7fELF\x02\x01\x01" + b"\0" * 64, "report.pdf", "not a supported type"),
        (b"%PDF-1.7\n%\xe2\xe3", "notes.txt", "the name says text/plain"),
        (b"PK\x03\x04" + b"\0" * 40, "x.docx", "not a supported type"),
        (b"plain words", "slides.docx", "the name says"),
        (b"\xff\xfe\x00b\x00a\x00d", "bad.txt", "not a supported type"),
        (b"tab\tok but \x01 is not", "ctl.txt", "not a supported type"),
    ],
)
def test_content_decides_and_a_lying_name_is_refused(data: bytes, name: str, match: str) -> None:
    with pytest.raises(UnsupportedDocument, match=match):
        parse(data, name)


def test_html_in_a_txt_file_is_read_as_text_not_refused() -> None:
    assert detect.detect(b"<html><body>x</body></html>", "page.txt") == detect.HTML


def test_bounds_and_failures_are_document_errors() -> None:
    with pytest.raises(DocumentTooLarge):
        parse(b"a" * (32 * 1024 * 1024 + 1), "big.txt")
    with pytest.raises(DocumentError, match="no text"):
        parse(b"\n\n  \n", "empty.txt")
    broken = docx_bytes()[:2000]
    with pytest.raises(DocumentError, match="parser failed"):
        parse(broken, "broken.docx")


def test_a_docx_that_unpacks_too_large_is_refused_before_parsing() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w/>")
        archive.writestr("word/bomb.xml", "0" * (65 * 1024 * 1024))
    with pytest.raises(DocumentError):
        parse(out.getvalue(), "bomb.docx")


def test_parser_digest_follows_the_library_versions() -> None:
    versions = parser_versions()
    assert set(versions) == {"schema", "pypdf", "python-docx", "selectolax", "filetype"}
    assert parser_digest().startswith("sha256:") and len(parser_digest()) == 71
