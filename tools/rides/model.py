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


@dataclass(frozen=True, slots=True)
class RideRequest:
    pickup: str
    dropoff: str
    pickup_at: dt.datetime
    ride_type: RideType
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class RideQuote:
    pickup: str
    dropoff: str
    ride_type: str
    pickup_at: dt.datetime
    distance_km: float
    duration_min: int
    fare_cents: int
    currency: str

    def fare_text(self) -> str:
        return format_money(self.fare_cents, self.currency)

    def to_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "pickup": self.pickup,
            "dropoff": self.dropoff,
            "ride_type": self.ride_type,
            "time": local_iso(self.pickup_at, tz),
            "distance_km": self.distance_km,
            "duration_min": self.duration_min,
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
