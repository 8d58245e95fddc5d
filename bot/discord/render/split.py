"""Cutting answer text into Discord-sized messages, once or while it grows.

Rules, in order of preference: a part ends at a paragraph break (a whitespace run holding a blank line),
else at a line break, else between words; only a single "word" longer than a whole part is cut inside.
A part is never emptier than ``MIN_FILL_RATIO`` of the room when a later boundary would do.

What is dropped, exactly (everything else is kept, in order):
- leading blank lines of the text (whitespace up to and including the last newline before the first
  non-whitespace character) and all trailing whitespace;
- at each split, the whitespace run where the split happens, up to and including its last newline
  (the indentation after that newline is kept: it starts the next part's first line); a run without a
  newline is dropped whole. A hard cut inside an over-long word drops nothing.
"Whitespace" here is ASCII whitespace (space, tab, CR, LF, FF, VT); a no-break space is part of a word.

Code fences follow Discord's reading: every ````` opens or closes a block, left to right. A part that
ends inside a block gets ``"\\n```"`` appended, and the next part starts with ``"```lang\\n"`` (the
block's language tag, when it has a short one), so every part holds whole blocks. A text that ends
inside a block (a cut-off answer) gets its block closed at the end of its last part as well.

Streaming: ``StreamSplitter`` splits a text that only grows. A part is *sealed* once the text after its
start is longer than a whole part: its end is then decided from a fixed window (its own room plus one
character), so appending text can never change it, and ``split_message`` of the finished text yields
the same sealed parts (one code path decides both).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

MAX_MESSAGE_CHARS = 2000
"""Discord's limit on a message's content, in characters."""
MIN_LIMIT_CHARS = 64
"""Smallest part size accepted: room for a reopened fence, a closing fence and some text."""
MAX_LANG_CHARS = 16
"""Longest language tag carried over to a reopened fence; longer ones reopen a bare fence."""
MIN_FILL_RATIO = 0.5
"""A paragraph or line break is preferred to a later word break only past this share of the room."""

FENCE = "```"
FENCE_CLOSE = "\n```"
WHITESPACE = " \t\r\n\f\v"

_WS_RUN = re.compile(r"[ \t\r\n\f\v]+")
_FENCE_MARK = re.compile("```")
_LANG = re.compile(r"([A-Za-z0-9_+\-.#]+)\n")


@dataclass(frozen=True, slots=True)
class Part:
    """One message's worth of text and where it came from (``text[start:end]`` of the source)."""

    text: str
    start: int
    end: int
    reopened: str = ""
    """The fence line added in front (``"```lang\\n"``), or ``""``."""
    closed: bool = False
    """Whether ``"\\n```"`` was added at the end."""


@dataclass(frozen=True, slots=True)
class SplitView:
    """A growing text's parts; ``parts[:sealed]`` never change while the text only grows."""

    parts: tuple[str, ...]
    sealed: int


@dataclass(frozen=True, slots=True)
class _Cursor:
    pos: int
    lang: str | None
    """``None`` outside a code block; else the tag to reopen it with (``""`` for a bare fence)."""


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """The messages to send for ``text``: none over ``limit``, code blocks balanced in each."""
    return [part.text for part in split_parts(text, limit)]


def split_parts(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[Part]:
    """Like ``split_message`` but with each part's source span (for callers and tests that check it)."""
    _check_limit(limit)
    end = _content_end(text)
    cursor = _first_cursor(text, end)
    parts: list[Part] = []
    while (step := _next_part(text, cursor, end, limit, final=True)) is not None:
        part, cursor, _ = step
        parts.append(part)
    return parts


def ends_inside_fence(text: str) -> bool:
    """Whether a code block is still open at the end of ``text`` (an odd number of fences)."""
    return text.count(FENCE) % 2 == 1


class StreamSplitter:
    """Splits a text that grows by appending; sealed parts are final (see the module docstring).

    Each ``update`` only looks at the text after the last sealed part, so calling it on every refresh
    costs the unsealed tail, not the whole answer. A text that is not an extension of the previous one
    (it should not happen) is split again from scratch.
    """

    def __init__(self, limit: int = MAX_MESSAGE_CHARS) -> None:
        _check_limit(limit)
        self._limit = limit
        self._sealed: list[Part] = []
        self._cursor = _Cursor(0, None)
        self._committed = ""
        """The text the sealed decisions looked at; a new text must start with it."""

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, text: str) -> SplitView:
        """Split ``text`` (the whole text so far); sealed parts of earlier calls stay unchanged."""
        if self._sealed and not text.startswith(self._committed):
            self._sealed = []
            self._committed = ""
        end = _content_end(text)
        if not self._sealed:
            self._cursor = _first_cursor(text, end)
        while (step := _next_part(text, self._cursor, end, self._limit, final=False)) is not None:
            part, self._cursor, seen = step
            self._sealed.append(part)
            self._committed = text[:seen]
        parts = [part.text for part in self._sealed]
        cursor = self._cursor
        while (step := _next_part(text, cursor, end, self._limit, final=True)) is not None:
            part, cursor, _ = step
            parts.append(part.text)
        return SplitView(tuple(parts), len(self._sealed))


