"""Several bot processes on one database: two `Storage`s on the same URL are two processes.

The ledger runs a call once, a slot is never overbooked, a ride never ordered twice, settings changed
in one process are seen in the other at its next message, and daily budgets count both processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel, ConfigDict

from bot.config import GuildSettings
from bot.guild_settings import SettingsCache, SettingsService
from bot.limits import budget_problem
from bot.storage import Storage, utc_day
from bot.storage.database import is_postgres_url
from bot.storage.rides import NewRide
from bot.storage.settings_events import SettingsChangeListener
from bot.storage.tool_calls import ToolCallLedger
from bot.tooling import Tool, ToolContext, ToolRegistry, ToolResult
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # every test here runs on both engines
from tests.conftest import ServicesFactory, settings
from tests.postgres_server import PostgresServer
from tests.tool_support import call_tool

GUILD = 42
WAIT_S = 10.0  # a safety net only: every wait below ends on an event
ROUNDS = 8  # races repeated: one lost race would show as an extra booking


@pytest.fixture
async def two(database_location: str) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two processes' storages on one database."""
    first = await Storage.open(database_location)
    second = await Storage.open(database_location)
    yield first, second
    await second.close()
    await first.close()


# ------------------------------------------------------------------------------------------- ledger


async def test_concurrent_claims_from_two_processes_give_exactly_one_new(
    two: tuple[Storage, Storage],
) -> None:
    first, second = two
    for n in range(ROUNDS):
        call_id = f"call_{n}"
        claims = await asyncio.gather(
            *(
                storage.tool_calls.claim(call_id, conversation_key="k", name="book")
                for storage in (first, second, first, second)
            )
        )
        assert sorted(claim.state for claim in claims) == ["new", "running", "running", "running"]
        await first.tool_calls.complete(call_id, f'{{"n": {n}}}')
        later = await asyncio.gather(
            first.tool_calls.claim(call_id, conversation_key="k", name="book"),
            second.tool_calls.claim(call_id, conversation_key="k", name="book"),
        )
        assert [(claim.state, claim.output) for claim in later] == [("done", f'{{"n": {n}}}')] * 2


async def age_claim(storage: Storage, call_id: str, by_s: float) -> None:
    """As if the claim was made `by_s` ago (by a process that then stopped)."""
    async with storage.db.transaction() as connection:
        await connection.execute(
            "UPDATE tool_calls SET created_at = created_at - ? WHERE call_id = ?", (by_s, call_id)
        )


async def test_a_claim_left_running_by_a_stopped_process_is_taken_over_once_and_only_when_allowed(
    two: tuple[Storage, Storage],
) -> None:
    first, second = two
    ledgers = [ToolCallLedger(storage.db, abandoned_after_s=60) for storage in two]
    assert (await first.tool_calls.claim("call_dead", conversation_key="k", name="book")).state == "new"
    # Young: another process may still be running it.
    assert (await ledgers[1].claim("call_dead", conversation_key="k", name="book")).state == "running"

    await age_claim(first, "call_dead", 3600)
    not_allowed = await ledgers[1].claim("call_dead", conversation_key="k", name="book")
    assert not_allowed.state == "abandoned"
    taken = await asyncio.gather(
        *(
            ledger.claim("call_dead", conversation_key="k", name="search", take_over_abandoned=True)
            for ledger in (*ledgers, *ledgers)
        )
    )
    assert sorted(claim.state for claim in taken) == ["new", "running", "running", "running"]
    await second.tool_calls.complete("call_dead", '{"ok": true}')
    assert (await ledgers[0].claim("call_dead", conversation_key="k", name="search")).output == '{"ok": true}'


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def test_an_abandoned_action_is_never_run_again_but_an_abandoned_read_is(storage: Storage) -> None:
    runs: list[str] = []

    async def handler(args: NoArgs, context: ToolContext) -> ToolResult:
        runs.append(context.call_id)
        return ToolResult.success({"ran": True}, "ran")

    registry = ToolRegistry(ToolCallLedger(storage.db, abandoned_after_s=60))
    for name, side_effect in (("act", True), ("look", False)):
        registry.add(
            Tool(
                name=name,
                family="restaurants",
                description=name,
                arguments=NoArgs,
                handler=handler,
                activity=name,
                side_effect=side_effect,
            )
        )
    no_confirm = settings(enabled_tools=("restaurants",), confirm_side_effects=False)
    for call_id in ("call_act", "call_look"):
        await storage.tool_calls.claim(call_id, conversation_key="k", name="x")  # the stopped process's
        await age_claim(storage, call_id, 3600)

    act = await call_tool(registry, "act", {}, guild_settings=no_confirm, call_id="call_act")
    assert (act.ok, act.error_code) == (False, "result_unknown")
    look = await call_tool(registry, "look", {}, guild_settings=no_confirm, call_id="call_look")
    assert look.ok
    assert runs == ["call_look"]


