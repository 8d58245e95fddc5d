"""Reading booking times: ISO 8601 and natural forms, in the guild's zone, relative to a fixed now."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tools.when import WhenError, format_local, parse_when

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
# Monday 4 May 2026, 12:00 in Paris (10:00 UTC).
NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
ZONES = [UTC, PARIS, NEW_YORK, ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe")]


def paris(day: int, hour: int, minute: int = 0, month: int = 5, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow at 8pm", paris(5, 20)),
        ("Tomorrow at 8 PM", paris(5, 20)),
        ("8 p.m. tomorrow", paris(5, 20)),
        ("tonight 19:30", paris(4, 19, 30)),
        ("tonight at 7:30", paris(4, 19, 30)),
        ("this evening at 8", paris(4, 20)),
        ("tomorrow evening at 8", paris(5, 20)),
        ("tomorrow morning at 9", paris(5, 9)),
        ("friday 8pm", paris(8, 20)),
        ("Fri, 20:00", paris(8, 20)),
        ("on friday at 8.30pm", paris(8, 20, 30)),
        ("sat noon", paris(9, 12)),
        ("friday midnight", paris(9, 0)),
        ("monday 13:00", paris(4, 13)),  # today, still ahead
        ("monday 11:00", paris(11, 11)),  # today's has passed: next week
        ("next monday 13:00", paris(11, 13)),
        ("the day after tomorrow at 9am", paris(6, 9)),
        ("8pm", paris(4, 20)),
        ("11am", paris(5, 11)),  # passed today: tomorrow
        ("20h30", paris(4, 20, 30)),
        ("may 8 8pm", paris(8, 20)),
        ("8th of May at 20:00", paris(8, 20)),
        ("May 3 8pm", paris(3, 20, year=2027)),  # passed this year: next year
        ("Friday, May 8 2026 at 8 PM", paris(8, 20)),
        ("2026-05-08 8pm", paris(8, 20)),
        ("2026-05-08 friday 20:00", paris(8, 20)),
        ("2026-05-05T20:00", paris(5, 20)),
        ("2026-05-05 20:00:00", paris(5, 20)),
        ("2026-05-05T18:00:00Z", paris(5, 20)),
        ("2026-05-05T14:00-04:00", paris(5, 20)),
        ("now", paris(4, 12)),
        ("ASAP", paris(4, 12)),
        ("in 2 hours", paris(4, 14)),
        ("in 90 min", paris(4, 13, 30)),
        ("in 1 hour 30 minutes", paris(4, 13, 30)),
        ("in 1h30", paris(4, 13, 30)),
        ("in half an hour", paris(4, 12, 30)),
        ("in an hour and a half", paris(4, 13, 30)),
        ("in two days", paris(6, 12)),
        ("45 minutes from now", paris(4, 12, 45)),
    ],
)
def test_natural_and_iso_forms(text: str, expected: dt.datetime) -> None:
    parsed = parse_when(text, now=NOW, tz=PARIS)
    assert parsed == expected
    assert parsed.tzinfo == PARIS


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("tomorrow", "no time of day"),
        ("friday", "no time of day"),
        ("2026-05-05", "no time of day"),
        ("banana", "did not understand 'banana'"),
        ("tomorrow at 8pm or 9pm", "more than one time"),
        ("tomorrow friday 8pm", "more than one way"),
        ("2026-05-08 saturday 20:00", "is a Friday"),
        ("tomorrow at 25:00", "hour must be 0-23"),
        ("13pm", "1-12"),
        ("8:75", "minutes must be 00-59"),
        ("2026-02-30 8pm", "not a real date"),
        ("2026-02-30T20:00", "not a valid ISO 8601"),
        ("2026-03-29 02:30", "does not exist in Europe/Paris"),  # the clocks spring forward
        ("in 1000 weeks", "too far ahead"),
    ],
)
def test_unreadable_or_impossible_times_say_why(text: str, fragment: str) -> None:
    with pytest.raises(WhenError, match=fragment):
        parse_when(text, now=NOW, tz=PARIS)


def test_ambiguous_autumn_time_is_the_first_one() -> None:
    # 2026-10-25 02:30 happens twice in Paris; the first is still summer time (+02:00).
    parsed = parse_when("2026-10-25 02:30", now=NOW, tz=PARIS)
    assert parsed.utcoffset() == dt.timedelta(hours=2)


def test_format_local_names_the_day_and_zone() -> None:
    assert format_local(paris(8, 20), PARIS) == "Friday 8 May 2026, 20:00 (Europe/Paris)"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_when("now", now=NOW.replace(tzinfo=None), tz=PARIS)


# ---------------------------------------------------------------------------------- properties

moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2090, 12, 31),
    timezones=st.sampled_from(ZONES),
    allow_imaginary=False,
)
zones = st.sampled_from(ZONES)


@given(moment=moments, tz=zones)
def test_aware_iso_round_trips_to_the_same_instant(moment: dt.datetime, tz: ZoneInfo) -> None:
    moment = moment.replace(microsecond=0)
    parsed = parse_when(moment.isoformat(), now=NOW, tz=tz)
    # Compared in UTC: Python never calls an ambiguous wall time equal to one in another zone.
    assert parsed.astimezone(dt.UTC) == moment.astimezone(dt.UTC) and parsed.tzinfo == tz


@given(naive=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1)), tz=zones)
def test_naive_iso_is_wall_time_in_the_guild_zone(naive: dt.datetime, tz: ZoneInfo) -> None:
    naive = naive.replace(second=0, microsecond=0)
    try:
        parsed = parse_when(naive.strftime("%Y-%m-%dT%H:%M"), now=NOW, tz=tz)
    except WhenError as exc:  # only a time the clocks skip may be refused
        assert "does not exist" in str(exc)
        assert naive.replace(tzinfo=tz).astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != naive
        return
    assert parsed.replace(tzinfo=None) == naive


@given(now=moments, tz=zones, amount=st.integers(0, 366), unit=st.sampled_from(["minutes", "hours", "days"]))
def test_relative_times_count_elapsed_time(now: dt.datetime, tz: ZoneInfo, amount: int, unit: str) -> None:
    parsed = parse_when(f"in {amount} {unit}", now=now, tz=tz)
    elapsed = parsed.astimezone(dt.UTC) - now.astimezone(dt.UTC)
    assert elapsed == dt.timedelta(**{unit: amount}) and parsed.tzinfo == tz


@given(now=moments, tz=zones, hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_tomorrow_at_a_24h_time_is_tomorrow_at_that_wall_time(
    now: dt.datetime, tz: ZoneInfo, hour: int, minute: int
) -> None:
    try:
        parsed = parse_when(f"tomorrow at {hour:02d}:{minute:02d}", now=now, tz=tz)
    except WhenError as exc:
        assert "does not exist" in str(exc)
        return
    assert parsed.date() == now.astimezone(tz).date() + dt.timedelta(days=1)
    assert (parsed.hour, parsed.minute) == (hour, minute)


@given(now=moments, tz=zones, hour=st.integers(1, 12), minute=st.integers(0, 59), pm=st.booleans())
def test_twelve_hour_clock_equals_twenty_four_hour_clock(
    now: dt.datetime, tz: ZoneInfo, hour: int, minute: int, pm: bool
) -> None:
    twenty_four = hour % 12 + (12 if pm else 0)
    try:
        twelve = parse_when(f"tomorrow {hour}:{minute:02d}{'pm' if pm else 'am'}", now=now, tz=tz)
    except WhenError:
        with pytest.raises(WhenError):
            parse_when(f"tomorrow {twenty_four:02d}:{minute:02d}", now=now, tz=tz)
        return
    assert twelve == parse_when(f"tomorrow {twenty_four:02d}:{minute:02d}", now=now, tz=tz)


@given(
    now=moments,
    tz=zones,
    day=st.sampled_from(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]),
    hour=st.integers(0, 23),
    next_week=st.booleans(),
)
def test_weekday_is_the_next_such_day_ahead(
    now: dt.datetime, tz: ZoneInfo, day: str, hour: int, next_week: bool
) -> None:
    text = f"{'next ' if next_week else ''}{day} at {hour:02d}:00"
    try:
        parsed = parse_when(text, now=now, tz=tz)
    except WhenError as exc:
        assert "does not exist" in str(exc)
        return
    local_today = now.astimezone(tz).date()
    assert parsed.strftime("%A").lower() == day
    assert parsed.hour == hour
    assert parsed > now
    days_ahead = (parsed.date() - local_today).days
    assert (1 if next_week else 0) <= days_ahead <= 7


@given(text=st.text(max_size=40), tz=zones)
def test_any_text_is_a_time_or_a_when_error(text: str, tz: ZoneInfo) -> None:
    try:
        parsed = parse_when(text, now=NOW, tz=tz)
    except WhenError as exc:
        assert str(exc)
        return
    assert parsed.tzinfo is not None


@given(now=moments, tz=zones, hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_a_bare_time_is_the_next_one_ahead(now: dt.datetime, tz: ZoneInfo, hour: int, minute: int) -> None:
    try:
        parsed = parse_when(f"{hour:02d}:{minute:02d}", now=now, tz=tz)
    except WhenError as exc:
        assert "does not exist" in str(exc)
        return
    assume(parsed.utcoffset() == now.astimezone(tz).utcoffset())  # DST days shift the window
    assert now < parsed <= now + dt.timedelta(days=1)


control_characters = st.text(alphabet=st.characters(categories=["Cc"]), min_size=100, max_size=2000)


@given(text=st.one_of(st.text(max_size=2000), control_characters))
def test_an_error_quotes_the_words_back_short_and_printable(text: str) -> None:
    """The model may send anything (control characters, pages of text): the error it reads back stays
    one short printable sentence, whatever part of the parser refused it."""
    try:
        parse_when(text, now=NOW, tz=PARIS)
    except WhenError as exc:
        message = str(exc)
        assert len(message) <= 400, message
        assert message.isprintable(), message
