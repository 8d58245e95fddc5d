"""Ride ordering through the engine and the stand-in OpenAI server, the fare model, the places."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.config import AppConfig
from bot.engine.events import Completed
from bot.storage import Storage
from bot.tooling import ConfirmationOutcome, ToolRegistry, ToolResult, parse_arguments
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines
from tests.conftest import ServicesFactory, settings
from tests.tool_support import (
    ALICE,
    BOB,
    GUILD,
    MONDAY_10_UTC,
    Clock,
    ScriptedConfirmer,
    builtin_registry,
    call_tool,
    push,
    run_turn,
    sent_outputs,
    services_with_tools,
    turn_context,
)
from tools import register_builtin_tools
from tools.fares import FARES, RIDE_TYPES, Trip, fare_cents, format_money, trip_for
from tools.places import DEMO_PLACES, KnownPlaces, Place, straight_km
from tools.rides import OrderRideArgs

APPROVED = ConfirmationOutcome.APPROVED
BACKENDS = ["responses", "chat"]


def ride_args(
    pickup: str = "Central Station",
    dropoff: str = "the airport",
    time: str | None = None,
    ride_type: str | None = None,
) -> dict[str, Any]:
    return {"pickup": pickup, "dropoff": dropoff, "time": time, "ride_type": ride_type}


def order(*args: Any, call_id: str | None = None, **kwargs: Any) -> FunctionCall:
    return FunctionCall("order_ride", ride_args(*args, **kwargs), call_id=call_id)


def expected_fare(pickup: str, dropoff: str, ride_type: str = "standard") -> int:
    places = {place.name: place for place in DEMO_PLACES}
    return fare_cents(ride_type, trip_for(straight_km(places[pickup], places[dropoff])))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ through the engine


@pytest.mark.parametrize("backend", BACKENDS)
async def test_estimate_then_order_a_ride_now_with_confirmation(
    backend: str, make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED)
    push(
        fake_openai,
        backend,
        Reply(calls=[FunctionCall("estimate_ride", ride_args())]),
        Reply(calls=[order()]),
        Reply("Your ride to the airport is on its way."),
    )
    events = await run_turn(
        services, "get me a ride to the airport", turn_context(confirmer, backend=backend)
    )
    assert isinstance(events[-1], Completed) and events[-1].text == "Your ride to the airport is on its way."

    fare = format_money(expected_fare("Central Station", "Airport"))
    [estimate] = sent_outputs(fake_openai, backend, 1)
    assert estimate["ok"] and estimate["estimate"]["fare"] == fare
    assert (
        estimate["estimate"]["pickup"] == "Central Station" and estimate["estimate"]["dropoff"] == "Airport"
    )
    [ordered] = sent_outputs(fake_openai, backend, 2)
    assert ordered["ordered"] is True
    assert ordered["ride"]["status"] == "requested" and ordered["ride"]["time"] == "2026-05-04T10:00:00+00:00"

    [asked] = confirmer.asked
    assert asked.title == "Order a ride to Airport?"
    fields = dict(asked.fields)
    assert fields["Pickup"] == "Central Station" and fields["When"] == "Now" and fields["Ride"] == "Standard"
    assert fields["Fare estimate"].startswith(f"{fare} · ")
    [row] = await services.storage.rides.rides_for(ALICE, GUILD, since=0)
    assert (row.pickup, row.dropoff, row.status, row.user_name) == (
        "Central Station",
        "Airport",
        "requested",
        "Ada",
    )
    assert row.fare_cents == expected_fare("Central Station", "Airport")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_declined_ride_is_not_ordered(
    backend: str, make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(ConfirmationOutcome.DECLINED)
    push(fake_openai, backend, Reply(calls=[order()]), Reply("Okay, no ride."))
    await run_turn(services, "ride to the airport", turn_context(confirmer, backend=backend))
    [result] = sent_outputs(fake_openai, backend, 1)
    assert result["error"]["code"] == "declined"
    assert await services.storage.rides.rides_for(ALICE, GUILD, since=0) == []


@pytest.mark.parametrize(
    ("backend", "bad", "code", "fragment"),
    [
        ("responses", order(time="whenever"), "invalid_time", "whenever"),
        ("chat", order(dropoff="station"), "same_place", "both Central Station"),
        ("responses", order(time="2026-05-04T08:00"), "past_time", "has already passed"),
        ("chat", order(ride_type="helicopter"), "invalid_arguments", "ride_type"),
    ],
)
async def test_impossible_rides_are_fed_back_and_the_model_corrects(
    backend: str,
    bad: FunctionCall,
    code: str,
    fragment: str,
    make_services: ServicesFactory,
    fake_openai: FakeOpenAI,
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED)
    push(fake_openai, backend, Reply(calls=[bad]), Reply(calls=[order()]), Reply("Ordered."))
    await run_turn(services, "ride", turn_context(confirmer, backend=backend))
    [error] = sent_outputs(fake_openai, backend, 1)
    assert error["error"]["code"] == code and fragment in error["error"]["message"]
    [corrected] = sent_outputs(fake_openai, backend, 2)
    assert corrected["ok"] and corrected["ride"]["dropoff"] == "Airport"
    assert len(confirmer.asked) == 1


async def test_a_later_ride_is_scheduled_at_the_time_the_user_confirmed(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    clock = Clock()
    services = await services_with_tools(make_services, clock)
    confirmer = ScriptedConfirmer(APPROVED, on_ask=lambda: clock.advance(minutes=2))
    fake_openai.responses.push(Reply(calls=[order(time="in 2 hours", ride_type="xl")]), Reply("Scheduled."))
    await run_turn(services, "xl to the airport in 2 hours", turn_context(confirmer, timezone="Europe/Paris"))
    [ordered] = sent_outputs(fake_openai, "responses", 1)
    assert ordered["ride"]["status"] == "scheduled" and ordered["ride"]["ride_type"] == "xl"
    assert ordered["ride"]["time"] == "2026-05-04T14:00:00+02:00"  # as previewed, not 2 minutes later
    assert dict(confirmer.asked[0].fields)["When"] == "Monday 4 May 2026, 14:00 (Europe/Paris)"
    assert ordered["ride"]["fare"] == format_money(expected_fare("Central Station", "Airport", "xl"))


async def test_cancelling_someone_elses_ride_is_refused_and_the_owner_can_cancel(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    fake_openai.responses.push(Reply(calls=[order(time="tomorrow at 7am")]), Reply("Booked Bob's ride."))
    bob_confirms = ScriptedConfirmer(APPROVED, APPROVED)
    await run_turn(services, "ride", turn_context(bob_confirms), author=BOB, name="Bob")
    [ride] = await services.storage.rides.rides_for(BOB, GUILD, since=0)
    assert ride.status == "scheduled"

    cancel = FunctionCall("cancel_ride", {"ride_id": str(ride.id)})
    alice_confirms = ScriptedConfirmer(APPROVED)
    fake_openai.responses.push(Reply(calls=[cancel, FunctionCall("list_rides", {})]), Reply("Not yours."))
    await run_turn(services, "cancel that ride", turn_context(alice_confirms))
    refused, listed = sent_outputs(fake_openai, "responses", 3)
    assert refused["error"]["code"] == "not_yours" and listed == {"ok": True, "rides": []}
    assert alice_confirms.asked == []

    fake_openai.responses.push(Reply(calls=[cancel]), Reply("Cancelled."))
    await run_turn(services, "cancel my ride", turn_context(bob_confirms), author=BOB, name="Bob")
    [cancelled] = sent_outputs(fake_openai, "responses", 5)
    assert cancelled["cancelled"] is True and cancelled["ride"]["status"] == "cancelled"
    assert bob_confirms.asked[-1].title == "Cancel your ride to Airport?"
    assert await services.storage.rides.rides_for(BOB, GUILD, since=0) == []


async def test_the_same_ride_call_id_orders_once(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED, APPROVED)
    fake_openai.responses.push(
        Reply(calls=[order(call_id="call_ride_1")]),
        Reply("Ordered."),
        Reply(calls=[order(call_id="call_ride_1")]),
        Reply("Already ordered."),
    )
    await run_turn(services, "ride", turn_context(confirmer))
    await run_turn(services, "ride", turn_context(confirmer))
    assert len(confirmer.asked) == 1
    assert len(await services.storage.rides.rides_for(ALICE, GUILD, since=0)) == 1


# ------------------------------------------------------------------------------ the tools directly


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        (ride_args(time="2026-06-30T10:00"), "too_far_ahead"),
        (ride_args(time="whenever"), "invalid_time"),
        (ride_args(pickup="", dropoff="Airport"), "invalid_arguments"),
        (ride_args(pickup="Airport", dropoff="AIRPORT"), "same_place"),
    ],
)
async def test_ride_requests_that_cannot_be_priced(
    storage: Storage, arguments: dict[str, Any], code: str
) -> None:
    registry = builtin_registry(storage, Clock())
    result = await call_tool(registry, "estimate_ride", arguments)
    assert result.error_code == code


async def test_a_ride_asked_for_a_moment_ago_means_now(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    result = await call_tool(
        registry, "order_ride", ride_args(time="2026-05-04T09:58"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert result.ok and result.data["ride"]["time"] == "2026-05-04T10:00:00+00:00"
    assert result.data["ride"]["status"] == "requested"


async def test_rides_are_listed_while_current_and_cancellable_only_until_over(storage: Storage) -> None:
    clock = Clock()
    registry = builtin_registry(storage, clock)
    now = await call_tool(registry, "order_ride", ride_args(), confirmer=ScriptedConfirmer(APPROVED))
    later = await call_tool(
        registry,
        "order_ride",
        ride_args(time="in 3 hours", dropoff="Beach"),
        confirmer=ScriptedConfirmer(APPROVED),
    )
    assert [now.data["ride"]["status"], later.data["ride"]["status"]] == ["requested", "scheduled"]
    listed = await call_tool(registry, "list_rides", {})
    assert [r["dropoff"] for r in listed.data["rides"]] == ["Airport", "Beach"]
    clock.advance(hours=2)
    listed = await call_tool(registry, "list_rides", {})
    assert [r["dropoff"] for r in listed.data["rides"]] == ["Beach"]
    over = await call_tool(
        registry, "cancel_ride", {"ride_id": now.data["ride"]["id"]}, confirmer=ScriptedConfirmer(APPROVED)
    )
    assert over.error_code == "too_late"
    dm = await call_tool(registry, "list_rides", {}, guild_id=None)
    assert dm.data["rides"] == []  # rides ordered in a server are not listed in DMs
    missing = await call_tool(registry, "cancel_ride", {"ride_id": "xyz"})
    assert missing.error_code == "not_found"


async def test_known_places_match_names_aliases_and_mentions() -> None:
    places = KnownPlaces()
    assert (await places.locate("The Airport")).name == "Airport"
    assert (await places.locate("airport terminal 2, door B")).name == "Airport"
    assert (await places.locate("downtown")).name == "City Centre"
    assert (await places.locate("city center")).name == "City Centre"
    assert (await places.locate("harbor")).name == "Harbour"
    assert (await places.locate("the main train station")).name == "Central Station"


# ---------------------------------------------------------------------------------- HTTP provider


class StandInRideApi:
    """A tiny ride API on 127.0.0.1 speaking the contract in tools/rides/http.py."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        self.estimate_status = 200
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        path = "/" + request.match_info["tail"]
        self.requests.append((request.method, path, body, dict(request.headers)))
        quote = {
            "pickup": "Home",
            "dropoff": "Airport T1",
            "ride_type": "standard",
            "time": "2026-05-04T10:00:00+00:00",
            "distance_km": 21.5,
            "duration_min": 28,
            "fare_cents": 4150,
            "currency": "USD",
        }
        if path == "/estimates":
            if self.estimate_status != 200:
                return web.json_response(
                    {"error": {"code": "unknown_place", "message": "We do not serve Mars."}},
                    status=self.estimate_status,
                )
            return web.json_response({"estimate": quote})
        if path == "/rides" and request.method == "POST":
            return web.json_response(
                {"ride": {**quote, "id": "ride-9", "status": "requested", "user_id": str(ALICE)}}
            )
        return web.json_response({"error": {"code": "not_found", "message": "No."}}, status=404)


