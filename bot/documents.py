"""Documents as text: a file someone gives the bot, read into sections with their headings and pages.

`parse_document` turns the bytes of a PDF, DOCX, Markdown, HTML or plain text file into `Section`s:
each a run of text under one heading path, never crossing a page, so that a passage found later can
be cited as "handbook.pdf, p. 12 (Safety › Fire exits)". The readers are well-kept libraries (pypdf,
python-docx, markdown-it-py) or the standard library's HTML parser; what they cannot read becomes one
of the typed `DocumentError`s, each a sentence for the person who gave the file.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Literal

import docx
from docx.table import Table
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError
from pypdf.generic import Destination

from bot.errors import UserFacingError

log = logging.getLogger(__name__)

DocumentKind = Literal["pdf", "docx", "markdown", "html", "text"]

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # the default of [storage] knowledge_document_max_mb
MAX_DOCUMENT_PAGES = 1000
# About 700 chunks, embedded in well under a minute: indexing ends inside an interaction's 15 minutes.
MAX_DOCUMENT_CHARS = 1_000_000
MAX_UNPACKED_DOCX_BYTES = 200 * 1024 * 1024  # a DOCX is a zip: refuse one that unpacks to more
HEADING_SEPARATOR = " › "
MAX_PAGE_LABEL_CHARS = 40  # a label is a prefix and a number ("A-12"); a longer one is cut

KIND_NAMES: dict[DocumentKind, str] = {
    "pdf": "PDF",
    "docx": "Word document",
    "markdown": "Markdown file",
    "html": "web page",
    "text": "text file",
}
_SUFFIXES: dict[str, DocumentKind] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".csv": "text",
    ".tsv": "text",
    ".rst": "text",
}
_CONTENT_TYPES: dict[str, DocumentKind] = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "text/csv": "text",
}
_OLD_FORMATS = {".doc": "Word 97-2003 (.doc)", ".rtf": "RTF", ".odt": "OpenDocument (.odt)"}
SUPPORTED_FORMATS = "PDF, DOCX, Markdown, HTML or plain text"


# --------------------------------------------------------------------------------------------- errors


class DocumentError(UserFacingError):
    """A file that cannot be read as a document; the message says why in one sentence."""


class UnsupportedDocumentError(DocumentError):
    """Not a format the bot reads."""


class UnreadableDocumentError(DocumentError):
    """A supported format, but damaged (or not what its name says)."""


class EncryptedDocumentError(UnreadableDocumentError):
    """A PDF that needs a password."""


class EmptyDocumentError(DocumentError):
    """Read fine, but there is no text in it (e.g. a scanned PDF)."""


class DocumentTooLargeError(DocumentError):
    """Over the size, page or character limit."""


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Section:
    """Text under one heading path, on one page when the format has pages (1-based, as the file orders
    them); `page_label` is the number printed on that page where the PDF says ("viii", "A-3")."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None
    page_label: str | None = None

    @property
    def page_shown(self) -> str | None:
        """The page as a reader finds it: its printed label, else its number."""
        return self.page_label or (None if self.page is None else str(self.page))


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    filename: str
    kind: DocumentKind
    size_bytes: int
    sections: tuple[Section, ...]
    pages: int | None = None  # how many the file has, for formats with pages

    @property
    def chars(self) -> int:
        return sum(len(section.text) for section in self.sections)

    def as_text(self) -> str:
        """The whole document as one text (headings as Markdown lines, page marks), e.g. for a model."""
        parts: list[str] = []
        headings: tuple[str, ...] = ()
        page: int | None = None
        for section in self.sections:
            if section.page is not None and section.page != page:
                parts.append(f"[page {section.page_shown}]")
                page = section.page
            if section.headings != headings:
                common = _common_prefix(headings, section.headings)
                parts.extend(
                    f"{'#' * (level + 1)} {title}"
                    for level, title in enumerate(section.headings)
                    if level >= common
                )
                headings = section.headings
            parts.append(section.text)
        return "\n\n".join(parts)


def heading_path(headings: Sequence[str]) -> str:
    return HEADING_SEPARATOR.join(headings)


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    length = 0
    while length < min(len(a), len(b)) and a[length] == b[length]:
        length += 1
    return length


# ------------------------------------------------------------------------------------------ dispatch


def document_kind(filename: str, content_type: str | None, data: bytes = b"") -> DocumentKind:
    """Which reader a file needs: by its name, else its content type, else its first bytes."""
    suffix = PurePath(filename).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in _CONTENT_TYPES:
        return _CONTENT_TYPES[media_type]
    if data.startswith(b"%PDF-"):
        return "pdf"
    if suffix in _OLD_FORMATS:
        raise UnsupportedDocumentError(
            f"{filename} is {_OLD_FORMATS[suffix]}, which the bot cannot read; save it as DOCX or PDF."
        )
    if media_type.startswith("text/"):
        return "text"
    raise UnsupportedDocumentError(
        f"{filename} is not a document the bot can read (it reads {SUPPORTED_FORMATS})."
    )


