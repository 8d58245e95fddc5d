"""What the model sends to the booking tools: each model is the single source of its tool's schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.common import required_text, tidy_text
from tools.owned import RecordArgs, record_id
from tools.restaurants.model import RESERVATION

MAX_PARTY_SIZE = 20
MAX_NOTES_CHARS = 200
MAX_NAME_CHARS = 100


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
        return tidy_text(value, limit=MAX_NAME_CHARS, what="this text")


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
        return required_text(value, limit=MAX_NAME_CHARS, what="this text")

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str | None) -> str | None:
        return tidy_text(value, limit=MAX_NOTES_CHARS, what="notes")


class ListReservationsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


ReservationId = Annotated[str, record_id(RESERVATION, "12", max_chars=MAX_NAME_CHARS)]


class CancelReservationArgs(RecordArgs):
    reservation_id: ReservationId = Field(
        description="The reservation's id, from book_restaurant or list_reservations."
    )

    @property
    def record_id(self) -> str:
        return self.reservation_id
