"""What the ride tools and their providers speak: requests, quotes, rides."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot.tooling import ToolContext
from tools.common import local_iso
from tools.fares import RideType, format_money
from tools.owned import Fields, KeepsRecords, RecordKind
from tools.when import format_local

CANCEL_LOOKBACK = dt.timedelta(hours=1)  # a ride that started this recently can still be cancelled

RIDE = RecordKind(noun="ride", plural="rides", over="is over", listed="{count} rides")
METERED_FARE = "metered, no estimate"


@dataclass(frozen=True, slots=True)
class RideRequest:
    pickup: str
    dropoff: str
    pickup_at: dt.datetime
    ride_type: RideType
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class RideQuote:
    """A priced ride; a metered one (a place that could not be located) has no distance, duration
    or fare: the driver's meter sets the fare."""

    pickup: str
    dropoff: str
    ride_type: str
    pickup_at: dt.datetime
    distance_km: float | None
    duration_min: int | None
    fare_cents: int | None
    currency: str

    @property
    def metered(self) -> bool:
        return self.fare_cents is None

    def fare_text(self) -> str:
        return METERED_FARE if self.fare_cents is None else format_money(self.fare_cents, self.currency)

    def trip_text(self) -> str:
        """The fare with the trip, as the user is shown it: "12.40 EUR · 5.2 km · ~11 min"."""
        if self.distance_km is None or self.duration_min is None:
            return self.fare_text()
        return f"{self.fare_text()} · {self.distance_km:.1f} km · ~{self.duration_min} min"

    def to_json(self, tz: ZoneInfo) -> dict[str, Any]:
        trip: dict[str, Any] = (
            {"fare_note": "The place could not be located, so no estimate: the driver's meter sets the fare."}
            if self.metered
            else {"distance_km": self.distance_km, "duration_min": self.duration_min}
        )
        return {
            "pickup": self.pickup,
            "dropoff": self.dropoff,
            "ride_type": self.ride_type,
            "time": local_iso(self.pickup_at, tz),
            **trip,
            "fare": self.fare_text(),
        }


@dataclass(frozen=True, slots=True)
class Ride:
    id: str
    quote: RideQuote
    status: str

    def to_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {"id": self.id, **self.quote.to_json(tz), "status": self.status}

    def is_over(self, now: dt.datetime) -> bool:
        return self.quote.pickup_at < now - CANCEL_LOOKBACK

    def cancel_question(self, tz: ZoneInfo) -> tuple[str, Fields]:
        return f"Cancel your ride to {self.quote.dropoff}?", (
            ("Ride", f"#{self.id}"),
            ("Pickup", self.quote.pickup),
            ("When", format_local(self.quote.pickup_at, tz)),
        )

    def cancelled_summary(self) -> str:
        return f"Cancelled the ride to {self.quote.dropoff}"


class RideProvider(KeepsRecords[Ride], Protocol):
    """Where rides go. Every method raises `ToolError` for anything the user should hear about."""

    async def estimate(self, request: RideRequest, caller: ToolContext) -> RideQuote: ...

    async def order(self, request: RideRequest, caller: ToolContext) -> Ride: ...
