"""Street addresses to coordinates: a Nominatim-compatible geocoder behind `tools.places.Geocoder`.

`GET {url}/search?q=...&format=jsonv2&limit=5` answers a list of places (`lat`/`lon` as strings,
`display_name`, `importance`). Answers (also "not found") are kept in the database for
`CACHE_TTL_S`, keyed by the normalised query, so the same address is asked once a month. Requests
are spaced `min_interval_s` apart by one `RequestSpacing` per process: the public Nominatim allows
one request a second, and its usage policy wants a User-Agent naming the bot (checked in
`bot.config.GeocoderConfig`). Several far-apart results of similar importance are a question for the
user (`PlaceQuestion`), not a guess.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.config import GeocoderConfig
from bot.storage import CachedPlace, GeocodeCache
from bot.tooling import ToolError
from tools.places import UNKNOWN_PLACE, Place, PlaceQuestion, straight_km

log = logging.getLogger(__name__)

CACHE_TTL_S = 30 * 24 * 3600  # an address rarely moves; a month-old answer is asked again
RESULT_LIMIT = 5
SIMILAR_IMPORTANCE = 0.1  # a result this close to the best one's importance is as likely a meaning
SAME_PLACE_KM = 1.0  # results this close together are one place (a street mapped in several pieces)
MAX_QUEUE_WAIT_S = 30.0  # past this wait for a turn, the lookup is refused rather than queued
MAX_PLACE_NAME_CHARS = 200
WHAT = "address lookup service"

_SEPARATORS = re.compile(r"[\s,;:!?\"“”„«»()\[\]{}<>]+")


def normalise_query(text: str) -> str:
    """The cache key and the text sent: compatibility forms, case, separators and spacing folded."""
    for _ in range(3):  # case folding can leave text NFKC would change again: fold to a fixed point
        folded = unicodedata.normalize("NFKC", text).casefold()
        folded = " ".join(_SEPARATORS.sub(" ", folded).split())
        if folded == text:
            break
        text = folded
    return text


class RequestSpacing:
    """Requests at least `min_interval_s` apart on the event loop's clock, in the order they asked.

    One per process, shared by every lookup. Each caller reserves the next free start time and waits
    for it (a timer on the loop, no polling); a cancelled caller's slot simply goes unused.
    """

    def __init__(self, min_interval_s: float) -> None:
        self._interval = min_interval_s
        self._next_start: float | None = None

    async def take_turn(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = now if self._next_start is None else max(now, self._next_start)
        if start - now > MAX_QUEUE_WAIT_S:
            raise ToolError("unavailable", f"The {WHAT} is busy; try again in a minute.")
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)  # pacing to a start time, not waiting for an event


class NominatimGeocoder:
    """Locates what the user said with a Nominatim-compatible service, through the database cache."""

    def __init__(
        self,
        config: GeocoderConfig,
        cache: GeocodeCache,
        spacing: RequestSpacing,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if config.url is None:
            raise ValueError("a geocoder needs [geocoder] url")
        self._search_url = config.url.rstrip("/") + "/search"
        self._headers = {"User-Agent": config.user_agent.strip(), "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._cache = cache
        self._spacing = spacing
        self._wall_clock = wall_clock

    async def locate(self, text: str) -> Place:
        query = normalise_query(text)
        if not query:
            raise ToolError(UNKNOWN_PLACE, "Say where: a street address or a place name.")
        return choose_place(text, await self.lookup(query))

    async def lookup(self, query: str) -> tuple[CachedPlace, ...]:
        """What the service answers for a normalised query, from the cache while it is fresh."""
        cached = await self._cache.get(query, fetched_after=self._wall_clock() - CACHE_TTL_S)
        if cached is not None:
            return cached.places
        places = await self._search(query)
        await self._cache.put(query, places, fetched_at=self._wall_clock())
        return places

    async def _search(self, query: str) -> tuple[CachedPlace, ...]:
        await self._spacing.take_turn()
        params = {"q": query, "format": "jsonv2", "limit": str(RESULT_LIMIT)}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.get(self._search_url, params=params, headers=self._headers) as response,
            ):
                status = response.status
                body = await response.text()
        except TimeoutError:
            log.warning("Geocoder: %s timed out", self._search_url)
            raise ToolError("unavailable", f"The {WHAT} did not answer in time; try again shortly.") from None
        except aiohttp.ClientError as exc:
            log.warning("Geocoder: %s failed: %s", self._search_url, exc)
            raise ToolError("unavailable", f"The {WHAT} could not be reached right now.") from None
        if status == 429:
            log.warning("Geocoder: %s answered 429 (too many requests)", self._search_url)
            raise ToolError("unavailable", f"The {WHAT} is busy; try again in a minute.")
        if status != 200:
            log.warning("Geocoder: %s answered %d", self._search_url, status)
            raise ToolError("unavailable", f"The {WHAT} is having problems right now.")
        places = parse_search_answer(body)
        if places is None:
            log.warning("Geocoder: %s answered something unreadable", self._search_url)
            raise ToolError("unavailable", f"The {WHAT} gave an unreadable answer.")
        return places


def parse_search_answer(body: str) -> tuple[CachedPlace, ...] | None:
    """Nominatim's `format=jsonv2` list as places; None if it is not that shape."""
    try:
        items = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list):
        return None
    places = []
    for item in items:
        place = _place_of(item)
        if place is None:
            return None
        places.append(place)
    return tuple(places)


def _place_of(item: Any) -> CachedPlace | None:
    if not isinstance(item, dict):
        return None
    try:
        lat, lon = float(item["lat"]), float(item["lon"])
        name = str(item["display_name"]).strip()[:MAX_PLACE_NAME_CHARS]
        importance = float(item.get("importance") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not name:
        return None
    return CachedPlace(name=name, lat=lat, lon=lon, importance=importance)


def choose_place(said: str, places: tuple[CachedPlace, ...]) -> Place:
    """The one place meant, or `PlaceQuestion` when distinct places are about as likely."""
    if not places:
        raise ToolError(
            UNKNOWN_PLACE,
            f"No place called {said!r} was found; ask the user for the street, house number and town.",
        )
    ranked = sorted(places, key=lambda place: place.importance, reverse=True)
    best = ranked[0]
    distinct = [_as_place(best)]
    for other in ranked[1:]:
        if best.importance - other.importance > SIMILAR_IMPORTANCE:
            break
        candidate = _as_place(other)
        if all(straight_km(candidate, seen) > SAME_PLACE_KM for seen in distinct):
            distinct.append(candidate)
    if len(distinct) > 1:
        raise PlaceQuestion(said, [place.name for place in distinct])
    return distinct[0]


def _as_place(place: CachedPlace) -> Place:
    return Place(place.name, place.lat, place.lon)


def geocoder_from_config(config: GeocoderConfig, cache: GeocodeCache) -> NominatimGeocoder | None:
    """The configured geocoder with its own request spacing (call once per process), or None."""
    if config.url is None:
        return None
    return NominatimGeocoder(config, cache, RequestSpacing(config.min_interval_s))
