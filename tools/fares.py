"""The built-in fare model: deterministic, integer cents, documented here and nowhere else.

    road km    = straight-line km x ROAD_FACTOR, rounded to 0.1 km
    minutes    = road km at AVERAGE_SPEED_KMH, rounded up (at least 1)
    fare       = max(minimum, base + per_km x road km (half-cents round up) + per_minute x minutes)

by ride type (cents):   base  per km  per min  minimum  seats
    standard             250     120       30      600      4
    comfort              400     170       40      900      4
    xl                   500     200       45     1100      6

Every rate of a bigger type is at least the smaller type's, so comfort never costs less than
standard, nor xl less than comfort, for the same trip. No surge, no time-of-day pricing: the same
trip always costs the same, which is what a user confirms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

RideType = Literal["standard", "comfort", "xl"]
RIDE_TYPES: tuple[RideType, ...] = ("standard", "comfort", "xl")
CURRENCY = "EUR"
ROAD_FACTOR = 1.3
AVERAGE_SPEED_KMH = 30


@dataclass(frozen=True, slots=True)
class FareRule:
    base_cents: int
    per_km_cents: int
    per_minute_cents: int
    minimum_cents: int
    seats: int


FARES: Mapping[RideType, FareRule] = {
    "standard": FareRule(base_cents=250, per_km_cents=120, per_minute_cents=30, minimum_cents=600, seats=4),
    "comfort": FareRule(base_cents=400, per_km_cents=170, per_minute_cents=40, minimum_cents=900, seats=4),
    "xl": FareRule(base_cents=500, per_km_cents=200, per_minute_cents=45, minimum_cents=1100, seats=6),
}


@dataclass(frozen=True, slots=True)
class Trip:
    """A trip's road length in tenths of a kilometre, and its duration in whole minutes."""

    tenths_km: int
    minutes: int

    @property
    def km(self) -> float:
        return self.tenths_km / 10


def trip_for(straight_km: float) -> Trip:
    """Road distance and driving time for a straight-line distance."""
    if straight_km < 0:
        raise ValueError("distance cannot be negative")
    tenths = round(straight_km * ROAD_FACTOR * 10)
    minutes = max(1, -(-tenths * 6 // AVERAGE_SPEED_KMH))  # tenths/10 km / speed * 60, rounded up
    return Trip(tenths, minutes)


def fare_cents(ride_type: RideType, trip: Trip) -> int:
    rule = FARES[ride_type]
    distance = (rule.per_km_cents * trip.tenths_km + 5) // 10
    return max(rule.minimum_cents, rule.base_cents + distance + rule.per_minute_cents * trip.minutes)


def format_money(cents: int, currency: str = CURRENCY) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"
