"""Ride ordering: estimate a fare, order a ride (after the user confirms), list, cancel.

Tools check what is common to every provider (pickup time readable, not in the past, at most 30
days ahead; no time means now); a provider prices and keeps the rides:

- `BuiltinRideProvider` (the default): places from a `Geocoder` (the known-places table unless
  another is given), fares from `tools.fares` (its docstring is the fare model), rides in SQLite.
  A ride for within `REQUESTED_WITHIN` is `requested`, a later one `scheduled`; cancelled rides are
  `cancelled`. Only the person who ordered a ride can cancel it.
- `HttpRideProvider`: an external ride API. Its contract, relative to the configured base URL (JSON;
  times ISO 8601 with offset; `user_id`/`guild_id` Discord ids as strings):
    POST   /estimates {pickup, dropoff, time, ride_type} -> {"estimate": Q}
    POST   /rides {pickup, dropoff, time, ride_type, user_id, user_name, guild_id}
           (header Idempotency-Key: <call id>) -> {"ride": R}
    GET    /rides?user_id&guild_id&since -> {"rides": [R...]}
    GET    /rides/{id}?user_id -> {"ride": R}
    DELETE /rides/{id}?user_id -> {"ride": R}
  where Q = {pickup, dropoff, ride_type, time, distance_km, duration_min, fare_cents, currency} and
  R = Q + {id, status, user_id?}. Errors: non-2xx with {"error": {"code", "message"}}.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config import ProviderConfig
from bot.storage.rides import NewRide, RideRecord, RideStore
from bot.tooling import ConfirmationRequest, Tool, ToolContext, ToolResult
from tools.common import Caller, CallMemo, Clock, ToolError, future_time, local_iso, parse_id
from tools.fares import CURRENCY, RideType, fare_cents, format_money, trip_for
from tools.places import Geocoder, straight_km
from tools.providers import JsonApi, ProviderDirectory, field, remote_datetime
from tools.when import format_local

FAMILY = "rides"
MAX_RIDE_AHEAD = dt.timedelta(days=30)
NOW_GRACE = dt.timedelta(minutes=5)  # "in the past" by less than this means "now"
REQUESTED_WITHIN = dt.timedelta(minutes=15)  # sooner than this is a ride now, not a scheduled one
LIST_LOOKBACK = dt.timedelta(hours=1)  # rides that started this recently are still listed
CANCEL_LOOKBACK = dt.timedelta(hours=1)  # and can still be cancelled
MAX_PLACE_CHARS = 200
DEFAULT_RIDE_TYPE: RideType = "standard"


# ------------------------------------------------------------------------------------- arguments


def _place(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("must not be empty")
    if len(cleaned) > MAX_PLACE_CHARS:
        raise ValueError(f"must be at most {MAX_PLACE_CHARS} characters")
    return cleaned


class _RideArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pickup: str = Field(description="Where to be picked up: a place name or address.")
    dropoff: str = Field(description="Where to go: a place name or address, e.g. Airport.")
    time: str | None = Field(
        default=None,
        description="Pickup time: ISO 8601 local time (2026-05-01T07:30) or the user's words "
        "('tomorrow at 7am', 'in 20 minutes'); null means now.",
    )
    ride_type: RideType | None = Field(
        default=None, description="standard (4 seats, default), comfort (4 seats, nicer car) or xl (6 seats)."
    )

    @field_validator("pickup", "dropoff")
    @classmethod
    def _places(cls, value: str) -> str:
        return _place(value)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = " ".join(value.split())
        if len(cleaned) > MAX_PLACE_CHARS:
            raise ValueError(f"must be at most {MAX_PLACE_CHARS} characters")
        return cleaned or None


class EstimateRideArgs(_RideArgs):
    pass


class OrderRideArgs(_RideArgs):
    pass


class ListRidesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CancelRideArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ride_id: str = Field(description="The ride's id, from order_ride or list_rides.")

    @field_validator("ride_id")
    @classmethod
    def _id(cls, value: str) -> str:
        cleaned = value.strip().lstrip("#")
        if not cleaned or len(cleaned) > MAX_PLACE_CHARS:
            raise ValueError("must be a ride id like '3'")
        return cleaned


# ---------------------------------------------------------------------------- provider interface


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


class RideProvider(Protocol):
    """Where rides go. Every method raises `ToolError` for anything the user should hear about."""

    async def estimate(self, request: RideRequest, caller: Caller) -> RideQuote: ...

    async def order(self, request: RideRequest, caller: Caller) -> Ride: ...

    async def rides(self, caller: Caller, *, since: dt.datetime) -> list[Ride]: ...

    async def ride(self, ride_id: str, caller: Caller) -> Ride:
        """The caller's own ride (`not_found` / `not_yours` otherwise)."""
        ...

    async def cancel(self, ride_id: str, caller: Caller) -> Ride: ...


