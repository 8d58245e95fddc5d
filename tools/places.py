"""Where rides go from and to: a geocoder interface and the built-in table of known places.

The built-in ride provider prices trips from coordinates, so it needs to know where a place is.
`KnownPlaces` answers from a small table (the demo city whose areas the demo restaurant catalog
uses); a real geocoding service stands in behind the same `Geocoder` protocol (`tools.geocoding`).
When several places fit, a geocoder raises `PlaceQuestion`: the model then asks the user which one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.tooling import ToolError, ToolResult

EARTH_RADIUS_KM = 6371.0088
UNKNOWN_PLACE = "unknown_place"


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    lat: float
    lon: float
    aliases: tuple[str, ...] = ()


class Geocoder(Protocol):
    """Finds a place from what the user said; raises `ToolError` (`UNKNOWN_PLACE`, unavailable) or
    `PlaceQuestion` when several places fit."""

    async def locate(self, text: str) -> Place: ...


class PlaceQuestion(ToolError):
    """Several places fit what the user said: a question for the model to put to them, not a refusal.

    Raised like any `ToolError` (so a preview stops before the user is asked to confirm), its result
    is the question and the candidates. `message` says the same for a remote provider's error body.
    """

    def __init__(self, said: str, candidates: Sequence[str]) -> None:
        self.said = said
        self.candidates = tuple(candidates)
        self.question = f"Did you mean {_either(self.candidates)}?"
        super().__init__("ambiguous", f"{said!r} could be {', '.join(self.candidates)}; say which one.")

    def to_result(self) -> ToolResult:
        return ToolResult.success(
            {
                "needs_answer": True,
                "question": self.question,
                "place_said": self.said,
                "candidates": list(self.candidates),
                "next": "Nothing was priced or ordered yet. Ask the user this question, then call "
                "again with the place they choose.",
            },
            summary=f"Asked which place {self.said!r} is",
        )


def _either(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def straight_km(a: Place, b: Place) -> float:
    """Great-circle distance (haversine); symmetric, zero for the same point."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(b.lon - a.lon) / 2
    h = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


DEMO_PLACES: tuple[Place, ...] = (
    Place("City Centre", 50.0000, 8.0000, ("downtown", "centre", "town centre", "city hall")),
    Place(
        "Central Station", 50.0060, 7.9900, ("station", "train station", "railway station", "main station")
    ),
    Place("Old Town", 49.9950, 8.0120, ("old city",)),
    Place("Harbour", 49.9850, 8.0350, ("harbor", "port", "docks", "marina")),
    Place("University", 50.0280, 7.9800, ("campus", "uni")),
    Place("North Park", 50.0420, 8.0050, ("park",)),
    Place("Stadium", 49.9700, 7.9500, ("arena",)),
    Place("Tech Park", 50.0150, 8.1000, ("business park",)),
    Place("Hospital", 50.0100, 8.0400, ("general hospital",)),
    Place("Airport", 49.9300, 7.8600, ("airport terminal", "terminal", "terminal 1", "terminal 2")),
    Place("Beach", 49.9500, 8.1500, ("seafront", "beach front")),
)


def _normalise(text: str) -> str:
    text = text.lower().replace("center", "centre").replace("harbor", "harbour")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(word for word in text.split() if word not in {"the", "a", "to", "from"})


class KnownPlaces:
    """A fixed table of places, matched by name or alias (whole words, case-insensitive)."""

    def __init__(self, places: Sequence[Place] = DEMO_PLACES) -> None:
        self._places = tuple(places)

    @property
    def names(self) -> list[str]:
        return [place.name for place in self._places]

    async def locate(self, text: str) -> Place:
        wanted = _normalise(text)
        if not wanted:
            raise ToolError(UNKNOWN_PLACE, f"Say where; known places: {', '.join(self.names)}.")
        for place in self._places:
            if wanted in {_normalise(name) for name in (place.name, *place.aliases)}:
                return place
        padded = f" {wanted} "
        mentioned = [
            place
            for place in self._places
            if any(f" {_normalise(name)} " in padded for name in (place.name, *place.aliases))
        ]
        if len(mentioned) == 1:
            return mentioned[0]
        if len(mentioned) > 1:
            raise PlaceQuestion(text, [place.name for place in mentioned])
        raise ToolError(
            UNKNOWN_PLACE,
            f"{text!r} is not a place the ride service knows; known places: {', '.join(self.names)}.",
        )
