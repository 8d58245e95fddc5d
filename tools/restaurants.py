"""Restaurant booking: find a restaurant, book a table (after the user confirms), list, cancel.

Tools check what is common to every provider (the time is readable, in the future, not too far
ahead; the party is 1-20); a provider checks the rest and keeps the state:

- `BuiltinBookingProvider` (the default): the SQLite catalog and reservations. Tables are booked on
  the half hour, within opening hours, the last seating an hour before closing; a table seats 4,
  so a party of 10 takes 3 of the slot's tables; a user holds one reservation per restaurant and
  slot; only the person who booked can cancel. Hours are in the restaurant's time zone, or the
  guild's when the catalog does not say (the demo catalog).
- `HttpBookingProvider`: an external booking API. Its contract, relative to the configured base URL
  (JSON everywhere; times ISO 8601 with offset; `user_id`/`guild_id` are Discord ids as strings):
    GET    /restaurants?cuisine&area&party_size&time -> {"restaurants": [{id, name, cuisine, area,
           hours, available?, tables_left?, reason?}], "hint"?}
    POST   /availability {restaurant, party_size, time, notes, user_id, user_name, guild_id}
           -> {"restaurant": {id, name, area}, "time", "tables_left"?}
    POST   /reservations (same body; header Idempotency-Key: <call id>) -> {"reservation": R}
    GET    /reservations?user_id&guild_id&since -> {"reservations": [R...]}
    GET    /reservations/{id}?user_id -> {"reservation": R}
    DELETE /reservations/{id}?user_id -> {"reservation": R}
  where R = {id, restaurant, time, party_size, notes?, status, user_id?}. Errors: a non-2xx status
  with {"error": {"code", "message"}}; codes as in `tools.providers.PASS_THROUGH_CODES`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config import ProviderConfig
from bot.storage.bookings import BookingStore, ReservationRecord, RestaurantRecord
from bot.tooling import ConfirmationRequest, Tool, ToolContext, ToolResult
from tools.common import Caller, CallMemo, Clock, ToolError, future_time, local_iso, parse_id
from tools.hours import SLOT_MINUTES, OpeningHours
from tools.providers import JsonApi, ProviderDirectory, field, remote_datetime
from tools.when import format_local

FAMILY = "restaurants"
MAX_PARTY_SIZE = 20
TABLE_SEATS = 4
MAX_BOOKING_AHEAD = dt.timedelta(days=90)
MAX_FOUND = 10
MAX_NOTES_CHARS = 200
MAX_NAME_CHARS = 100
NEARBY_SLOTS = 4  # alternatives offered when a slot is full: up to 2 h either side

# What people ask for, mapped to the catalog's cuisines.
CUISINE_SYNONYMS: Mapping[str, str] = {
    "pizza": "italian",
    "pasta": "italian",
    "sushi": "japanese",
    "ramen": "japanese",
    "curry": "indian",
    "tacos": "mexican",
    "taco": "mexican",
    "bbq": "barbecue",
    "steak": "barbecue",
    "vegan": "vegetarian",
    "veggie": "vegetarian",
    "dim sum": "chinese",
    "bistro": "french",
}


# ------------------------------------------------------------------------------------- arguments


def _clean_text(value: str | None, *, limit: int, what: str) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters")
    return value or None


class FindRestaurantsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cuisine: str | None = Field(default=None, description="Kind of food, e.g. italian, sushi, vegetarian.")
    area: str | None = Field(default=None, description="Neighbourhood, e.g. Old Town, Harbour.")
    party_size: int | None = Field(
        default=None, ge=1, le=MAX_PARTY_SIZE, description="Number of people, to check for a free table."
    )
    time: str | None = Field(
        default=None,
        description="When, to check for a free table: ISO 8601 local time (2026-05-01T20:00) or the "
        "user's words ('tomorrow at 8pm').",
    )

    @field_validator("cuisine", "area", "time")
    @classmethod
    def _short(cls, value: str | None) -> str | None:
        return _clean_text(value, limit=MAX_NAME_CHARS, what="this text")


class BookRestaurantArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    restaurant: str = Field(description="The restaurant's id or exact name (from find_restaurants).")
    party_size: int = Field(ge=1, le=MAX_PARTY_SIZE, description="Number of people, 1-20.")
    time: str = Field(
        description="When: ISO 8601 local time like 2026-05-01T20:00, or the user's words like "
        "'tomorrow at 8pm'. Tables start on the hour or half hour."
    )
    notes: str | None = Field(
        default=None, description="Optional request for the restaurant, e.g. 'window seat'."
    )

    @field_validator("restaurant", "time")
    @classmethod
    def _required(cls, value: str) -> str:
        cleaned = _clean_text(value, limit=MAX_NAME_CHARS, what="this text")
        if not cleaned:
            raise ValueError("must not be empty")
        return cleaned

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str | None) -> str | None:
        return _clean_text(value, limit=MAX_NOTES_CHARS, what="notes")


class ListReservationsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CancelReservationArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reservation_id: str = Field(
        description="The reservation's id, from book_restaurant or list_reservations."
    )

    @field_validator("reservation_id")
    @classmethod
    def _id(cls, value: str) -> str:
        cleaned = value.strip().lstrip("#")
        if not cleaned or len(cleaned) > MAX_NAME_CHARS:
            raise ValueError("must be a reservation id like '12'")
        return cleaned


# ---------------------------------------------------------------------------- provider interface


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


class BookingProvider(Protocol):
    """Where bookings go. Every method raises `ToolError` for anything the user should hear about."""

    async def find(self, query: RestaurantQuery, caller: Caller) -> Found: ...

    async def check(self, request: BookingRequest, caller: Caller) -> Slot:
        """Whether the booking could be made now (used to build the confirmation)."""
        ...

    async def book(self, request: BookingRequest, caller: Caller) -> Reservation: ...

    async def reservations(self, caller: Caller, *, since: dt.datetime) -> list[Reservation]: ...

    async def reservation(self, reservation_id: str, caller: Caller) -> Reservation:
        """The caller's own reservation (`not_found` / `not_yours` otherwise)."""
        ...

    async def cancel(self, reservation_id: str, caller: Caller) -> Reservation: ...


