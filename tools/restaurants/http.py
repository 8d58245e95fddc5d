"""An external booking API as the booking provider.

Its contract, relative to the configured base URL (JSON everywhere; times ISO 8601 with offset;
`user_id`/`guild_id` are Discord ids as strings):

    GET    /restaurants?cuisine&area&party_size&time -> {"restaurants": [{id, name, cuisine, area,
           hours, available?, tables_left?, reason?}], "hint"?}
    POST   /availability {restaurant, party_size, time, notes, user_id, user_name, guild_id}
           -> {"restaurant": {id, name, area}, "time", "tables_left"?}
    POST   /reservations (same body; header Idempotency-Key: <call id>) -> {"reservation": R}

and the caller's reservations as in `tools/owned.py` (`GET /reservations`, `GET` and `DELETE
/reservations/{id}`), where R = {id, restaurant, time, party_size, notes?, status, user_id?}.
Errors: a non-2xx status with {"error": {"code", "message"}}; codes as in
`tools.providers.PASS_THROUGH_CODES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import ProviderConfig
from bot.tooling import ToolContext, ToolError
from tools.owned import OwnedResource
from tools.providers import JsonApi, caller_identity, field, remote_datetime
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

WHAT = "booking service"


class HttpBookingProvider:
    """An external booking API (contract in this module's docstring)."""

    def __init__(self, name: str, config: ProviderConfig, env: Mapping[str, str]) -> None:
        self._api = JsonApi(name=name, what=WHAT, config=config, env=env)
        self.records = OwnedResource(self._api, RESERVATION, _reservation)

    async def find(self, query: RestaurantQuery, caller: ToolContext) -> Found:
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
        items = field(payload, "restaurants", WHAT)
        if not isinstance(items, list):
            raise ToolError("unavailable", f"The {WHAT} sent an unreadable list.")
        options = [_option(item) for item in items[:MAX_FOUND] if isinstance(item, dict)]
        hint = payload.get("hint")
        return Found(options, str(hint) if hint else None)

    async def check(self, request: BookingRequest, caller: ToolContext) -> Slot:
        payload = await self._api.call("POST", "/availability", body=_body(request, caller))
        restaurant = field(payload, "restaurant", WHAT)
        if not isinstance(restaurant, dict):
            raise ToolError("unavailable", f"The {WHAT} sent an unreadable answer.")
        left = payload.get("tables_left")
        return Slot(
            restaurant_id=str(field(restaurant, "id", WHAT)),
            restaurant_name=str(field(restaurant, "name", WHAT)),
            area=str(restaurant.get("area") or ""),
            starts_at=remote_datetime(payload.get("time") or request.starts_at.isoformat(), caller.tz, WHAT),
            tables_left=int(left) if isinstance(left, int) else None,
        )

    async def book(self, request: BookingRequest, caller: ToolContext) -> Reservation:
        payload = await self._api.call(
            "POST", "/reservations", body=_body(request, caller), idempotency_key=caller.call_id
        )
        return self.records.from_answer(payload, caller)


def _body(request: BookingRequest, caller: ToolContext) -> dict[str, Any]:
    return {
        "restaurant": request.restaurant,
        "party_size": request.party_size,
        "time": request.starts_at.isoformat(),
        "notes": request.notes,
        **caller_identity(caller),
    }


def _option(item: Mapping[str, Any]) -> RestaurantOption:
    available = item.get("available")
    left = item.get("tables_left")
    return RestaurantOption(
        id=str(field(item, "id", WHAT)),
        name=str(field(item, "name", WHAT)),
        cuisine=str(item.get("cuisine") or ""),
        area=str(item.get("area") or ""),
        hours=str(item.get("hours") or ""),
        available=available if isinstance(available, bool) else None,
        tables_left=left if isinstance(left, int) else None,
        reason=str(item["reason"]) if item.get("reason") else None,
    )


def _reservation(item: Mapping[str, Any], tz: ZoneInfo) -> Reservation:
    return Reservation(
        id=str(field(item, "id", WHAT)),
        restaurant=str(field(item, "restaurant", WHAT)),
        starts_at=remote_datetime(field(item, "time", WHAT), tz, WHAT),
        party_size=int(field(item, "party_size", WHAT)),
        notes=str(item.get("notes") or ""),
        status=str(field(item, "status", WHAT)),
    )
