"""A finished reply's text, built without an event loop: the answer, then code runs, sources, notes.

Pure functions over the engine's terminal event, so the formatting is tested on its own. The streamer
(``stream.py``) decides when the text is written; this module decides what it says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from bot.discord.render.split import FENCE, ends_inside_fence
from bot.engine.events import Citation, CodeRun, Completed, GeneratedFile

MAX_STATUS_CHARS = 120
MAX_NOTE_CHARS = 200
CODE_MAX_LINES = 40
CODE_MAX_CHARS = 1500
LOG_MAX_CHARS = 600
MAX_CODE_RUNS_SHOWN = 3
MAX_SOURCES = 10
MAX_SOURCE_TITLE_CHARS = 100
MAX_FILES_PER_MESSAGE = 10
"""Discord's limit on attachments per message."""
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
"""Discord's upload limit for a bot in an unboosted guild or a DM."""


@dataclass(frozen=True, slots=True)
class FinalTextLimits:
    """How much of a finished turn's extras is shown (code runs and their output, sources)."""

    code_max_lines: int = CODE_MAX_LINES
    code_max_chars: int = CODE_MAX_CHARS
    log_max_chars: int = LOG_MAX_CHARS
    max_sources: int = MAX_SOURCES


@dataclass(frozen=True, slots=True)
class CompletedReply:
    """A completed turn as shown: the answer, what follows it, and the files to attach."""

    text: str
    appendix: str
    files: tuple[GeneratedFile, ...]


def completed_reply(event: Completed, limits: FinalTextLimits, *, max_file_bytes: int) -> CompletedReply:
    """The answer with its links unembedded; code runs, sources and notes after it; files that fit."""
    text = unembed_links(event.text, event.citations)
    sections: list[str] = []
    if event.code_runs:
        sections.append(code_runs_section(event.code_runs, limits))
    if event.citations:
        sections.append(sources_section(event.citations, limits.max_sources))
    files, notes = pick_files(event.files, max_file_bytes)
    notes.extend(f"-# ℹ️ {one_line(note, MAX_NOTE_CHARS)}" for note in event.notes)
    if notes:
        sections.append("\n".join(notes))
    appendix = "\n\n".join(sections)
    if blank(text) and not appendix:
        appendix = "-# 📎" if files else "-# (The answer was empty.)"
    return CompletedReply(text, appendix, files)


def with_note(text: str, note: str) -> str:
    """The answer, then a note (or what follows it) after a blank line, never inside an open code block."""
    if not note:
        return text  # the common case: the answer as it is, no copy
    if blank(text):
        return note
    if ends_inside_fence(text):
        text = text.rstrip() + "\n" + FENCE  # the note must not land inside a code block
    return text.rstrip() + "\n\n" + note


def code_runs_section(runs: Sequence[CodeRun], limits: FinalTextLimits) -> str:
    """The first few code runs, each clipped, with its output's end."""
    blocks: list[str] = []
    for run in runs[:MAX_CODE_RUNS_SHOWN]:
        code = clip_lines(run.code.strip("\n"), limits.code_max_lines, limits.code_max_chars)
        block = f"-# 🐍 Code run\n```python\n{defuse_fences(code)}\n```"
        logs = run.logs.strip()
        if logs:
            if len(logs) > limits.log_max_chars:
                logs = "…" + logs[-limits.log_max_chars :]
            block += f"\n-# Output\n```\n{defuse_fences(logs)}\n```"
        blocks.append(block)
    if len(runs) > MAX_CODE_RUNS_SHOWN:
        blocks.append(f"-# … and {len(runs) - MAX_CODE_RUNS_SHOWN} more code runs")
    return "\n".join(blocks)


def sources_section(citations: Sequence[Citation], max_sources: int) -> str:
    """Numbered sources, each once: web pages as links Discord does not embed, files by name."""
    unique: list[Citation] = []
    seen: set[str] = set()
    for citation in citations:
        key = citation.url or citation.file_id or citation.title
        if key not in seen:
            seen.add(key)
            unique.append(citation)
    lines = ["-# Sources"]
    for number, citation in enumerate(unique[:max_sources], start=1):
        lines.append(f"-# {number}. {source_link(citation)}")
    if len(unique) > max_sources:
        lines.append(f"-# … and {len(unique) - max_sources} more")
    return "\n".join(lines)