# ------------------------------------------------------------------------------ built-in provider


class BuiltinRideProvider:
    """Known places, the documented fare model, and rides in SQLite."""

    def __init__(self, store: RideStore, geocoder: Geocoder) -> None:
        self._store = store
        self._geocoder = geocoder

    async def estimate(self, request: RideRequest, caller: Caller) -> RideQuote:
        pickup = await self._geocoder.locate(request.pickup)
        dropoff = await self._geocoder.locate(request.dropoff)
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

    async def order(self, request: RideRequest, caller: Caller) -> Ride:
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

    async def rides(self, caller: Caller, *, since: dt.datetime) -> list[Ride]:
        records = await self._store.rides_for(caller.user_id, caller.guild_id, since=int(since.timestamp()))
        return [_from_record(record) for record in records]

    async def ride(self, ride_id: str, caller: Caller) -> Ride:
        record = await self._store.ride(_numeric_id(ride_id))
        if record is None:
            raise _ride_not_found(ride_id)
        if record.user_id != caller.user_id:
            raise _not_yours(ride_id)
        return _from_record(record)

    async def cancel(self, ride_id: str, caller: Caller) -> Ride:
        result = await self._store.cancel(_numeric_id(ride_id), user_id=caller.user_id)
        if result.outcome == "not_found":
            raise _ride_not_found(ride_id)
        if result.outcome == "not_yours":
            raise _not_yours(ride_id)
        if result.outcome == "already_cancelled":
            raise ToolError("already_cancelled", f"Ride {ride_id} was already cancelled.")
        assert result.ride is not None
        return _from_record(result.ride)


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


def _numeric_id(ride_id: str) -> int:
    number = parse_id(ride_id)
    if number is None:
        raise _ride_not_found(ride_id)
    return number


def _ride_not_found(ride_id: str) -> ToolError:
    return ToolError("not_found", f"There is no ride {ride_id}; list_rides shows the user's own.")


def _not_yours(ride_id: str) -> ToolError:
    return ToolError("not_yours", f"Ride {ride_id} belongs to someone else; only they can change it.")


# ---------------------------------------------------------------------------------- HTTP provider


