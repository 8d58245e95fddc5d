"""Ride orders (the built-in ride provider's state): one row per ride, cancellable by its owner.

Fares are stored as quoted when ordered (integer cents), so a later change to the fare model never
rewrites what a user agreed to; a metered ride (a place that could not be located, so no estimate)
has no distance, duration or fare. Times are unix seconds (UTC).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from bot.storage.database import Connection, Database, Row
from bot.storage.owned import CancelResult, cancel_owned

RideStatus = Literal["requested", "scheduled", "cancelled"]


@dataclass(frozen=True, slots=True)
class RideRecord:
    id: int
    call_id: str | None
    user_id: int
    user_name: str
    guild_id: int | None
    pickup: str
    dropoff: str
    ride_type: str
    pickup_at: int
    distance_km: float | None  # None (all three): metered, no estimate
    duration_min: int | None
    fare_cents: int | None
    currency: str
    status: RideStatus
    created_at: float


@dataclass(frozen=True, slots=True)
class NewRide:
    """A priced ride, ready to be stored."""

    pickup: str
    dropoff: str
    ride_type: str
    pickup_at: int
    distance_km: float | None  # None (all three): metered, no estimate
    duration_min: int | None
    fare_cents: int | None
    currency: str
    status: RideStatus

    @property
    def metered(self) -> bool:
        return self.fare_cents is None


def _ride(row: Row) -> RideRecord:
    metered = bool(row["metered"])
    return RideRecord(
        id=row["id"],
        call_id=row["call_id"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        guild_id=row["guild_id"],
        pickup=row["pickup"],
        dropoff=row["dropoff"],
        ride_type=row["ride_type"],
        pickup_at=row["pickup_at"],
        distance_km=None if metered else row["distance_km"],
        duration_min=None if metered else row["duration_min"],
        fare_cents=None if metered else row["fare_cents"],
        currency=row["currency"],
        status=row["status"],
        created_at=row["created_at"],
    )


class RideStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, ride: NewRide, *, call_id: str, user_id: int, user_name: str, guild_id: int | None
    ) -> tuple[RideRecord, bool]:
        """Store an order; the same call id returns the ride it already made (and False).

        The call id's key is held to commit, so a second process with the same call waits and finds it.
        """
        async with self._db.transaction() as connection:
            await connection.lock_key(f"rides:call:{call_id}")
            earlier = await _ride_where(connection, "call_id = ?", call_id)
            if earlier is not None:
                return earlier, False
            ride_id = await connection.execute_insert(
                "INSERT INTO rides (call_id, user_id, user_name, guild_id, pickup, dropoff, ride_type,"
                " pickup_at, distance_km, duration_min, fare_cents, metered, currency, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id,
                    user_id,
                    user_name,
                    guild_id,
                    ride.pickup,
                    ride.dropoff,
                    ride.ride_type,
                    ride.pickup_at,
                    ride.distance_km or 0.0,
                    ride.duration_min or 0,
                    ride.fare_cents or 0,
                    1 if ride.metered else 0,
                    ride.currency,
                    ride.status,
                    time.time(),
                ),
            )
            created = await _ride_where(connection, "id = ?", ride_id)
        assert created is not None
        return created, True

    async def ride(self, ride_id: int) -> RideRecord | None:
        async with self._db.read() as connection:
            return await _ride_where(connection, "id = ?", ride_id)

    async def rides_for(
        self, user_id: int, guild_id: int | None, *, since: int, limit: int = 25
    ) -> list[RideRecord]:
        """A user's open rides ordered in this guild (or in DMs), picked up from `since` on."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT * FROM rides WHERE user_id = ? AND guild_id IS ? AND status != 'cancelled'"
                " AND pickup_at >= ? ORDER BY pickup_at, id LIMIT ?",
                (user_id, guild_id, since, limit),
            )
            rows = await cursor.fetchall()
        return [_ride(row) for row in rows]

    async def cancel(self, ride_id: int, *, user_id: int) -> CancelResult[RideRecord]:
        """Cancel one's own ride; someone else's is refused."""
        async with self._db.transaction() as connection:
            return await cancel_owned(
                connection, table="rides", record_id=ride_id, user_id=user_id, read=_ride_by_id
            )


async def _ride_where(connection: Connection, condition: str, value: object) -> RideRecord | None:
    cursor = await connection.execute(f"SELECT * FROM rides WHERE {condition}", (value,))
    row = await cursor.fetchone()
    return _ride(row) if row else None


async def _ride_by_id(connection: Connection, ride_id: int) -> RideRecord | None:
    return await _ride_where(connection, "id = ?", ride_id)