def pick_files(
    files: Sequence[GeneratedFile], max_file_bytes: int
) -> tuple[tuple[GeneratedFile, ...], list[str]]:
    """The files to attach, and a note for each one that cannot be."""
    attached: list[GeneratedFile] = []
    notes: list[str] = []
    for file in files:
        name = one_line(file.filename).replace("`", "'") or "file"
        if file.problem == "too_large":
            size = f" ({size_label(file.size_bytes)})" if file.size_bytes is not None else ""
            notes.append(f"-# 📎 `{name}`{size} is too large to fetch, so it is not attached.")
        elif file.problem == "too_many":
            notes.append(f"-# 📎 `{name}` not attached: too many files.")
        elif file.problem == "unavailable":
            notes.append(f"-# 📎 `{name}` could not be fetched, so it is not attached.")
        elif len(file.data) > max_file_bytes:
            notes.append(
                f"-# 📎 `{name}` ({size_label(len(file.data))}) is too large to attach here "
                f"(limit {size_label(max_file_bytes)})."
            )
        elif len(attached) >= MAX_FILES_PER_MESSAGE:
            notes.append(f"-# 📎 `{name}` not attached: at most {MAX_FILES_PER_MESSAGE} files per message.")
        else:
            attached.append(file)
    return tuple(attached), notes


def blank(text: str) -> bool:
    """Whether ``text`` has nothing to show (stops at the first visible character)."""
    return not text or text.isspace()


def one_line(text: str, limit: int = MAX_STATUS_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def defuse_fences(text: str) -> str:
    """Keep a code run's own ``` from closing the block it is shown in (a zero-width space between)."""
    return text.replace(FENCE, "`\u200b`\u200b`")


def clip_lines(text: str, max_lines: int, max_chars: int) -> str:
    lines = text.splitlines()
    kept: list[str] = []
    used = 0
    for line in lines[:max_lines]:
        if used + len(line) + 1 > max_chars:
            break
        kept.append(line)
        used += len(line) + 1
    if len(kept) < len(lines):
        kept.append(f"# … {len(lines) - len(kept)} more lines")
    return "\n".join(kept)


_SANDBOX_LINK = re.compile(r"\[([^\]\n]*)\]\(sandbox:[^)\s]*\)")
_URL_END = r"(?=$|[\s)\]>\"',;!*_]|[.:?](?:\s|$))"
"""Where a bare URL ends: not in the middle of a longer one (a period ending the sentence is not in it)."""


def unembed_links(text: str, citations: Sequence[Citation]) -> str:
    """The answer with its cited links in ``<...>`` (no embeds) and sandbox links as plain names.

    Web search answers carry their sources inline too, as ``[site](url)``: Discord would embed each
    one. A code interpreter file is linked as ``sandbox:/mnt/data/...``, which means nothing outside
    OpenAI's container; the file itself is attached.
    """
    if "sandbox:" in text:
        text = _SANDBOX_LINK.sub(lambda match: f"`{match.group(1)}`" if match.group(1) else "", text)
    for url in dict.fromkeys(c.url.strip() for c in citations if c.url):
        if not url.lower().startswith(("https://", "http://")) or url not in text:
            continue
        escaped = re.escape(url)
        text = re.sub(rf"(?<=\]\(){escaped}(?=\))", f"<{url}>", text)  # [title](url)
        text = re.sub(rf"(?<![<\w/=&?#%.-]){escaped}{_URL_END}", f"<{url}>", text)  # a bare url
    return text


def source_link(citation: Citation) -> str:
    """``[title](<url>)``: a masked link whose angle brackets keep Discord from embedding it; a file
    (no url) by its name."""
    title = one_line(citation.title, MAX_SOURCE_TITLE_CHARS) or citation.url or "file"
    title = title.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    url = (citation.url or "").strip()
    if not url.lower().startswith(("https://", "http://")):
        return title
    safe_url = quote(url, safe=":/?#[]@!$&'*+,;=%~-._")
    return f"[{title}](<{safe_url}>)"


def size_label(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.0f} KB"
    return f"{n_bytes} B"