# ------------------------------------------------------------------------------ built-in provider


def _normalise(text: str) -> str:
    text = text.lower().replace("center", "centre").replace("&", " and ")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(word for word in text.split() if word not in {"the", "a", "an"})


def tables_for(party_size: int) -> int:
    """Tables a party needs (a table seats `TABLE_SEATS`)."""
    return math.ceil(party_size / TABLE_SEATS)


class BuiltinBookingProvider:
    """The SQLite catalog and reservations (`bot.storage.bookings`)."""

    def __init__(self, store: BookingStore) -> None:
        self._store = store

    async def find(self, query: RestaurantQuery, caller: Caller) -> Found:
        catalog = await self._store.restaurants()
        cuisine = _normalise(query.cuisine) if query.cuisine else None
        if cuisine:
            cuisine = CUISINE_SYNONYMS.get(cuisine, cuisine)
        area = _normalise(query.area) if query.area else None
        matches = [
            record
            for record in catalog
            if (not cuisine or cuisine in _normalise(record.cuisine) or cuisine in _normalise(record.name))
            and (not area or area in _normalise(record.area) or _normalise(record.area) in area)
        ]
        options = [await self._option(record, query, caller) for record in matches]
        options.sort(key=lambda option: option.available is False)  # free ones first, else by name
        hint = None
        if not options:
            hint = (
                f"Nothing matches. Cuisines: {', '.join(sorted({r.cuisine for r in catalog}))}. "
                f"Areas: {', '.join(sorted({r.area for r in catalog}))}."
            )
        return Found(options[:MAX_FOUND], hint)

    async def check(self, request: BookingRequest, caller: Caller) -> Slot:
        record = await self._resolve(request.restaurant)
        self._check_seating(record, request.starts_at, caller.tz)
        stamp = int(request.starts_at.timestamp())
        if await self._store.has_reservation(record.id, caller.user_id, stamp):
            raise _duplicate(record, request.starts_at, caller.tz)
        taken = await self._store.tables_taken(record.id, stamp)
        left = record.tables_per_slot - taken
        if left < tables_for(request.party_size):
            raise await self._full(record, request, caller.tz)
        return Slot(str(record.id), record.name, record.area, request.starts_at, left)

    async def book(self, request: BookingRequest, caller: Caller) -> Reservation:
        record = await self._resolve(request.restaurant)
        self._check_seating(record, request.starts_at, caller.tz)
        result = await self._store.reserve(
            call_id=caller.call_id,
            restaurant_id=record.id,
            user_id=caller.user_id,
            user_name=caller.user_name,
            guild_id=caller.guild_id,
            starts_at=int(request.starts_at.timestamp()),
            party_size=request.party_size,
            tables=tables_for(request.party_size),
            notes=request.notes,
            capacity=record.tables_per_slot,
        )
        if result.outcome == "duplicate":
            raise _duplicate(record, request.starts_at, caller.tz)
        if result.outcome == "full":
            raise await self._full(record, request, caller.tz)
        assert result.reservation is not None
        return _from_record(result.reservation)

    async def reservations(self, caller: Caller, *, since: dt.datetime) -> list[Reservation]:
        records = await self._store.reservations_for(
            caller.user_id, caller.guild_id, since=int(since.timestamp())
        )
        return [_from_record(record) for record in records]

    async def reservation(self, reservation_id: str, caller: Caller) -> Reservation:
        record = await self._store.reservation(_numeric_id(reservation_id))
        if record is None:
            raise _reservation_not_found(reservation_id)
        if record.user_id != caller.user_id:
            raise _not_yours(reservation_id)
        return _from_record(record)

    async def cancel(self, reservation_id: str, caller: Caller) -> Reservation:
        result = await self._store.cancel(_numeric_id(reservation_id), user_id=caller.user_id)
        if result.outcome == "not_found":
            raise _reservation_not_found(reservation_id)
        if result.outcome == "not_yours":
            raise _not_yours(reservation_id)
        if result.outcome == "already_cancelled":
            raise ToolError("already_cancelled", f"Reservation {reservation_id} was already cancelled.")
        assert result.reservation is not None
        return _from_record(result.reservation)

    async def _option(
        self, record: RestaurantRecord, query: RestaurantQuery, caller: Caller
    ) -> RestaurantOption:
        tz = _zone(record, caller.tz)
        day = (query.starts_at or query.now).astimezone(tz)
        hours = OpeningHours.parse(record.opening_hours)
        option = RestaurantOption(
            str(record.id), record.name, record.cuisine, record.area, hours.describe_day(day.weekday())
        )
        if query.starts_at is None:
            return option
        try:
            self._check_seating(record, query.starts_at, caller.tz)
        except ToolError as exc:
            return replace(option, available=False, reason=exc.code)
        taken = await self._store.tables_taken(record.id, int(query.starts_at.timestamp()))
        left = record.tables_per_slot - taken
        needed = tables_for(query.party_size or 1)
        if left < needed:
            return replace(option, available=False, tables_left=max(left, 0), reason="full")
        return replace(option, available=True, tables_left=left)

    async def _resolve(self, text: str) -> RestaurantRecord:
        """A restaurant by id, exact name, or a part of its name that fits only one."""
        catalog = await self._store.restaurants()
        wanted = text.strip().lstrip("#")
        number = parse_id(wanted)
        if number is not None:
            for record in catalog:
                if record.id == number:
                    return record
        target = _normalise(wanted)
        exact = [record for record in catalog if _normalise(record.name) == target]
        if exact:
            return exact[0]
        partial = [
            record
            for record in catalog
            if target and (target in _normalise(record.name) or _normalise(record.name) in target)
        ]
        if len(partial) == 1:
            return partial[0]
        if partial:
            names = ", ".join(record.name for record in partial[:5])
            raise ToolError("ambiguous", f"{text!r} could be {names}; use the exact name or id.")
        raise ToolError(
            "not_found", f"There is no restaurant called {text!r}; use find_restaurants to see what exists."
        )

    def _check_seating(self, record: RestaurantRecord, starts_at: dt.datetime, guild_tz: ZoneInfo) -> None:
        tz = _zone(record, guild_tz)
        local = starts_at.astimezone(tz)
        hours = OpeningHours.parse(record.opening_hours)
        minute = local.hour * 60 + local.minute
        if not hours.seats_at(local.weekday(), minute):
            raise ToolError(
                "closed",
                f"{record.name} does not seat guests at {local:%H:%M} on {local:%A}s "
                f"(hours: {hours.describe_day(local.weekday())}; last seating an hour before closing).",
            )
        if minute % SLOT_MINUTES or local.second or local.microsecond:
            earlier = local.replace(
                minute=local.minute - local.minute % SLOT_MINUTES, second=0, microsecond=0
            )
            later = earlier + dt.timedelta(minutes=SLOT_MINUTES)
            raise ToolError(
                "off_slot",
                f"Tables start on the hour or half hour; try {earlier:%H:%M} or {later:%H:%M}.",
            )

    async def _full(self, record: RestaurantRecord, request: BookingRequest, guild_tz: ZoneInfo) -> ToolError:
        """A 'full' error naming nearby slots that still have room, so the model can offer them."""
        needed = tables_for(request.party_size)
        free: list[str] = []
        tz = _zone(record, guild_tz)
        for step in range(1, NEARBY_SLOTS + 1):
            for sign in (-1, 1):
                moment = request.starts_at + sign * step * dt.timedelta(minutes=SLOT_MINUTES)
                if moment <= request.now:
                    continue
                try:
                    self._check_seating(record, moment, guild_tz)
                except ToolError:
                    continue
                taken = await self._store.tables_taken(record.id, int(moment.timestamp()))
                if record.tables_per_slot - taken >= needed:
                    free.append(moment.astimezone(tz).strftime("%H:%M"))
        when = format_local(request.starts_at, guild_tz)
        suggestion = f" Free nearby: {', '.join(sorted(free))}." if free else ""
        return ToolError(
            "full", f"{record.name} has no table for {request.party_size} at {when}.{suggestion}"
        )


