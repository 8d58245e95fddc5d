"""An example booking and ride provider: the HTTP contract the bot calls, in memory, to copy.

    .venv/bin/python examples/provider_server.py --port 8080

then, in config.toml, `[providers.example_tables]` (`serves = "restaurants"`) and
`[providers.example_rides]` (`serves = "rides"`), both with `base_url = "http://127.0.0.1:8080"`, and
in a server `/config set setting:booking_provider value:example_tables` (docs/providers.md).
If the environment variable EXAMPLE_PROVIDER_KEY is set, every request must carry
`Authorization: Bearer <its value>` (give the bot the same variable with `api_key_env`).

The bot sends no schema of its own over the wire (its HTTP clients read fields one by one), so the
request models below are written here, with the bot's own limits and types (`MAX_PARTY_SIZE`,
`RideType`, the record names that make the paths) imported from `tools` so they cannot drift; they
forbid unknown fields, so a field the bot starts sending fails tests/test_example_providers.py.
Everything lives in this process's memory and is lost when it stops; a real service keeps it in a
database and does each check-then-write in one transaction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pydantic
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bot.tooling import ToolError
from tools.common import utc_now
from tools.fares import CURRENCY, RideType, fare_cents, trip_for
from tools.hours import SLOT_MINUTES, OpeningHours
from tools.places import KnownPlaces, straight_km
from tools.restaurants import tables_for
from tools.restaurants.arguments import MAX_NAME_CHARS, MAX_NOTES_CHARS, MAX_PARTY_SIZE
from tools.restaurants.model import RESERVATION
from tools.rides.arguments import MAX_PLACE_CHARS
from tools.rides.builtin import REQUESTED_WITHIN
from tools.rides.model import CANCEL_LOOKBACK, RIDE

log = logging.getLogger("example_provider")

KEY_VARIABLE = "EXAMPLE_PROVIDER_KEY"
PAST_GRACE = dt.timedelta(minutes=5)  # the bot sends "now" rides at its own now; clocks differ a little
Clock = Callable[[], dt.datetime]
M = TypeVar("M", bound=BaseModel)

# The HTTP status each error code is answered with. The bot reads the code and the message first;
# the status only matters for codes it does not know (docs/providers.md, "Errors").
STATUS_OF_CODE: Mapping[str, int] = {
    "not_found": 404,
    "not_yours": 403,
    "full": 409,
    "duplicate": 409,
    "already_cancelled": 409,
    "too_late": 409,
    "closed": 422,
    "off_slot": 422,
    "past_time": 422,
    "unknown_place": 422,
    "same_place": 422,
    "ambiguous": 422,
}


class ApiError(Exception):
    """An answer of the form {"error": {"code", "message"}}; the message is what the user reads."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_OF_CODE[code]

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message}}
        return web.json_response(body, status=self.status)


# ------------------------------------------------------------------------- what the bot sends


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Caller(Strict):
    """Who asked: Discord ids as strings; guild_id is null in a direct message."""

    user_id: str = Field(min_length=1)
    user_name: str
    guild_id: str | None


class RestaurantSearch(Strict):
    """GET /restaurants query: every part optional; time as ISO 8601 with an offset."""

    cuisine: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    area: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    party_size: int | None = Field(default=None, ge=1, le=MAX_PARTY_SIZE)
    time: AwareDatetime | None = None


class BookingBody(Caller):
    """POST /availability and POST /reservations."""

    restaurant: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    party_size: int = Field(ge=1, le=MAX_PARTY_SIZE)
    time: AwareDatetime
    notes: str = Field(max_length=MAX_NOTES_CHARS)


class RideBody(Strict):
    """POST /estimates (no caller: nothing is kept)."""

    pickup: str = Field(min_length=1, max_length=MAX_PLACE_CHARS)
    dropoff: str = Field(min_length=1, max_length=MAX_PLACE_CHARS)
    time: AwareDatetime
    ride_type: RideType


class RideOrderBody(RideBody, Caller):
    """POST /rides: the estimate's fields and the caller."""


