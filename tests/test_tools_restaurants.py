"""Restaurant booking through the engine and the stand-in OpenAI server, plus the rules underneath."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.config import AppConfig
from bot.engine.events import Completed, ToolFinished
from bot.storage import Storage
from bot.tooling import ConfirmationOutcome, ToolRegistry, ToolResult, parse_arguments
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines
from tests.conftest import ServicesFactory, settings
from tests.tool_support import (
    ALICE,
    BOB,
    GUILD,
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
from tools.hours import OpeningHours
from tools.restaurants import (
    BookRestaurantArgs,
    CancelReservationArgs,
    FindRestaurantsArgs,
    ListReservationsArgs,
    tables_for,
)

APPROVED = ConfirmationOutcome.APPROVED
BACKENDS = ["responses", "chat"]
TUESDAY_20_UTC = int(dt.datetime(2026, 5, 5, 20, 0, tzinfo=dt.UTC).timestamp())


def book_args(
    restaurant: str = "Trattoria Roma",
    party_size: int = 4,
    time: str = "2026-05-05T20:00",
    notes: str | None = None,
) -> dict[str, Any]:
    return {"restaurant": restaurant, "party_size": party_size, "time": time, "notes": notes}


def book(*args: Any, call_id: str | None = None, **kwargs: Any) -> FunctionCall:
    return FunctionCall("book_restaurant", book_args(*args, **kwargs), call_id=call_id)


async def restaurant_id(storage: Storage, name: str) -> int:
    return next(r.id for r in await storage.bookings.restaurants() if r.name == name)


# ------------------------------------------------------------------------------ through the engine


@pytest.mark.parametrize("backend", BACKENDS)
async def test_find_then_book_with_confirmation_books_a_table(
    backend: str, make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED)
    find = {"cuisine": "italian", "area": None, "party_size": 4, "time": "tomorrow at 8pm"}
    push(
        fake_openai,
        backend,
        Reply(calls=[FunctionCall("find_restaurants", find)]),
        Reply(calls=[book(time="tomorrow at 8pm", notes="window seat")]),
        Reply("Booked: Trattoria Roma, tomorrow at 20:00 for 4."),
    )
    events = await run_turn(
        services,
        "book a table for 4 at an Italian place tomorrow at 8pm",
        turn_context(confirmer, backend=backend),
    )

    final = events[-1]
    assert isinstance(final, Completed) and final.text == "Booked: Trattoria Roma, tomorrow at 20:00 for 4."
    [found] = sent_outputs(fake_openai, backend, 1)
    assert found["ok"] and found["time"] == "2026-05-05T20:00:00+00:00"
    assert {r["name"]: r["available"] for r in found["restaurants"]} == {
        "Osteria del Ponte": True,
        "Pizzeria Napoli": True,
        "Trattoria Roma": True,
    }
    [booked] = sent_outputs(fake_openai, backend, 2)
    assert booked["ok"] and booked["booked"] is True
    assert booked["reservation"]["restaurant"] == "Trattoria Roma"
    assert booked["reservation"]["time"] == "2026-05-05T20:00:00+00:00"

    [asked] = confirmer.asked
    assert asked.title == "Book a table at Trattoria Roma?" and asked.user_id == ALICE
    assert dict(asked.fields) == {
        "Restaurant": "Trattoria Roma · Old Town",
        "Party": "4 people",
        "When": "Tuesday 5 May 2026, 20:00 (UTC)",
        "Notes": "window seat",
    }
    [row] = await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)
    assert (row.restaurant_name, row.party_size, row.starts_at, row.notes, row.user_name, row.status) == (
        "Trattoria Roma",
        4,
        TUESDAY_20_UTC,
        "window seat",
        "Ada",
        "confirmed",
    )
    assert [e.summary for e in events if isinstance(e, ToolFinished)][-1].startswith("Booked Trattoria Roma")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("outcome", "code"),
    [(ConfirmationOutcome.DECLINED, "declined"), (ConfirmationOutcome.TIMED_OUT, "timed_out")],
)
async def test_declined_or_unanswered_confirmation_books_nothing(
    backend: str,
    outcome: ConfirmationOutcome,
    code: str,
    make_services: ServicesFactory,
    fake_openai: FakeOpenAI,
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(outcome)
    push(fake_openai, backend, Reply(calls=[book()]), Reply("Okay, I did not book it."))
    events = await run_turn(services, "book Trattoria Roma", turn_context(confirmer, backend=backend))
    assert isinstance(events[-1], Completed)
    [result] = sent_outputs(fake_openai, backend, 1)
    assert result == {"ok": False, "error": {"code": code, "message": result["error"]["message"]}}
    assert "nothing was done" in result["error"]["message"]
    assert len(confirmer.asked) == 1
    assert await services.storage.bookings.reservations_for(ALICE, GUILD, since=0) == []


@pytest.mark.parametrize(
    ("backend", "bad", "code", "fragment"),
    [
        ("responses", book(time="2026-05-04T09:00"), "past_time", "has already passed"),
        ("chat", book(time="yesterday at 8pm"), "invalid_time", "yesterday"),
        ("responses", book(time="2026-05-04T20:00"), "closed", "Mondays"),  # Trattoria Roma: closed Mondays
        ("responses", book(time="2026-05-05T16:00"), "closed", "12:00-14:30,18:00-23:00"),  # between services
        ("chat", book(time="2026-05-05T22:30"), "closed", "last seating"),  # closes 23:00
        ("responses", book(time="2026-05-05T20:15"), "off_slot", "20:00 or 20:30"),
        ("chat", book(party_size=25), "invalid_arguments", "party_size"),
        ("responses", book(party_size=0), "invalid_arguments", "party_size"),
        ("responses", book(restaurant="  "), "invalid_arguments", "restaurant"),
        ("chat", book(notes="x" * 300), "invalid_arguments", "notes"),
        (
            "responses",
            FunctionCall("book_restaurant", {"restaurant": "Trattoria Roma"}),
            "invalid_arguments",
            "time",
        ),
        ("responses", book(restaurant="Burger Palace"), "not_found", "find_restaurants"),
        ("responses", book(time="2026-09-01T20:00"), "too_far_ahead", "at most 90 days"),
    ],
)
async def test_impossible_bookings_are_fed_back_and_the_model_corrects(
    backend: str,
    bad: FunctionCall,
    code: str,
    fragment: str,
    make_services: ServicesFactory,
    fake_openai: FakeOpenAI,
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED)
    push(fake_openai, backend, Reply(calls=[bad]), Reply(calls=[book()]), Reply("Booked after all."))
    events = await run_turn(services, "book it", turn_context(confirmer, backend=backend))
    assert isinstance(events[-1], Completed) and events[-1].text == "Booked after all."
    [error] = sent_outputs(fake_openai, backend, 1)
    assert error["ok"] is False and error["error"]["code"] == code
    assert fragment in error["error"]["message"]
    [corrected] = sent_outputs(fake_openai, backend, 2)
    assert corrected["ok"] and corrected["reservation"]["time"] == "2026-05-05T20:00:00+00:00"
    assert len(confirmer.asked) == 1  # an impossible booking is never put to the user
    assert len(await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)) == 1


async def test_full_slot_offers_nearby_times_and_the_model_takes_one(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    osteria = await restaurant_id(services.storage, "Osteria del Ponte")  # 3 tables a slot
    for user, party in ((100, 4), (101, 8)):  # 1 + 2 tables: the 20:00 slot is full
        reserved = await services.storage.bookings.reserve(
            call_id=f"earlier-{user}",
            restaurant_id=osteria,
            user_id=user,
            user_name="someone",
            guild_id=GUILD,
            starts_at=TUESDAY_20_UTC,
            party_size=party,
            tables=tables_for(party),
            notes="",
            capacity=3,
        )
        assert reserved.outcome == "booked"
    confirmer = ScriptedConfirmer(APPROVED)
    fake_openai.responses.push(
        Reply(calls=[book("Osteria del Ponte", 2)]),
        Reply(calls=[book("Osteria del Ponte", 2, "2026-05-05T20:30")]),
        Reply("20:00 was full; booked 20:30."),
    )
    await run_turn(services, "osteria at 8 tomorrow", turn_context(confirmer))
    [full] = sent_outputs(fake_openai, "responses", 1)
    assert full["error"]["code"] == "full"
    assert "Free nearby: 18:00, 18:30, 19:00, 19:30, 20:30, 21:00, 21:30, 22:00." in full["error"]["message"]
    [booked] = sent_outputs(fake_openai, "responses", 2)
    assert booked["reservation"]["time"] == "2026-05-05T20:30:00+00:00"
    assert len(confirmer.asked) == 1


async def test_times_are_read_in_the_guild_time_zone(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    fake_openai.responses.push(Reply(calls=[book(time="tomorrow at 8pm")]), Reply("Booked."))
    confirmer = ScriptedConfirmer(APPROVED)
    await run_turn(services, "tomorrow 8pm", turn_context(confirmer, timezone="Europe/Paris"))
    [booked] = sent_outputs(fake_openai, "responses", 1)
    assert booked["reservation"]["time"] == "2026-05-05T20:00:00+02:00"
    assert dict(confirmer.asked[0].fields)["When"] == "Tuesday 5 May 2026, 20:00 (Europe/Paris)"
    [row] = await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)
    assert row.starts_at == TUESDAY_20_UTC - 2 * 3600


async def test_the_booking_is_for_the_time_the_user_confirmed_even_if_the_clock_moved(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    clock = Clock(dt.datetime(2026, 5, 4, 23, 59, 30, tzinfo=dt.UTC))
    services = await services_with_tools(make_services, clock)
    confirmer = ScriptedConfirmer(APPROVED, on_ask=lambda: clock.advance(minutes=1))  # past midnight
    fake_openai.responses.push(Reply(calls=[book(time="tomorrow at 8pm")]), Reply("Booked."))
    await run_turn(services, "tomorrow at 8pm", turn_context(confirmer))
    [row] = await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)
    assert row.starts_at == TUESDAY_20_UTC  # what the embed showed, not Wednesday


async def test_one_user_cannot_double_book_a_restaurant_slot(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED)
    fake_openai.responses.push(
        Reply(calls=[book()]), Reply("Booked."), Reply(calls=[book(party_size=2)]), Reply("No.")
    )
    await run_turn(services, "book", turn_context(confirmer))
    await run_turn(services, "book again", turn_context(confirmer))
    [duplicate] = sent_outputs(fake_openai, "responses", 3)
    assert duplicate["error"]["code"] == "duplicate"
    assert len(confirmer.asked) == 1
    assert len(await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)) == 1


async def test_cancelling_someone_elses_booking_is_refused_and_the_owner_can_cancel(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    bob_confirms = ScriptedConfirmer(APPROVED, APPROVED)
    fake_openai.responses.push(Reply(calls=[book()]), Reply("Booked for Bob."))
    await run_turn(services, "book", turn_context(bob_confirms), author=BOB, name="Bob")
    [reservation] = await services.storage.bookings.reservations_for(BOB, GUILD, since=0)

    alice_confirms = ScriptedConfirmer(APPROVED)
    cancel = FunctionCall("cancel_reservation", {"reservation_id": str(reservation.id)})
    fake_openai.responses.push(
        Reply(calls=[cancel, FunctionCall("list_reservations", {})]), Reply("That one is not yours.")
    )
    await run_turn(services, f"cancel reservation {reservation.id}", turn_context(alice_confirms))
    refused, listed = sent_outputs(fake_openai, "responses", 3)
    assert refused["error"]["code"] == "not_yours"
    assert listed == {"ok": True, "reservations": []}  # Alice sees only her own
    assert alice_confirms.asked == []
    stored = await services.storage.bookings.reservation(reservation.id)
    assert stored is not None and stored.status == "confirmed"

    fake_openai.responses.push(
        Reply(calls=[FunctionCall("list_reservations", {})]),
        Reply(calls=[cancel]),
        Reply("Cancelled."),
        Reply(calls=[FunctionCall("list_reservations", {})]),
        Reply("Nothing booked."),
    )
    await run_turn(services, "cancel my table", turn_context(bob_confirms), author=BOB, name="Bob")
    [bobs] = sent_outputs(fake_openai, "responses", 5)
    assert [r["id"] for r in bobs["reservations"]] == [str(reservation.id)]
    [cancelled] = sent_outputs(fake_openai, "responses", 6)
    assert cancelled["cancelled"] is True and cancelled["reservation"]["status"] == "cancelled"
    assert bob_confirms.asked[-1].title == "Cancel your table at Trattoria Roma?"
    await run_turn(services, "what do I have?", turn_context(bob_confirms), author=BOB, name="Bob")
    assert sent_outputs(fake_openai, "responses", 8) == [{"ok": True, "reservations": []}]


async def test_the_same_call_id_books_once(make_services: ServicesFactory, fake_openai: FakeOpenAI) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(APPROVED, APPROVED)
    fake_openai.responses.push(
        Reply(calls=[book(call_id="call_table_1")]),
        Reply("Booked."),
        Reply(calls=[book(call_id="call_table_1")]),  # a replay of the same call
        Reply("Still booked."),
    )
    await run_turn(services, "book", turn_context(confirmer))
    await run_turn(services, "book", turn_context(confirmer))
    first, replay = sent_outputs(fake_openai, "responses", 1)[0], sent_outputs(fake_openai, "responses", 3)[0]
    assert first == replay and first["booked"] is True
    assert len(confirmer.asked) == 1
    assert len(await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)) == 1


async def test_without_confirmation_setting_it_books_directly(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer()
    fake_openai.responses.push(Reply(calls=[book()]), Reply("Booked."))
    await run_turn(services, "book", turn_context(confirmer, confirm_side_effects=False))
    assert confirmer.asked == []
    assert len(await services.storage.bookings.reservations_for(ALICE, GUILD, since=0)) == 1


# ------------------------------------------------------------------------------ the tools directly


async def test_find_reports_why_a_restaurant_has_no_table(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    result = await call_tool(
        registry,
        "find_restaurants",
        {"cuisine": None, "area": "old town", "party_size": 2, "time": "2026-05-04T20:00"},
    )
    assert result.ok
    by_name = {r["name"]: r for r in result.data["restaurants"]}
    assert by_name["Trattoria Roma"] == {
        "id": by_name["Trattoria Roma"]["id"],
        "name": "Trattoria Roma",
        "cuisine": "italian",
        "area": "Old Town",
        "hours": "closed",
        "available": False,
        "reason": "closed",
    }
    nothing = await call_tool(
        registry, "find_restaurants", {"cuisine": "martian", "area": None, "party_size": None, "time": None}
    )
    assert nothing.ok and nothing.data["restaurants"] == []
    assert "italian" in nothing.data["hint"] and "Old Town" in nothing.data["hint"]
    sushi = await call_tool(
        registry,
        "find_restaurants",
        {"cuisine": "sushi", "area": "city center", "party_size": None, "time": None},
    )
    assert [r["name"] for r in sushi.data["restaurants"]] == ["Sakura Sushi"]


async def test_a_guild_pointing_at_an_unknown_provider_gets_a_clear_error(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    result = await call_tool(
        registry,
        "list_reservations",
        {},
        guild_settings=settings(enabled_tools=("restaurants",), booking_provider="nowhere"),
    )
    assert result.error_code == "unavailable" and "'nowhere'" in (result.error_message or "")


async def test_no_confirmer_means_nothing_is_booked(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    result = await call_tool(registry, "book_restaurant", book_args())
    assert result.error_code == "confirmation_unavailable"
    assert await storage.bookings.reservations_for(ALICE, GUILD, since=0) == []


async def test_concurrent_bookings_never_overfill_a_slot(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    results = await asyncio.gather(
        *(
            call_tool(
                registry,
                "book_restaurant",
                book_args("Osteria del Ponte", 4),
                user=200 + n,
                confirmer=ScriptedConfirmer(APPROVED),
            )
            for n in range(6)
        )
    )
    assert sorted(r.ok for r in results) == [False, False, False, True, True, True]  # 3 tables
    assert {r.error_code for r in results if not r.ok} == {"full"}
    osteria = await restaurant_id(storage, "Osteria del Ponte")
    assert await storage.bookings.tables_taken(osteria, TUESDAY_20_UTC) == 3


async def test_a_big_party_takes_several_tables(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    big = await call_tool(
        registry, "book_restaurant", book_args("Osteria del Ponte", 10), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert big.ok
    small = await call_tool(
        registry, "book_restaurant", book_args("osteria", 1), user=BOB, confirmer=ScriptedConfirmer(APPROVED)
    )
    assert small.error_code == "full"


async def test_restaurant_names_resolve_by_id_or_unique_part(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    roma = await restaurant_id(storage, "Trattoria Roma")
    by_id = await call_tool(
        registry, "book_restaurant", book_args(str(roma)), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert by_id.ok and by_id.data["reservation"]["restaurant"] == "Trattoria Roma"
    pizza = await call_tool(
        registry, "book_restaurant", book_args("Pizz"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert pizza.ok and pizza.data["reservation"]["restaurant"] == "Pizzeria Napoli"
    ambiguous = await call_tool(
        registry, "book_restaurant", book_args("ria"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert ambiguous.error_code == "ambiguous" and "Osteria del Ponte" in (ambiguous.error_message or "")
    olive = await call_tool(
        registry,
        "book_restaurant",
        book_args("olive and thyme", time="2026-05-05T19:00"),
        confirmer=ScriptedConfirmer(APPROVED),
    )
    assert olive.ok and olive.data["reservation"]["restaurant"] == "Olive & Thyme"


async def test_cancelling_twice_or_a_past_reservation_is_explained(storage: Storage) -> None:
    clock = Clock()
    registry = builtin_registry(storage, clock)
    booked = await call_tool(registry, "book_restaurant", book_args(), confirmer=ScriptedConfirmer(APPROVED))
    reservation_id = booked.data["reservation"]["id"]
    cancel = {"reservation_id": f"#{reservation_id}"}
    assert (await call_tool(registry, "cancel_reservation", cancel, confirmer=ScriptedConfirmer(APPROVED))).ok
    again = await call_tool(registry, "cancel_reservation", cancel, confirmer=ScriptedConfirmer(APPROVED))
    assert again.error_code == "already_cancelled"
    missing = await call_tool(registry, "cancel_reservation", {"reservation_id": "R-999"})
    assert missing.error_code == "not_found"

    later = await call_tool(
        registry, "book_restaurant", book_args(time="2026-05-05T21:00"), confirmer=ScriptedConfirmer(APPROVED)
    )
    clock.advance(days=2)
    past = await call_tool(
        registry, "cancel_reservation", {"reservation_id": later.data["reservation"]["id"]}
    )
    assert past.error_code == "too_late"


async def test_editing_the_catalog_changes_what_can_be_booked(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    roma = await restaurant_id(storage, "Trattoria Roma")
    assert await storage.bookings.update_restaurant(
        roma, opening_hours="daily 18:00-23:00", tables_per_slot=1
    )
    monday = await call_tool(
        registry, "book_restaurant", book_args(time="2026-05-04T20:00"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert monday.ok
    assert await storage.bookings.update_restaurant(roma, active=False)
    gone = await call_tool(
        registry, "find_restaurants", {"cuisine": None, "area": "Old Town", "party_size": None, "time": None}
    )
    assert "Trattoria Roma" not in [r["name"] for r in gone.data["restaurants"]]
    added = await storage.bookings.add_restaurant(
        name="Tokyo Nights",
        cuisine="japanese",
        area="Harbour",
        opening_hours="daily 17:00-23:00",
        tables_per_slot=2,
        timezone="Asia/Tokyo",
    )
    tokyo = await call_tool(
        registry,
        "book_restaurant",
        book_args(added.name, time="2026-05-05T11:00"),
        confirmer=ScriptedConfirmer(APPROVED),
    )
    assert tokyo.ok  # 11:00 UTC is 20:00 in Tokyo, where its hours are


# ---------------------------------------------------------------------------------- HTTP provider


class StandInBookingApi:
    """A tiny booking API on 127.0.0.1 speaking the contract in tools/restaurants/http.py."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any, dict[str, str]]] = []
        self.overrides: dict[tuple[str, str], web.Response] = {}
        self.hang = asyncio.Event()
        self.release = asyncio.Event()
        self.owner = str(ALICE)
        app = web.Application()
        app.router.add_route("*", "/api/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/api"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        path = "/" + request.match_info["tail"]
        self.requests.append((request.method, path, dict(request.query), body, dict(request.headers)))
        if self.hang.is_set():
            await self.release.wait()
        override = self.overrides.get((request.method, path))
        if override is not None:
            return override
        reservation = {
            "id": "abc-1",
            "restaurant": "Chez Remote",
            "time": "2026-05-05T20:00:00+00:00",
            "party_size": 2,
            "status": "confirmed",
            "user_id": self.owner,
        }
        if (request.method, path) == ("GET", "/restaurants"):
            option = {
                "id": "r1",
                "name": "Chez Remote",
                "cuisine": "french",
                "area": "Riverside",
                "hours": "18:00-23:00",
                "available": True,
                "tables_left": 2,
            }
            return web.json_response({"restaurants": [option]})
        if (request.method, path) == ("POST", "/availability"):
            return web.json_response(
                {
                    "restaurant": {"id": "r1", "name": "Chez Remote", "area": "Riverside"},
                    "time": body["time"] if isinstance(body, dict) else None,
                    "tables_left": 2,
                }
            )
        if (request.method, path) == ("POST", "/reservations"):
            return web.json_response({"reservation": reservation}, status=201)
        if (request.method, path) == ("GET", "/reservations"):
            return web.json_response({"reservations": [reservation]})
        if path == "/reservations/abc-1" and request.method == "GET":
            return web.json_response({"reservation": reservation})
        if path == "/reservations/abc-1" and request.method == "DELETE":
            return web.json_response({"reservation": {**reservation, "status": "cancelled"}})
        return web.json_response({"error": {"code": "not_found", "message": "No such thing."}}, status=404)


@pytest.fixture
async def booking_api() -> AsyncIterator[StandInBookingApi]:
    api = StandInBookingApi()
    await api.start()
    yield api
    api.release.set()
    await api.runner.cleanup()


def remote_registry(
    storage: Storage, api: StandInBookingApi, *, env: dict[str, str] | None = None
) -> ToolRegistry:
    config = AppConfig.model_validate(
        {
            "providers": {
                "acme": {
                    "serves": "restaurants",
                    "base_url": api.url,
                    "api_key_env": "ACME_KEY",
                    "timeout_s": 0.2,
                }
            }
        }
    )
    registry = ToolRegistry(storage.tool_calls)
    register_builtin_tools(
        registry,
        storage=storage,
        config=config,
        secrets_env={"ACME_KEY": "s3cret"} if env is None else env,
        clock=Clock(),
    )
    return registry


ACME = settings(enabled_tools=("restaurants",), booking_provider="acme")


async def test_http_provider_finds_books_lists_and_cancels(
    storage: Storage, booking_api: StandInBookingApi
) -> None:
    registry = remote_registry(storage, booking_api)
    found = await call_tool(
        registry,
        "find_restaurants",
        {"cuisine": "french", "area": None, "party_size": 2, "time": "tomorrow at 8pm"},
        guild_settings=ACME,
    )
    assert found.ok and found.data["restaurants"][0]["name"] == "Chez Remote"
    confirmer = ScriptedConfirmer(APPROVED, APPROVED)
    booked = await call_tool(
        registry,
        "book_restaurant",
        book_args("Chez Remote", 2),
        guild_settings=ACME,
        confirmer=confirmer,
        call_id="call_remote_1",
    )
    assert booked.ok and booked.data["reservation"] == {
        "id": "abc-1",
        "restaurant": "Chez Remote",
        "time": "2026-05-05T20:00:00+00:00",
        "party_size": 2,
        "status": "confirmed",
    }
    assert dict(confirmer.asked[0].fields)["Restaurant"] == "Chez Remote · Riverside"
    listed = await call_tool(registry, "list_reservations", {}, guild_settings=ACME)
    assert [r["id"] for r in listed.data["reservations"]] == ["abc-1"]
    cancelled = await call_tool(
        registry, "cancel_reservation", {"reservation_id": "abc-1"}, guild_settings=ACME, confirmer=confirmer
    )
    assert cancelled.ok and cancelled.data["reservation"]["status"] == "cancelled"

    calls = [(method, path) for method, path, *_ in booking_api.requests]
    assert calls == [
        ("GET", "/restaurants"),
        ("POST", "/availability"),
        ("POST", "/reservations"),
        ("GET", "/reservations"),
        ("GET", "/reservations/abc-1"),
        ("GET", "/reservations/abc-1"),
        ("DELETE", "/reservations/abc-1"),
    ]
    _, _, query, _, _ = booking_api.requests[0]
    assert query == {"cuisine": "french", "party_size": "2", "time": "2026-05-05T20:00:00+00:00"}
    _, _, _, body, headers = booking_api.requests[2]
    assert body == {
        "restaurant": "Chez Remote",
        "party_size": 2,
        "time": "2026-05-05T20:00:00+00:00",
        "notes": "",
        "user_id": str(ALICE),
        "user_name": f"user{ALICE}",
        "guild_id": str(GUILD),
    }
    assert headers["Authorization"] == "Bearer s3cret" and headers["Idempotency-Key"] == "call_remote_1"
    assert booking_api.requests[3][2] == {
        "user_id": str(ALICE),
        "since": "2026-05-04T10:00:00+00:00",
        "guild_id": str(GUILD),
    }


@pytest.mark.parametrize(
    ("response", "code", "fragment"),
    [
        (
            lambda: web.json_response(
                {"error": {"code": "full", "message": "No table at 20:00."}}, status=409
            ),
            "full",
            "No table at 20:00.",
        ),
        (
            lambda: web.json_response(
                {"error": {"code": "closed", "message": "Closed on Tuesdays."}}, status=422
            ),
            "closed",
            "Tuesdays",
        ),
        (
            lambda: web.json_response({"error": {"code": "weird", "message": "?"}}, status=500),
            "unavailable",
            "having problems",
        ),
        (lambda: web.json_response({"error": "nope"}, status=401), "unavailable", "credentials"),
        (lambda: web.json_response({}, status=429), "unavailable", "busy"),
        (lambda: web.Response(text="<html>oops</html>", status=200), "unavailable", "unreadable"),
        (lambda: web.json_response({"restaurant": "not an object"}), "unavailable", "unreadable"),
    ],
)
async def test_http_provider_errors_become_tool_results(
    storage: Storage,
    booking_api: StandInBookingApi,
    response: Callable[[], web.Response],
    code: str,
    fragment: str,
) -> None:
    booking_api.overrides[("POST", "/availability")] = response()  # a response is sent once
    registry = remote_registry(storage, booking_api)
    confirmer = ScriptedConfirmer(APPROVED)
    result = await call_tool(
        registry, "book_restaurant", book_args("Chez Remote", 2), guild_settings=ACME, confirmer=confirmer
    )
    assert result.error_code == code and fragment in (result.error_message or "")
    assert confirmer.asked == []
    assert [path for _, path, *_ in booking_api.requests] == ["/availability"]  # nothing was booked


async def test_http_provider_timeout_is_unavailable(storage: Storage, booking_api: StandInBookingApi) -> None:
    booking_api.hang.set()
    registry = remote_registry(storage, booking_api)
    result = await call_tool(registry, "list_reservations", {}, guild_settings=ACME)
    assert result.error_code == "unavailable" and "did not answer in time" in (result.error_message or "")


async def test_http_provider_never_acts_on_another_users_reservation(
    storage: Storage, booking_api: StandInBookingApi
) -> None:
    booking_api.owner = str(BOB)  # the service (wrongly) hands out Bob's reservation
    registry = remote_registry(storage, booking_api)
    result = await call_tool(
        registry,
        "cancel_reservation",
        {"reservation_id": "abc-1"},
        guild_settings=ACME,
        confirmer=ScriptedConfirmer(APPROVED),
    )
    assert result.error_code == "not_yours"
    assert "DELETE" not in [method for method, *_ in booking_api.requests]


async def test_http_provider_without_its_key_is_unavailable(
    storage: Storage, booking_api: StandInBookingApi
) -> None:
    registry = remote_registry(storage, booking_api, env={})
    result = await call_tool(registry, "list_reservations", {}, guild_settings=ACME)
    assert result.error_code == "unavailable" and "API key is missing" in (result.error_message or "")
    assert booking_api.requests == []


# ------------------------------------------------------------------------------------ properties

ARGUMENT_MODELS = [FindRestaurantsArgs, BookRestaurantArgs, ListReservationsArgs, CancelReservationArgs]


async def test_every_tool_schema_is_strict(storage: Storage) -> None:
    registry = builtin_registry(storage, Clock())
    names = [tool.name for tool in registry.enabled(["restaurants"])]
    assert names == ["find_restaurants", "book_restaurant", "list_reservations", "cancel_reservation"]
    for style in ("responses", "chat"):
        for schema in registry.schemas(["restaurants"], style):
            function = schema if style == "responses" else schema["function"]
            parameters = function["parameters"]
            assert function["strict"] is True and parameters["additionalProperties"] is False
            assert parameters["required"] == list(parameters["properties"])
            text = json.dumps(parameters)
            for unsupported in ('"default"', "minLength", "maxLength"):
                assert unsupported not in text


@given(size=st.integers(-100, 100))
def test_party_size_is_accepted_exactly_from_1_to_20(size: int) -> None:
    raw = json.dumps(
        {"restaurant": "Trattoria Roma", "party_size": size, "time": "tomorrow 8pm", "notes": None}
    )
    parsed = parse_arguments(BookRestaurantArgs, raw)
    if 1 <= size <= 20:
        assert isinstance(parsed, BookRestaurantArgs) and parsed.party_size == size
    else:
        assert isinstance(parsed, ToolResult) and parsed.error_code == "invalid_arguments"
        assert "party_size" in (parsed.error_message or "")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


@given(
    model=st.sampled_from(ARGUMENT_MODELS),
    payload=st.dictionaries(
        st.sampled_from(
            ["restaurant", "party_size", "time", "notes", "cuisine", "area", "reservation_id", "x"]
        ),
        json_values,
        max_size=5,
    ),
)
def test_any_json_object_parses_or_is_a_readable_error(model: type, payload: dict[str, Any]) -> None:
    parsed = parse_arguments(model, json.dumps(payload))
    if isinstance(parsed, ToolResult):
        assert parsed.error_code == "invalid_arguments" and (parsed.error_message or "").startswith("Invalid")
    else:
        assert isinstance(parsed, model)


@given(notes=st.text(max_size=400))
def test_notes_are_tidied_and_limited(notes: str) -> None:
    raw = json.dumps({"restaurant": "Roma", "party_size": 2, "time": "now", "notes": notes})
    parsed = parse_arguments(BookRestaurantArgs, raw)
    tidy = " ".join(notes.split())
    if len(tidy) <= 200:
        assert isinstance(parsed, BookRestaurantArgs) and parsed.notes == (tidy or None)
    else:
        assert isinstance(parsed, ToolResult) and "notes" in (parsed.error_message or "")


day_hours = st.lists(st.tuples(st.integers(0, 47), st.integers(1, 48)), max_size=3).map(
    lambda pairs: tuple(sorted({(a * 30, (a + b) * 30) for a, b in pairs if a + b <= 48}))
)


@given(week=st.lists(day_hours, min_size=7, max_size=7))
def test_opening_hours_text_round_trips(week: list[tuple[tuple[int, int], ...]]) -> None:
    try:
        hours = OpeningHours(tuple(week))
    except ValueError:
        return  # overlapping intervals are not opening hours
    assert OpeningHours.parse(hours.format()) == hours


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("mon-fri", "missing hours"),
        ("funday 12:00-14:00", "unknown days"),
        ("fri-mon 12:00-14:00", "backwards"),
        ("mon 14:00-12:00", "end after it starts"),
        ("mon 12:00-15:00,14:00-16:00", "overlap"),
        ("mon 12-15", "must look like 18:30"),
        ("mon 12:00-24:30", "not a time of day"),
    ],
)
def test_bad_opening_hours_are_refused(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        OpeningHours.parse(spec)


def test_opening_hours_seating_rule() -> None:
    hours = OpeningHours.parse("daily 12:00-14:30,18:00-23:00; mon closed")
    assert hours.format() == "tue-sun 12:00-14:30,18:00-23:00"
    tuesday = 1
    assert hours.seats_at(tuesday, 12 * 60) and hours.seats_at(tuesday, 22 * 60)
    assert not hours.seats_at(tuesday, 22 * 60 + 30)  # last seating an hour before closing
    assert not hours.seats_at(tuesday, 15 * 60) and not hours.seats_at(0, 19 * 60)


async def test_http_provider_garbled_reservation_is_unavailable(
    storage: Storage, booking_api: StandInBookingApi
) -> None:
    garbled = {
        "id": "x",
        "restaurant": "y",
        "time": "2026-05-05T20:00",
        "party_size": "many",
        "status": "confirmed",
    }
    booking_api.overrides[("GET", "/reservations")] = web.json_response({"reservations": [garbled]})
    registry = remote_registry(storage, booking_api)
    result = await call_tool(registry, "list_reservations", {}, guild_settings=ACME)
    assert result.error_code == "unavailable" and "unreadable reservation" in (result.error_message or "")