def _zone(record: RestaurantRecord, guild_tz: ZoneInfo) -> ZoneInfo:
    return ZoneInfo(record.timezone) if record.timezone else guild_tz


def _from_record(record: ReservationRecord) -> Reservation:
    return Reservation(
        id=str(record.id),
        restaurant=record.restaurant_name,
        starts_at=dt.datetime.fromtimestamp(record.starts_at, dt.UTC),
        party_size=record.party_size,
        notes=record.notes,
        status=record.status,
    )


def _numeric_id(reservation_id: str) -> int:
    number = parse_id(reservation_id)
    if number is None:
        raise _reservation_not_found(reservation_id)
    return number


def _duplicate(record: RestaurantRecord, starts_at: dt.datetime, tz: ZoneInfo) -> ToolError:
    return ToolError(
        "duplicate",
        f"You already have a table at {record.name} at {format_local(starts_at, tz)}.",
    )


def _reservation_not_found(reservation_id: str) -> ToolError:
    return ToolError(
        "not_found", f"There is no reservation {reservation_id}; list_reservations shows the user's own."
    )


def _not_yours(reservation_id: str) -> ToolError:
    return ToolError(
        "not_yours", f"Reservation {reservation_id} belongs to someone else; only they can change it."
    )


# ---------------------------------------------------------------------------------- HTTP provider