class RecordsQuery(Strict):
    """GET /reservations and GET /rides: the caller's records in this guild (none: DMs) from `since`."""

    user_id: str = Field(min_length=1)
    guild_id: str | None = None
    since: AwareDatetime


class OwnerQuery(Strict):
    """GET and DELETE /<records>/{id}: who asks, so a record of someone else's is refused."""

    user_id: str = Field(min_length=1)


def parsed(model: type[M], data: Any) -> M:
    """`data` as `model`, or a 400 naming the first field that is wrong."""
    try:
        return model.model_validate_json(data) if isinstance(data, str) else model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError("invalid_request", f"{where}: {first['msg']}", status=400) from None


# -------------------------------------------------------------------------------- the records


@dataclass(frozen=True, slots=True)
class Restaurant:
    id: str
    name: str
    cuisine: str
    area: str
    hours: OpeningHours
    tables: int  # per half-hour slot; a table seats 4 (`tables_for`)
    tz: ZoneInfo


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    restaurant: Restaurant
    time: dt.datetime
    party_size: int
    notes: str
    status: str  # "confirmed" or "cancelled"
    user_id: str
    guild_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "restaurant": self.restaurant.name,
            "time": self.time.astimezone(self.restaurant.tz).isoformat(),
            "party_size": self.party_size,
            "notes": self.notes,
            "status": self.status,
            "user_id": self.user_id,
        }


@dataclass(frozen=True, slots=True)
class Quote:
    pickup: str
    dropoff: str
    ride_type: str
    time: dt.datetime
    distance_km: float
    duration_min: int
    fare_cents: int
    currency: str

    def to_json(self) -> dict[str, Any]:
        return {
            "pickup": self.pickup,
            "dropoff": self.dropoff,
            "ride_type": self.ride_type,
            "time": self.time.isoformat(),
            "distance_km": self.distance_km,
            "duration_min": self.duration_min,
            "fare_cents": self.fare_cents,
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class Ride:
    id: str
    quote: Quote
    status: str  # "requested" (within 15 min), "scheduled" or "cancelled"
    user_id: str
    guild_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.quote.to_json(), "status": self.status, "user_id": self.user_id}


BERLIN = ZoneInfo("Europe/Berlin")
DEMO_RESTAURANTS: tuple[Restaurant, ...] = (
    Restaurant(
        "r1", "Trattoria Roma", "italian", "Old Town", OpeningHours.parse("daily 12:00-23:00"), 3, BERLIN
    ),
    Restaurant("r2", "Sakura", "japanese", "Harbour", OpeningHours.parse("tue-sun 18:00-23:00"), 2, BERLIN),
    Restaurant(
        "r3", "Le Petit Bistro", "french", "City Centre", OpeningHours.parse("daily 18:00-22:30"), 1, BERLIN
    ),
)


# ---------------------------------------------------------------------------------- the service


