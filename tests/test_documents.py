"""Documents read into sections (text, heading path, page) and chunked without crossing a page."""

from __future__ import annotations

import codecs
import io
import re
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.documents import (
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    ParsedDocument,
    Section,
    UnreadableDocumentError,
    UnsupportedDocumentError,
    document_kind,
    html_sections,
    markdown_sections,
    parse_document,
)
from bot.knowledge import DocumentChunk, chunk_document, citation
from tests.document_files import docx_bytes, pdf_bytes

HANDBOOK_PAGES = [
    ["Welcome to the company", "We make hedgehog houses."],
    ["Safety", "Fire exits are marked green.", "Ladders", "Hold the ladder with both hands."],
    ["The ladder store is in the basement."],
]
HANDBOOK_OUTLINE = [("Welcome", 0, None), ("Safety", 1, None), ("Ladders", 1, "Safety")]


# --------------------------------------------------------------------------------------------- PDF


def test_pdf_text_per_page_with_the_outline_as_headings() -> None:
    data = pdf_bytes(HANDBOOK_PAGES, outline=HANDBOOK_OUTLINE)
    document = parse_document("handbook.pdf", data, "application/pdf")
    assert (document.kind, document.pages, document.size_bytes) == ("pdf", 3, len(data))
    assert [(s.page, s.headings) for s in document.sections] == [
        (1, ("Welcome",)),
        (2, ("Safety",)),
        (2, ("Safety", "Ladders")),  # the bookmark's title found on its page starts its section there
        (3, ("Safety", "Ladders")),  # no bookmark on page 3: the last one still holds
    ]
    assert document.sections[1].text == "Safety\nFire exits are marked green."
    assert document.sections[2].text == "Ladders\nHold the ladder with both hands."
    assert "[page 3]" in document.as_text() and "## Ladders" in document.as_text()


def test_pdf_pages_are_cited_by_their_printed_labels_where_the_pdf_defines_them() -> None:
    """Four pages of front matter numbered i-iv: the 16th page is printed p. 12, and is cited so."""
    pages = [[f"Front matter {n}."] for n in range(4)] + [[f"Body page {n}."] for n in range(1, 13)]
    data = pdf_bytes(pages, page_labels=[(0, 3, "/r", None), (4, 15, "/D", None)])
    document = parse_document("handbook.pdf", data, "application/pdf")
    last = document.sections[-1]
    assert (last.text, last.page, last.page_label, last.page_shown) == ("Body page 12.", 16, "12", "12")
    assert [s.page_label for s in document.sections[:4]] == ["i", "ii", "iii", "iv"]
    assert "[page iv]" in document.as_text() and "[page 16]" not in document.as_text()
    [chunk] = [c for c in chunk_document(document) if c.text == "Body page 12."]
    assert citation("handbook.pdf", chunk.page, chunk.headings, chunk.page_label) == "handbook.pdf, p. 12"
    appendix = pdf_bytes([["Intro."], ["Table."]], page_labels=[(0, 0, "/D", None), (1, 1, "/D", "A-")])
    assert [s.page_shown for s in parse_document("a.pdf", appendix, None).sections] == ["1", "A-1"]


def test_a_pdf_without_page_labels_is_cited_by_page_position() -> None:
    document = parse_document("plain.pdf", pdf_bytes([["one"], ["two"]]), None)
    assert [(s.page, s.page_label, s.page_shown) for s in document.sections] == [
        (1, None, "1"),
        (2, None, "2"),
    ]


def test_pdf_without_an_outline_has_pages_but_no_headings() -> None:
    document = parse_document("plain.pdf", pdf_bytes([["one"], [], ["three"]]), None)
    assert [(s.page, s.headings, s.text) for s in document.sections] == [(1, (), "one"), (3, (), "three")]
    assert document.pages == 3


def test_a_pdf_is_recognised_by_its_first_bytes_under_another_name() -> None:
    data = pdf_bytes([["hello"]])
    assert document_kind("scan.bin", "application/octet-stream", data) == "pdf"
    assert parse_document("scan.bin", data, None).sections == (Section("hello", (), 1),)


def test_a_password_protected_pdf_gets_its_sentence_and_an_empty_password_opens() -> None:
    with pytest.raises(EncryptedDocumentError, match=r"locked.pdf is protected by a password"):
        parse_document("locked.pdf", pdf_bytes([["secret"]], user_password="hunter2"), None)
    opened = parse_document("open.pdf", pdf_bytes([["not secret"]], user_password=""), None)
    assert opened.sections[0].text == "not secret"


