"""Rides between real addresses: the Nominatim geocoder (against a stand-in), its cache and request
spacing, ambiguous places as questions, and metered rides when no geocoder is configured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import AppConfig, GeocoderConfig, load_config
from bot.errors import ConfigError
from bot.storage import CachedPlace, Storage
from bot.tooling import ConfirmationOutcome, ToolError, ToolRegistry
from standins.nominatim import FakeNominatim, NominatimPlace
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines
from tests.conftest import ServicesFactory
from tests.tool_support import (
    ALICE,
    GUILD,
    Clock,
    ScriptedConfirmer,
    builtin_registry,
    call_tool,
    run_turn,
    sent_outputs,
    services_with_tools,
    turn_context,
)
from tools import register_builtin_tools
from tools.fares import fare_cents, format_money, trip_for
from tools.geocoding import CACHE_TTL_S, NominatimGeocoder, RequestSpacing, normalise_query
from tools.places import Place, straight_km

APPROVED = ConfirmationOutcome.APPROVED
USER_AGENT = "test-guild-bot/1.0 (admin@example.org)"
OAK = NominatimPlace("12, Oak Street, Riverside, Springfield, 12345, Freedonia", 50.0410, 8.0120, 0.31)
PIER = NominatimPlace("Harbour Pier 4, Port Road, Springfield, 12346, Freedonia", 49.9890, 8.0710, 0.42)


def ride_args(pickup: str, dropoff: str, time: str | None = None) -> dict[str, Any]:
    return {"pickup": pickup, "dropoff": dropoff, "time": time, "ride_type": None}


def expected_fare(a: NominatimPlace, b: NominatimPlace) -> tuple[int, float]:
    trip = trip_for(straight_km(Place("a", a.lat, a.lon), Place("b", b.lat, b.lon)))
    return fare_cents("standard", trip), trip.km


@pytest.fixture
async def nominatim() -> AsyncIterator[FakeNominatim]:
    async with FakeNominatim() as server:
        server.places["12 oak street"] = [OAK]
        server.places["harbour pier 4"] = [PIER]
        yield server


def geocoder_config(url: str, **overrides: Any) -> GeocoderConfig:
    return GeocoderConfig.model_validate(
        {"url": url, "user_agent": USER_AGENT, "min_interval_s": 0, "timeout_s": 5, **overrides}
    )


def geocoder(
    storage: Storage, url: str, spacing: RequestSpacing | None = None, **overrides: Any
) -> NominatimGeocoder:
    return NominatimGeocoder(
        geocoder_config(url, **overrides), storage.geocode_cache, spacing or RequestSpacing(0)
    )


def registry_with_geocoder(storage: Storage, nominatim: FakeNominatim) -> ToolRegistry:
    """The built-in tools as the bot wires them from `[geocoder]` in config.toml."""
    config = AppConfig.model_validate({"geocoder": {"url": nominatim.url, "user_agent": USER_AGENT}})
    registry = ToolRegistry(storage.tool_calls)
    register_builtin_tools(registry, storage=storage, config=config, secrets_env={}, clock=Clock())
    return registry


# -------------------------------------------------------------------------- rides between addresses


async def test_a_ride_between_two_street_addresses_is_priced_by_distance_confirmed_and_booked(
    storage: Storage, nominatim: FakeNominatim
) -> None:
    registry = registry_with_geocoder(storage, nominatim)
    confirmer = ScriptedConfirmer(APPROVED)
    result = await call_tool(
        registry, "order_ride", ride_args("12 Oak Street", "Harbour Pier 4"), confirmer=confirmer
    )

    cents, km = expected_fare(OAK, PIER)
    assert result.ok and result.data["ordered"] is True
    assert result.data["ride"]["fare"] == format_money(cents) and result.data["ride"]["distance_km"] == km
    [asked] = confirmer.asked
    assert asked.title == f"Order a ride to {PIER.display_name}?"
    fields = dict(asked.fields)
    assert fields["Pickup"] == OAK.display_name
    assert fields["Fare estimate"].startswith(f"{format_money(cents)} · {km:.1f} km · ~")
    [row] = await storage.rides.rides_for(ALICE, GUILD, since=0)
    assert (row.pickup, row.dropoff, row.fare_cents, row.distance_km) == (
        OAK.display_name,
        PIER.display_name,
        cents,
        km,
    )
    # Asked once each, as Nominatim's usage policy wants (the order's own pricing used the cache).
    assert nominatim.queries() == ["12 oak street", "harbour pier 4"]
    first = nominatim.requests[0]
    assert first.user_agent == USER_AGENT
    assert (first.params["format"], first.params["limit"]) == ("jsonv2", "5")


async def test_a_second_lookup_is_answered_from_the_cache_also_after_reopening(
    database_location: str, nominatim: FakeNominatim
) -> None:
    storage = await Storage.open(database_location)
    try:
        places = geocoder(storage, nominatim.url)
        assert (await places.locate("12 Oak Street")).name == OAK.display_name
        with pytest.raises(ToolError) as missing:
            await places.locate("Nowhere Lane 99")
        assert missing.value.code == "unknown_place"
        assert (await places.locate("  12,  OAK street ")).name == OAK.display_name  # same key
    finally:
        await storage.close()
    assert nominatim.queries() == ["12 oak street", "nowhere lane 99"]

    reopened = await Storage.open(database_location)
    try:
        places = geocoder(reopened, nominatim.url)
        assert (await places.locate("12 oak street")).lat == pytest.approx(OAK.lat)
        with pytest.raises(ToolError):
            await places.locate("nowhere lane 99")  # "not found" is cached too
        assert len(nominatim.requests) == 2

        month_later = NominatimGeocoder(
            geocoder_config(nominatim.url),
            reopened.geocode_cache,
            RequestSpacing(0),
            wall_clock=lambda: time.time() + CACHE_TTL_S + 1,
        )
        await month_later.locate("12 Oak Street")
        assert nominatim.queries()[-1] == "12 oak street" and len(nominatim.requests) == 3
    finally:
        await reopened.close()


async def test_expired_answers_are_pruned_and_fresh_ones_kept(storage: Storage) -> None:
    now = time.time()
    cache = storage.geocode_cache
    await cache.put(
        "old street 1", (CachedPlace("Old Street 1", 1.0, 2.0, 0.5),), fetched_at=now - 40 * 86400
    )
    await cache.put("nowhere", (), fetched_at=now - 31 * 86400)
    await cache.put("new street 2", (), fetched_at=now - 86400)
    assert await cache.prune(fetched_before=now - CACHE_TTL_S) == 2
    assert await cache.get("old street 1", fetched_after=0) is None
    assert await cache.get("nowhere", fetched_after=0) is None
    kept = await cache.get("new street 2", fetched_after=0)
    assert kept is not None and kept.places == ()
    assert await cache.prune(fetched_before=now - CACHE_TTL_S) == 0


async def test_lookups_at_once_are_spaced_by_the_minimum_interval(
    storage: Storage, nominatim: FakeNominatim
) -> None:
    spacing = RequestSpacing(0.25)  # one per process, shared by every lookup
    first, second = geocoder(storage, nominatim.url, spacing), geocoder(storage, nominatim.url, spacing)
    await asyncio.gather(first.locate("12 Oak Street"), second.locate("Harbour Pier 4"))
    assert nominatim.queries() == ["12 oak street", "harbour pier 4"]  # in the order they asked
    earlier, later = nominatim.requests
    assert later.at - earlier.at >= 0.25 - 1e-3  # the enforced minimum, on the loop's clock


@pytest.mark.parametrize(
    ("failure", "sentence"),
    [
        ("500", "The address lookup service is having problems right now."),
        ("429", "The address lookup service is busy; try again in a minute."),
        ("timeout", "The address lookup service did not answer in time; try again shortly."),
        ("unreachable", "The address lookup service could not be reached right now."),
    ],
)
async def test_geocoder_failures_are_one_clear_sentence_and_are_not_cached(
    storage: Storage, nominatim: FakeNominatim, failure: str, sentence: str
) -> None:
    url = nominatim.url
    if failure in ("500", "429"):
        nominatim.fail_with = int(failure)
    elif failure == "timeout":
        nominatim.hold = asyncio.Event()
    else:
        await nominatim.close()
    places = geocoder(storage, url, timeout_s=0.3)
    registry = ToolRegistry(storage.tool_calls)
    register_builtin_tools(
        registry, storage=storage, config=AppConfig(), secrets_env={}, clock=Clock(), geocoder=places
    )

    result = await call_tool(registry, "estimate_ride", ride_args("12 Oak Street", "Harbour Pier 4"))
    assert (result.error_code, result.error_message) == ("unavailable", sentence)
    assert await storage.rides.rides_for(ALICE, GUILD, since=0) == []
    if failure in ("500", "429"):
        nominatim.fail_with = None
        assert (await places.locate("12 Oak Street")).name == OAK.display_name  # asked again
        assert nominatim.queries() == ["12 oak street", "12 oak street"]


# ------------------------------------------------------------------------------ ambiguous places


async def test_an_ambiguous_address_is_a_question_with_the_candidates(
    storage: Storage, nominatim: FakeNominatim
) -> None:
    springfield = NominatimPlace("Main Street 1, Springfield, Freedonia", 50.0, 8.0, 0.40)
    shelbyville = NominatimPlace("Main Street 1, Shelbyville, Freedonia", 50.3, 8.4, 0.38)
    nominatim.places["main street 1"] = [springfield, shelbyville]
    registry = registry_with_geocoder(storage, nominatim)
    confirmer = ScriptedConfirmer(APPROVED)

    result = await call_tool(
        registry, "order_ride", ride_args("Main Street 1", "Harbour Pier 4"), confirmer=confirmer
    )
    assert result.ok and result.data["needs_answer"] is True
    assert result.data["question"] == (
        f"Did you mean {springfield.display_name} or {shelbyville.display_name}?"
    )
    assert result.data["candidates"] == [springfield.display_name, shelbyville.display_name]
    assert confirmer.asked == [] and await storage.rides.rides_for(ALICE, GUILD, since=0) == []


async def test_the_model_asks_which_place_then_orders_the_one_the_user_chose(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, nominatim: FakeNominatim
) -> None:
    springfield = NominatimPlace("Main Street 1, Springfield, Freedonia", 50.0, 8.0, 0.40)
    shelbyville = NominatimPlace("Main Street 1, Shelbyville, Freedonia", 50.3, 8.4, 0.38)
    nominatim.places["main street 1"] = [springfield, shelbyville]
    nominatim.places["main street 1 springfield freedonia"] = [springfield]
    geocoder_section = {"url": nominatim.url, "user_agent": USER_AGENT, "min_interval_s": 0}
    services = await services_with_tools(make_services, Clock(), geocoder=geocoder_section)
    confirmer = ScriptedConfirmer(APPROVED)

    ambiguous = FunctionCall("order_ride", ride_args("Main Street 1", "Harbour Pier 4"))
    fake_openai.responses.push(Reply(calls=[ambiguous]), Reply("Which Main Street 1?"))
    await run_turn(services, "a ride from Main Street 1 to Harbour Pier 4", turn_context(confirmer))
    [question] = sent_outputs(fake_openai, "responses", 1)
    assert question["ok"] and question["question"].startswith("Did you mean Main Street 1, Springfield")
    assert confirmer.asked == []

    chosen = FunctionCall("order_ride", ride_args(springfield.display_name, "Harbour Pier 4"))
    fake_openai.responses.push(Reply(calls=[chosen]), Reply("Booked from Springfield."))
    await run_turn(services, "Springfield", turn_context(confirmer))
    [ordered] = sent_outputs(fake_openai, "responses", 3)
    assert ordered["ordered"] is True and ordered["ride"]["pickup"] == springfield.display_name
    assert ordered["ride"]["fare"] == format_money(expected_fare(springfield, PIER)[0])
    [row] = await services.storage.rides.rides_for(ALICE, GUILD, since=0)
    assert row.pickup == springfield.display_name and len(confirmer.asked) == 1


@pytest.mark.parametrize(
    ("results", "chosen"),
    [
        # a street mapped in pieces: several results, one place
        (
            [
                NominatimPlace("Long Road, Springfield", 50.0, 8.0, 0.30),
                NominatimPlace("Long Road, Springfield (north part)", 50.004, 8.001, 0.30),
            ],
            "Long Road, Springfield",
        ),
        # one result far more important than the rest
        (
            [
                NominatimPlace("Central Park, New York", 40.78, -73.97, 0.80),
                NominatimPlace("Central Park, Springfield", 50.0, 8.0, 0.25),
            ],
            "Central Park, New York",
        ),
    ],
)
async def test_results_that_are_one_place_or_one_clear_winner_are_not_a_question(
    storage: Storage, nominatim: FakeNominatim, results: list[NominatimPlace], chosen: str
) -> None:
    nominatim.places["somewhere"] = results
    assert (await geocoder(storage, nominatim.url).locate("somewhere")).name == chosen


async def test_several_known_places_in_one_phrase_are_a_question(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    result = await call_tool(registry, "estimate_ride", ride_args("the park near the harbour", "Airport"))
    assert result.ok and result.data["question"] == "Did you mean Harbour or North Park?"
    assert result.data["candidates"] == ["Harbour", "North Park"]


# ------------------------------------------------------------------------------ without a geocoder


async def test_without_a_geocoder_an_unknown_address_is_metered_confirmed_and_booked(
    storage: Storage,
) -> None:
    registry = builtin_registry(storage, Clock())
    estimate = await call_tool(registry, "estimate_ride", ride_args("12 Oak Street", "the airport"))
    assert estimate.ok and estimate.data["estimate"]["fare"] == "metered, no estimate"
    assert "distance_km" not in estimate.data["estimate"] and estimate.summary.endswith(
        "metered, no estimate"
    )

    confirmer = ScriptedConfirmer(APPROVED)
    ordered = await call_tool(
        registry, "order_ride", ride_args("12 Oak Street", "the airport"), confirmer=confirmer
    )
    fields = dict(confirmer.asked[0].fields)
    assert fields["Fare"] == "metered, no estimate" and "Fare estimate" not in fields
    assert (fields["Pickup"], fields["Drop-off"]) == ("12 Oak Street", "Airport")
    assert ordered.ok and ordered.data["ride"]["fare"] == "metered, no estimate"
    assert ordered.data["ride"]["status"] == "requested"
    [row] = await storage.rides.rides_for(ALICE, GUILD, since=0)
    assert (row.pickup, row.dropoff, row.fare_cents, row.distance_km, row.duration_min) == (
        "12 Oak Street",
        "Airport",
        None,
        None,
        None,
    )
    listed = await call_tool(registry, "list_rides", {})
    assert [ride["fare"] for ride in listed.data["rides"]] == ["metered, no estimate"]


# -------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("geocoder_toml", "setting"),
    [
        ('url = "http://localhost:8080"', "geocoder.user_agent"),
        ('url = "http://localhost:8080"\nuser_agent = "Python/3.11 aiohttp/3.9.5"', "geocoder.user_agent"),
        ('url = "http://localhost:8080"\nuser_agent = "python-requests/2.31"', "geocoder.user_agent"),
        (
            f'url = "https://nominatim.openstreetmap.org"\nuser_agent = "{USER_AGENT}"\nmin_interval_s = 0.2',
            "geocoder.min_interval_s",
        ),
    ],
)
def test_a_geocoder_that_would_break_the_usage_policy_is_refused_at_start(
    tmp_path: Path, geocoder_toml: str, setting: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[geocoder]\n{geocoder_toml}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path, required=True, env={})
    assert refused.value.setting == setting


def test_a_self_hosted_geocoder_may_be_asked_faster(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[geocoder]\nurl = "http://localhost:8080"\nuser_agent = "{USER_AGENT}"\nmin_interval_s = 0\n',
        encoding="utf-8",
    )
    config = load_config(path, required=True, env={})
    assert (config.geocoder.url, config.geocoder.min_interval_s) == ("http://localhost:8080", 0)
    assert AppConfig().geocoder.url is None  # off by default: the demo places, metered otherwise


# ------------------------------------------------------------------------------------ properties

address_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)


@given(text=address_text)
def test_normalising_a_query_twice_changes_nothing(text: str) -> None:
    once = normalise_query(text)
    assert normalise_query(once) == once
    assert once == once.strip() and "  " not in once


@given(words=st.lists(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=6))
def test_case_commas_and_spacing_do_not_change_the_key(words: list[str]) -> None:
    plain = " ".join(words)
    shouted = ",   ".join(word.upper() for word in words) + " ,"
    assert normalise_query(shouted) == normalise_query(plain) == plain.lower()
