"""The splitter: every part fits, nothing is lost or reordered, code blocks balanced, stable while growing."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.discord.render.split import (
    FENCE,
    FENCE_CLOSE,
    MAX_MESSAGE_CHARS,
    WHITESPACE,
    StreamSplitter,
    ends_inside_fence,
    split_message,
    split_parts,
)

_WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,;:!?()[]{}<>@#*_-'\"`é😀\u00a0"

words = st.text(alphabet=_WORD_CHARS, min_size=1, max_size=12)
tokens = st.one_of(
    words,
    words,
    words,
    st.sampled_from([" ", " ", " ", "\n", "\n\n", "  ", "\t", "\n    ", "\r\n", " \n \n"]),
    st.sampled_from(["```python\n", "```\n", "\n```\n", "```js\n", "```", "```c++\n", "``"]),
)
texts = st.lists(tokens, max_size=400).map("".join)
limits = st.one_of(st.integers(min_value=64, max_value=300), st.just(MAX_MESSAGE_CHARS))


def _is_ws(s: str) -> bool:
    return all(c in WHITESPACE for c in s)


def _check_reassembly(text: str, limit: int) -> None:
    """Parts are the source spans plus only the fence lines the splitter says it added."""
    parts = split_parts(text, limit)
    end = len(text.rstrip(WHITESPACE))
    if end == 0:
        assert parts == []
        return
    first = parts[0].start
    assert _is_ws(text[:first])
    if first > 0:
        assert text[first - 1] == "\n", "only whole leading blank lines are dropped"
    assert _is_ws(text[parts[-1].end :])
    for part in parts:
        assert part.text == part.reopened + text[part.start : part.end] + (FENCE_CLOSE if part.closed else "")
    for before, after in itertools.pairwise(parts):
        dropped = text[before.end : after.start]
        assert _is_ws(dropped)
        if "\n" in dropped:
            assert dropped.endswith("\n"), "indentation after the last newline is kept"
        if dropped == "":
            # a hard cut: only inside a run of non-whitespace longer than the room
            assert text[before.end - 1] not in WHITESPACE and text[after.start] not in WHITESPACE
        # a reopened fence continues exactly the block that was closed
        assert bool(after.reopened) == before.closed


@settings(max_examples=400, deadline=None)
@given(texts, limits)
def test_no_part_over_limit_and_none_empty(text: str, limit: int) -> None:
    for part in split_message(text, limit):
        assert 0 < len(part) <= limit
        assert not _is_ws(part)


@settings(max_examples=400, deadline=None)
@given(texts, limits)
def test_nothing_lost_or_reordered(text: str, limit: int) -> None:
    _check_reassembly(text, limit)
    # independently of the spans: the non-whitespace characters come back in order once the fence
    # lines the splitter added are taken off
    parts = split_parts(text, limit)
    rebuilt = []
    for part in parts:
        body = part.text[len(part.reopened) :]
        if part.closed:
            body = body[: -len(FENCE_CLOSE)]
        rebuilt.append(body)
    assert "".join("".join(rebuilt).split()) == "".join(text.split())


@settings(max_examples=400, deadline=None)
@given(texts, limits)
def test_fences_balanced_in_every_part(text: str, limit: int) -> None:
    for part in split_message(text, limit):
        assert part.count(FENCE) % 2 == 0, part


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(words, st.sampled_from([" ", "\n", "\n\n", " ```py\n", "\n```\n"])), max_size=500))
def test_never_splits_inside_a_word_when_a_boundary_exists(pieces: list[tuple[str, str]]) -> None:
    text = "".join(word + gap for word, gap in pieces)
    limit = 64  # words are at most 12 (+ a fence run) characters: a boundary always exists
    for part in split_parts(text, limit):
        if part.end < len(text):
            assert text[part.end] in WHITESPACE, (text[part.start : part.end + 1], part)


@settings(max_examples=300, deadline=None)
@given(texts, limits, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_sealed_parts_never_change_as_text_grows(text: str, limit: int, cuts: list[int]) -> None:
    splitter = StreamSplitter(limit)
    final = split_message(text, limit)
    previous: tuple[str, ...] = ()
    for cut in [*sorted(c % (len(text) + 1) for c in cuts), len(text)]:
        view = splitter.update(text[:cut])
        assert view.parts[: len(previous)] == previous, "a sealed part changed"
        assert list(view.parts[: view.sealed]) == final[: view.sealed]
        assert view.parts == tuple(split_message(text[:cut], limit)), "live parts = a fresh split"
        previous = view.parts[: view.sealed]
    assert list(splitter.update(text).parts) == final


def test_short_text_is_one_part_unchanged() -> None:
    assert split_message("Hello **world**") == ["Hello **world**"]
    assert split_message("x" * 2000) == ["x" * 2000]
    assert split_message("") == []
    assert split_message(" \n\n  ") == []


def test_prefers_paragraph_then_line_then_word() -> None:
    para = "a" * 1200 + "\n\n" + "b" * 500 + "\n" + "c" * 600
    assert split_message(para) == ["a" * 1200, "b" * 500 + "\n" + "c" * 600]
    lines = "a " * 700 + "\n" + "b " * 600
    first, second = split_message(lines)
    assert first == ("a " * 700).rstrip()
    assert second == ("b " * 600).rstrip()


def test_code_fence_crossing_a_split_is_closed_and_reopened_with_language() -> None:
    code = "\n".join(f"    x_{i} = {i}  # line {i}" for i in range(150))
    text = "Here is the code:\n\n```python\n" + code + "\n```\n\nThat's all."
    parts = split_message(text)
    assert len(parts) >= 2
    assert parts[0].endswith("\n```")
    assert parts[1].startswith("```python\n    x_")  # indentation survives the split
    for part in parts:
        assert len(part) <= MAX_MESSAGE_CHARS and part.count(FENCE) % 2 == 0


def test_over_long_word_is_hard_cut() -> None:
    text = "see: " + "z" * 4500 + " end"
    parts = split_message(text)
    assert all(len(p) <= MAX_MESSAGE_CHARS for p in parts)
    assert parts == ["see:", "z" * 2000, "z" * 2000, "z" * 500 + " end"]


def test_unclosed_fence_is_closed_in_last_part() -> None:
    assert split_message("```python\nprint(1)") == ["```python\nprint(1)\n```"]
    assert ends_inside_fence("```python\nprint(1)")
    assert not ends_inside_fence("```python\nprint(1)\n```")


def test_5000_chars_with_code_block_split_into_balanced_parts() -> None:
    prose = " ".join(f"word{i}" for i in range(200))
    code = "\n".join(f"print({i})" for i in range(250))
    text = prose + "\n\n```py\n" + code + "\n```\n\n" + prose
    assert 4500 < len(text) < 7000
    parts = split_message(text)
    assert all(len(p) <= MAX_MESSAGE_CHARS for p in parts)
    assert all(p.count(FENCE) % 2 == 0 for p in parts)
    _check_reassembly(text, MAX_MESSAGE_CHARS)