class HttpBookingProvider:
    """An external booking API (contract in this module's docstring)."""

    WHAT = "booking service"

    def __init__(self, name: str, config: ProviderConfig, env: Mapping[str, str]) -> None:
        self._api = JsonApi(name=name, what=self.WHAT, config=config, env=env)

    async def find(self, query: RestaurantQuery, caller: Caller) -> Found:
        params = {
            key: value
            for key, value in {
                "cuisine": query.cuisine,
                "area": query.area,
                "party_size": None if query.party_size is None else str(query.party_size),
                "time": None if query.starts_at is None else query.starts_at.isoformat(),
            }.items()
            if value is not None
        }
        payload = await self._api.call("GET", "/restaurants", params=params)
        items = field(payload, "restaurants", self.WHAT)
        if not isinstance(items, list):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable list.")
        options = [self._option(item) for item in items[:MAX_FOUND] if isinstance(item, dict)]
        hint = payload.get("hint")
        return Found(options, str(hint) if hint else None)

    async def check(self, request: BookingRequest, caller: Caller) -> Slot:
        payload = await self._api.call("POST", "/availability", body=self._body(request, caller))
        restaurant = field(payload, "restaurant", self.WHAT)
        if not isinstance(restaurant, dict):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable answer.")
        left = payload.get("tables_left")
        return Slot(
            restaurant_id=str(field(restaurant, "id", self.WHAT)),
            restaurant_name=str(field(restaurant, "name", self.WHAT)),
            area=str(restaurant.get("area") or ""),
            starts_at=remote_datetime(
                payload.get("time") or request.starts_at.isoformat(), caller.tz, self.WHAT
            ),
            tables_left=int(left) if isinstance(left, int) else None,
        )

    async def book(self, request: BookingRequest, caller: Caller) -> Reservation:
        payload = await self._api.call(
            "POST", "/reservations", body=self._body(request, caller), idempotency_key=caller.call_id
        )
        return self._reservation(field(payload, "reservation", self.WHAT), caller)

    async def reservations(self, caller: Caller, *, since: dt.datetime) -> list[Reservation]:
        items = await self._api.records_of(caller, "/reservations", "reservations", since=since)
        return [self._reservation(item, caller) for item in items]

    async def reservation(self, reservation_id: str, caller: Caller) -> Reservation:
        payload = await self._api.record_of(caller, "GET", "/reservations", reservation_id)
        return self._reservation(field(payload, "reservation", self.WHAT), caller, reservation_id)

    async def cancel(self, reservation_id: str, caller: Caller) -> Reservation:
        payload = await self._api.record_of(caller, "DELETE", "/reservations", reservation_id)
        return self._reservation(field(payload, "reservation", self.WHAT), caller, reservation_id)

    def _body(self, request: BookingRequest, caller: Caller) -> dict[str, Any]:
        return {
            "restaurant": request.restaurant,
            "party_size": request.party_size,
            "time": request.starts_at.isoformat(),
            "notes": request.notes,
            **caller.identity(),
        }

    def _option(self, item: Mapping[str, Any]) -> RestaurantOption:
        available = item.get("available")
        left = item.get("tables_left")
        return RestaurantOption(
            id=str(field(item, "id", self.WHAT)),
            name=str(field(item, "name", self.WHAT)),
            cuisine=str(item.get("cuisine") or ""),
            area=str(item.get("area") or ""),
            hours=str(item.get("hours") or ""),
            available=available if isinstance(available, bool) else None,
            tables_left=left if isinstance(left, int) else None,
            reason=str(item["reason"]) if item.get("reason") else None,
        )

    def _reservation(self, item: Any, caller: Caller, expected_id: str | None = None) -> Reservation:
        if not isinstance(item, dict):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable reservation.")
        owner = item.get("user_id")
        if owner is not None and str(owner) != str(caller.user_id):  # never show or touch another's
            raise _not_yours(expected_id or str(item.get("id")))
        try:
            return Reservation(
                id=str(field(item, "id", self.WHAT)),
                restaurant=str(field(item, "restaurant", self.WHAT)),
                starts_at=remote_datetime(field(item, "time", self.WHAT), caller.tz, self.WHAT),
                party_size=int(field(item, "party_size", self.WHAT)),
                notes=str(item.get("notes") or ""),
                status=str(field(item, "status", self.WHAT)),
            )
        except (TypeError, ValueError):
            raise ToolError("unavailable", f"The {self.WHAT} sent an unreadable reservation.") from None


