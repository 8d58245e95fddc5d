"""A stand-in Nominatim: `GET /search?q=...&format=jsonv2&limit=N` on 127.0.0.1, in Nominatim's shape.

Stateful and scriptable: `places[query]` is what a query finds (a list of `NominatimPlace`, none by
default), `fail_with` answers every search with that HTTP status, `hold` keeps requests waiting until
it is set (for timeouts). Every search is recorded with the loop time it arrived at and its headers.

    async with FakeNominatim() as nominatim:
        nominatim.places["12 oak street"] = [NominatimPlace("12, Oak Street, Springfield", 50.1, 8.2)]
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True, slots=True)
class NominatimPlace:
    display_name: str
    lat: float
    lon: float
    importance: float = 0.5
    category: str = "place"
    type: str = "house"

    def to_json(self, place_id: int) -> dict[str, Any]:
        """One result of `format=jsonv2`: coordinates as strings, as Nominatim sends them."""
        return {
            "place_id": place_id,
            "licence": "Data © OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright",
            "osm_type": "way",
            "osm_id": 1000 + place_id,
            "lat": f"{self.lat:.7f}",
            "lon": f"{self.lon:.7f}",
            "category": self.category,
            "type": self.type,
            "place_rank": 30,
            "importance": self.importance,
            "addresstype": self.type,
            "name": self.display_name.split(",")[0],
            "display_name": self.display_name,
            "boundingbox": [
                f"{self.lat - 0.0005:.7f}",
                f"{self.lat + 0.0005:.7f}",
                f"{self.lon - 0.0005:.7f}",
                f"{self.lon + 0.0005:.7f}",
            ],
        }


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    params: dict[str, str]
    user_agent: str
    at: float  # the event loop's clock when it arrived


@dataclass
class FakeNominatim:
    places: dict[str, list[NominatimPlace]] = field(default_factory=dict)
    fail_with: int | None = None
    hold: asyncio.Event | None = None
    requests: list[SearchRequest] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/search", self._search)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeNominatim:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def queries(self) -> list[str]:
        return [request.query for request in self.requests]

    async def _search(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        query = params.get("q", "")
        self.requests.append(
            SearchRequest(
                query, params, request.headers.get("User-Agent", ""), asyncio.get_running_loop().time()
            )
        )
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_with is not None:
            return web.Response(status=self.fail_with, text=f"<html>error {self.fail_with}</html>")
        if params.get("format") != "jsonv2":
            return web.Response(status=400, text="format must be jsonv2 here")
        limit = int(params.get("limit", "10"))
        found = self.places.get(query, [])[:limit]
        return web.json_response([place.to_json(index + 1) for index, place in enumerate(found)])
