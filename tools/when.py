"""When a booking or ride is for: ISO 8601 and the natural forms a model (or a person) writes.

The model usually sends ISO 8601, but it also passes the user's words along ("tomorrow at 8pm",
"tonight 19:30", "friday 8pm", "in 2 hours", "now"). Everything is read in the guild's time zone
and relative to an injected `now`, so the answer is deterministic. Anything not fully understood
is refused with a sentence the model can act on, rather than guessed.

Rules worth knowing:
- A naive ISO time, and every natural form, is wall-clock time in the guild's zone; an ISO time
  with an offset (or `Z`) is taken as written and converted.
- A day without a time of day is refused (a booking needs one); so is a time that does not exist
  because the clocks spring forward. A time that happens twice (clocks go back) is the first one.
- A time without a day is the next such time (today, or tomorrow if it has passed).
- `friday` is the soonest Friday at that time still ahead (possibly today); `next friday` is the
  first Friday after today. A month and day without a year is the next one ahead.
- Hours without am/pm are on the 24-hour clock, except after `tonight`/`evening`/`afternoon`,
  where 1-11 mean pm. `midnight` is the end of the named day (`friday midnight` is Saturday 00:00).
- `in 2 hours`/`in 3 days` count elapsed time from `now`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["WhenError", "format_local", "parse_when", "resolve_local"]

WEEKDAYS: dict[str, int] = {
    "monday": 0, "mon": 0,
    "tuesday": 1, "tue": 1, "tues": 1,
    "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3,
    "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}  # fmt: skip
NUMBER_WORDS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
UNIT_MINUTES: dict[str, int] = {
    "m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1,
    "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60,
    "d": 1440, "day": 1440, "days": 1440,
    "w": 10080, "week": 10080, "weeks": 10080,
}  # fmt: skip
PM_PERIODS = frozenset({"tonight", "evening", "afternoon", "night"})
FILLER_WORDS = frozenset({"at", "on", "for", "the", "of", "around", "about", "o'clock", "oclock"})
NOW_WORDS = frozenset({"now", "right now", "asap", "immediately", "as soon as possible"})
MAX_RELATIVE_MINUTES = 366 * 1440
MAX_QUOTED_CHARS = 60
"""The user's words are quoted back in an error at most this long, so the sentence stays short."""

_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:z|[+-]\d{2}(?::?\d{2})?)?$"
)
_NUMBER = r"(?:\d{1,4}|" + "|".join(NUMBER_WORDS) + r")"
_UNIT = r"(?:" + "|".join(sorted(UNIT_MINUTES, key=len, reverse=True)) + r")"
_AMOUNT = re.compile(rf"\b(?P<n>{_NUMBER})\s*(?P<unit>{_UNIT})\b")
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")
_MONTH_NAMES = "|".join(sorted(MONTHS, key=len, reverse=True))
_MONTH_DAY = re.compile(
    rf"\b(?:(?P<m1>{_MONTH_NAMES})\.?\s+(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?"
    rf"|(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m2>{_MONTH_NAMES})\.?)"
    rf"(?:,?\s+(?P<y>\d{{4}}))?\b"
)
_RELATIVE_DAY = re.compile(r"\b(?:(?P<after>day after tomorrow)|(?P<word>today|tonight|tomorrow|tmrw|tmr))\b")
_WEEKDAY = re.compile(
    r"\b(?:(?P<which>next|this|coming)\s+)?(?P<day>"
    + "|".join(sorted(WEEKDAYS, key=len, reverse=True))
    + r")\b"
)
_PERIOD = re.compile(r"\b(?:this\s+|in\s+the\s+)?(?P<period>morning|afternoon|evening|night)\b")
_NAMED_TIME = re.compile(r"\b(?P<name>noon|midday|midnight)\b")
_CLOCK = re.compile(
    r"(?<![\d:.])(?P<h>\d{1,2})(?:(?::|\.|h)(?P<m>\d{2})|(?P<hmark>h))?(?:\s*(?P<ampm>am|pm)\b)?(?![\d:.])"
)


