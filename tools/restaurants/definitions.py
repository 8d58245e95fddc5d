"""The four booking tools, over whichever provider the guild's `booking_provider` names.

They check what is common to every provider (the time is readable, in the future, not too far
ahead); the provider checks the rest. Listing and cancelling are the shared `tools.owned` tools.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from bot.tooling import ConfirmationRequest, Tool, ToolContext, ToolError, ToolResult
from tools.common import CallMemo, Clock, confirmation, future_time, local_iso
from tools.owned import OwnedRecordTools
from tools.providers import ProviderDirectory
from tools.restaurants.arguments import (
    BookRestaurantArgs,
    CancelReservationArgs,
    FindRestaurantsArgs,
    ListReservationsArgs,
)
from tools.restaurants.model import RESERVATION, BookingProvider, BookingRequest, RestaurantQuery, people
from tools.when import format_local

FAMILY = "restaurants"
MAX_BOOKING_AHEAD = dt.timedelta(days=90)


class RestaurantTools:
    """Finding and booking here; the caller's reservations through `OwnedRecordTools`."""

    def __init__(self, providers: ProviderDirectory[BookingProvider], clock: Clock) -> None:
        self._providers = providers
        self._clock = clock
        self._pinned: CallMemo[dt.datetime] = CallMemo()
        self._reservations = OwnedRecordTools(RESERVATION, FAMILY, providers, clock)

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
            *self._reservations.tools(
                list_description="The user's upcoming table reservations made here, with their ids.",
                list_arguments=ListReservationsArgs,
                cancel_arguments=CancelReservationArgs,
            ),
        )

    async def find(self, args: FindRestaurantsArgs, context: ToolContext) -> ToolResult:
        now = self._clock()
        starts_at = None
        if args.time is not None:
            starts_at = future_time(args.time, now=now, tz=context.tz, max_ahead=MAX_BOOKING_AHEAD)
        query = RestaurantQuery(args.cuisine, args.area, args.party_size, starts_at, now)
        found = await self._providers.for_call(context).find(query, context)
        data: dict[str, Any] = {"restaurants": [option.to_json() for option in found.options]}
        if starts_at is not None:
            data["time"] = local_iso(starts_at, context.tz)
        if found.hint:
            data["hint"] = found.hint
        return ToolResult.success(data, f"Found {len(found.options)} restaurants")

    async def preview_book(self, args: BookRestaurantArgs, context: ToolContext) -> ConfirmationRequest:
        request = self._request(args, context, pinned=None)
        slot = await self._providers.for_call(context).check(request, context)
        self._pinned.put(context.call_id, request.starts_at)
        place = f"{slot.restaurant_name} · {slot.area}" if slot.area else slot.restaurant_name
        fields = [
            ("Restaurant", place),
            ("Party", people(args.party_size)),
            ("When", format_local(request.starts_at, context.tz)),
        ]
        if args.notes:
            fields.append(("Notes", args.notes))
        return confirmation(context, "book_restaurant", f"Book a table at {slot.restaurant_name}?", fields)

    async def book(self, args: BookRestaurantArgs, context: ToolContext) -> ToolResult:
        request = self._request(args, context, pinned=self._pinned.take(context.call_id))
        reservation = await self._providers.for_call(context).book(request, context)
        when = format_local(reservation.starts_at, context.tz)
        return ToolResult.success(
            {"booked": True, "reservation": reservation.to_json(context.tz)},
            f"Booked {reservation.restaurant} for {reservation.party_size}, {when}",
        )

    def _request(
        self, args: BookRestaurantArgs, context: ToolContext, *, pinned: dt.datetime | None
    ) -> BookingRequest:
        now = self._clock()
        if pinned is None:
            starts_at = future_time(args.time, now=now, tz=context.tz, max_ahead=MAX_BOOKING_AHEAD)
        elif pinned <= now:
            raise ToolError(
                "past_time", f"{format_local(pinned, context.tz)} passed while waiting to confirm."
            )
        else:
            starts_at = pinned
        return BookingRequest(args.restaurant, args.party_size, starts_at, args.notes or "", now)
