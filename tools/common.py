"""What every tool family shares: ids, the clock, times, and the question a user confirms.

Tools raise `bot.tooling.ToolError` wherever a rule fails (a provider, a time); the registry turns
it into the call's result, so the model always reads a code and a sentence it can act on.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from bot.tooling import ConfirmationRequest, ToolContext, ToolError
from tools.when import WhenError, format_local, parse_when

Clock = Callable[[], dt.datetime]
T = TypeVar("T")
MAX_ROW_ID = 2**63 - 1
"""SQLite's largest INTEGER: no stored row has a larger id (and a larger one cannot even be queried)."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_id(text: str) -> int | None:
    """An id as the model wrote it ("12"), or None when no row can have it (not plain digits, too big)."""
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, and int("²") fails
        return None
    number = int(text)
    return number if number <= MAX_ROW_ID else None


def tidy_text(value: str | None, *, limit: int, what: str | None = None) -> str | None:
    """Free text from the model with its whitespace collapsed (None when empty); at most `limit` chars.

    Raises ValueError for pydantic to report ("notes must be at most 200 characters").
    """
    if value is None:
        return None
    value = " ".join(value.split())
    if len(value) > limit:
        raise ValueError(f"{what + ' ' if what else ''}must be at most {limit} characters")
    return value or None


def required_text(value: str, *, limit: int, what: str | None = None) -> str:
    """`tidy_text` that must not come out empty."""
    cleaned = tidy_text(value, limit=limit, what=what)
    if not cleaned:
        raise ValueError("must not be empty")
    return cleaned


def confirmation(
    context: ToolContext, tool_name: str, title: str, fields: Iterable[tuple[str, str]]
) -> ConfirmationRequest:
    """What the calling user is asked before `tool_name` acts for them: a title and the facts."""
    return ConfirmationRequest(
        tool_name=tool_name,
        call_id=context.call_id,
        user_id=context.user_id,
        title=title,
        fields=tuple(fields),
    )


class CallMemo(Generic[T]):
    """What a call's preview resolved (e.g. "tomorrow 8pm" as a datetime), kept until it runs.

    The confirmed run then does exactly what the user was shown, even if the clock moved on while
    they decided. Bounded: previews that are declined or time out are forgotten oldest first.
    """

    def __init__(self, capacity: int = 512) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, T] = OrderedDict()

    def put(self, call_id: str, value: T) -> None:
        self._items[call_id] = value
        self._items.move_to_end(call_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def take(self, call_id: str) -> T | None:
        return self._items.pop(call_id, None)


def future_time(
    text: str,
    *,
    now: dt.datetime,
    tz: ZoneInfo,
    max_ahead: dt.timedelta,
    grace: dt.timedelta | None = None,
) -> dt.datetime:
    """`text` as a moment after `now` and at most `max_ahead` later, or a `ToolError` saying why not.

    With `grace`, a moment at most that far in the past means "now" (a ride asked for "now").
    """
    try:
        moment = parse_when(text, now=now, tz=tz)
    except WhenError as exc:
        raise ToolError("invalid_time", str(exc)) from None
    if grace is not None and now - grace <= moment <= now:
        return now.astimezone(tz)
    if moment <= now:
        raise ToolError(
            "past_time",
            f"{format_local(moment, tz)} has already passed; it is now {format_local(now, tz)}.",
        )
    if moment - now > max_ahead:
        raise ToolError(
            "too_far_ahead", f"{format_local(moment, tz)} is too far ahead (at most {max_ahead.days} days)."
        )
    return moment


def local_iso(moment: dt.datetime, tz: ZoneInfo) -> str:
    """A moment for the model: ISO 8601 in the guild's zone, to the minute."""
    return moment.astimezone(tz).replace(second=0, microsecond=0).isoformat()