async def test_one_call_reaching_two_processes_registries_runs_once(two: tuple[Storage, Storage]) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()
    runs: list[str] = []

    async def book(args: NoArgs, context: ToolContext) -> ToolResult:
        runs.append(context.call_id)
        started.set()
        await finish.wait()
        return ToolResult.success({"booked": True}, "booked")

    registries = [ToolRegistry(storage.tool_calls) for storage in two]
    for registry in registries:
        registry.add(
            Tool(
                name="book",
                family="restaurants",
                description="book",
                arguments=NoArgs,
                handler=book,
                activity="book",
                side_effect=True,
            )
        )
    no_confirm = settings(enabled_tools=("restaurants",), confirm_side_effects=False)
    first = asyncio.create_task(
        call_tool(registries[0], "book", {}, guild_settings=no_confirm, call_id="call_both")
    )
    async with asyncio.timeout(WAIT_S):
        await started.wait()
    second = await call_tool(registries[1], "book", {}, guild_settings=no_confirm, call_id="call_both")
    assert (second.ok, second.error_code) == (False, "in_progress")
    finish.set()
    assert (await first).ok
    again = await call_tool(registries[1], "book", {}, guild_settings=no_confirm, call_id="call_both")
    assert again.ok and again.to_output() == (await first).to_output()
    assert runs == ["call_both"]


# ---------------------------------------------------------------------------------- bookings, rides


async def test_the_last_table_of_a_slot_booked_from_two_processes_goes_to_one(
    two: tuple[Storage, Storage],
) -> None:
    first, second = two
    place = await first.bookings.add_restaurant(
        name="Chez Une",
        cuisine="french",
        area="centre",
        opening_hours="mon-sun 12:00-23:00",
        tables_per_slot=1,
    )
    alone = await first.bookings.reserve(**booking(place.id, "call_alone", user_id=1, starts_at=0))
    single_process_refusal = await first.bookings.reserve(
        **booking(place.id, "call_x", user_id=2, starts_at=0)
    )
    assert (alone.outcome, single_process_refusal.outcome) == ("booked", "full")

    for n in range(1, ROUNDS + 1):
        results = await asyncio.gather(
            *(
                storage.bookings.reserve(
                    **booking(place.id, f"call_{n}_{user}", user_id=user, starts_at=1800 * n)
                )
                for user, storage in ((1, first), (2, second))
            )
        )
        assert sorted(result.outcome for result in results) == ["booked", "full"]
        [refused] = [result for result in results if result.outcome == "full"]
        assert refused == single_process_refusal  # the same "no table" a single process gives
        assert await second.bookings.tables_taken(place.id, 1800 * n) == 1


async def test_one_call_reaching_two_processes_books_once(two: tuple[Storage, Storage]) -> None:
    place = await two[0].bookings.add_restaurant(
        name="Grand", cuisine="french", area="centre", opening_hours="mon-sun 12:00-23:00", tables_per_slot=9
    )
    for n in range(ROUNDS):
        results = await asyncio.gather(
            *(storage.bookings.reserve(**booking(place.id, f"call_{n}", 7, 1800 * n, 9)) for storage in two)
        )
        assert sorted(result.outcome for result in results) == ["booked", "repeat"]
        assert len({result.reservation.id for result in results if result.reservation}) == 1
        # One member, one slot, two calls: one booking, one "you already have one".
        results = await asyncio.gather(
            *(
                storage.bookings.reserve(**booking(place.id, f"call_{n}_{i}", 8, 1800 * n, 9))
                for i, storage in enumerate(two)
            )
        )
        assert sorted(result.outcome for result in results) == ["booked", "duplicate"]


def booking(
    restaurant_id: int, call_id: str, user_id: int, starts_at: int, capacity: int = 1
) -> dict[str, Any]:
    """`BookingStore.reserve`'s arguments for one table of a slot."""
    return {
        "call_id": call_id,
        "restaurant_id": restaurant_id,
        "user_id": user_id,
        "user_name": f"user{user_id}",
        "guild_id": GUILD,
        "starts_at": starts_at,
        "party_size": 2,
        "tables": 1,
        "notes": "",
        "capacity": capacity,
    }


RIDE = NewRide("Gare du Nord", "Orly", "standard", 1_900_000_000, 21.5, 40, 4200, "EUR", "scheduled")


async def test_one_ride_call_reaching_two_processes_orders_once(two: tuple[Storage, Storage]) -> None:
    for n in range(ROUNDS):
        made = await asyncio.gather(
            *(
                storage.rides.create(RIDE, call_id=f"call_ride_{n}", user_id=7, user_name="a", guild_id=GUILD)
                for storage in two
            )
        )
        assert sorted(created for _, created in made) == [False, True]
        assert len({ride.id for ride, _ in made}) == 1


