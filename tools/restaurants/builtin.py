"""The built-in booking provider: the SQLite catalog and reservations (`bot.storage.bookings`).

Tables are booked on the half hour, within opening hours, the last seating an hour before closing;
a table seats 4, so a party of 10 takes 3 of the slot's tables; a user holds one reservation per
restaurant and slot; only the person who booked can cancel. Hours are in the restaurant's time
zone, or the guild's when the catalog does not say (the demo catalog). Each call sees the calling
guild's catalog only (`tools.restaurants.catalog`): its own restaurants, or the demo ones until it
has some; a restaurant of another guild is not found, by name or by id.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from zoneinfo import ZoneInfo

from bot.storage.bookings import BookingStore, ReservationRecord, RestaurantRecord
from bot.tooling import ToolContext, ToolError
from tools.common import parse_id
from tools.hours import SLOT_MINUTES, OpeningHours
from tools.owned import OwnedRows
from tools.restaurants.model import (
    MAX_FOUND,
    RESERVATION,
    BookingRequest,
    Found,
    Reservation,
    RestaurantOption,
    RestaurantQuery,
    Slot,
)
from tools.when import format_local

TABLE_SEATS = 4
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
        self.records = OwnedRows(
            RESERVATION,
            row=store.reservation,
            rows_of=store.reservations_for,
            cancel_row=store.cancel,
            record=_from_record,
        )

    async def find(self, query: RestaurantQuery, caller: ToolContext) -> Found:
        catalog = await self._store.restaurants(caller.guild_id)
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

    async def check(self, request: BookingRequest, caller: ToolContext) -> Slot:
        record = await self._resolve(request.restaurant, caller.guild_id)
        self._check_seating(record, request.starts_at, caller.tz)
        stamp = int(request.starts_at.timestamp())
        if await self._store.has_reservation(record.id, caller.user_id, stamp):
            raise _duplicate(record, request.starts_at, caller.tz)
        taken = await self._store.tables_taken(record.id, stamp)
        left = record.tables_per_slot - taken
        if left < tables_for(request.party_size):
            raise await self._full(record, request, caller.tz)
        return Slot(str(record.id), record.name, record.area, request.starts_at, left)

    async def book(self, request: BookingRequest, caller: ToolContext) -> Reservation:
        record = await self._resolve(request.restaurant, caller.guild_id)
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
        if result.outcome == "gone":
            raise ToolError("not_found", f"{record.name} was just removed from this server's restaurants.")
        assert result.reservation is not None
        return _from_record(result.reservation)

    async def _option(
        self, record: RestaurantRecord, query: RestaurantQuery, caller: ToolContext
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

    async def _resolve(self, text: str, guild_id: int | None) -> RestaurantRecord:
        """A restaurant of the guild's catalog by id, exact name, or a part of its name that fits only one."""
        catalog = await self._store.restaurants(guild_id)
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


def _duplicate(record: RestaurantRecord, starts_at: dt.datetime, tz: ZoneInfo) -> ToolError:
    return ToolError(
        "duplicate",
        f"You already have a table at {record.name} at {format_local(starts_at, tz)}.",
    )
