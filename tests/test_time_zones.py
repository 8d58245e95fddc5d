"""Time zone names as people type them: never an exception, only yes or no (and a short sentence)."""

from __future__ import annotations

import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.time_zones import MAX_SHOWN_CHARS, is_time_zone, unknown_time_zone


@pytest.mark.parametrize(
    "name", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince"]
)
def test_real_zones_are_known(name: str) -> None:
    assert is_time_zone(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "America",  # a directory of the database, not a zone
        "Mars/Olympus_Mons",
        "europe/paris" if "europe/paris" not in zoneinfo.available_timezones() else "Europe/Nowhere",
        "../../etc/passwd",
        "/" * 3000,  # once a RecursionError inside importlib
        "." * 300,
        "a" * 300,  # once an OSError: file name too long
        "Europe/Paris\x00",
        "Europe/Paris/Extra/More",
    ],
)
def test_anything_else_is_not_a_zone(name: str) -> None:
    assert not is_time_zone(name)


@given(st.text(max_size=400) | st.text(alphabet="./_-+aZ09", max_size=4000))
def test_no_typed_text_raises_and_the_refusal_stays_short(name: str) -> None:
    known = is_time_zone(name)
    if not known:
        sentence = unknown_time_zone(name)
        assert len(sentence) <= MAX_SHOWN_CHARS + 60 + len(repr(name[:MAX_SHOWN_CHARS])) - len(
            name[:MAX_SHOWN_CHARS]
        )
        assert sentence.startswith("unknown time zone ")
