"""What the booking tools and their providers speak: queries, options, slots, reservations."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot.tooling import ToolContext
from tools.common import local_iso
from tools.owned import Fields, KeepsRecords, RecordKind
from tools.when import format_local

MAX_FOUND = 10

RESERVATION = RecordKind(
    noun="reservation", plural="reservations", over="is in the past", listed="{count} upcoming reservations"
)


@dataclass(frozen=True, slots=True)
class RestaurantQuery:
    cuisine: str | None
    area: str | None
    party_size: int | None
    starts_at: dt.datetime | None
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class RestaurantOption:
    """One restaurant found, with its hours that day and (when a time was given) whether it has room."""

    id: str
    name: str
    cuisine: str
    area: str
    hours: str
    available: bool | None = None
    tables_left: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "cuisine": self.cuisine,
            "area": self.area,
            "hours": self.hours,
        }
        if self.available is not None:
            data["available"] = self.available
        if self.tables_left is not None:
            data["tables_left"] = self.tables_left
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True, slots=True)
class Found:
    options: list[RestaurantOption]
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class BookingRequest:
    restaurant: str
    party_size: int
    starts_at: dt.datetime
    notes: str
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable table: what the user will be asked to confirm."""

    restaurant_id: str
    restaurant_name: str
    area: str
    starts_at: dt.datetime
    tables_left: int | None


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    restaurant: str
    starts_at: dt.datetime
    party_size: int
    notes: str
    status: str

    def to_json(self, tz: ZoneInfo) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "restaurant": self.restaurant,
            "time": local_iso(self.starts_at, tz),
            "party_size": self.party_size,
            "status": self.status,
        }
        if self.notes:
            data["notes"] = self.notes
        return data

    def is_over(self, now: dt.datetime) -> bool:
        return self.starts_at <= now

    def cancel_question(self, tz: ZoneInfo) -> tuple[str, Fields]:
        return f"Cancel your table at {self.restaurant}?", (
            ("Reservation", f"#{self.id}"),
            ("Party", people(self.party_size)),
            ("When", format_local(self.starts_at, tz)),
        )

    def cancelled_summary(self) -> str:
        return f"Cancelled the table at {self.restaurant}"


class BookingProvider(KeepsRecords[Reservation], Protocol):
    """Where bookings go. Every method raises `ToolError` for anything the user should hear about."""

    async def find(self, query: RestaurantQuery, caller: ToolContext) -> Found: ...

    async def check(self, request: BookingRequest, caller: ToolContext) -> Slot:
        """Whether the booking could be made now (used to build the confirmation)."""
        ...

    async def book(self, request: BookingRequest, caller: ToolContext) -> Reservation: ...


def people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"
