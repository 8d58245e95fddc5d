"""The restaurant catalog and its reservations (the built-in booking provider's state).

The rules that must hold under concurrency live in the transactions here: a slot's tables are
counted and the reservation inserted in one step (under the slot's `lock_key`, so also across
processes sharing PostgreSQL), one user holds at most one reservation per restaurant and slot, and
only the owner can cancel. Everything else (hours, time parsing) is the
booking tool's business. Times are unix seconds (UTC).

Catalogs are per guild: a guild sees its own restaurants once it has any (also removed ones), the
shared demo catalog (`guild_id` NULL) until then, and DMs always see the demo one. A change to a
guild's catalog is decided and written under the guild's `lock_key`, with its audit, in one
transaction (`change_catalog`); what is allowed is the catalog service's business
(`tools.restaurants.catalog`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from bot.storage.database import Connection, Database, Row
from bot.storage.owned import CancelResult, cancel_owned

ReservationStatus = Literal["confirmed", "cancelled"]
CatalogAction = Literal["add", "edit", "remove"]


@dataclass(frozen=True, slots=True)
class RestaurantFields:
    """What an admin sets for a restaurant (validated before it gets here: `RestaurantEntry`)."""

    name: str
    cuisine: str
    area: str
    opening_hours: str  # see tools/hours.py for the form
    tables_per_slot: int
    timezone: str | None  # None: the guild's time zone


@dataclass(frozen=True, slots=True)
class RestaurantRecord:
    id: int
    name: str
    cuisine: str
    area: str
    opening_hours: str  # see tools/hours.py for the form
    tables_per_slot: int
    timezone: str | None  # None: the guild's time zone (the demo catalog)
    active: bool
    guild_id: int | None = None  # None: the shared demo catalog

    @property
    def fields(self) -> RestaurantFields:
        return RestaurantFields(
            self.name, self.cuisine, self.area, self.opening_hours, self.tables_per_slot, self.timezone
        )


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """A guild's own catalog as a change finds it, under the guild's lock."""

    restaurants: list[RestaurantRecord]  # active ones, by name
    upcoming: Mapping[int, int]  # restaurant id -> confirmed reservations from now on
    has_own: bool  # False: the guild still sees the demo catalog


@dataclass(frozen=True, slots=True)
class RestaurantWrite:
    """One row to write: no id adds `fields`; no fields removes the row (kept for its reservations)."""

    restaurant_id: int | None
    fields: RestaurantFields | None


@dataclass(frozen=True, slots=True)
class RestaurantChange:
    """One audited change: who, what, and the entry before and after."""

    guild_id: int
    user_id: int
    restaurant_id: int
    action: CatalogAction
    name: str
    old: RestaurantFields | None  # None: added
    new: RestaurantFields | None  # None: removed
    at: float


@dataclass(frozen=True, slots=True)
class ReservationRecord:
    id: int
    call_id: str | None
    restaurant_id: int
    restaurant_name: str
    user_id: int
    user_name: str
    guild_id: int | None
    starts_at: int
    party_size: int
    tables: int
    notes: str
    status: ReservationStatus
    created_at: float


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """`booked` (new), `repeat` (this call id already booked it), `full`, `duplicate`, or `gone`
    (the restaurant was removed from its catalog meanwhile)."""

    outcome: Literal["booked", "repeat", "full", "duplicate", "gone"]
    reservation: ReservationRecord | None = None
    tables_left: int = 0


_RESERVATION_COLUMNS = (
    "r.id, r.call_id, r.restaurant_id, x.name AS restaurant_name, r.user_id, r.user_name, r.guild_id,"
    " r.starts_at, r.party_size, r.tables, r.notes, r.status, r.created_at"
)
_RESERVATION_FROM = "reservations r JOIN restaurants x ON x.id = r.restaurant_id"


def _restaurant(row: Row) -> RestaurantRecord:
    return RestaurantRecord(
        id=row["id"],
        name=row["name"],
        cuisine=row["cuisine"],
        area=row["area"],
        opening_hours=row["opening_hours"],
        tables_per_slot=row["tables_per_slot"],
        timezone=row["timezone"],
        active=bool(row["active"]),
        guild_id=row["guild_id"],
    )


def _fields_json(fields: RestaurantFields | None) -> str | None:
    return None if fields is None else json.dumps(asdict(fields))


def _fields_of(text: str | None) -> RestaurantFields | None:
    return None if text is None else RestaurantFields(**json.loads(text))


# The guild's own rows if it has any, else the demo catalog's (NULL = NULL is never true: DMs get the demo).
_CATALOG_OF_GUILD = (
    "(guild_id = ? OR (guild_id IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM restaurants own WHERE own.guild_id = ?)))"
)


def _reservation(row: Row) -> ReservationRecord:
    return ReservationRecord(
        id=row["id"],
        call_id=row["call_id"],
        restaurant_id=row["restaurant_id"],
        restaurant_name=row["restaurant_name"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        guild_id=row["guild_id"],
        starts_at=row["starts_at"],
        party_size=row["party_size"],
        tables=row["tables"],
        notes=row["notes"],
        status=row["status"],
        created_at=row["created_at"],
    )


class BookingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ---------------------------------------------------------------------------------- catalog

    async def restaurants(
        self, guild_id: int | None = None, *, include_inactive: bool = False
    ) -> list[RestaurantRecord]:
        """The catalog this guild sees (small: filtering and name matching happen in the tool)."""
        active = "" if include_inactive else " AND active = 1"
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT * FROM restaurants WHERE {_CATALOG_OF_GUILD}{active}"
                " ORDER BY name COLLATE NOCASE, id",
                (guild_id, guild_id),
            )
            rows = await cursor.fetchall()
        return [_restaurant(row) for row in rows]

    async def has_own_catalog(self, guild_id: int) -> bool:
        """Whether the guild has restaurants of its own (also only removed ones): no demo for it."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT 1 FROM restaurants WHERE guild_id = ? LIMIT 1", (guild_id,)
            )
            return await cursor.fetchone() is not None

    async def restaurant(self, restaurant_id: int) -> RestaurantRecord | None:
        async with self._db.read() as connection:
            cursor = await connection.execute("SELECT * FROM restaurants WHERE id = ?", (restaurant_id,))
            row = await cursor.fetchone()
        return _restaurant(row) if row else None

    async def add_restaurant(
        self,
        *,
        name: str,
        cuisine: str,
        area: str,
        opening_hours: str,
        tables_per_slot: int,
        timezone: str | None = None,
        guild_id: int | None = None,
    ) -> RestaurantRecord:
        """Add to a catalog without an audit (admins go through `change_catalog`; validate
        `opening_hours` with `tools.hours.OpeningHours` first)."""
        fields = RestaurantFields(name, cuisine, area, opening_hours, tables_per_slot, timezone)
        async with self._db.transaction() as connection:
            restaurant_id = await _insert_restaurant(connection, guild_id, fields, time.time())
        return RestaurantRecord(
            restaurant_id, name, cuisine, area, opening_hours, tables_per_slot, timezone, True, guild_id
        )

    async def change_catalog(
        self,
        guild_id: int,
        user_id: int,
        decide: Callable[[CatalogSnapshot], Sequence[RestaurantWrite]],
        *,
        upcoming_since: int,
    ) -> list[RestaurantChange]:
        """Write what `decide` makes of the guild's catalog, audited, all or nothing.

        `decide` runs inside the transaction, under the guild's key (so two admins, in any process,
        never decide from the same old catalog); whatever it raises rolls everything back. Bookings
        from `upcoming_since` (unix seconds) on count as upcoming.
        """
        at = time.time()
        async with self._db.transaction() as connection:
            await connection.lock_key(f"restaurants:guild:{guild_id}")
            snapshot = await _snapshot(connection, guild_id, upcoming_since)
            current = {record.id: record for record in snapshot.restaurants}
            changes: list[RestaurantChange] = []
            for write in decide(snapshot):
                if write.restaurant_id is None:
                    assert write.fields is not None, "a write without an id adds a restaurant"
                    restaurant_id = await _insert_restaurant(connection, guild_id, write.fields, at)
                    change = RestaurantChange(
                        guild_id, user_id, restaurant_id, "add", write.fields.name, None, write.fields, at
                    )
                else:
                    old = current[write.restaurant_id]  # only the guild's own active rows change
                    if write.fields is None:
                        await connection.execute(
                            "UPDATE restaurants SET active = 0 WHERE id = ?", (write.restaurant_id,)
                        )
                    else:
                        new = write.fields
                        await connection.execute(
                            "UPDATE restaurants SET name = ?, cuisine = ?, area = ?, opening_hours = ?,"
                            " tables_per_slot = ?, timezone = ? WHERE id = ?",
                            (
                                new.name,
                                new.cuisine,
                                new.area,
                                new.opening_hours,
                                new.tables_per_slot,
                                new.timezone,
                                write.restaurant_id,
                            ),
                        )
                    action: CatalogAction = "remove" if write.fields is None else "edit"
                    name = old.name if write.fields is None else write.fields.name
                    change = RestaurantChange(
                        guild_id, user_id, old.id, action, name, old.fields, write.fields, at
                    )
                await connection.execute(
                    "INSERT INTO restaurant_audit (guild_id, user_id, restaurant_id, action, name,"
                    " old_value, new_value, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        guild_id,
                        user_id,
                        change.restaurant_id,
                        change.action,
                        change.name,
                        _fields_json(change.old),
                        _fields_json(change.new),
                        at,
                    ),
                )
                changes.append(change)
        return changes

    async def catalog_audit(self, guild_id: int, *, limit: int = 20) -> list[RestaurantChange]:
        """The guild's latest catalog changes, newest first."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT * FROM restaurant_audit WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
                (guild_id, limit),
            )
            rows = await cursor.fetchall()
        return [
            RestaurantChange(
                guild_id=row["guild_id"],
                user_id=row["user_id"],
                restaurant_id=row["restaurant_id"],
                action=row["action"],
                name=row["name"],
                old=_fields_of(row["old_value"]),
                new=_fields_of(row["new_value"]),
                at=row["at"],
            )
            for row in rows
        ]

    async def update_restaurant(
        self,
        restaurant_id: int,
        *,
        opening_hours: str | None = None,
        tables_per_slot: int | None = None,
        active: bool | None = None,
    ) -> bool:
        """Edit what changes in practice (hours, capacity, open for bookings); False if unknown."""
        changes: dict[str, object] = {}
        if opening_hours is not None:
            changes["opening_hours"] = opening_hours
        if tables_per_slot is not None:
            changes["tables_per_slot"] = tables_per_slot
        if active is not None:
            changes["active"] = int(active)
        if not changes:
            return await self.restaurant(restaurant_id) is not None
        assignments = ", ".join(f"{column} = ?" for column in changes)  # column names are ours
        async with self._db.transaction() as connection:
            cursor = await connection.execute(
                f"UPDATE restaurants SET {assignments} WHERE id = ?", (*changes.values(), restaurant_id)
            )
            return cursor.rowcount == 1

    # ------------------------------------------------------------------------------- reservations

    async def tables_taken(self, restaurant_id: int, starts_at: int) -> int:
        async with self._db.read() as connection:
            return await _tables_taken(connection, restaurant_id, starts_at)

    async def has_reservation(self, restaurant_id: int, user_id: int, starts_at: int) -> bool:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT 1 FROM reservations WHERE restaurant_id = ? AND user_id = ? AND starts_at = ?"
                " AND status = 'confirmed'",
                (restaurant_id, user_id, starts_at),
            )
            return await cursor.fetchone() is not None

    async def reserve(
        self,
        *,
        call_id: str,
        restaurant_id: int,
        user_id: int,
        user_name: str,
        guild_id: int | None,
        starts_at: int,
        party_size: int,
        tables: int,
        notes: str,
        capacity: int,
    ) -> ReserveResult:
        """Book `tables` of the slot if they are free and the user has none there yet, atomically.

        Across processes too: the call id's key, then the slot's (always in that order, so no two
        transactions wait for each other), are held until commit. The slot, not the restaurant:
        capacity is counted per slot, so bookings for other slots need not wait.
        """
        async with self._db.transaction() as connection:
            await connection.lock_key(f"reservations:call:{call_id}")
            await connection.lock_key(f"reservations:slot:{restaurant_id}:{starts_at}")
            earlier = await _reservation_by_call(connection, call_id)
            if earlier is not None:
                return ReserveResult("repeat", earlier)
            # Shared: bookings do not wait for each other, but a removal (which locks the row to
            # count upcoming bookings) waits for this one to commit, or this one sees it removed.
            cursor = await connection.execute(
                "SELECT 1 FROM restaurants WHERE id = ? AND active = 1 /* FOR SHARE */", (restaurant_id,)
            )
            if await cursor.fetchone() is None:
                return ReserveResult("gone")
            cursor = await connection.execute(
                "SELECT 1 FROM reservations WHERE restaurant_id = ? AND user_id = ? AND starts_at = ?"
                " AND status = 'confirmed'",
                (restaurant_id, user_id, starts_at),
            )
            if await cursor.fetchone() is not None:
                return ReserveResult("duplicate")
            taken = await _tables_taken(connection, restaurant_id, starts_at)
            if taken + tables > capacity:
                return ReserveResult("full", tables_left=max(0, capacity - taken))
            reservation_id = await connection.execute_insert(
                "INSERT INTO reservations (call_id, restaurant_id, user_id, user_name, guild_id, starts_at,"
                " party_size, tables, notes, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'confirmed', ?)",
                (
                    call_id,
                    restaurant_id,
                    user_id,
                    user_name,
                    guild_id,
                    starts_at,
                    party_size,
                    tables,
                    notes,
                    time.time(),
                ),
            )
            booked = await _reservation_by_id(connection, reservation_id)
        assert booked is not None
        return ReserveResult("booked", booked, tables_left=capacity - taken - tables)

    async def reservation(self, reservation_id: int) -> ReservationRecord | None:
        async with self._db.read() as connection:
            return await _reservation_by_id(connection, reservation_id)

    async def reservations_for(
        self, user_id: int, guild_id: int | None, *, since: int, limit: int = 25
    ) -> list[ReservationRecord]:
        """A user's confirmed reservations made in this guild (or in DMs), from `since` on, soonest first."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM {_RESERVATION_FROM}"
                " WHERE r.user_id = ? AND r.guild_id IS ? AND r.status = 'confirmed' AND r.starts_at >= ?"
                " ORDER BY r.starts_at, r.id LIMIT ?",
                (user_id, guild_id, since, limit),
            )
            rows = await cursor.fetchall()
        return [_reservation(row) for row in rows]

    async def cancel(self, reservation_id: int, *, user_id: int) -> CancelResult[ReservationRecord]:
        """Cancel one's own reservation; someone else's is refused, whoever asks the model."""
        async with self._db.transaction() as connection:
            return await cancel_owned(
                connection,
                table="reservations",
                record_id=reservation_id,
                user_id=user_id,
                read=_reservation_by_id,
            )