@pytest.mark.parametrize(
    "data", [b"%PDF-1.7\nnot really", pdf_bytes(HANDBOOK_PAGES)[:200], b"\x00" * 50 + b"%PDF"]
)
def test_a_damaged_pdf_is_refused_with_its_sentence(data: bytes) -> None:
    with pytest.raises(
        UnreadableDocumentError, match=r"^broken.pdf is not a valid PDF \(it may be damaged\)\.$"
    ):
        parse_document("broken.pdf", data, None)


def test_a_pdf_without_text_says_it_may_be_a_scan() -> None:
    with pytest.raises(EmptyDocumentError, match=r"scan.pdf has no text to read .*scanned PDF"):
        parse_document("scan.pdf", pdf_bytes([[], []]), None)


def test_pdf_page_and_character_limits() -> None:
    with pytest.raises(DocumentTooLargeError, match=r"long.pdf has 3 pages; the bot reads at most 2"):
        parse_document("long.pdf", pdf_bytes(HANDBOOK_PAGES), None, max_pages=2)
    with pytest.raises(
        DocumentTooLargeError, match=r"wordy.pdf has too much text to read at once .*split it"
    ):
        parse_document("wordy.pdf", pdf_bytes(HANDBOOK_PAGES), None, max_chars=20)


# -------------------------------------------------------------------------------------------- DOCX


def test_docx_heading_styles_give_the_path_and_tables_become_rows() -> None:
    data = docx_bytes(
        [
            ("Title", "Staff handbook"),
            ("", "Read this first."),
            ("Heading 1", "Safety"),
            ("Heading 2", "Ladders"),
            ("", "Hold the ladder with both hands."),
            [["Floor", "Exit"], ["1", "North stairs"]],
            ("Heading 1", "Holidays"),
            ("", "25 days a year."),
        ]
    )
    document = parse_document("handbook.docx", data, None)
    assert document.kind == "docx" and document.pages is None
    assert [(s.headings, s.text) for s in document.sections] == [
        (("Staff handbook",), "Read this first."),
        (
            ("Staff handbook", "Safety", "Ladders"),
            "Hold the ladder with both hands.\n\nFloor | Exit\n1 | North stairs",
        ),
        (("Staff handbook", "Holidays"), "25 days a year."),
    ]


def test_a_damaged_docx_is_refused_and_a_zip_bomb_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnreadableDocumentError, match=r"notes.docx is not a valid Word document"):
        parse_document("notes.docx", b"PK\x03\x04 broken", None)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("word/document.xml", "<x/>")  # a zip, but not a Word package
    with pytest.raises(UnreadableDocumentError, match="not a valid Word document"):
        parse_document("notes.docx", archive.getvalue(), None)
    monkeypatch.setattr("bot.documents.MAX_UNPACKED_DOCX_BYTES", 1000)
    with pytest.raises(DocumentTooLargeError, match="unpacks to"):
        parse_document("big.docx", docx_bytes([("", "x" * 5000)]), None)


# -------------------------------------------------------------------------------- Markdown and HTML


def test_markdown_atx_and_setext_headings_but_not_in_code_or_quotes() -> None:
    text = (
        "Intro line\n\n# Guide\n\nStart here.\n\n## Setup *fast*\n```\n# not a heading\n```\n"
        "Setext two\n----------\nbody\n\n> # quoted, not a heading\n\n# Second\nlast"
    )
    assert [(s.headings, s.text) for s in markdown_sections(text)] == [
        ((), "Intro line"),
        (("Guide",), "Start here."),
        (("Guide", "Setup fast"), "```\n# not a heading\n```"),
        (("Guide", "Setext two"), "body\n\n> # quoted, not a heading"),
        (("Second",), "last"),
    ]


def test_markdown_front_matter_is_text_not_a_heading() -> None:
    text = "---\ntitle: Guide\ntags: [a]\n---\n# Setup\nx"
    assert [(s.headings, s.text) for s in markdown_sections(text)] == [
        ((), "---\ntitle: Guide\ntags: [a]\n---"),
        (("Setup",), "x"),
    ]
    assert markdown_sections("---\na rule, not front matter\n\n# Title\nbody")[-1].headings == ("Title",)


