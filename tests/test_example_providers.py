"""The example provider (examples/provider_server.py) driven by the bot's own HTTP clients.

Each test starts the example on a free port of 127.0.0.1 and points a real `HttpBookingProvider` or
`HttpRideProvider` at it, built as `tools.providers.configured_providers` builds them (a name, a
`ProviderConfig`, the environment). The example's request models forbid unknown fields, so a field
the bot starts sending, or one it stops sending, fails here. The last tests read the paths the clients
call out of their source and require each in docs/providers.md, so the document cannot go stale.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import re
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

import tools.owned
import tools.restaurants.http
import tools.rides.http
from bot.config import ProviderConfig
from bot.tooling import ToolContext, ToolError
from examples.provider_server import KEY_VARIABLE, STATUS_OF_CODE, ExampleProvider
from tests.conftest import settings
from tests.tool_support import ALICE, BOB, GUILD
from tools.owned import OwnedResource, RecordKind
from tools.providers import PASS_THROUGH_CODES
from tools.restaurants import HttpBookingProvider
from tools.restaurants.model import RESERVATION, BookingRequest, RestaurantQuery
from tools.rides import HttpRideProvider
from tools.rides.model import RIDE, RideRequest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "providers.md"
KEY = "example-key"
PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)  # a Monday morning
TUESDAY_8PM = dt.datetime(2026, 5, 5, 20, 0, tzinfo=PARIS)
Route = tuple[str, str]


class RunningExample:
    """The example provider on a free port, with every route it answered, as (method, template)."""

    def __init__(self, *, api_key: str | None = KEY) -> None:
        self.routes: list[Route] = []
        app = ExampleProvider(api_key=api_key, clock=lambda: NOW).app()
        app.middlewares.append(self._record)
        self.runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        self.routes.append((request.method, resource.canonical if resource else request.path))
        return await handler(request)

    def config(self, serves: typing.Literal["restaurants", "rides"]) -> ProviderConfig:
        return ProviderConfig(serves=serves, base_url=self.url, api_key_env=KEY_VARIABLE, timeout_s=5.0)

    def bookings(self, key: str = KEY) -> HttpBookingProvider:
        return HttpBookingProvider("example_tables", self.config("restaurants"), {KEY_VARIABLE: key})

    def rides(self, key: str = KEY) -> HttpRideProvider:
        return HttpRideProvider("example_rides", self.config("rides"), {KEY_VARIABLE: key})


@pytest.fixture
async def example() -> AsyncIterator[RunningExample]:
    running = RunningExample()
    await running.start()
    yield running
    await running.runner.cleanup()


def caller(user_id: int = ALICE, call_id: str = "call_1", guild_id: int | None = GUILD) -> ToolContext:
    return ToolContext(
        user_id=user_id,
        user_name=f"user{user_id}",
        guild_id=guild_id,
        channel_id=1001,
        conversation_key="channel:1001",
        call_id=call_id,
        settings=settings(timezone="Europe/Paris"),
    )


def table(
    restaurant: str = "Trattoria Roma", party_size: int = 2, at: dt.datetime = TUESDAY_8PM
) -> BookingRequest:
    return BookingRequest(restaurant, party_size, at, "window seat", NOW)


def ride(
    pickup: str = "Central Station", dropoff: str = "Airport", at: dt.datetime = TUESDAY_8PM
) -> RideRequest:
    return RideRequest(pickup, dropoff, at, "comfort", NOW)


async def refused(action: Awaitable[object]) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await action
    return caught.value


# ------------------------------------------------------------------------------------ restaurants


async def test_restaurants_find_check_book_list_and_cancel(example: RunningExample) -> None:
    bookings = example.bookings()
    found = await bookings.find(RestaurantQuery("italian", None, 2, TUESDAY_8PM, NOW), caller())
    assert [(o.id, o.name, o.hours, o.available, o.tables_left) for o in found.options] == [
        ("r1", "Trattoria Roma", "12:00-23:00", True, 3)
    ]
    slot = await bookings.check(table(), caller())
    assert (slot.restaurant_id, slot.restaurant_name, slot.area, slot.tables_left) == (
        "r1",
        "Trattoria Roma",
        "Old Town",
        3,
    )
    assert slot.starts_at == TUESDAY_8PM

    booked = await bookings.book(table(), caller(call_id="call_book"))
    assert (booked.restaurant, booked.party_size, booked.notes, booked.status) == (
        "Trattoria Roma",
        2,
        "window seat",
        "confirmed",
    )
    assert booked.starts_at == TUESDAY_8PM
    listed = await bookings.records.of_caller(caller(), since=NOW)
    assert [r.id for r in listed] == [booked.id]
    assert await bookings.records.of_caller(caller(guild_id=None), since=NOW) == []  # DMs are apart
    assert (await bookings.records.get(booked.id, caller())).status == "confirmed"
    cancelled = await bookings.records.cancel(booked.id, caller(call_id="call_cancel"))
    assert cancelled.status == "cancelled"
    assert await bookings.records.of_caller(caller(), since=NOW) == []

    assert example.routes == [
        ("GET", "/restaurants"),
        ("POST", "/availability"),
        ("POST", "/reservations"),
        ("GET", "/reservations"),
        ("GET", "/reservations"),
        ("GET", "/reservations/{id}"),
        ("DELETE", "/reservations/{id}"),
        ("GET", "/reservations"),
    ]


async def test_a_search_with_no_time_gives_hours_but_no_availability(example: RunningExample) -> None:
    found = await example.bookings().find(RestaurantQuery(None, "harbour", None, None, NOW), caller())
    assert [(o.name, o.hours, o.available) for o in found.options] == [("Sakura", "closed", None)]  # Monday
    nothing = await example.bookings().find(RestaurantQuery("thai", None, None, None, NOW), caller())
    assert nothing.options == [] and nothing.hint and "italian" in nothing.hint


async def test_a_repeated_booking_call_books_once(example: RunningExample) -> None:
    bookings = example.bookings()
    first = await bookings.book(table(party_size=4), caller(call_id="call_same"))
    again = await bookings.book(table(party_size=4), caller(call_id="call_same"))
    assert again == first
    assert [r.id for r in await bookings.records.of_caller(caller(), since=NOW)] == [first.id]
    slot = await bookings.check(table(party_size=1), caller(user_id=BOB))
    assert slot.tables_left == 2  # one table taken, not two


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (table(restaurant="Chez Nobody"), "not_found", "no restaurant called 'Chez Nobody'"),
        (table(party_size=20), "full", "no table for 20 at 20:00"),
        (table(at=TUESDAY_8PM.replace(hour=22, minute=30)), "closed", "does not seat guests at 22:30"),
        (table(at=TUESDAY_8PM.replace(minute=15)), "off_slot", "hour or half hour"),
        (table(at=NOW - dt.timedelta(days=1)), "past_time", "already passed"),
    ],
)
async def test_a_booking_the_restaurant_cannot_take_says_why(
    example: RunningExample, request_: BookingRequest, code: str, fragment: str
) -> None:
    bookings = example.bookings()
    for attempt in (bookings.check, bookings.book):
        error = await refused(attempt(request_, caller()))
        assert error.code == code and fragment in error.message
    assert await example.bookings().records.of_caller(caller(), since=NOW - dt.timedelta(days=2)) == []


async def test_the_last_table_goes_to_the_first_and_the_same_table_twice_is_a_duplicate(
    example: RunningExample,
) -> None:
    bookings = example.bookings()
    at = TUESDAY_8PM.replace(hour=19)
    await bookings.book(table("Le Petit Bistro", 4, at), caller(call_id="call_a"))
    assert (
        await refused(bookings.check(table("Le Petit Bistro", 4, at), caller(user_id=BOB)))
    ).code == "full"
    duplicate = await refused(bookings.book(table("r3", 2, at), caller(call_id="call_b")))
    assert duplicate.code == "duplicate" and "already have a table" in duplicate.message
    found = await bookings.find(RestaurantQuery("french", None, 2, at, NOW), caller())
    assert [(o.available, o.tables_left, o.reason) for o in found.options] == [(False, 0, "full")]


async def test_another_users_reservation_is_neither_shown_nor_cancelled(example: RunningExample) -> None:
    bookings = example.bookings()
    mine = await bookings.book(table(), caller(call_id="call_mine"))
    for attempt in (bookings.records.get, bookings.records.cancel):
        error = await refused(attempt(mine.id, caller(BOB)))
        assert error.code == "not_yours" and "someone else" in error.message
    assert await bookings.records.of_caller(caller(BOB), since=NOW) == []
    assert (await bookings.records.get(mine.id, caller())).status == "confirmed"
    missing = await refused(bookings.records.get("res-999", caller()))
    assert missing.code == "not_found" and "res-999" in missing.message


async def test_cancelling_twice_is_already_cancelled(example: RunningExample) -> None:
    bookings = example.bookings()
    booked = await bookings.book(table(), caller(call_id="call_book"))
    await bookings.records.cancel(booked.id, caller(call_id="call_cancel_1"))
    again = await refused(bookings.records.cancel(booked.id, caller(call_id="call_cancel_2")))
    assert again.code == "already_cancelled"
    repeat = await bookings.records.cancel(booked.id, caller(call_id="call_cancel_1"))
    assert repeat.status == "cancelled"  # the same call id gets its first answer again


# ------------------------------------------------------------------------------------------ rides


async def test_rides_estimate_order_list_and_cancel(example: RunningExample) -> None:
    rides = example.rides()
    quote = await rides.estimate(ride(), caller())
    assert (quote.pickup, quote.dropoff, quote.ride_type, quote.currency) == (
        "Central Station",
        "Airport",
        "comfort",
        "EUR",
    )
    assert quote.pickup_at == TUESDAY_8PM and (quote.distance_km or 0) > 0 and (quote.fare_cents or 0) > 0
    ordered = await rides.order(ride(), caller(call_id="call_order"))
    assert ordered.quote == quote and ordered.status == "scheduled"
    now_ride = await rides.order(ride("Harbour", "university", NOW), caller(call_id="call_now"))
    assert now_ride.status == "requested" and now_ride.quote.dropoff == "University"

    listed = await rides.records.of_caller(caller(), since=NOW - dt.timedelta(hours=1))
    assert [r.id for r in listed] == [now_ride.id, ordered.id]  # soonest first
    cancelled = await rides.records.cancel(ordered.id, caller(call_id="call_cancel"))
    assert cancelled.status == "cancelled" and cancelled.quote == quote
    assert [r.id for r in await rides.records.of_caller(caller(), since=NOW)] == [now_ride.id]

    assert example.routes == [
        ("POST", "/estimates"),
        ("POST", "/rides"),
        ("POST", "/rides"),
        ("GET", "/rides"),
        ("DELETE", "/rides/{id}"),
        ("GET", "/rides"),
    ]


async def test_a_repeated_order_call_orders_once(example: RunningExample) -> None:
    rides = example.rides()
    first = await rides.order(ride(), caller(call_id="call_same"))
    assert await rides.order(ride(), caller(call_id="call_same")) == first
    assert len(await rides.records.of_caller(caller(), since=NOW)) == 1


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (ride(pickup="Atlantis"), "unknown_place", "'Atlantis' is not a place"),
        (ride(pickup="Airport", dropoff="airport terminal"), "same_place", "both Airport"),
        (ride(pickup="old town harbour"), "ambiguous", "could be Old Town, Harbour"),
        (ride(at=NOW - dt.timedelta(hours=1)), "past_time", "already passed"),
    ],
)
async def test_a_ride_the_service_cannot_price_says_why(
    example: RunningExample, request_: RideRequest, code: str, fragment: str
) -> None:
    rides = example.rides()
    for attempt in (rides.estimate, rides.order):
        error = await refused(attempt(request_, caller()))
        assert error.code == code and fragment in error.message
    assert await example.rides().records.of_caller(caller(), since=NOW - dt.timedelta(days=1)) == []


async def test_another_users_ride_is_not_yours(example: RunningExample) -> None:
    rides = example.rides()
    mine = await rides.order(ride(), caller(call_id="call_mine"))
    error = await refused(rides.records.cancel(mine.id, caller(BOB)))
    assert error.code == "not_yours"
    assert (await rides.records.get(mine.id, caller())).status == "scheduled"


# --------------------------------------------------------------------------- keys and outages


async def test_a_wrong_key_is_refused_as_bad_credentials(example: RunningExample) -> None:
    error = await refused(
        example.bookings(key="guessed").find(RestaurantQuery(None, None, None, None, NOW), caller())
    )
    assert error.code == "unavailable" and "refused the bot's credentials" in error.message
    error = await refused(example.rides(key="guessed").estimate(ride(), caller()))
    assert error.code == "unavailable" and "ride service refused" in error.message


async def test_a_missing_key_is_not_sent_at_all(example: RunningExample) -> None:
    error = await refused(example.rides(key="").order(ride(), caller()))
    assert error.code == "unavailable" and "API key is missing" in error.message
    assert example.routes == []


async def test_a_stopped_provider_could_not_be_reached() -> None:
    stopped = RunningExample()
    await stopped.start()
    await stopped.runner.cleanup()
    error = await refused(stopped.bookings().book(table(), caller()))
    assert error.code == "unavailable" and "could not be reached" in error.message


async def test_a_request_outside_the_example_models_is_rejected_with_the_field_named(
    example: RunningExample,
) -> None:
    error = await refused(example.bookings().check(table(party_size=21), caller()))  # past MAX_PARTY_SIZE
    assert (
        error.code == "rejected" and error.message == "party_size: Input should be less than or equal to 20"
    )


def test_every_code_the_example_answers_is_one_the_bot_passes_on() -> None:
    assert set(STATUS_OF_CODE) <= PASS_THROUGH_CODES


# ------------------------------------------------------------------------------------ the docs


def called_endpoints() -> set[Route]:
    """(method, path) of every request the bot's HTTP clients make, read from their source.

    A path is a string constant, `self._path` (`/<records>`), or `f"{self._path}/{...}"`
    (`/<records>/{id}`), for each family's records; anything else fails, to be taught here.
    """
    plurals = [kind.plural for kind in (RESERVATION, RIDE)]
    method_hints = typing.get_type_hints(OwnedResource._one)["method"]
    endpoints: set[Route] = set()
    for module in (tools.restaurants.http, tools.rides.http, tools.owned):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call"
            ):
                continue
            method_node, path_node = node.args[:2]
            if isinstance(method_node, ast.Constant):
                methods: tuple[str, ...] = (str(method_node.value),)
            else:
                assert ast.unparse(method_node) == "method", ast.unparse(node)
                methods = typing.get_args(method_hints)
            paths = _paths(path_node, plurals)
            endpoints |= {(method, path) for method in methods for path in paths}
    return endpoints


def _paths(node: ast.expr, plurals: list[str]) -> list[str]:
    if isinstance(node, ast.Constant):
        return [str(node.value)]
    if ast.unparse(node) == "self._path":
        return [f"/{plural}" for plural in plurals]
    if isinstance(node, ast.JoinedStr) and len(node.values) == 3:
        base, slash, _ = node.values
        if (
            isinstance(base, ast.FormattedValue)
            and ast.unparse(base.value) == "self._path"
            and isinstance(slash, ast.Constant)
            and slash.value == "/"
        ):
            return [f"/{plural}/{{id}}" for plural in plurals]
    raise AssertionError(f"a path this test cannot read: {ast.unparse(node)}")


def documented_endpoints() -> set[Route]:
    """The endpoints docs/providers.md gives a section: headings like ### `POST /reservations`."""
    found = re.findall(
        r"^#+ `(GET|POST|PUT|PATCH|DELETE) (/\S*)`", DOC.read_text(encoding="utf-8"), re.MULTILINE
    )
    return {(method, path) for method, path in found}


def test_the_clients_source_yields_the_endpoints_the_example_serves() -> None:
    called = called_endpoints()
    assert ("POST", "/reservations") in called and ("DELETE", "/rides/{id}") in called
    served = {
        (route.method, route.resource.canonical)
        for route in ExampleProvider().app().router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert called == served


def test_every_endpoint_the_bot_calls_is_documented_and_no_other() -> None:
    assert documented_endpoints() == called_endpoints()


def test_the_docs_name_the_records_and_codes_the_code_uses() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in (RESERVATION, RIDE):
        assert isinstance(kind, RecordKind)
        assert f'"{kind.noun}"' in text and f'"{kind.plural}"' in text
    missing = [code for code in sorted(PASS_THROUGH_CODES) if f"`{code}`" not in text]
    assert missing == []
