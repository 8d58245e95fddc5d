"""The built-in ride provider: places located, the documented fare model, and rides in SQLite.

Places come from a `Geocoder` (a Nominatim-compatible service when `[geocoder] url` is set, else the
known-places table), fares from `tools.fares` (its docstring is the fare model: straight-line
distance x the road factor), rides from `bot.storage.rides`. With `metered_when_unknown` (no real
geocoder) a place the table cannot locate is still served: the quote is metered, without an
estimate. A ride for within `REQUESTED_WITHIN` is `requested`, a later one `scheduled`; cancelled
rides are `cancelled`. Only the person who ordered a ride can cancel it.
"""

from __future__ import annotations

import datetime as dt

from bot.storage.rides import NewRide, RideRecord, RideStore
from bot.tooling import ToolContext, ToolError
from tools.fares import CURRENCY, fare_cents, trip_for
from tools.owned import OwnedRows
from tools.places import UNKNOWN_PLACE, Geocoder, Place, straight_km
from tools.rides.model import RIDE, Ride, RideQuote, RideRequest

REQUESTED_WITHIN = dt.timedelta(minutes=15)  # sooner than this is a ride now, not a scheduled one


class BuiltinRideProvider:
    """Located places, the documented fare model, and rides in SQLite."""

    def __init__(self, store: RideStore, geocoder: Geocoder, *, metered_when_unknown: bool = False) -> None:
        self._store = store
        self._geocoder = geocoder
        self._metered_when_unknown = metered_when_unknown
        self.records = OwnedRows(
            RIDE, row=store.ride, rows_of=store.rides_for, cancel_row=store.cancel, record=_from_record
        )

    async def estimate(self, request: RideRequest, caller: ToolContext) -> RideQuote:
        pickup = await self._locate(request.pickup)
        dropoff = await self._locate(request.dropoff)
        if pickup is None or dropoff is None:
            return RideQuote(
                pickup=request.pickup if pickup is None else pickup.name,
                dropoff=request.dropoff if dropoff is None else dropoff.name,
                ride_type=request.ride_type,
                pickup_at=request.pickup_at,
                distance_km=None,
                duration_min=None,
                fare_cents=None,
                currency=CURRENCY,
            )
        if pickup == dropoff:
            raise ToolError("same_place", f"Pickup and drop-off are both {pickup.name}.")
        trip = trip_for(straight_km(pickup, dropoff))
        return RideQuote(
            pickup=pickup.name,
            dropoff=dropoff.name,
            ride_type=request.ride_type,
            pickup_at=request.pickup_at,
            distance_km=trip.km,
            duration_min=trip.minutes,
            fare_cents=fare_cents(request.ride_type, trip),
            currency=CURRENCY,
        )

    async def _locate(self, text: str) -> Place | None:
        """The place, or None for one nobody can locate when such rides are metered."""
        try:
            return await self._geocoder.locate(text)
        except ToolError as exc:
            if exc.code == UNKNOWN_PLACE and self._metered_when_unknown:
                return None
            raise

    async def order(self, request: RideRequest, caller: ToolContext) -> Ride:
        quote = await self.estimate(request, caller)
        soon = request.pickup_at - request.now <= REQUESTED_WITHIN
        record, _ = await self._store.create(
            NewRide(
                pickup=quote.pickup,
                dropoff=quote.dropoff,
                ride_type=quote.ride_type,
                pickup_at=int(quote.pickup_at.timestamp()),
                distance_km=quote.distance_km,
                duration_min=quote.duration_min,
                fare_cents=quote.fare_cents,
                currency=quote.currency,
                status="requested" if soon else "scheduled",
            ),
            call_id=caller.call_id,
            user_id=caller.user_id,
            user_name=caller.user_name,
            guild_id=caller.guild_id,
        )
        return _from_record(record)


def _from_record(record: RideRecord) -> Ride:
    quote = RideQuote(
        pickup=record.pickup,
        dropoff=record.dropoff,
        ride_type=record.ride_type,
        pickup_at=dt.datetime.fromtimestamp(record.pickup_at, dt.UTC),
        distance_km=record.distance_km,
        duration_min=record.duration_min,
        fare_cents=record.fare_cents,
        currency=record.currency,
    )
    return Ride(str(record.id), quote, record.status)