@pytest.fixture
async def ride_api() -> AsyncIterator[StandInRideApi]:
    api = StandInRideApi()
    await api.start()
    yield api
    await api.runner.cleanup()


def remote_registry(storage: Storage, api: StandInRideApi) -> ToolRegistry:
    config = AppConfig.model_validate({"providers": {"cabs": {"serves": "rides", "base_url": api.url}}})
    registry = ToolRegistry(storage.tool_calls)
    register_builtin_tools(registry, storage=storage, config=config, secrets_env={}, clock=Clock())
    return registry


CABS = settings(enabled_tools=("rides",), ride_provider="cabs")


async def test_http_ride_provider_estimates_and_orders(storage: Storage, ride_api: StandInRideApi) -> None:
    registry = remote_registry(storage, ride_api)
    confirmer = ScriptedConfirmer(APPROVED)
    result = await call_tool(
        registry,
        "order_ride",
        ride_args("Home", "Airport T1"),
        guild_settings=CABS,
        confirmer=confirmer,
        call_id="call_cab_1",
    )
    assert result.ok and result.data["ride"]["id"] == "ride-9" and result.data["ride"]["fare"] == "41.50 USD"
    assert dict(confirmer.asked[0].fields)["Fare estimate"] == "41.50 USD · 21.5 km · ~28 min"
    assert [(m, p) for m, p, _, _ in ride_api.requests] == [("POST", "/estimates"), ("POST", "/rides")]
    _, _, body, headers = ride_api.requests[1]
    assert body["user_id"] == str(ALICE) and body["time"] == MONDAY_10_UTC.isoformat()
    assert headers["Idempotency-Key"] == "call_cab_1" and "Authorization" not in headers
    assert await storage.rides.rides_for(ALICE, GUILD, since=0) == []  # the remote service keeps it