async def _insert_restaurant(
    connection: Connection, guild_id: int | None, fields: RestaurantFields, at: float
) -> int:
    return await connection.execute_insert(
        "INSERT INTO restaurants (guild_id, name, cuisine, area, opening_hours, tables_per_slot, timezone,"
        " active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
        (
            guild_id,
            fields.name,
            fields.cuisine,
            fields.area,
            fields.opening_hours,
            fields.tables_per_slot,
            fields.timezone,
            at,
        ),
    )


async def _snapshot(connection: Connection, guild_id: int, now: int) -> CatalogSnapshot:
    # The rows locked before counting: a booking in flight commits first (and is counted), later
    # ones find the restaurant removed (`reserve`).
    cursor = await connection.execute(
        "SELECT * FROM restaurants WHERE guild_id = ? ORDER BY name COLLATE NOCASE, id /* FOR UPDATE */",
        (guild_id,),
    )
    rows = [_restaurant(row) for row in await cursor.fetchall()]
    cursor = await connection.execute(
        "SELECT r.restaurant_id, COUNT(*) AS upcoming FROM reservations r"
        " JOIN restaurants x ON x.id = r.restaurant_id"
        " WHERE x.guild_id = ? AND r.status = 'confirmed' AND r.starts_at >= ? GROUP BY r.restaurant_id",
        (guild_id, now),
    )
    upcoming = {row["restaurant_id"]: int(row["upcoming"]) for row in await cursor.fetchall()}
    return CatalogSnapshot(
        restaurants=[record for record in rows if record.active], upcoming=upcoming, has_own=bool(rows)
    )


async def _tables_taken(connection: Connection, restaurant_id: int, starts_at: int) -> int:
    cursor = await connection.execute(
        "SELECT COALESCE(SUM(tables), 0) FROM reservations"
        " WHERE restaurant_id = ? AND starts_at = ? AND status = 'confirmed'",
        (restaurant_id, starts_at),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _reservation_by_id(connection: Connection, reservation_id: int) -> ReservationRecord | None:
    cursor = await connection.execute(
        f"SELECT {_RESERVATION_COLUMNS} FROM {_RESERVATION_FROM} WHERE r.id = ?", (reservation_id,)
    )
    row = await cursor.fetchone()
    return _reservation(row) if row else None


async def _reservation_by_call(connection: Connection, call_id: str) -> ReservationRecord | None:
    cursor = await connection.execute(
        f"SELECT {_RESERVATION_COLUMNS} FROM {_RESERVATION_FROM} WHERE r.call_id = ?", (call_id,)
    )
    row = await cursor.fetchone()
    return _reservation(row) if row else None