def parse_document(
    filename: str,
    data: bytes,
    content_type: str | None,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_pages: int = MAX_DOCUMENT_PAGES,
    max_chars: int = MAX_DOCUMENT_CHARS,
) -> ParsedDocument:
    """Read a file into sections (CPU-bound for large PDFs: call it in a worker thread)."""
    if len(data) > max_bytes:
        raise DocumentTooLargeError(
            f"{filename} is too large to read ({_megabytes(len(data))}; "
            f"the limit is {_megabytes(max_bytes)})."
        )
    kind = document_kind(filename, content_type, data)
    pages: int | None = None
    if kind == "pdf":
        sections, pages = _pdf_sections(filename, data, max_pages=max_pages, max_chars=max_chars)
    elif kind == "docx":
        sections = _docx_sections(filename, data)
    elif kind == "markdown":
        sections = markdown_sections(_decode_text(filename, data, content_type))
    elif kind == "html":
        sections = html_sections(_decode_html(data, content_type))
    else:
        sections = text_sections(_decode_text(filename, data, content_type))
    kept = tuple(section for section in sections if section.text.strip())
    if not kept:
        why = " (a scanned PDF has images of pages, not text)" if kind == "pdf" else ""
        raise EmptyDocumentError(f"{filename} has no text to read{why}.")
    document = ParsedDocument(filename, kind, len(data), kept, pages)
    if document.chars > max_chars:
        raise DocumentTooLargeError(
            f"{filename} has too much text to read at once ({document.chars:,} characters; the limit is "
            f"{max_chars:,}): split it into smaller files."
        )
    return document


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


# -------------------------------------------------------------------------------------- plain text


_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)