async def test_http_ride_provider_errors_reach_the_model(storage: Storage, ride_api: StandInRideApi) -> None:
    ride_api.estimate_status = 422
    registry = remote_registry(storage, ride_api)
    result = await call_tool(registry, "estimate_ride", ride_args("Home", "Mars"), guild_settings=CABS)
    assert result.error_code == "unknown_place" and result.error_message == "We do not serve Mars."
    await ride_api.runner.cleanup()  # the service goes away
    gone = await call_tool(registry, "estimate_ride", ride_args("Home", "Mars"), guild_settings=CABS)
    assert gone.error_code == "unavailable" and "could not be reached" in (gone.error_message or "")


# ------------------------------------------------------------------------------------ properties

tenths = st.integers(0, 5000)
minutes = st.integers(1, 600)
ride_types = st.sampled_from(RIDE_TYPES)
places = st.sampled_from(DEMO_PLACES)


@given(ride_type=ride_types, tenths_km=tenths, duration=minutes)
def test_fare_is_the_documented_formula_but_never_below_the_minimum(
    ride_type: Any, tenths_km: int, duration: int
) -> None:
    rule = FARES[ride_type]
    fare = fare_cents(ride_type, Trip(tenths_km, duration))
    formula = rule.base_cents + (rule.per_km_cents * tenths_km + 5) // 10 + rule.per_minute_cents * duration
    assert fare == max(rule.minimum_cents, formula) and fare >= rule.minimum_cents