def _check_limit(limit: int) -> None:
    if limit < MIN_LIMIT_CHARS:
        raise ValueError(f"limit must be at least {MIN_LIMIT_CHARS} characters, got {limit}")


def _content_end(text: str) -> int:
    return len(text.rstrip(WHITESPACE))


def _first_cursor(text: str, end: int) -> _Cursor:
    """Start after the leading blank lines, keeping the first line's indentation."""
    lead = _WS_RUN.match(text, 0, end)
    if lead is None:
        return _Cursor(0, None)
    newline = text.rfind("\n", 0, lead.end())
    return _Cursor(newline + 1 if newline >= 0 else 0, None)


def _lang_at(text: str, pos: int, endpos: int) -> str:
    match = _LANG.match(text, pos, endpos)
    if match is None or len(match.group(1)) > MAX_LANG_CHARS:
        return ""
    return match.group(1)


def _next_part(
    text: str, cursor: _Cursor, end: int, limit: int, *, final: bool
) -> tuple[Part, _Cursor, int] | None:
    """The part starting at ``cursor``, the cursor after it, and how far the decision looked.

    Returns ``None`` when nothing is left, or (``final=False``) when the rest still fits in one part
    and so could change as text arrives.
    """
    start = cursor.pos
    if start >= end:
        return None
    reopen = f"{FENCE}{cursor.lang}\n" if cursor.lang is not None else ""
    room = limit - len(reopen)
    if end - start <= room:
        if not final:
            return None
        marks = text.count(FENCE, start, end)
        open_at_end = (cursor.lang is not None) != (marks % 2 == 1)
        if end - start + (len(FENCE_CLOSE) if open_at_end else 0) <= room:
            body = text[start:end] + (FENCE_CLOSE if open_at_end else "")
            return Part(reopen + body, start, end, reopen, open_at_end), _Cursor(end, None), end
    window_end = min(start + room + 1, end)
    marks_at = [m.start() for m in _FENCE_MARK.finditer(text, start, window_end)]
    inherited_open = cursor.lang is not None

    min_fill = start + int(room * MIN_FILL_RATIO)
    best: tuple[int, int, int] | None = None  # (tier rank, level, position)
    best_marks = 0
    k = 0
    for run in _WS_RUN.finditer(text, start, window_end):
        pos = run.start()
        if pos == start:
            continue  # the part's own indentation
        while k < len(marks_at) and marks_at[k] + len(FENCE) <= pos:
            k += 1
        is_open = inherited_open != (k % 2 == 1)
        if pos - start + (len(FENCE_CLOSE) if is_open else 0) > room:
            continue
        awkward = is_open and (
            # the part would end on the opening fence line: an empty block
            (k > 0 and text.find("\n", marks_at[k - 1] + len(FENCE), pos) < 0)
            # the next part would start with the closing fence: an empty block there
            or (run.end() < window_end and text.startswith(FENCE, run.end()))
        )
        if awkward:
            key = (0, 0, pos)
        elif pos >= min_fill:
            key = (2, min(run.group().count("\n"), 2), pos)
        else:
            key = (1, 0, pos)
        if best is None or key > best:
            best, best_marks = key, k

    if best is not None:
        cut = best[2]
        is_open = inherited_open != (best_marks % 2 == 1)
        run_end = _WS_RUN.match(text, cut)
        assert run_end is not None  # cut is the start of a whitespace run
        newline = text.rfind("\n", cut, run_end.end())
        next_pos = newline + 1 if newline >= 0 else run_end.end()
        opener = marks_at[best_marks - 1] if best_marks else -1
    else:
        cut, is_open, opener = _hard_cut(start, room, marks_at, inherited_open)
        next_pos = cut

    if is_open:
        lang = cursor.lang if opener < 0 else _lang_at(text, opener + len(FENCE), cut + 1)
        body = text[start:cut] + FENCE_CLOSE
    else:
        lang = None
        body = text[start:cut]
    part = Part(reopen + body, start, cut, reopen, is_open)
    return part, _Cursor(next_pos, lang), window_end


def _hard_cut(start: int, room: int, marks_at: list[int], inherited_open: bool) -> tuple[int, bool, int]:
    """Cut inside an over-long word: as late as fits, never through a fence mark."""
    cut = start + room
    while cut > start + 1:
        done = bisect.bisect_right(marks_at, cut - len(FENCE))  # marks ending at or before the cut
        inside_mark = done < len(marks_at) and marks_at[done] < cut
        is_open = inherited_open != (done % 2 == 1)
        if not inside_mark and cut - start + (len(FENCE_CLOSE) if is_open else 0) <= room:
            opener = marks_at[done - 1] if (done and is_open) else -1
            return cut, is_open, opener
        cut -= 1
    done = bisect.bisect_right(marks_at, cut - len(FENCE))
    is_open = inherited_open != (done % 2 == 1)
    return cut, is_open, (marks_at[done - 1] if (done and is_open) else -1)
