"""The four ride tools, over whichever provider the guild's `ride_provider` names.

They check what is common to every provider (pickup time readable, not in the past, at most 30
days ahead; no time means now); the provider prices and keeps the rides. Listing and cancelling
are the shared `tools.owned` tools.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from bot.tooling import ConfirmationRequest, Tool, ToolContext, ToolError, ToolResult
from tools.common import CallMemo, Clock, confirmation, future_time
from tools.fares import RideType
from tools.owned import OwnedRecordTools
from tools.providers import ProviderDirectory
from tools.rides.arguments import CancelRideArgs, EstimateRideArgs, ListRidesArgs, OrderRideArgs
from tools.rides.model import METERED_FARE, RIDE, RideProvider, RideRequest
from tools.when import format_local

FAMILY = "rides"
MAX_RIDE_AHEAD = dt.timedelta(days=30)
NOW_GRACE = dt.timedelta(minutes=5)  # "in the past" by less than this means "now"
LIST_LOOKBACK = dt.timedelta(hours=1)  # rides that started this recently are still listed
DEFAULT_RIDE_TYPE: RideType = "standard"


class RideTools:
    """Estimating and ordering here; the caller's rides through `OwnedRecordTools`."""

    def __init__(self, providers: ProviderDirectory[RideProvider], clock: Clock) -> None:
        self._providers = providers
        self._clock = clock
        self._pinned: CallMemo[dt.datetime] = CallMemo()
        self._rides = OwnedRecordTools(
            RIDE,
            FAMILY,
            providers,
            clock,
            list_lookback=LIST_LOOKBACK,
        )

    def tools(self) -> Sequence[Tool[Any]]:
        return (
            Tool(
                name="estimate_ride",
                family=FAMILY,
                description=(
                    "Price a ride without ordering it: distance, duration and fare for a pickup and "
                    "drop-off (place names or street addresses), optionally at a time and ride type. "
                    "Use it when the user asks what a ride would cost. A result with a `question` "
                    "means a place is unclear: ask the user that question."
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
                    "out. A result with a `question` means a place is unclear and nothing was ordered: "
                    "ask the user that question, then call again with their choice. On an error, "
                    "explain it or fix the arguments and try again. Never claim a ride the result "
                    "does not confirm."
                ),
                arguments=OrderRideArgs,
                handler=self.order,
                activity="Ordering a ride",
                side_effect=True,
                preview=self.preview_order,
            ),
            *self._rides.tools(
                list_description="The user's upcoming and current rides ordered here, with their ids.",
                list_arguments=ListRidesArgs,
                cancel_arguments=CancelRideArgs,
            ),
        )

    async def estimate(self, args: EstimateRideArgs, context: ToolContext) -> ToolResult:
        provider = self._providers.for_call(context)
        quote = await provider.estimate(self._request(args, context, pinned=None), context)
        return ToolResult.success(
            {"estimate": quote.to_json(context.tz)},
            f"{quote.pickup} → {quote.dropoff}: "
            + (f"fare {METERED_FARE}" if quote.metered else f"about {quote.fare_text()}"),
        )

    async def preview_order(self, args: OrderRideArgs, context: ToolContext) -> ConfirmationRequest:
        request = self._request(args, context, pinned=None)
        quote = await self._providers.for_call(context).estimate(request, context)
        if args.time is not None:
            self._pinned.put(context.call_id, request.pickup_at)
        when = "Now" if args.time is None else format_local(quote.pickup_at, context.tz)
        return confirmation(
            context,
            "order_ride",
            f"Order a ride to {quote.dropoff}?",
            (
                ("Pickup", quote.pickup),
                ("Drop-off", quote.dropoff),
                ("When", when),
                ("Ride", quote.ride_type.capitalize() if quote.ride_type != "xl" else "XL"),
                ("Fare", METERED_FARE) if quote.metered else ("Fare estimate", quote.trip_text()),
            ),
        )

    async def order(self, args: OrderRideArgs, context: ToolContext) -> ToolResult:
        request = self._request(args, context, pinned=self._pinned.take(context.call_id))
        ride = await self._providers.for_call(context).order(request, context)
        return ToolResult.success(
            {"ordered": True, "ride": ride.to_json(context.tz)},
            f"Ride to {ride.quote.dropoff} {ride.status} ({ride.quote.fare_text()})",
        )

    def _request(
        self, args: EstimateRideArgs | OrderRideArgs, context: ToolContext, *, pinned: dt.datetime | None
    ) -> RideRequest:
        now = self._clock()
        if args.pickup.casefold() == args.dropoff.casefold():
            raise ToolError("same_place", "Pickup and drop-off are the same place.")
        if pinned is not None:
            pickup_at = max(pinned, now)
        elif args.time is None:
            pickup_at = now
        else:
            pickup_at = future_time(
                args.time, now=now, tz=context.tz, max_ahead=MAX_RIDE_AHEAD, grace=NOW_GRACE
            )
        ride_type: RideType = args.ride_type or DEFAULT_RIDE_TYPE
        return RideRequest(args.pickup, args.dropoff, pickup_at, ride_type, now)