class WhenError(ValueError):
    """The text is not a time this parser can read with confidence; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class _Parts:
    """What a natural phrase named: at most one day and one time of day."""

    date: dt.date | None
    date_has_year: bool
    day_offset: int | None  # today=0, tomorrow=1...
    weekday: int | None
    weekday_next: bool
    period: str | None
    time: tuple[int, int] | None  # hour, minute (24 h); hour 24 = midnight ending the day
    clock_is_12h: bool


def parse_when(text: str, *, now: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The moment `text` names, as an aware datetime in `tz`; raises `WhenError` if unsure."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local_now = now.astimezone(tz)
    phrase = _normalise(text)
    if not phrase:
        raise WhenError("The time is empty; give e.g. 2026-05-01T20:00 or 'tomorrow at 8pm'.")
    if phrase in NOW_WORDS:
        return local_now
    try:
        if _ISO_DATETIME.match(phrase):
            return _from_iso(phrase, tz)
        relative = _relative(phrase)
        if relative is not None:
            return (now.astimezone(dt.UTC) + relative).astimezone(tz)  # elapsed, not wall-clock, time
        return _natural(phrase, text, local_now, tz)
    except OverflowError:  # e.g. 9999-12-31 23:59 in a zone behind UTC is past the year 9999 in UTC
        raise WhenError("That date is out of range; give one within the next few months.") from None


def resolve_local(day: dt.date, hour: int, minute: int, tz: ZoneInfo) -> dt.datetime:
    """Wall-clock `day hour:minute` in `tz`; refuses a time the clocks skip (DST gap)."""
    naive = dt.datetime.combine(day, dt.time(hour, minute))
    aware = naive.replace(tzinfo=tz)
    if aware.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise WhenError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks change then); pick another time."
        )
    return aware


def format_local(moment: dt.datetime, tz: ZoneInfo) -> str:
    """A moment as people read it: 'Friday 1 May 2026, 20:00 (Europe/Paris)'."""
    local = moment.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} ({tz.key})"


def _normalise(text: str) -> str:
    phrase = text.strip().lower()
    phrase = re.sub(r"\ba\.m\.?|\ba\.m\b", "am", phrase)
    phrase = re.sub(r"\bp\.m\.?|\bp\.m\b", "pm", phrase)
    phrase = phrase.replace(",", " ")
    return re.sub(r"\s+", " ", phrase).strip()


def _from_iso(phrase: str, tz: ZoneInfo) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(phrase.upper())
    except ValueError as exc:
        reason = _quoted(str(exc))[1:-1]  # Python's own words quote the input again: clipped as well
        raise WhenError(f"{_quoted(phrase)} is not a valid ISO 8601 date and time ({reason}).") from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(tz)
    resolved = resolve_local(parsed.date(), parsed.hour, parsed.minute, tz)
    return resolved.replace(second=parsed.second, microsecond=parsed.microsecond)


def _relative(phrase: str) -> dt.timedelta | None:
    """`in 2 hours`, `in 1h30`, `in half an hour`, `in an hour and a half`, `90 minutes from now`."""
    if phrase.startswith("in "):
        body = phrase[3:]
    elif phrase.endswith(" from now"):
        body = phrase[: -len(" from now")]
    else:
        return None
    body = body.strip()
    if body in {"half an hour", "a half hour", "half hour"}:
        return dt.timedelta(minutes=30)
    extra_half = 0
    if body.endswith(" and a half"):
        body = body[: -len(" and a half")]
        extra_half = 1
    compact = re.fullmatch(r"(\d{1,2})h(\d{2})", body)  # "1h30"
    if compact:
        minutes = int(compact[1]) * 60 + int(compact[2])
        return dt.timedelta(minutes=minutes)
    minutes = 0
    position = 0
    found = False
    for match in _AMOUNT.finditer(body):
        between = body[position : match.start()].strip()
        if between not in {"", "and"}:
            return None
        amount = match["n"]
        value = NUMBER_WORDS[amount] if amount in NUMBER_WORDS else int(amount)
        unit = UNIT_MINUTES[match["unit"]]
        minutes += value * unit
        if extra_half:
            minutes += unit // 2
            extra_half = 0
        position = match.end()
        found = True
    if not found or body[position:].strip():
        return None
    if minutes > MAX_RELATIVE_MINUTES:
        raise WhenError("That is too far ahead; give a date instead.")
    return dt.timedelta(minutes=minutes)


def _natural(phrase: str, original: str, local_now: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    parts, leftover = _extract(phrase)
    words = [w for w in leftover.split() if w not in FILLER_WORDS]
    if words:
        raise WhenError(
            f"Could not read {_quoted(original)} (did not understand {_quoted(' '.join(words))}); "
            "use ISO 8601 like 2026-05-01T20:00, or e.g. 'tomorrow at 8pm', 'friday 19:30', 'in 2 hours'."
        )
    if parts.time is None:
        if parts.date or parts.day_offset is not None or parts.weekday is not None or parts.period:
            raise WhenError(f"{_quoted(original)} has no time of day; add one, e.g. 'at 8pm' or '19:30'.")
        raise WhenError(f"Could not read {_quoted(original)} as a time; use e.g. 2026-05-01T20:00.")
    hour, minute = _apply_period(parts)
    day_shift = 1 if hour == 24 else 0
    hour = 0 if hour == 24 else hour

    def at(day: dt.date) -> dt.datetime:
        return resolve_local(day + dt.timedelta(days=day_shift), hour, minute, tz)

    today = local_now.date()
    if parts.date is not None:
        day = _resolve_date(parts, today, local_now, at, original)
        if parts.weekday is not None and day.weekday() != parts.weekday:
            raise WhenError(f"{day:%Y-%m-%d} is a {day:%A}, not the weekday {_quoted(original)} names.")
        return at(day)
    if parts.day_offset is not None:
        return at(today + dt.timedelta(days=parts.day_offset))
    if parts.weekday is not None:
        first = 1 if parts.weekday_next else 0
        for offset in range(first, first + 8):
            day = today + dt.timedelta(days=offset)
            if day.weekday() == parts.weekday and (parts.weekday_next or at(day) > local_now):
                return at(day)
        raise AssertionError("a weekday always comes within 8 days")
    moment = at(today)
    return moment if moment > local_now else at(today + dt.timedelta(days=1))


def _resolve_date(
    parts: _Parts,
    today: dt.date,
    local_now: dt.datetime,
    at: Callable[[dt.date], dt.datetime],
    original: str,
) -> dt.date:
    """The named date; without a year, its next occurrence still ahead."""
    assert parts.date is not None
    if parts.date_has_year:
        return parts.date
    for years_ahead in range(9):  # 29 February comes back within 8 years
        try:
            day = parts.date.replace(year=today.year + years_ahead)
        except ValueError:
            continue
        if at(day) > local_now:
            return day
    raise WhenError(f"Could not place {_quoted(original)} in the coming years.")


def _apply_period(parts: _Parts) -> tuple[int, int]:
    assert parts.time is not None
    hour, minute = parts.time
    if parts.clock_is_12h or hour == 24:
        return hour, minute
    if parts.period in PM_PERIODS and 1 <= hour <= 11:
        return hour + 12, minute
    return hour, minute


def _extract(phrase: str) -> tuple[_Parts, str]:
    """Pull the day, period and time of day out of `phrase`; what is left must be filler words."""
    rest = f" {phrase} "
    date: dt.date | None = None
    has_year = False
    day_offset: int | None = None
    weekday: int | None = None
    weekday_next = False
    period: str | None = None

    def once(pattern: re.Pattern[str], what: str) -> re.Match[str] | None:
        nonlocal rest
        matches = list(pattern.finditer(rest))
        if len(matches) > 1:
            raise WhenError(f"{_quoted(phrase)} names more than one {what}.")
        if not matches:
            return None
        match = matches[0]
        rest = rest[: match.start()] + " " + rest[match.end() :]
        return match

    iso = once(_ISO_DATE, "date")
    if iso:
        date, has_year = _checked_date(int(iso["y"]), int(iso["m"]), int(iso["d"])), True
    named = once(_MONTH_DAY, "date")
    if named:
        if date is not None:
            raise WhenError(f"{_quoted(phrase)} names more than one date.")
        month = MONTHS[named["m1"] or named["m2"]]
        day = int(named["d1"] or named["d2"])
        has_year = named["y"] is not None
        year = int(named["y"]) if has_year else 2000  # a leap year, replaced when resolved
        date = _checked_date(year, month, day)
    relative = once(_RELATIVE_DAY, "day")
    if relative:
        word = relative["word"]
        day_offset = 2 if relative["after"] else (0 if word in {"today", "tonight"} else 1)
        if word == "tonight":
            period = "tonight"
    named_weekday = once(_WEEKDAY, "weekday")
    if named_weekday:
        weekday = WEEKDAYS[named_weekday["day"]]
        weekday_next = named_weekday["which"] == "next"
    if day_offset is not None and (date is not None or weekday is not None):
        raise WhenError(f"{_quoted(phrase)} names the day in more than one way; give just one.")
    named_period = once(_PERIOD, "part of the day")
    if named_period:
        if period is not None and named_period["period"] != "night":
            raise WhenError(f"{_quoted(phrase)} names more than one part of the day.")
        period = period or named_period["period"]
    named_time = once(_NAMED_TIME, "time")
    clock = once(_CLOCK, "time")
    if named_time and clock:
        raise WhenError(f"{_quoted(phrase)} names more than one time.")
    time: tuple[int, int] | None = None
    twelve_hour = False
    if named_time:
        time = (24, 0) if named_time["name"] == "midnight" else (12, 0)
    elif clock:
        time, twelve_hour = _clock_time(clock, phrase)
    parts = _Parts(date, has_year, day_offset, weekday, weekday_next, period, time, twelve_hour)
    return parts, rest.strip()


def _clock_time(clock: re.Match[str], phrase: str) -> tuple[tuple[int, int], bool]:
    hour = int(clock["h"])
    minute = int(clock["m"]) if clock["m"] else 0
    ampm = clock["ampm"]
    if minute > 59:
        raise WhenError(f"{_quoted(phrase)}: minutes must be 00-59.")
    if ampm:
        if not 1 <= hour <= 12:
            raise WhenError(f"{_quoted(phrase)}: with am/pm the hour must be 1-12.")
        hour = hour % 12 + (12 if ampm == "pm" else 0)
        return (hour, minute), True
    if not (clock["m"] or clock["hmark"]) and hour > 24:
        raise WhenError(f"Could not read {_quoted(phrase)} as a time.")
    if hour > 23:
        raise WhenError(f"{_quoted(phrase)}: the hour must be 0-23 (or 1-12 with am/pm).")
    return (hour, minute), False


def _checked_date(year: int, month: int, day: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise WhenError(f"{year:04d}-{month:02d}-{day:02d} is not a real date.") from None


def _quoted(text: str) -> str:
    """The user's words in an error: one printable line, clipped, in quotes (whatever the model sent)."""
    shown = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(shown) > MAX_QUOTED_CHARS:
        shown = shown[: MAX_QUOTED_CHARS - 1] + "…"
    return repr(shown)