class ExampleProvider:
    """Both families' endpoints over one in-memory state; `app()` serves them."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Clock = utc_now,
        restaurants: tuple[Restaurant, ...] = DEMO_RESTAURANTS,
    ) -> None:
        self._api_key = api_key
        self._now = clock
        self._restaurants = restaurants
        self._places = KnownPlaces()
        self._reservations: dict[str, Reservation] = {}
        self._rides: dict[str, Ride] = {}
        self._ids = itertools.count(1)
        self._replies: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        """Idempotency: (user_id, Idempotency-Key) -> the first successful answer, sent again."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_and_auth])
        reservations, rides = f"/{RESERVATION.plural}", f"/{RIDE.plural}"
        app.router.add_get("/restaurants", self.find_restaurants)
        app.router.add_post("/availability", self.check_availability)
        app.router.add_post(reservations, self.book)
        app.router.add_get(reservations, self.list_reservations)
        app.router.add_get(reservations + "/{id}", self.get_reservation)
        app.router.add_delete(reservations + "/{id}", self.cancel_reservation)
        app.router.add_post("/estimates", self.estimate)
        app.router.add_post(rides, self.order)
        app.router.add_get(rides, self.list_rides)
        app.router.add_get(rides + "/{id}", self.get_ride)
        app.router.add_delete(rides + "/{id}", self.cancel_ride)
        return app

    @web.middleware
    async def _errors_and_auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every failure in the contract's error shape; the key checked before anything else."""
        sent = request.headers.get("Authorization", "").encode()
        if self._api_key and not hmac.compare_digest(sent, f"Bearer {self._api_key}".encode()):
            return ApiError("unauthorized", "A valid bearer key is required.", status=401).response()
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPNotFound:
            return ApiError("not_found", f"There is no endpoint {request.path}.", status=404).response()
        except web.HTTPMethodNotAllowed:
            return ApiError(
                "invalid_request", f"{request.method} is not allowed here.", status=405
            ).response()

    # -- restaurants ------------------------------------------------------------------------------

    async def find_restaurants(self, request: web.Request) -> web.Response:
        search = parsed(RestaurantSearch, dict(request.query))
        found = [
            self._option(restaurant, search)
            for restaurant in self._restaurants
            if _matches(search.cuisine, restaurant.cuisine, restaurant.name)
            and _matches(search.area, restaurant.area)
        ]
        if found:
            return web.json_response({"restaurants": found})
        cuisines = ", ".join(sorted({r.cuisine for r in self._restaurants}))
        return web.json_response({"restaurants": [], "hint": f"Nothing matches; cuisines: {cuisines}."})

    async def check_availability(self, request: web.Request) -> web.Response:
        body = parsed(BookingBody, await request.text())
        restaurant, left = self._bookable(body)
        return web.json_response(
            {
                "restaurant": {"id": restaurant.id, "name": restaurant.name, "area": restaurant.area},
                "time": body.time.astimezone(restaurant.tz).isoformat(),
                "tables_left": left,
            }
        )

    async def book(self, request: web.Request) -> web.Response:
        body = parsed(BookingBody, await request.text())

        async def reserve() -> dict[str, Any]:
            restaurant, _ = self._bookable(body)
            reservation = Reservation(
                self._new_id("res"),
                restaurant,
                body.time,
                body.party_size,
                body.notes,
                "confirmed",
                body.user_id,
                body.guild_id,
            )
            self._reservations[reservation.id] = reservation
            return {RESERVATION.noun: reservation.to_json()}

        return await self._once(request, body.user_id, reserve, status=201)

    async def list_reservations(self, request: web.Request) -> web.Response:
        query = parsed(RecordsQuery, dict(request.query))
        mine = sorted(
            (
                r
                for r in self._reservations.values()
                if r.user_id == query.user_id
                and r.guild_id == query.guild_id
                and r.status == "confirmed"
                and r.time >= query.since
            ),
            key=lambda r: r.time,
        )
        return web.json_response({RESERVATION.plural: [r.to_json() for r in mine]})

    async def get_reservation(self, request: web.Request) -> web.Response:
        reservation = self._own_reservation(request)
        return web.json_response({RESERVATION.noun: reservation.to_json()})

    async def cancel_reservation(self, request: web.Request) -> web.Response:
        owner = parsed(OwnerQuery, dict(request.query))

        async def cancel() -> dict[str, Any]:
            reservation = self._own_reservation(request)
            if reservation.status == "cancelled":
                raise ApiError("already_cancelled", f"Reservation {reservation.id} was already cancelled.")
            if reservation.time <= self._now():
                raise ApiError("too_late", f"Reservation {reservation.id} is in the past.")
            cancelled = replace(reservation, status="cancelled")
            self._reservations[cancelled.id] = cancelled
            return {RESERVATION.noun: cancelled.to_json()}

        return await self._once(request, owner.user_id, cancel)

    def _option(self, restaurant: Restaurant, search: RestaurantSearch) -> dict[str, Any]:
        day = (search.time or self._now()).astimezone(restaurant.tz)
        option: dict[str, Any] = {
            "id": restaurant.id,
            "name": restaurant.name,
            "cuisine": restaurant.cuisine,
            "area": restaurant.area,
            "hours": restaurant.hours.describe_day(day.weekday()),
        }
        if search.time is None:
            return option
        try:
            self._check_seating(restaurant, search.time)
        except ApiError as exc:
            return {**option, "available": False, "reason": exc.code}
        left = restaurant.tables - self._tables_taken(restaurant, search.time)
        if left < tables_for(search.party_size or 1):
            return {**option, "available": False, "tables_left": left, "reason": "full"}
        return {**option, "available": True, "tables_left": left}

    def _bookable(self, body: BookingBody) -> tuple[Restaurant, int]:
        """The restaurant and its tables left at that time, or the reason it cannot be booked."""
        restaurant = self._restaurant(body.restaurant)
        self._check_seating(restaurant, body.time)
        if any(
            r.restaurant == restaurant and r.time == body.time and r.user_id == body.user_id
            for r in self._reservations.values()
            if r.status == "confirmed"
        ):
            raise ApiError("duplicate", f"You already have a table at {restaurant.name} then.")
        left = restaurant.tables - self._tables_taken(restaurant, body.time)
        if left < tables_for(body.party_size):
            local = body.time.astimezone(restaurant.tz)
            raise ApiError("full", f"{restaurant.name} has no table for {body.party_size} at {local:%H:%M}.")
        return restaurant, left

    def _restaurant(self, text: str) -> Restaurant:
        wanted = text.strip().lstrip("#").casefold()
        for restaurant in self._restaurants:
            if wanted in (restaurant.id.casefold(), restaurant.name.casefold()):
                return restaurant
        raise ApiError("not_found", f"There is no restaurant called {text!r} here.")

    def _check_seating(self, restaurant: Restaurant, time: dt.datetime) -> None:
        if time <= self._now():
            raise ApiError("past_time", "That time has already passed.")
        local = time.astimezone(restaurant.tz)
        if not restaurant.hours.seats_at(local.weekday(), local.hour * 60 + local.minute):
            hours = restaurant.hours.describe_day(local.weekday())
            raise ApiError(
                "closed", f"{restaurant.name} does not seat guests at {local:%H:%M} (hours: {hours})."
            )
        if local.minute % SLOT_MINUTES or local.second or local.microsecond:
            raise ApiError("off_slot", "Tables start on the hour or half hour.")

    def _tables_taken(self, restaurant: Restaurant, time: dt.datetime) -> int:
        return sum(
            tables_for(r.party_size)
            for r in self._reservations.values()
            if r.restaurant == restaurant and r.time == time and r.status == "confirmed"
        )

    def _own_reservation(self, request: web.Request) -> Reservation:
        owner = parsed(OwnerQuery, dict(request.query))
        reservation = self._reservations.get(request.match_info["id"])
        if reservation is None:
            raise ApiError("not_found", f"There is no reservation {request.match_info['id']}.")
        if reservation.user_id != owner.user_id:
            raise ApiError("not_yours", f"Reservation {reservation.id} belongs to someone else.")
        return reservation

    # -- rides ------------------------------------------------------------------------------------

    async def estimate(self, request: web.Request) -> web.Response:
        body = parsed(RideBody, await request.text())
        return web.json_response({"estimate": (await self._quote(body)).to_json()})

    async def order(self, request: web.Request) -> web.Response:
        body = parsed(RideOrderBody, await request.text())

        async def create() -> dict[str, Any]:
            quote = await self._quote(body)
            soon = quote.time - self._now() <= REQUESTED_WITHIN
            ride = Ride(
                self._new_id("ride"), quote, "requested" if soon else "scheduled", body.user_id, body.guild_id
            )
            self._rides[ride.id] = ride
            return {RIDE.noun: ride.to_json()}

        return await self._once(request, body.user_id, create, status=201)

    async def list_rides(self, request: web.Request) -> web.Response:
        query = parsed(RecordsQuery, dict(request.query))
        mine = sorted(
            (
                r
                for r in self._rides.values()
                if r.user_id == query.user_id
                and r.guild_id == query.guild_id
                and r.status != "cancelled"
                and r.quote.time >= query.since
            ),
            key=lambda r: r.quote.time,
        )
        return web.json_response({RIDE.plural: [r.to_json() for r in mine]})

    async def get_ride(self, request: web.Request) -> web.Response:
        return web.json_response({RIDE.noun: self._own_ride(request).to_json()})

    async def cancel_ride(self, request: web.Request) -> web.Response:
        owner = parsed(OwnerQuery, dict(request.query))

        async def cancel() -> dict[str, Any]:
            ride = self._own_ride(request)
            if ride.status == "cancelled":
                raise ApiError("already_cancelled", f"Ride {ride.id} was already cancelled.")
            if ride.quote.time < self._now() - CANCEL_LOOKBACK:
                raise ApiError("too_late", f"Ride {ride.id} is over.")
            cancelled = replace(ride, status="cancelled")
            self._rides[cancelled.id] = cancelled
            return {RIDE.noun: cancelled.to_json()}

        return await self._once(request, owner.user_id, cancel)

    async def _quote(self, body: RideBody) -> Quote:
        if body.time < self._now() - PAST_GRACE:
            raise ApiError("past_time", "That pickup time has already passed.")
        try:
            pickup = await self._places.locate(body.pickup)
            dropoff = await self._places.locate(body.dropoff)
        except ToolError as exc:  # unknown_place or ambiguous, with a sentence naming the places known
            raise ApiError(exc.code, exc.message) from None
        if pickup == dropoff:
            raise ApiError("same_place", f"Pickup and drop-off are both {pickup.name}.")
        trip = trip_for(straight_km(pickup, dropoff))
        return Quote(
            pickup.name,
            dropoff.name,
            body.ride_type,
            body.time,
            trip.km,
            trip.minutes,
            fare_cents(body.ride_type, trip),
            CURRENCY,
        )

    def _own_ride(self, request: web.Request) -> Ride:
        owner = parsed(OwnerQuery, dict(request.query))
        ride = self._rides.get(request.match_info["id"])
        if ride is None:
            raise ApiError("not_found", f"There is no ride {request.match_info['id']}.")
        if ride.user_id != owner.user_id:
            raise ApiError("not_yours", f"Ride {ride.id} belongs to someone else.")
        return ride

    # -- shared -----------------------------------------------------------------------------------

    async def _once(
        self,
        request: web.Request,
        user_id: str,
        act: Callable[[], Awaitable[dict[str, Any]]],
        *,
        status: int = 200,
    ) -> web.Response:
        """Run a write once per Idempotency-Key: a repeat gets the first success again, unchanged.

        A failure is not kept, so a retry after one is tried again. Each `act` does its checks and
        its write with no await between them, so two requests cannot interleave in this process; a
        real service stores the key with the write, in one transaction (a unique index on it).
        """
        key = request.headers.get("Idempotency-Key")
        if key and (user_id, key) in self._replies:
            first_status, payload = self._replies[(user_id, key)]
            return web.json_response(payload, status=first_status)
        payload = await act()
        if key:
            self._replies[(user_id, key)] = (status, payload)
        return web.json_response(payload, status=status)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"


def _matches(wanted: str | None, *fields: str) -> bool:
    return not wanted or any(wanted.casefold() in field.casefold() for field in fields)


def main() -> None:
    parser = argparse.ArgumentParser(description="An example booking and ride provider for the bot.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api_key = os.environ.get(KEY_VARIABLE, "").strip() or None
    log.info(
        "Bearer key %s", f"required ({KEY_VARIABLE})" if api_key else f"not required ({KEY_VARIABLE} unset)"
    )
    web.run_app(ExampleProvider(api_key=api_key).app(), host=options.host, port=options.port)


if __name__ == "__main__":
    main()
