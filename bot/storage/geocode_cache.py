"""The geocoder's answers, kept so the same address is asked of the geocoding service once a month.

A public geocoder allows about one request a second, and people name the same places again and
again. An answer is keyed by the normalised query text and kept with the time it was fetched; "not
found" (no places) is an answer too. Expired entries are asked again and overwritten, and those
nobody asked again are pruned at start (`prune`), so the table holds about a month of addresses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.storage.database import Database


@dataclass(frozen=True, slots=True)
class CachedPlace:
    """One result of a lookup, as the geocoder gave it."""

    name: str
    lat: float
    lon: float
    importance: float


@dataclass(frozen=True, slots=True)
class CachedLookup:
    places: tuple[CachedPlace, ...]  # empty: the geocoder found nothing
    fetched_at: float


class GeocodeCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, query: str, *, fetched_after: float) -> CachedLookup | None:
        """The answer stored for `query` if it was fetched after `fetched_after` (unix seconds)."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT places, fetched_at FROM geocode_cache WHERE query = ? AND fetched_at > ?",
                (query, fetched_after),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        places = tuple(CachedPlace(**place) for place in json.loads(row["places"]))
        return CachedLookup(places, row["fetched_at"])

    async def put(self, query: str, places: tuple[CachedPlace, ...], *, fetched_at: float) -> None:
        """Keep (or replace) the answer for `query`."""
        encoded = json.dumps(
            [{"name": p.name, "lat": p.lat, "lon": p.lon, "importance": p.importance} for p in places],
            ensure_ascii=False,
        )
        async with self._db.transaction() as connection:
            await connection.execute(
                "INSERT INTO geocode_cache (query, places, fetched_at) VALUES (?, ?, ?)"
                " ON CONFLICT (query) DO UPDATE SET places = excluded.places,"
                " fetched_at = excluded.fetched_at",
                (query, encoded, fetched_at),
            )

    async def prune(self, *, fetched_before: float) -> int:
        """Forget answers fetched before `fetched_before` (unix seconds); returns how many."""
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "DELETE FROM geocode_cache WHERE fetched_at < ?", (fetched_before,)
            )
            return cursor.rowcount
