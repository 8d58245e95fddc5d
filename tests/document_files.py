"""Real document files for the tests, written by the libraries that read them (pypdf, python-docx).

A PDF page here is a content stream that shows its lines in Helvetica (a standard font every reader
knows), so pypdf extracts exactly those lines; bookmarks are pypdf's outline items.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import docx
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def pdf_bytes(
    pages: Sequence[Sequence[str]],
    *,
    outline: Sequence[tuple[str, int, str | None]] = (),
    user_password: str | None = None,
    page_labels: Sequence[tuple[int, int, str, str | None]] = (),
) -> bytes:
    """A PDF with one page per item of `pages` (its lines of text) and bookmarks (title, 0-based page,
    parent title or None), encrypted when `user_password` is given ("" opens without one); printed page
    numbers from `page_labels` (first and last 0-based page, style such as "/r" or "/D", prefix)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        operations = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            operations.append(f"({escaped}) Tj T*")
        operations.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operations).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    items: dict[str, object] = {}
    for title, page_number, parent in outline:
        items[title] = writer.add_outline_item(
            title=title,
            page_number=page_number,
            parent=items[parent] if parent else None,  # type: ignore[arg-type]
        )
    for first, last, style, prefix in page_labels:
        writer.set_page_label(first, last, style, prefix, 1)  # type: ignore[arg-type]
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(blocks: Sequence[tuple[str, str] | list[list[str]]]) -> bytes:
    """A Word document of (style, text) paragraphs ("Title", "Heading 1", ..., "" for body text) and
    tables (a list of rows of cell texts)."""
    document = docx.Document()
    for block in blocks:
        if isinstance(block, list):
            table = document.add_table(rows=len(block), cols=len(block[0]))
            for row, cells in zip(table.rows, block, strict=True):
                for cell, text in zip(row.cells, cells, strict=True):
                    cell.text = text
            continue
        style, text = block
        document.add_paragraph(text, style=style or None)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
