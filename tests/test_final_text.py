"""A finished reply's text, tested as plain functions: no event loop, no scheduler, no sink."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.discord.render.final_text import (
    MAX_FILES_PER_MESSAGE,
    FinalTextLimits,
    completed_reply,
    unembed_links,
    with_note,
)
from bot.discord.render.split import FENCE, ends_inside_fence
from bot.engine.events import Citation, CodeRun, Completed, GeneratedFile, Usage

pieces = st.sampled_from(["word", " ", "\n", FENCE, "py\n", "x = 1", "\n\n"])
texts = st.lists(pieces, max_size=40).map("".join)


@given(texts, st.sampled_from(["-# ⏹️ Stopped.", "⚠️ The model stopped.", "-# Sources\n-# 1. x"]))
def test_a_note_never_lands_inside_an_open_code_block(text: str, note: str) -> None:
    final = with_note(text, note)
    assert final.endswith(note)
    assert not ends_inside_fence(final.removesuffix(note))


def test_no_note_leaves_the_answer_as_it_is() -> None:
    answer = "```py\nx = 1\n"  # even an open block: nothing follows it
    assert with_note(answer, "") is answer


def test_the_answer_comes_first_then_code_runs_sources_and_notes() -> None:
    event = Completed(
        text="See https://example.com/a for more.",
        usage=Usage(),
        citations=(Citation("Example", "https://example.com/a"),),
        code_runs=(CodeRun("c1", "print(1)", "1"),),
        notes=("Earlier messages in this thread were summarised to make room.",),
    )
    reply = completed_reply(event, FinalTextLimits(), max_file_bytes=1024)
    assert reply.text == "See <https://example.com/a> for more."  # no embed for a cited link
    code, sources, notes = reply.appendix.split("\n\n")
    assert code.startswith("-# 🐍 Code run\n```python\nprint(1)\n```")
    assert sources == "-# Sources\n-# 1. [Example](<https://example.com/a>)"
    assert notes == "-# ℹ️ Earlier messages in this thread were summarised to make room."


def test_files_that_cannot_go_are_named_and_the_rest_attached() -> None:
    files = (
        GeneratedFile("plot.png", b"x" * 10),
        GeneratedFile("huge.csv", b"x" * 5000),
        GeneratedFile("gone.txt", b"", problem="unavailable"),
    )
    reply = completed_reply(Completed("", Usage(), files=files), FinalTextLimits(), max_file_bytes=1024)
    assert [f.filename for f in reply.files] == ["plot.png"]
    assert "`huge.csv` (5 KB) is too large to attach here (limit 1 KB)" in reply.appendix
    assert "`gone.txt` could not be fetched" in reply.appendix


def test_at_most_discords_number_of_files_per_message() -> None:
    files = tuple(GeneratedFile(f"f{i}.txt", b"x") for i in range(MAX_FILES_PER_MESSAGE + 2))
    reply = completed_reply(Completed("ok", Usage(), files=files), FinalTextLimits(), max_file_bytes=1024)
    assert len(reply.files) == MAX_FILES_PER_MESSAGE
    assert reply.appendix.count("not attached: at most") == 2


def test_an_empty_answer_says_so() -> None:
    reply = completed_reply(Completed("  \n", Usage()), FinalTextLimits(), max_file_bytes=1024)
    assert reply.appendix == "-# (The answer was empty.)"


def test_sandbox_links_become_plain_names() -> None:
    assert unembed_links("Here: [chart.png](sandbox:/mnt/data/chart.png).", ()) == "Here: `chart.png`."