@given(ride_type=ride_types, a=tenths, b=tenths, m=minutes, n=minutes)
def test_fare_never_falls_when_the_trip_grows(ride_type: Any, a: int, b: int, m: int, n: int) -> None:
    small, large = Trip(min(a, b), min(m, n)), Trip(max(a, b), max(m, n))
    assert fare_cents(ride_type, small) <= fare_cents(ride_type, large)


@given(tenths_km=tenths, duration=minutes)
def test_bigger_ride_types_never_cost_less(tenths_km: int, duration: int) -> None:
    trip = Trip(tenths_km, duration)
    fares = [fare_cents(ride_type, trip) for ride_type in ("standard", "comfort", "xl")]
    assert fares == sorted(fares)


@given(km=st.floats(0, 300, allow_nan=False))
def test_trip_length_and_duration_follow_the_road_factor_and_speed(km: float) -> None:
    trip = trip_for(km)
    assert abs(trip.km - km * 1.3) <= 0.05 + 1e-9
    assert trip.minutes >= 1 and trip.minutes * 30 / 60 >= trip.km - 1e-9  # no faster than 30 km/h
    assert trip_for(km) == trip  # deterministic


@given(a=places, b=places, ride_type=ride_types)
def test_a_trip_costs_the_same_both_ways(a: Place, b: Place, ride_type: Any) -> None:
    there = trip_for(straight_km(a, b))
    back = trip_for(straight_km(b, a))
    assert there == back and fare_cents(ride_type, there) == fare_cents(ride_type, back)


@given(cents=st.integers(0, 10**7))
def test_money_is_shown_to_the_cent(cents: int) -> None:
    whole, _, fraction = format_money(cents).removesuffix(" EUR").partition(".")
    assert int(whole) * 100 + int(fraction) == cents and len(fraction) == 2


@given(ride_type=st.one_of(st.none(), st.text(max_size=12)), time=st.one_of(st.none(), st.text(max_size=20)))
def test_ride_arguments_accept_only_known_ride_types(ride_type: str | None, time: str | None) -> None:
    parsed = parse_arguments(
        OrderRideArgs,
        f'{{"pickup": "A", "dropoff": "B", "time": {_json(time)}, "ride_type": {_json(ride_type)}}}',
    )
    if ride_type is None or ride_type in RIDE_TYPES:
        assert isinstance(parsed, OrderRideArgs) and parsed.ride_type == ride_type
    else:
        assert isinstance(parsed, ToolResult) and "ride_type" in (parsed.error_message or "")


def _json(value: str | None) -> str:
    return json.dumps(value)


async def test_every_known_place_can_be_priced_from_the_centre(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    results = await asyncio.gather(
        *(
            call_tool(registry, "estimate_ride", ride_args("City Centre", place.name))
            for place in DEMO_PLACES[1:]
        )
    )
    fares = [result.data["estimate"]["fare"] for result in results]
    assert fares == [format_money(expected_fare("City Centre", place.name)) for place in DEMO_PLACES[1:]]