async def test_a_ride_cancelled_from_two_processes_is_cancelled_once(two: tuple[Storage, Storage]) -> None:
    for n in range(ROUNDS):
        ride, _ = await two[0].rides.create(
            RIDE, call_id=f"call_c_{n}", user_id=7, user_name="a", guild_id=GUILD
        )
        results = await asyncio.gather(*(storage.rides.cancel(ride.id, user_id=7) for storage in two))
        assert sorted(result.outcome for result in results) == ["already_cancelled", "cancelled"]


# --------------------------------------------------------------------------------------- budgets


async def test_a_guild_budget_spent_in_one_process_stops_the_other(two: tuple[Storage, Storage]) -> None:
    first, second = two
    limits = GuildSettings(daily_token_budget_guild=1000, daily_token_budget_user=600)
    assert await budget_problem(second.usage, limits, guild_id=GUILD, user_id=2) is None
    await asyncio.gather(
        *(
            storage.usage.record(guild_id=GUILD, user_id=user, input_tokens=300, output_tokens=200)
            for user, storage in ((1, first), (2, second), (1, second), (3, first))
        )
    )
    assert (await first.usage.guild_total(GUILD, since_day=utc_day())).turns == 4  # none lost
    member = await budget_problem(second.usage, limits, guild_id=GUILD, user_id=1)
    assert member is not None and "your daily token budget" in member
    guild = await budget_problem(first.usage, limits, guild_id=GUILD, user_id=4)
    assert guild is not None and "This server has used its daily token budget" in guild


# -------------------------------------------------------------------------------------- settings


def postgres_only(database_location: str) -> None:
    if not is_postgres_url(database_location):
        pytest.skip("SQLite is one process: its cache is the only copy")


@pytest.fixture
async def listening(
    database_location: str, two: tuple[Storage, Storage]
) -> AsyncIterator[tuple[SettingsService, SettingsCache, SettingsChangeListener, SettingsService]]:
    """Process A (its service, cache and listener) and process B (its service), on PostgreSQL."""
    postgres_only(database_location)
    cache = SettingsCache()
    listener = SettingsChangeListener(database_location, changed=cache.forget, missed=cache.forget_all)
    await listener.start()
    yield (
        SettingsService(two[0], cache, GuildSettings()),
        cache,
        listener,
        SettingsService(two[1], SettingsCache(), GuildSettings()),
    )
    await listener.close()


async def test_a_setting_changed_in_another_process_is_seen_at_the_next_message(
    listening: tuple[SettingsService, SettingsCache, SettingsChangeListener, SettingsService],
) -> None:
    service_a, cache_a, listener, service_b = listening
    assert (await service_a.effective(GUILD)).user_cooldown_s == GuildSettings().user_cooldown_s
    assert cache_a.get(GUILD) is not None

    await service_b.set(GUILD, "user_cooldown_s", "45", user_id=1)
    async with asyncio.timeout(WAIT_S):
        await listener.wait_until(lambda heard: heard.handled >= 1)
    assert (await service_a.effective(GUILD)).user_cooldown_s == 45

    await service_b.reset(GUILD, "user_cooldown_s", user_id=1)
    async with asyncio.timeout(WAIT_S):
        await listener.wait_until(lambda heard: heard.handled >= 2)
    assert (await service_a.effective(GUILD)).user_cooldown_s == GuildSettings().user_cooldown_s
    [reset, changed] = await service_a.audit(GUILD)
    assert (changed.old_value, changed.new_value, reset.old_value) == (None, 45.0, 45.0)


async def test_a_lost_listener_forgets_every_guild_and_listens_again(
    listening: tuple[SettingsService, SettingsCache, SettingsChangeListener, SettingsService],
    postgres_server: PostgresServer,
) -> None:
    service_a, cache_a, listener, service_b = listening
    await service_a.effective(GUILD)
    await service_a.effective(GUILD + 1)
    pid = listener.backend_pid
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        [(terminated,)] = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchall()
    assert terminated is True

    async with asyncio.timeout(WAIT_S):
        await listener.wait_until(lambda heard: heard.connections == 2)
    assert (cache_a.get(GUILD), cache_a.get(GUILD + 1)) == (None, None)  # changes may have been missed
    assert listener.backend_pid not in (None, pid)

    await service_a.effective(GUILD)
    await service_b.set(GUILD, "user_cooldown_s", "12", user_id=1)
    async with asyncio.timeout(WAIT_S):
        await listener.wait_until(lambda heard: heard.handled >= 1)
    assert (await service_a.effective(GUILD)).user_cooldown_s == 12


async def test_two_services_on_postgres_hear_each_others_settings(
    database_location: str, make_services: ServicesFactory
) -> None:
    postgres_only(database_location)
    first = await make_services(storage={"database": database_location})
    second = await make_services(storage={"database": database_location})
    assert first.settings_listener is not None and second.settings_listener is not None
    await first.settings.effective(GUILD)
    await second.settings.set(GUILD, "user_cooldown_s", "30", user_id=1)
    async with asyncio.timeout(WAIT_S):
        await first.settings_listener.wait_until(lambda heard: heard.handled >= 1)
    assert (await first.settings.effective(GUILD)).user_cooldown_s == 30