def _decode_text(filename: str, data: bytes, content_type: str | None) -> str:
    """UTF-8 (with or without a BOM), UTF-16 with a BOM, or the charset the upload declares."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                break
    encodings = ["utf-8"]
    declared = _CHARSET.search(content_type or "")
    if declared:
        encodings.insert(0, declared.group(1))
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        if "\x00" not in text:
            return text
    raise UnreadableDocumentError(f"{filename} is not UTF-8 text.")


def text_sections(text: str) -> list[Section]:
    return [Section(text.strip())]


# ---------------------------------------------------------------------------------------- Markdown


_FRONT_MATTER = re.compile(r"\A(?:---|\+\+\+)[ \t]*\n.*?\n(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)", re.DOTALL)


def markdown_sections(text: str) -> list[Section]:
    """Sections under the document's ATX and setext headings (CommonMark: none inside code blocks,
    quotes or lists). The body keeps its Markdown; the headings become the path."""
    lines = text.splitlines()
    front_matter = _FRONT_MATTER.match(text)
    source = text
    if front_matter:  # metadata, kept as text; its closing `---` would make a setext heading of it
        source = "\n" * len(front_matter.group(0).splitlines()) + text[front_matter.end() :]
    tokens = MarkdownIt("commonmark").parse(source)
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body_start = 0
    for position, token in enumerate(tokens):
        if token.type != "heading_open" or token.level != 0 or token.map is None:
            continue
        first, end = token.map
        _add_section(sections, "\n".join(lines[body_start:first]), path)
        inline = tokens[position + 1]
        title = _inline_text(inline.children or [])
        level = int(token.tag[1:])
        while path and path[-1][0] >= level:
            path.pop()
        if title:
            path.append((level, title))
        body_start = end
    _add_section(sections, "\n".join(lines[body_start:]), path)
    return sections


def _inline_text(children: Iterable[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":  # its alt text is in its own children
            parts.append(_inline_text(child.children or []))
    return " ".join("".join(parts).split())


def _add_section(
    sections: list[Section], text: str, path: Sequence[tuple[int, str]], page: int | None = None
) -> None:
    text = text.strip()
    if text:
        sections.append(Section(text, tuple(title for _, title in path), page))


# -------------------------------------------------------------------------------------------- HTML

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "title", "svg", "math", "head"})
_HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "nav", "aside", "main", "ul", "ol", "dl",
        "table", "blockquote", "form", "fieldset", "figure", "figcaption", "hr", "address",
        "details", "summary", "caption", "body",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"br", "li", "dt", "dd", "tr", "thead", "tbody", "tfoot"})
_CELL_TAGS = frozenset({"td", "th"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)


class _HtmlSections(HTMLParser):
    """Text by heading; scripts, styles and the head dropped; whitespace as a browser shows it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._body: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._skipping: list[str] = []  # open skipped tags
        self._pre = 0
        self._cell_in_row = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and "head" in self._skipping:
            self._skipping = [t for t in self._skipping if t != "head"]  # a <head> left open
        if self._skipping or tag in _SKIPPED_TAGS:
            if tag not in _VOID_TAGS:
                self._skipping.append(tag)
            return
        if tag in _HEADING_TAGS:
            self._flush()
            self._heading, self._heading_level = [], _HEADING_TAGS[tag]
        elif tag == "pre":
            self._pre += 1
            self._write("\n\n")
        elif tag in _PARAGRAPH_TAGS:
            self._write("\n\n")
        elif tag in _LINE_TAGS:
            self._write("\n")
            if tag == "tr":
                self._cell_in_row = 0
        elif tag in _CELL_TAGS:
            if self._cell_in_row:
                self._write(" | ")
            self._cell_in_row += 1
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.handle_data(f" {alt} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS:  # `<br/>` comes as a start and an end: it is one break
            return
        if self._skipping:
            if tag in self._skipping:
                while self._skipping and self._skipping.pop() != tag:
                    pass
            return
        if tag in _HEADING_TAGS and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            self._heading = None
            if title:
                while self._path and self._path[-1][0] >= self._heading_level:
                    self._path.pop()
                self._path.append((self._heading_level, title))
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._write("\n\n")
        elif tag in _PARAGRAPH_TAGS:
            self._write("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            self._body.append(data)
        else:
            text = re.sub(r"\s+", " ", data)
            if not self._body or self._body[-1].endswith("\n"):
                text = text.lstrip()
            self._body.append(text)

    def _write(self, breaks: str) -> None:
        if self._heading is None:
            self._body.append(breaks)

    def _flush(self) -> None:
        _add_section(self.sections, _tidy("".join(self._body)), self._path)
        self._body = []

    def close(self) -> None:
        super().close()
        if self._heading is not None:  # a heading never closed: its text is body text
            self._body.extend(self._heading)
            self._heading = None
        self._flush()


def _tidy(text: str) -> str:
    """Lines without trailing blanks (leading ones are a <pre>'s); at most one empty line between
    paragraphs."""
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_sections(html: str) -> list[Section]:
    parser = _HtmlSections()
    parser.feed(html)
    parser.close()
    return parser.sections


def _decode_html(data: bytes, content_type: str | None) -> str:
    """The declared charset (the upload's, else a <meta> one), else UTF-8, else windows-1252 (as browsers)."""
    declared = _CHARSET.search(content_type or "") or _CHARSET.search(data[:2048].decode("ascii", "replace"))
    candidates = [declared.group(1)] if declared else []
    if data.startswith(codecs.BOM_UTF8):
        candidates.insert(0, "utf-8-sig")
    for encoding in [*candidates, "utf-8"]:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("windows-1252", "replace")


# -------------------------------------------------------------------------------------------- DOCX

_HEADING_STYLE = re.compile(r"heading (\d)", re.IGNORECASE)


def _docx_sections(filename: str, data: bytes) -> list[Section]:
    """Paragraphs under the Heading 1-9 styles (Title above them all); tables as rows of cells."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise UnreadableDocumentError(f"{filename} is not a valid Word document (.docx).") from None
    if unpacked > MAX_UNPACKED_DOCX_BYTES:
        raise DocumentTooLargeError(
            f"{filename} unpacks to {_megabytes(unpacked)}, more than the bot reads "
            f"({_megabytes(MAX_UNPACKED_DOCX_BYTES)})."
        )
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except Exception:  # a damaged package fails in many ways (zip, XML, relationships): all mean the same
        log.info("Could not read %s as DOCX", filename, exc_info=True)
        raise UnreadableDocumentError(f"{filename} is not a valid Word document (.docx).") from None
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            body.append(_docx_table_text(block))
            continue
        text = block.text.strip()
        style = block.style.name if block.style is not None else ""
        level = 0 if style == "Title" else _heading_level(style or "")
        if level is None or not text:
            if text:
                body.append(text)
            continue
        _add_section(sections, "\n\n".join(body), path)
        body = []
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, " ".join(text.split())))
    _add_section(sections, "\n\n".join(body), path)
    return sections


def _heading_level(style: str) -> int | None:
    match = _HEADING_STYLE.fullmatch(style.strip())
    return int(match.group(1)) if match else None


def _docx_table_text(table: Table) -> str:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or text != cells[-1]:  # a merged cell repeats its text in each grid cell
                cells.append(text)
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------- PDF


@dataclass(slots=True)
class _OutlineMark:
    page: int  # 0-based
    path: tuple[str, ...]


@dataclass(slots=True)
class _PageText:
    text: str
    marks: list[_OutlineMark] = field(default_factory=list)


def _pdf_sections(filename: str, data: bytes, *, max_pages: int, max_chars: int) -> tuple[list[Section], int]:
    """Text per page; the outline (bookmarks), when there is one, gives each part of a page its heading
    path: a bookmark's title found on its page starts its section there, else at the page's top."""
    unreadable = UnreadableDocumentError(f"{filename} is not a valid PDF (it may be damaged).")
    locked = EncryptedDocumentError(
        f"{filename} is protected by a password; remove the protection and attach it again."
    )
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise locked
            except (DependencyError, FileNotDecryptedError, NotImplementedError):
                raise locked from None
        page_count = len(reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        log.info("Could not open %s as PDF: %s", filename, exc)
        raise unreadable from None
    if page_count > max_pages:
        raise DocumentTooLargeError(
            f"{filename} has {page_count:,} pages; the bot reads at most {max_pages:,} at once: split it."
        )
    marks = _pdf_outline(reader)
    labels = _pdf_page_labels(reader, filename)
    pages: list[_PageText] = []
    chars = 0
    for number, page in enumerate(reader.pages):
        try:
            text = page.extract_text() or ""
        except FileNotDecryptedError:
            raise locked from None
        except Exception:  # one damaged page (bad font, broken stream) must not lose the others
            log.info("Could not read page %d of %s", number + 1, filename, exc_info=True)
            text = ""
        chars += len(text)
        if chars > max_chars * 2:  # stop early: far over the limit whatever blank lines go
            raise DocumentTooLargeError(
                f"{filename} has too much text to read at once (more than {max_chars:,} characters): "
                "split it into smaller files."
            )
        pages.append(_PageText(text))
    for mark in marks:
        if 0 <= mark.page < len(pages):
            pages[mark.page].marks.append(mark)
    return _pages_to_sections(pages, labels), page_count


def _pdf_page_labels(reader: PdfReader, filename: str) -> list[str] | None:
    """The printed page numbers ("i", "ii", ..., "1", "2") where the PDF defines them (its
    /PageLabels), so "p. 12" is the page a reader finds as 12; None where it does not (or they are
    broken): the pages are then cited by their position."""
    try:
        if "/PageLabels" not in reader.root_object:
            return None
        labels = reader.page_labels
    except Exception:  # a broken label tree costs the labels, not the text
        log.info("Could not read the page labels of %s", filename, exc_info=True)
        return None
    return labels if len(labels) == len(reader.pages) else None


def _pdf_outline(reader: PdfReader) -> list[_OutlineMark]:
    """Each bookmark with the page it points at and the titles above it, in outline order."""
    marks: list[_OutlineMark] = []

    def walk(items: Sequence[object], parents: tuple[str, ...]) -> None:
        last: tuple[str, ...] = parents
        for item in items:
            if isinstance(item, list):
                walk(item, last)  # the children of the item before it
            elif isinstance(item, Destination):
                title = " ".join(str(item.title or "").split())
                last = (*parents, title) if title else parents
                page = reader.get_destination_page_number(item)
                if page is not None and page >= 0 and title:
                    marks.append(_OutlineMark(page, last))

    try:
        walk(reader.outline, ())
    except Exception:  # a broken outline costs the headings, not the text
        log.info("Could not read a PDF's outline", exc_info=True)
        return []
    return sorted(marks, key=lambda mark: mark.page)  # stable: outline order within a page


def _pages_to_sections(pages: Sequence[_PageText], labels: Sequence[str] | None = None) -> list[Section]:
    sections: list[Section] = []
    path: tuple[str, ...] = ()
    for number, page in enumerate(pages, start=1):
        label = " ".join(labels[number - 1].split())[:MAX_PAGE_LABEL_CHARS] or None if labels else None
        text = page.text
        cut = 0  # where the current path's text on this page starts
        for mark in page.marks:
            found = _find_title(text, mark.path[-1], cut)
            at = found if found is not None else cut
            piece = text[cut:at].strip()
            if piece:
                sections.append(Section(piece, path, number, label))
            path, cut = mark.path, at
        piece = text[cut:].strip()
        if piece:
            sections.append(Section(piece, path, number, label))
    return sections


def _find_title(text: str, title: str, start: int) -> int | None:
    words = title.split()
    if not words:
        return None
    pattern = r"\s*".join(re.escape(word) for word in words)
    match = re.compile(pattern, re.IGNORECASE).search(text, start)
    return match.start() if match else None
