"""What the model sends to the ride tools: each model is the single source of its tool's schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.common import required_text, tidy_text
from tools.fares import RideType
from tools.owned import RecordArgs, record_id
from tools.rides.model import RIDE

MAX_PLACE_CHARS = 200


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
        return required_text(value, limit=MAX_PLACE_CHARS)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return tidy_text(value, limit=MAX_PLACE_CHARS)


class EstimateRideArgs(_RideArgs):
    pass


class OrderRideArgs(_RideArgs):
    pass


class ListRidesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


RideId = Annotated[str, record_id(RIDE, "3", max_chars=MAX_PLACE_CHARS)]


class CancelRideArgs(RecordArgs):
    ride_id: RideId = Field(description="The ride's id, from order_ride or list_rides.")

    @property
    def record_id(self) -> str:
        return self.ride_id