# ------------------------------------------------------------------------------------------ tools


class RestaurantTools:
    """The four booking tools, over whichever provider the guild's `booking_provider` names."""

    def __init__(self, providers: ProviderDirectory[BookingProvider], clock: Clock) -> None:
        self._providers = providers
        self._clock = clock
        self._pinned: CallMemo[dt.datetime] = CallMemo()

    def tools(self) -> Sequence[Tool[Any]]:
        return (
            Tool(
                name="find_restaurants",
                family=FAMILY,
                description=(
                    "Search the restaurants that can be booked, by cuisine and/or area (both optional). "
                    "Give party_size and time to see whether a table is free then. Returns ids, names, "
                    "the hours that day and availability. Use it before book_restaurant unless the user "
                    "named an exact restaurant."
                ),
                arguments=FindRestaurantsArgs,
                handler=self.find,
                activity="Looking for restaurants",
            ),
            Tool(
                name="book_restaurant",
                family=FAMILY,
                description=(
                    "Book a table for the user you are talking to (who they are comes from Discord). "
                    "The user sees the details and must press Confirm first; the result says whether "
                    "it was booked, declined or timed out. Times are in the server's time zone; tables "
                    "start on the hour or half hour. On an error, explain it or fix the arguments and "
                    "try again. Never claim a booking the result does not confirm."
                ),
                arguments=BookRestaurantArgs,
                handler=self.book,
                activity="Booking a table",
                side_effect=True,
                preview=self.preview_book,
            ),
            Tool(
                name="list_reservations",
                family=FAMILY,
                description="The user's upcoming table reservations made here, with their ids.",
                arguments=ListReservationsArgs,
                handler=self.list_reservations,
                activity="Checking reservations",
            ),
            Tool(
                name="cancel_reservation",
                family=FAMILY,
                description=(
                    "Cancel one of the user's own reservations by id (see list_reservations). The user "
                    "confirms first. Other people's reservations cannot be cancelled."
                ),
                arguments=CancelReservationArgs,
                handler=self.cancel,
                activity="Cancelling a reservation",
                side_effect=True,
                preview=self.preview_cancel,
            ),
        )

    async def find(self, args: FindRestaurantsArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        now = self._clock()
        try:
            starts_at = None
            if args.time is not None:
                starts_at = future_time(args.time, now=now, tz=caller.tz, max_ahead=MAX_BOOKING_AHEAD)
            query = RestaurantQuery(args.cuisine, args.area, args.party_size, starts_at, now)
            found = await self._provider(context).find(query, caller)
        except ToolError as exc:
            return exc.to_result()
        data: dict[str, Any] = {"restaurants": [option.to_json() for option in found.options]}
        if starts_at is not None:
            data["time"] = local_iso(starts_at, caller.tz)
        if found.hint:
            data["hint"] = found.hint
        return ToolResult.success(data, f"Found {len(found.options)} restaurants")

    async def preview_book(
        self, args: BookRestaurantArgs, context: ToolContext
    ) -> ConfirmationRequest | ToolResult:
        caller = Caller.from_context(context)
        try:
            request = self._request(args, caller, pinned=None)
            slot = await self._provider(context).check(request, caller)
        except ToolError as exc:
            return exc.to_result()
        self._pinned.put(context.call_id, request.starts_at)
        place = f"{slot.restaurant_name} · {slot.area}" if slot.area else slot.restaurant_name
        fields = [
            ("Restaurant", place),
            ("Party", _people(args.party_size)),
            ("When", format_local(request.starts_at, caller.tz)),
        ]
        if args.notes:
            fields.append(("Notes", args.notes))
        return ConfirmationRequest(
            tool_name="book_restaurant",
            call_id=context.call_id,
            user_id=context.user_id,
            title=f"Book a table at {slot.restaurant_name}?",
            fields=tuple(fields),
        )

    async def book(self, args: BookRestaurantArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            request = self._request(args, caller, pinned=self._pinned.take(context.call_id))
            reservation = await self._provider(context).book(request, caller)
        except ToolError as exc:
            return exc.to_result()
        when = format_local(reservation.starts_at, caller.tz)
        return ToolResult.success(
            {"booked": True, "reservation": reservation.to_json(caller.tz)},
            f"Booked {reservation.restaurant} for {reservation.party_size}, {when}",
        )

    async def list_reservations(self, args: ListReservationsArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            found = await self._provider(context).reservations(caller, since=self._clock())
        except ToolError as exc:
            return exc.to_result()
        return ToolResult.success(
            {"reservations": [reservation.to_json(caller.tz) for reservation in found]},
            f"{len(found)} upcoming reservations",
        )

    async def preview_cancel(
        self, args: CancelReservationArgs, context: ToolContext
    ) -> ConfirmationRequest | ToolResult:
        caller = Caller.from_context(context)
        try:
            reservation = await self._cancellable(args.reservation_id, context, caller)
        except ToolError as exc:
            return exc.to_result()
        return ConfirmationRequest(
            tool_name="cancel_reservation",
            call_id=context.call_id,
            user_id=context.user_id,
            title=f"Cancel your table at {reservation.restaurant}?",
            fields=(
                ("Reservation", f"#{reservation.id}"),
                ("Party", _people(reservation.party_size)),
                ("When", format_local(reservation.starts_at, caller.tz)),
            ),
        )

    async def cancel(self, args: CancelReservationArgs, context: ToolContext) -> ToolResult:
        caller = Caller.from_context(context)
        try:
            await self._cancellable(args.reservation_id, context, caller)
            reservation = await self._provider(context).cancel(args.reservation_id, caller)
        except ToolError as exc:
            return exc.to_result()
        return ToolResult.success(
            {"cancelled": True, "reservation": reservation.to_json(caller.tz)},
            f"Cancelled the table at {reservation.restaurant}",
        )

    async def _cancellable(self, reservation_id: str, context: ToolContext, caller: Caller) -> Reservation:
        reservation = await self._provider(context).reservation(reservation_id, caller)
        if reservation.status == "cancelled":
            raise ToolError("already_cancelled", f"Reservation {reservation_id} is already cancelled.")
        if reservation.starts_at <= self._clock():
            raise ToolError(
                "too_late", f"Reservation {reservation_id} is in the past; it cannot be cancelled."
            )
        return reservation

    def _request(
        self, args: BookRestaurantArgs, caller: Caller, *, pinned: dt.datetime | None
    ) -> BookingRequest:
        now = self._clock()
        if pinned is None:
            starts_at = future_time(args.time, now=now, tz=caller.tz, max_ahead=MAX_BOOKING_AHEAD)
        elif pinned <= now:
            raise ToolError(
                "past_time", f"{format_local(pinned, caller.tz)} passed while waiting to confirm."
            )
        else:
            starts_at = pinned
        return BookingRequest(args.restaurant, args.party_size, starts_at, args.notes or "", now)

    def _provider(self, context: ToolContext) -> BookingProvider:
        return self._providers.get(context.settings.booking_provider)


def _people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"