def test_html_drops_scripts_and_styles_and_keeps_text_as_shown() -> None:
    html = (
        "<html><head><title>Page</title><style>p{color:red}</style></head><body>"
        "<h1>Guide &amp; rules</h1><p>Hello   <b>world</b></p><script>alert('x')</script>"
        "<h2>Lists</h2><ul><li>one</li><li>two<br/>three</li></ul>"
        "<table><tr><th>a</th><td>b</td></tr></table><pre>  indented\n  code</pre></body></html>"
    )
    assert [(s.headings, s.text) for s in html_sections(html)] == [
        (("Guide & rules",), "Hello world"),
        (("Guide & rules", "Lists"), "one\ntwo\nthree\n\na | b\n\n  indented\n  code"),
    ]


def test_html_in_another_declared_charset() -> None:
    data = "<meta charset='windows-1252'><p>caf\u00e9</p>".encode("windows-1252")
    assert parse_document("page.html", data, "text/html").sections[0].text == "caf\u00e9"


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
PHRASES = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)


@st.composite
def outlined_blocks(draw: st.DrawFn) -> list[tuple[int, str]]:
    """Blocks in order: (heading level 1-6, title) or (0, a paragraph)."""
    return draw(st.lists(st.tuples(st.integers(min_value=0, max_value=6), PHRASES), min_size=1, max_size=25))


def expected_sections(blocks: list[tuple[int, str]]) -> list[tuple[tuple[str, ...], list[str]]]:
    """The heading path each paragraph is under, paragraphs under one path together."""
    path: list[tuple[int, str]] = []
    sections: list[tuple[tuple[str, ...], list[str]]] = []
    current: list[str] = []
    for level, text in blocks:
        if level == 0:
            current.append(text)
            continue
        if current:
            sections.append((tuple(t for _, t in path), current))
            current = []
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, text))
    if current:
        sections.append((tuple(t for _, t in path), current))
    return sections


@settings(max_examples=200, deadline=None)
@given(blocks=outlined_blocks(), setext=st.booleans(), code=st.booleans())
def test_markdown_heading_paths_are_right_and_no_text_is_lost(
    blocks: list[tuple[int, str]], setext: bool, code: bool
) -> None:
    lines: list[str] = []
    for level, text in blocks:
        if level == 0:
            lines.append(f"```\n# {text}\n```" if code else text)
        elif setext and level <= 2:
            lines.append(f"{text}\n{'=-'[level - 1] * 3}")
        else:
            lines.append(f"{'#' * level} {text}")
    parsed = markdown_sections("\n\n".join(lines))
    expected = expected_sections(blocks)
    assert [s.headings for s in parsed] == [headings for headings, _ in expected]
    for section, (_, paragraphs) in zip(parsed, expected, strict=True):
        shown = [f"```\n# {p}\n```" if code else p for p in paragraphs]
        assert section.text == "\n\n".join(shown)


@settings(max_examples=200, deadline=None)
@given(blocks=outlined_blocks(), noise=st.booleans())
def test_html_heading_paths_are_right_and_no_text_is_lost(blocks: list[tuple[int, str]], noise: bool) -> None:
    parts = ["<html><head><title>ignored title</title></head><body>"]
    for level, text in blocks:
        parts.append(f"<p>{text}</p>" if level == 0 else f"<h{level}>{text}</h{level}>")
        if noise:
            parts.append("<script>var ignored = 1;</script><div> </div>")
    parsed = html_sections("".join(parts) + "</body></html>")
    expected = expected_sections(blocks)
    assert [s.headings for s in parsed] == [headings for headings, _ in expected]
    for section, (_, paragraphs) in zip(parsed, expected, strict=True):
        assert section.text == "\n\n".join(paragraphs)


# -------------------------------------------------------------------------------------- plain text


@pytest.mark.parametrize(
    "data",
    [
        "caf\u00e9 notes".encode(),
        codecs.BOM_UTF8 + "caf\u00e9 notes".encode(),
        "caf\u00e9 notes".encode("utf-16"),  # with its BOM
    ],
)
def test_text_files_in_utf8_or_with_a_bom(data: bytes) -> None:
    document = parse_document("notes.txt", data, "text/plain")
    assert document.sections == (Section("caf\u00e9 notes"),) and document.kind == "text"


