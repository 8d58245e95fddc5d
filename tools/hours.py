"""Restaurant opening hours: a short text form people can edit, and the seating rule.

The form is groups separated by `;`, each days then intervals, later groups overriding earlier ones:
`mon-fri 12:00-14:30,18:00-23:00; sat-sun 12:00-23:00; tue closed`, or `daily 11:00-22:00`.
Days not named are closed. An interval ends on the day it starts (at the latest `24:00`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

__all__ = ["DAY_NAMES", "SLOT_MINUTES", "OpeningHours"]

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
SLOT_MINUTES = 30  # tables are booked on the half hour
LAST_SEATING_BEFORE_CLOSE_MINUTES = 60

Interval = tuple[int, int]  # minutes after midnight, start < end <= 1440

_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Seven days (Monday first) of sorted, non-overlapping opening intervals."""

    week: tuple[tuple[Interval, ...], ...]

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("opening hours need seven days")
        for day in self.week:
            previous_end = -1
            for start, end in day:
                if not 0 <= start < end <= MINUTES_PER_DAY or start < previous_end:
                    raise ValueError("opening intervals must be in order, inside the day, and not overlap")
                previous_end = end

    @classmethod
    def parse(cls, spec: str) -> OpeningHours:
        """Read the text form; raises ValueError naming the part that is wrong."""
        week: list[tuple[Interval, ...]] = [() for _ in DAY_NAMES]
        if spec.strip().lower() == "closed":
            return cls(tuple(week))
        for group in (g.strip() for g in spec.lower().split(";")):
            if not group:
                continue
            days_text, _, intervals_text = group.partition(" ")
            days = _parse_days(days_text)
            intervals = _parse_intervals(intervals_text.replace(" ", ""))
            for day in days:
                week[day] = intervals
        return cls(tuple(week))

    def format(self) -> str:
        """The canonical text form (consecutive days with the same hours grouped)."""
        groups: list[str] = []
        day = 0
        while day < 7:
            last = day
            while last + 1 < 7 and self.week[last + 1] == self.week[day]:
                last += 1
            if self.week[day]:
                days = DAY_NAMES[day] if last == day else f"{DAY_NAMES[day]}-{DAY_NAMES[last]}"
                groups.append(f"{days} {_format_intervals(self.week[day])}")
            day = last + 1
        return "; ".join(groups) if groups else "closed"

    def describe_day(self, weekday: int) -> str:
        """One day's hours for the model: '12:00-14:30,18:00-23:00' or 'closed'."""
        return _format_intervals(self.week[weekday]) if self.week[weekday] else "closed"

    def seats_at(self, weekday: int, minute_of_day: int) -> bool:
        """Whether a table can start at this minute: open, and at least an hour before closing."""
        return any(
            start <= minute_of_day <= end - LAST_SEATING_BEFORE_CLOSE_MINUTES
            for start, end in self.week[weekday]
        )


def _parse_days(text: str) -> list[int]:
    if text in {"daily", "everyday"}:
        return list(range(7))
    days: list[int] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if first not in DAY_NAMES or (dash and last not in DAY_NAMES):
            raise ValueError(f"unknown days {part!r} (use mon..sun, ranges like mon-fri, or daily)")
        start, end = DAY_NAMES.index(first), DAY_NAMES.index(last if dash else first)
        if end < start:
            raise ValueError(f"day range {part!r} runs backwards")
        days.extend(range(start, end + 1))
    return days


def _parse_intervals(text: str) -> tuple[Interval, ...]:
    if text == "closed":
        return ()
    if not text:
        raise ValueError("missing hours (e.g. 12:00-22:00, or closed)")
    intervals: list[Interval] = []
    for part in text.split(","):
        start_text, dash, end_text = part.partition("-")
        if not dash:
            raise ValueError(f"interval {part!r} needs a start and an end, like 12:00-14:30")
        start, end = _parse_time(start_text), _parse_time(end_text)
        if end <= start:
            raise ValueError(f"interval {part!r} must end after it starts, on the same day")
        intervals.append((start, end))
    intervals.sort()
    for (_, end), (start, _) in itertools.pairwise(intervals):
        if start < end:
            raise ValueError(f"intervals overlap in {text!r}")
    return tuple(intervals)


def _parse_time(text: str) -> int:
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"time {text!r} must look like 18:30")
    hour, minute = int(match[1]), int(match[2])
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"time {text!r} is not a time of day")
    return hour * 60 + minute


def _format_intervals(intervals: tuple[Interval, ...]) -> str:
    return ",".join(f"{_hhmm(start)}-{_hhmm(end)}" for start, end in intervals)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
