"""An external ride API as the ride provider.

Its contract, relative to the configured base URL (JSON; times ISO 8601 with offset;
`user_id`/`guild_id` Discord ids as strings):

    POST   /estimates {pickup, dropoff, time, ride_type} -> {"estimate": Q}
    POST   /rides {pickup, dropoff, time, ride_type, user_id, user_name, guild_id}
           (header Idempotency-Key: <call id>) -> {"ride": R}

and the caller's rides as in `tools/owned.py` (`GET /rides`, `GET` and `DELETE /rides/{id}`), where
Q = {pickup, dropoff, ride_type, time, distance_km, duration_min, fare_cents, currency} and
R = Q + {id, status, user_id?}. Errors: non-2xx with {"error": {"code", "message"}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import ProviderConfig
from bot.tooling import ToolContext, ToolError
from tools.owned import OwnedResource
from tools.providers import JsonApi, caller_identity, field, remote_datetime
from tools.rides.model import RIDE, Ride, RideQuote, RideRequest

WHAT = "ride service"


class HttpRideProvider:
    """An external ride API (contract in this module's docstring)."""

    def __init__(self, name: str, config: ProviderConfig, env: Mapping[str, str]) -> None:
        self._api = JsonApi(name=name, what=WHAT, config=config, env=env)
        self.records = OwnedResource(self._api, RIDE, _ride)

    async def estimate(self, request: RideRequest, caller: ToolContext) -> RideQuote:
        payload = await self._api.call("POST", "/estimates", body=_body(request))
        return _quote(field(payload, "estimate", WHAT), caller.tz)

    async def order(self, request: RideRequest, caller: ToolContext) -> Ride:
        payload = await self._api.call(
            "POST",
            "/rides",
            body={**_body(request), **caller_identity(caller)},
            idempotency_key=caller.call_id,
        )
        return self.records.from_answer(payload, caller)


def _body(request: RideRequest) -> dict[str, Any]:
    return {
        "pickup": request.pickup,
        "dropoff": request.dropoff,
        "time": request.pickup_at.isoformat(),
        "ride_type": request.ride_type,
    }


def _quote(item: Any, tz: ZoneInfo) -> RideQuote:
    if not isinstance(item, dict):
        raise ToolError("unavailable", f"The {WHAT} sent an unreadable estimate.")
    try:
        return RideQuote(
            pickup=str(field(item, "pickup", WHAT)),
            dropoff=str(field(item, "dropoff", WHAT)),
            ride_type=str(field(item, "ride_type", WHAT)),
            pickup_at=remote_datetime(field(item, "time", WHAT), tz, WHAT),
            distance_km=float(field(item, "distance_km", WHAT)),
            duration_min=int(field(item, "duration_min", WHAT)),
            fare_cents=int(field(item, "fare_cents", WHAT)),
            currency=str(field(item, "currency", WHAT)),
        )
    except (TypeError, ValueError):
        raise ToolError("unavailable", f"The {WHAT} sent an unreadable estimate.") from None


def _ride(item: Mapping[str, Any], tz: ZoneInfo) -> Ride:
    return Ride(
        id=str(field(item, "id", WHAT)),
        quote=_quote(item, tz),
        status=str(field(item, "status", WHAT)),
    )