def test_text_in_a_declared_charset_and_text_that_is_not() -> None:
    latin = "caf\u00e9".encode("latin-1")
    assert parse_document("a.txt", latin, "text/plain; charset=ISO-8859-1").sections[0].text == "caf\u00e9"
    with pytest.raises(UnreadableDocumentError, match=r"^a.txt is not UTF-8 text\.$"):
        parse_document("a.txt", latin, "text/plain")
    with pytest.raises(UnreadableDocumentError, match="not UTF-8 text"):
        parse_document("binary.txt", b"abc\x00\x00def", None)


# ------------------------------------------------------------------------------- dispatch, limits


def test_types_by_name_then_content_type_and_clear_refusals() -> None:
    assert document_kind("Guide.MD", None) == "markdown"
    assert document_kind("page", "text/html; charset=utf-8") == "html"
    assert document_kind("export", "text/x-log") == "text"
    with pytest.raises(
        UnsupportedDocumentError, match=r"old.doc is Word 97-2003 \(.doc\).*save it as DOCX or PDF"
    ):
        document_kind("old.doc", "application/msword")
    with pytest.raises(
        UnsupportedDocumentError, match=r"tool.exe is not a document the bot can read .*PDF, DOCX"
    ):
        document_kind("tool.exe", "application/octet-stream", b"MZ")


def test_size_limits_and_empty_files_have_their_sentences() -> None:
    with pytest.raises(
        DocumentTooLargeError, match=r"big.txt is too large to read \(0.0 MB; the limit is 0.0 MB\)"
    ):
        parse_document("big.txt", b"x" * 20, None, max_bytes=10)
    with pytest.raises(DocumentTooLargeError, match="11 characters; the limit is 10"):
        parse_document("long.md", b"hello world", None, max_chars=10)
    with pytest.raises(EmptyDocumentError, match=r"^empty.md has no text to read\.$"):
        parse_document("empty.md", b"# Only a heading\n\n   \n", None)


# ---------------------------------------------------------------------------------------- chunking


@st.composite
def parsed_documents(draw: st.DrawFn) -> ParsedDocument:
    """Sections with unique words (so each word's place is known), on non-decreasing pages."""
    sections: list[Section] = []
    page = 1
    for index in range(draw(st.integers(min_value=1, max_value=8))):
        page += draw(st.integers(min_value=0, max_value=2))
        words = [f"s{index}w{n}" for n in range(draw(st.integers(min_value=1, max_value=120)))]
        separators = draw(
            st.lists(st.sampled_from([" ", "\n", "\n\n", ". "]), min_size=len(words), max_size=len(words))
        )
        text = "".join(w + sep for w, sep in zip(words, separators, strict=True)).strip()
        headings = tuple(draw(st.lists(st.sampled_from(["Intro", "Safety", "Ladders"]), max_size=3)))
        sections.append(Section(text, headings, page))
    return ParsedDocument("doc.pdf", "pdf", 1, tuple(sections), page)


@settings(max_examples=200, deadline=None)
@given(document=parsed_documents(), max_chars=st.integers(min_value=40, max_value=300))
def test_chunks_never_cross_a_page_or_heading_and_lose_no_text(
    document: ParsedDocument, max_chars: int
) -> None:
    chunks = chunk_document(document, max_chars=max_chars, overlap_chars=max_chars // 4)
    place = {
        word: (section.page, section.headings)
        for section in document.sections
        for word in re.findall(r"s\d+w\d+", section.text)
    }
    seen: set[str] = set()
    for chunk in chunks:
        words = re.findall(r"s\d+w\d+", chunk.text)
        assert {place[word] for word in words} == {(chunk.page, chunk.headings)}  # one page, one path
        assert len({word.split("w")[0] for word in words}) == 1  # one section
        assert len(chunk.text) <= max_chars
        seen.update(words)
    assert seen == set(place)


def test_a_chunk_is_embedded_with_its_headings_and_cited_with_its_page() -> None:
    chunk = DocumentChunk("Hold it with both hands.", 12, ("Safety", "Ladders"))
    assert chunk.embedding_input() == "Safety › Ladders\n\nHold it with both hands."
    assert DocumentChunk("plain").embedding_input() == "plain"
    assert citation("handbook.pdf", 12, ("Safety", "Ladders")) == "handbook.pdf, p. 12 (Safety › Ladders)"
    assert citation("guide.md", None, ("Setup",)) == "guide.md (Setup)"
    assert citation("notes.txt") == "notes.txt"
