"""What every tool family shares: the structured failure, who is calling, the clock, and times.

Tools raise `ToolError` deep (a provider, a rule) and turn it into a `ToolResult` at the handler,
so the model always reads a code and a sentence it can explain or act on.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from bot.tooling import ToolContext, ToolResult
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


class ToolError(Exception):
    """A call that cannot be done, for a reason the model can relay or fix (`code` is stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_result(self) -> ToolResult:
        return ToolResult.failure(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Caller:
    """The person a provider acts for, taken from Discord (never from the model's arguments)."""

    user_id: int
    user_name: str
    guild_id: int | None
    call_id: str
    tz: ZoneInfo

    @classmethod
    def from_context(cls, context: ToolContext) -> Caller:
        return cls(
            user_id=context.user_id,
            user_name=context.user_name,
            guild_id=context.guild_id,
            call_id=context.call_id,
            tz=ZoneInfo(context.settings.timezone),
        )

    def identity(self) -> dict[str, Any]:
        """How the caller is named to a remote provider."""
        return {
            "user_id": str(self.user_id),
            "user_name": self.user_name,
            "guild_id": None if self.guild_id is None else str(self.guild_id),
        }


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
