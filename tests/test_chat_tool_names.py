"""Streamed tool-call names, however a server sends them: in pieces (OpenAI, vLLM) or the whole name
again in every chunk (llama.cpp's server)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from bot.engine.chat_backend import _PartialCall

KNOWN = frozenset({"get_weather", "list_reservations", "list_restaurants", "book_table", "cancel_booking"})


def assembled(pieces: list[str]) -> str:
    partial = _PartialCall()
    for piece in pieces:
        partial.add_name(piece, KNOWN)
    return partial.name


@st.composite
def split_name(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(KNOWN)))
    cuts = sorted(draw(st.sets(st.integers(1, len(name) - 1), max_size=len(name) - 1)))
    bounds = [0, *cuts, len(name)]
    return name, [name[a:b] for a, b in itertools.pairwise(bounds)]


@given(split_name(), st.integers(0, 3))
def test_a_name_sent_in_pieces_is_joined(split: tuple[str, list[str]], empties: int) -> None:
    name, pieces = split
    assert assembled(pieces + [""] * empties) == name


@given(st.sampled_from(sorted(KNOWN)), st.integers(1, 20))
def test_a_name_repeated_whole_in_every_chunk_is_the_name_once(name: str, times: int) -> None:
    assert assembled([name] * times) == name
    assert assembled([name] + [""] * times) == name


def test_an_unknown_name_is_kept_as_sent() -> None:
    assert assembled(["launch_", "rockets"]) == "launch_rockets"
    assert assembled(["launch", "launch"]) == "launchlaunch"  # no known tool: nothing to go by