class HttpRideProvider:
    """An external ride API (contract in this module's docstring)."""

    WHAT = "ride service"

    def __init__(self, name: str, config: ProviderConfig, env: Mapping[str, str]) -> None:
        self._api = JsonApi(name=name, what=self.WHAT, config=config, env=env)

    async def estimate(self, request: RideRequest, caller: Caller) -> RideQuote:
        payload = await self._api.call("POST", "/estimates", body=self._body(request))
        return self._quote(field(payload, "estimate", self.WHAT), caller.tz)

    async def order(self, request: RideRequest, caller: Caller) -> Ride:
        payload = await self._api.call(
            "POST",
            "/rides",
            body={**self._body(request), **caller.identity()},
            idempotency_key=caller.call_id,
        )
        return self._ride(field(payload, "ride", self.WHAT), caller)

    async def rides(self, caller: Caller, *, since: dt.datetime) -> list[Ride]:
        items = await self._api.records_of(caller, "/rides", "rides", since=since)
        return [self._ride(item, caller) for item in items]

    async def ride(self, ride_id: str, caller: Caller) -> Ride:
        payload = await self._api.record_of(caller, "GET", "/rides", ride_id)
        return self._ride(field(payload, "ride", self.WHAT), caller, ride_id)

    async def cancel(self, ride_id: str, caller: Caller) -> Ride:
        payload = await self._api.record_of(caller, "DELETE", "/rides", ride_id)
        return self._ride(field(payload, "ride", self.WHAT), caller, ride_id)

    def _body(self, request: RideRequest) -> dict[str, Any]:
        return {
            "pickup": request.pickup,
            "dropoff": request.dropoff,
            "time": request.pickup_at.isoformat(),
            "ride_type": request.ride_type,
        }

    def _quote(self, item: Any, tz: ZoneInfo) -> RideQuote:
        if not isinstance(item, dict):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable estimate.")
        try:
            return RideQuote(
                pickup=str(field(item, "pickup", self.WHAT)),
                dropoff=str(field(item, "dropoff", self.WHAT)),
                ride_type=str(field(item, "ride_type", self.WHAT)),
                pickup_at=remote_datetime(field(item, "time", self.WHAT), tz, self.WHAT),
                distance_km=float(field(item, "distance_km", self.WHAT)),
                duration_min=int(field(item, "duration_min", self.WHAT)),
                fare_cents=int(field(item, "fare_cents", self.WHAT)),
                currency=str(field(item, "currency", self.WHAT)),
            )
        except (TypeError, ValueError):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable estimate.") from None

    def _ride(self, item: Any, caller: Caller, expected_id: str | None = None) -> Ride:
        if not isinstance(item, dict):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable ride.")
        owner = item.get("user_id")
        if owner is not None and str(owner) != str(caller.user_id):  # never show or touch another's
            raise _not_yours(expected_id or str(item.get("id")))
        return Ride(
            id=str(field(item, "id", self.WHAT)),
            quote=self._quote(item, caller.tz),
            status=str(field(item, "status", self.WHAT)),
        )


# ------------------------------------------------------------------------------------------ tools


