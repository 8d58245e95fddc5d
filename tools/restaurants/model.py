"""What the booking tools and their providers speak: queries, options, slots, reservations, and
`RestaurantEntry`, the one schema of a catalog entry (admins' commands, CSV imports, the store)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.storage.bookings import RestaurantFields
from bot.time_zones import is_time_zone, unknown_time_zone
from bot.tooling import ToolContext
from tools.common import local_iso, required_text
from tools.hours import OpeningHours
from tools.owned import Fields, KeepsRecords, RecordKind
from tools.when import format_local

MAX_FOUND = 10
MAX_RESTAURANT_NAME_CHARS = 100
MAX_CUISINE_CHARS = 50
MAX_AREA_CHARS = 100
MAX_OPENING_HOURS_CHARS = 300
MAX_TABLES_PER_SLOT = 500
SERVER_ZONE_WORDS = frozenset({"", "-", "none", "server", "default"})
"""Time zone values meaning "the server's time zone" (stored as no zone of its own)."""


class RestaurantEntry(BaseModel):
    """One restaurant as an admin gives it; normalised so equal entries compare equal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="What members call it, unique in the server's catalog.")
    cuisine: str = Field(description="Kind of food, one or two words, e.g. italian.")
    area: str = Field(description="Neighbourhood, e.g. Old Town.")
    opening_hours: str = Field(
        description="e.g. 'mon-fri 12:00-14:30,18:00-23:00; sat-sun 12:00-23:00' or 'daily 11:00-22:00'."
    )
    tables_per_slot: int = Field(
        ge=0, le=MAX_TABLES_PER_SLOT, description="Tables of 4 per half-hour slot (0: no new bookings)."
    )
    timezone: str | None = Field(
        default=None, description="IANA time zone of its hours, e.g. Europe/Paris; empty: the server's."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return required_text(value, limit=MAX_RESTAURANT_NAME_CHARS)

    @field_validator("cuisine")
    @classmethod
    def _cuisine(cls, value: str) -> str:
        return required_text(value, limit=MAX_CUISINE_CHARS).lower()

    @field_validator("area")
    @classmethod
    def _area(cls, value: str) -> str:
        return required_text(value, limit=MAX_AREA_CHARS)

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        text = required_text(value, limit=MAX_OPENING_HOURS_CHARS)
        return OpeningHours.parse(text).format()  # ValueError names the wrong part

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in SERVER_ZONE_WORDS:
            return None
        name = value.strip()
        if not is_time_zone(name):
            raise ValueError(unknown_time_zone(name))
        return name

    def fields(self) -> RestaurantFields:
        return RestaurantFields(
            self.name, self.cuisine, self.area, self.opening_hours, self.tables_per_slot, self.timezone
        )

    @classmethod
    def of(cls, fields: RestaurantFields) -> RestaurantEntry:
        return cls(
            name=fields.name,
            cuisine=fields.cuisine,
            area=fields.area,
            opening_hours=fields.opening_hours,
            tables_per_slot=fields.tables_per_slot,
            timezone=fields.timezone,
        )


def entry_problem(exc: ValidationError) -> str:
    """The first problem of an entry as `field: what is wrong` (our validators' own words)."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "entry"
    if error["type"] == "value_error":
        return f"{field}: {str(error['msg']).removeprefix('Value error, ')}"
    if error["type"] == "missing":
        return f"{field}: is missing"
    if error["type"] == "extra_forbidden":
        return f"{field}: is not a column a restaurant has"
    if field == "tables_per_slot":
        return f"{field}: must be a whole number from 0 to {MAX_TABLES_PER_SLOT}"
    return f"{field}: {str(error['msg']).lower()}"


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