class RideTools:
    """The four ride tools, over whichever provider the guild's `ride_provider` names."""

    def __init__(self, providers: ProviderDirectory[RideProvider], clock: Clock) -> None:
        self._providers = providers
        self._clock = clock
        self._pinned: CallMemo[dt.datetime] = CallMemo()

    def tools(self) -> Sequence[Tool[Any]]:
        return (
            Tool(
                name="estimate_ride",
                family=FAMILY,
                description=(
                    "Price a ride without ordering it: distance, duration and fare for a pickup and "
                    "drop-off, optionally at a time and ride type. Use it when the user asks what a "
                    "ride would cost."
                ),
                arguments=EstimateRideArgs,
                handler=self.estimate,
                activity="Estimating a ride",
            ),
            Tool(
                name="order_ride",
                family=FAMILY,
                description=(
                    "Order a ride for the user you are talking to (who they are comes from Discord). "
                    "time null means now. The user sees pickup, drop-off, time and the fare and must "
                    "press Confirm first; the result says whether it was ordered, declined or timed "
                    "out. On an error, explain it or fix the arguments and try again. Never claim a "
                    "ride the result does not confirm."
                ),
                arguments=OrderRideArgs,
                handler=self.order,
                activity="Ordering a ride",
                side_effect=True,
                preview=self.preview_order,
            ),
            Tool(
                name="list_rides",
                family=FAMILY,
                description="The user's upcoming and current rides ordered here, with their ids.",
                arguments=ListRidesArgs,
                handler=self.list_rides,
                activity="Checking rides",
            ),
            Tool(
                name="cancel_ride",
                family=FAMILY,
                description=(
                    "Cancel one of the user's own rides by id (see list_rides). The user confirms first. "
                    "Other people's rides cannot be cancelled."
                ),
                arguments=CancelRideArgs,
                handler=self.cancel,
                activity="Cancelling a ride",
                side_effect=True,
                preview=self.preview_cancel,
            ),
        )

    async def estimate(self, args: EstimateRideArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            quote = await self._provider(context).estimate(self._request(args, caller, pinned=None), caller)
        except ToolError as exc:
            return exc.to_result()
        return ToolResult.success(
            {"estimate": quote.to_json(caller.tz)},
            f"{quote.pickup} → {quote.dropoff}: about {quote.fare_text()}",
        )

    async def preview_order(
        self, args: OrderRideArgs, context: ToolContext
    ) -> ConfirmationRequest | ToolResult:
        caller = Caller.from_context(context)
        try:
            request = self._request(args, caller, pinned=None)
            quote = await self._provider(context).estimate(request, caller)
        except ToolError as exc:
            return exc.to_result()
        if args.time is not None:
            self._pinned.put(context.call_id, request.pickup_at)
        when = "Now" if args.time is None else format_local(quote.pickup_at, caller.tz)
        return ConfirmationRequest(
            tool_name="order_ride",
            call_id=context.call_id,
            user_id=context.user_id,
            title=f"Order a ride to {quote.dropoff}?",
            fields=(
                ("Pickup", quote.pickup),
                ("Drop-off", quote.dropoff),
                ("When", when),
                ("Ride", quote.ride_type.capitalize() if quote.ride_type != "xl" else "XL"),
                (
                    "Fare estimate",
                    f"{quote.fare_text()} · {quote.distance_km:.1f} km · ~{quote.duration_min} min",
                ),
            ),
        )

    async def order(self, args: OrderRideArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            request = self._request(args, caller, pinned=self._pinned.take(context.call_id))
            ride = await self._provider(context).order(request, caller)
        except ToolError as exc:
            return exc.to_result()
        return ToolResult.success(
            {"ordered": True, "ride": ride.to_json(caller.tz)},
            f"Ride to {ride.quote.dropoff} {ride.status} ({ride.quote.fare_text()})",
        )

    async def list_rides(self, args: ListRidesArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            found = await self._provider(context).rides(caller, since=self._clock() - LIST_LOOKBACK)
        except ToolError as exc:
            return exc.to_result()
        return ToolResult.success(
            {"rides": [ride.to_json(caller.tz) for ride in found]}, f"{len(found)} rides"
        )

    async def preview_cancel(
        self, args: CancelRideArgs, context: ToolContext
    ) -> ConfirmationRequest | ToolResult:
        caller = Caller.from_context(context)
        try:
            ride = await self._cancellable(args.ride_id, context, caller)
        except ToolError as exc:
            return exc.to_result()
        return ConfirmationRequest(
            tool_name="cancel_ride",
            call_id=context.call_id,
            user_id=context.user_id,
            title=f"Cancel your ride to {ride.quote.dropoff}?",
            fields=(
                ("Ride", f"#{ride.id}"),
                ("Pickup", ride.quote.pickup),
                ("When", format_local(ride.quote.pickup_at, caller.tz)),
            ),
        )

    async def cancel(self, args: CancelRideArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            await self._cancellable(args.ride_id, context, caller)
            ride = await self._provider(context).cancel(args.ride_id, caller)
        except ToolError as exc:
            return exc.to_result()
        return ToolResult.success(
            {"cancelled": True, "ride": ride.to_json(caller.tz)},
            f"Cancelled the ride to {ride.quote.dropoff}",
        )

    async def _cancellable(self, ride_id: str, context: ToolContext, caller: Caller) -> Ride:
        ride = await self._provider(context).ride(ride_id, caller)
        if ride.status == "cancelled":
            raise ToolError("already_cancelled", f"Ride {ride_id} is already cancelled.")
        if ride.quote.pickup_at < self._clock() - CANCEL_LOOKBACK:
            raise ToolError("too_late", f"Ride {ride_id} is over; it cannot be cancelled.")
        return ride

    def _request(self, args: _RideArgs, caller: Caller, *, pinned: dt.datetime | None) -> RideRequest:
        now = self._clock()
        if args.pickup.casefold() == args.dropoff.casefold():
            raise ToolError("same_place", "Pickup and drop-off are the same place.")
        if pinned is not None:
            pickup_at = max(pinned, now)
        elif args.time is None:
            pickup_at = now
        else:
            pickup_at = future_time(
                args.time, now=now, tz=caller.tz, max_ahead=MAX_RIDE_AHEAD, grace=NOW_GRACE
            )
        ride_type: RideType = args.ride_type or DEFAULT_RIDE_TYPE
        return RideRequest(args.pickup, args.dropoff, pickup_at, ride_type, now)

    def _provider(self, context: ToolContext) -> RideProvider:
        return self._providers.get(context.settings.ride_provider)
