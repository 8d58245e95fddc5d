"""Each server's restaurant catalog (`RestaurantCatalog`) on both database engines, without Discord,
and the CSV reader it imports with (hypothesis: valid rows round-trip, garbage is one sentence)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage import Storage
from bot.tooling import ConfirmationOutcome
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines
from tests.tool_support import ALICE, BOB, GUILD, Clock, ScriptedConfirmer, builtin_registry, call_tool
from tools.hours import DAY_NAMES, OpeningHours
from tools.restaurants.catalog import (
    CSV_COLUMNS,
    MAX_IMPORT_BYTES,
    CatalogError,
    RestaurantCatalog,
    catalog_csv,
    parse_catalog_csv,
    validate_entry,
)
from tools.restaurants.model import RestaurantEntry

ADMIN = 1
OTHER_GUILD = 43
DEMO_NAMES = 12
APPROVED = ConfirmationOutcome.APPROVED
RACE_ROUNDS = 30


def entry(name: str = "Chez Nous", **overrides: Any) -> RestaurantEntry:
    values: dict[str, Any] = {
        "name": name,
        "cuisine": "french",
        "area": "Harbour",
        "opening_hours": "daily 12:00-23:00",
        "tables_per_slot": 3,
        **overrides,
    }
    return RestaurantEntry.model_validate(values)


def catalog_of(storage: Storage, clock: Clock | None = None) -> RestaurantCatalog:
    return RestaurantCatalog(storage.bookings, clock or Clock())


async def names(catalog: RestaurantCatalog, guild_id: int | None = GUILD) -> list[str]:
    return [record.name for record in (await catalog.view(guild_id)).restaurants]


def book(name: str, time: str = "2026-05-05T20:00") -> dict[str, Any]:
    return {"restaurant": name, "party_size": 2, "time": time, "notes": None}


# --------------------------------------------------------------------------------------- the service


async def test_a_guild_sees_the_demo_until_it_adds_its_own_and_others_keep_the_demo(storage: Storage) -> None:
    catalog = catalog_of(storage)
    demo = await catalog.view(GUILD)
    assert demo.demo and len(demo.restaurants) == DEMO_NAMES
    assert await catalog.own_names(GUILD) == []

    change = await catalog.add(GUILD, ADMIN, entry())
    assert (change.action, change.name, change.old, change.user_id) == ("add", "Chez Nous", None, ADMIN)
    own = await catalog.view(GUILD)
    assert not own.demo and [r.name for r in own.restaurants] == ["Chez Nous"]
    assert own.restaurants[0].opening_hours == "mon-sun 12:00-23:00"  # stored in the canonical form
    assert len(await names(catalog, OTHER_GUILD)) == DEMO_NAMES  # the other guild still sees the demo
    assert len(await names(catalog, None)) == DEMO_NAMES  # and so do direct messages

    with pytest.raises(CatalogError, match="name: 'Chez Nous' is already in this server's catalog"):
        await catalog.add(GUILD, ADMIN, entry("chez  NOUS"))
    await catalog.add(OTHER_GUILD, ADMIN, entry())  # the same name in another guild is another place
    assert await names(catalog, OTHER_GUILD) == ["Chez Nous"]


async def test_edit_changes_only_the_given_fields_and_audits_old_and_new(storage: Storage) -> None:
    catalog = catalog_of(storage)
    with pytest.raises(CatalogError, match="shared demo catalog"):
        await catalog.edit(GUILD, ADMIN, "Trattoria Roma", {"tables_per_slot": 1})
    await catalog.add(GUILD, ADMIN, entry())
    await catalog.add(GUILD, ADMIN, entry("Le Port"))

    change = await catalog.edit(
        GUILD, BOB, "chez nous", {"tables_per_slot": 5, "timezone": "Europe/Paris", "name": "Chez Vous"}
    )
    assert change is not None and change.action == "edit" and change.user_id == BOB
    assert change.old == entry().fields()
    assert change.new == entry("Chez Vous", tables_per_slot=5, timezone="Europe/Paris").fields()
    assert await catalog.edit(GUILD, ADMIN, "Chez Vous", {"cuisine": "FRENCH"}) is None  # nothing changed

    with pytest.raises(CatalogError, match=r"^opening_hours: unknown days 'someday'"):
        await catalog.edit(GUILD, ADMIN, "Chez Vous", {"opening_hours": "someday 12:00-14:00"})
    with pytest.raises(CatalogError, match="'Le Port' is already"):
        await catalog.edit(GUILD, ADMIN, "Chez Vous", {"name": "le port"})
    with pytest.raises(CatalogError, match="no restaurant called 'Nowhere'"):
        await catalog.edit(GUILD, ADMIN, "Nowhere", {"area": "x"})

    audit = await catalog.audit(GUILD)
    assert [(c.action, c.name) for c in audit] == [
        ("edit", "Chez Vous"),
        ("add", "Le Port"),
        ("add", "Chez Nous"),
    ]
    assert await catalog.audit(OTHER_GUILD) == []


async def test_remove_refuses_while_bookings_are_upcoming_and_keeps_past_reservations(
    storage: Storage,
) -> None:
    clock = Clock()
    catalog = catalog_of(storage, clock)
    registry = builtin_registry(storage, clock)
    await catalog.add(GUILD, ADMIN, entry())
    booked = await call_tool(
        registry, "book_restaurant", book("Chez Nous"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert booked.ok, booked.to_output()

    with pytest.raises(CatalogError, match=r"^Chez Nous has 1 upcoming booking, so it stays"):
        await catalog.remove(GUILD, ADMIN, "Chez Nous")
    await catalog.edit(GUILD, ADMIN, "Chez Nous", {"tables_per_slot": 0})  # no new bookings meanwhile
    refused = await call_tool(
        registry,
        "book_restaurant",
        book("Chez Nous", "2026-05-06T20:00"),
        confirmer=ScriptedConfirmer(APPROVED),
    )
    assert refused.error_code == "full"

    clock.advance(days=2)  # the booking is past
    removed = await catalog.remove(GUILD, ADMIN, "Chez Nous")
    assert (removed.action, removed.new) == ("remove", None)
    view = await catalog.view(GUILD)
    assert view.restaurants == [] and not view.demo  # an empty catalog of its own, not the demo again
    [kept] = await storage.bookings.reservations_for(ALICE, GUILD, since=0)
    assert kept.restaurant_name == "Chez Nous"  # the reservation still reads its restaurant
    gone = await call_tool(
        registry, "find_restaurants", {"cuisine": "french", "area": None, "party_size": None, "time": None}
    )
    assert gone.data["restaurants"] == []
    await catalog.add(GUILD, ADMIN, entry())  # the name is free again


async def test_import_is_all_or_nothing_and_counts_added_updated_unchanged(storage: Storage) -> None:
    catalog = catalog_of(storage)
    await catalog.add(GUILD, ADMIN, entry())
    await catalog.add(GUILD, ADMIN, entry("Le Port"))
    bad = (
        "name,cuisine,area,opening_hours,tables_per_slot\n"
        "Chez Nous,french,Harbour,daily 12:00-23:00,9\n"
        "Nuevo,mexican,Centre,daily 18:00-23:00,4\n"
        "Broken,thai,Centre,mon-fri 25:00-26:00,4\n"
    )
    with pytest.raises(CatalogError) as refused:
        await catalog.import_csv(GUILD, ADMIN, bad.encode())
    assert str(refused.value) == "row 4, opening_hours: time '25:00' is not a time of day."
    assert await names(catalog) == ["Chez Nous", "Le Port"]
    assert (await catalog.view(GUILD)).restaurants[0].tables_per_slot == 3
    assert len(await catalog.audit(GUILD)) == 2  # nothing of the failed import was recorded

    good = (
        bad.replace("mon-fri 25:00-26:00", "mon-fri 12:00-22:00")
        + "Le Port,french,Harbour,daily 12:00-23:00,3\n"
    )
    summary = await catalog.import_csv(GUILD, ADMIN, good.encode("utf-8-sig"))
    assert (summary.added, summary.updated, summary.unchanged) == (["Nuevo", "Broken"], ["Chez Nous"], 1)
    assert summary.sentence() == "added 2, updated 1, unchanged 1"
    assert await names(catalog) == ["Broken", "Chez Nous", "Le Port", "Nuevo"]
    again = await catalog.import_csv(GUILD, ADMIN, good.encode())
    assert (again.added, again.updated, again.unchanged) == ([], [], 4)
    assert await names(catalog, OTHER_GUILD) == sorted(await names(catalog, OTHER_GUILD))  # demo, untouched
    assert len(await names(catalog, OTHER_GUILD)) == DEMO_NAMES


async def test_bookings_in_one_guild_never_see_another_guilds_restaurants(storage: Storage) -> None:
    clock = Clock()
    catalog = catalog_of(storage, clock)
    registry = builtin_registry(storage, clock)
    theirs = await catalog.add(OTHER_GUILD, ADMIN, entry("Secret Garden"))
    await catalog.add(GUILD, ADMIN, entry())

    by_name = await call_tool(
        registry, "book_restaurant", book("Secret Garden"), confirmer=ScriptedConfirmer(APPROVED)
    )
    by_id = await call_tool(
        registry, "book_restaurant", book(str(theirs.restaurant_id)), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert (by_name.error_code, by_id.error_code) == ("not_found", "not_found")
    demo = await call_tool(
        registry, "book_restaurant", book("Pizzeria Napoli"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert demo.error_code == "not_found"  # the demo is gone for a guild with its own catalog
    found = await call_tool(
        registry, "find_restaurants", {"cuisine": None, "area": None, "party_size": None, "time": None}
    )
    assert [r["name"] for r in found.data["restaurants"]] == ["Chez Nous"]

    there = await call_tool(
        registry,
        "book_restaurant",
        book("Secret Garden"),
        confirmer=ScriptedConfirmer(APPROVED),
        guild_id=OTHER_GUILD,
    )
    assert there.ok and there.data["reservation"]["restaurant"] == "Secret Garden"
    in_dm = await call_tool(
        registry,
        "book_restaurant",
        book("Pizzeria Napoli"),
        confirmer=ScriptedConfirmer(APPROVED),
        guild_id=None,
    )
    assert in_dm.ok  # direct messages keep the demo catalog


async def test_a_restaurant_removed_after_the_member_saw_it_is_not_booked(storage: Storage) -> None:
    catalog = catalog_of(storage)
    change = await catalog.add(GUILD, ADMIN, entry())
    await catalog.remove(GUILD, ADMIN, "Chez Nous")
    late = await storage.bookings.reserve(
        call_id="call_late",
        restaurant_id=change.restaurant_id,
        user_id=ALICE,
        user_name="Ada",
        guild_id=GUILD,
        starts_at=1800,
        party_size=2,
        tables=1,
        notes="",
        capacity=3,
    )
    assert (late.outcome, late.reservation) == ("gone", None)
    assert await storage.bookings.tables_taken(change.restaurant_id, 1800) == 0


async def test_a_demo_booking_made_before_the_guild_had_its_own_catalog_still_lists_and_cancels(
    storage: Storage,
) -> None:
    clock = Clock()
    registry = builtin_registry(storage, clock)
    booked = await call_tool(
        registry, "book_restaurant", book("Pizzeria Napoli"), confirmer=ScriptedConfirmer(APPROVED)
    )
    assert booked.ok
    await catalog_of(storage, clock).add(GUILD, ADMIN, entry())
    listed = await call_tool(registry, "list_reservations", {})
    assert [r["restaurant"] for r in listed.data["reservations"]] == ["Pizzeria Napoli"]
    cancel = {"reservation_id": booked.data["reservation"]["id"]}
    assert (await call_tool(registry, "cancel_reservation", cancel, confirmer=ScriptedConfirmer(APPROVED))).ok


# ---------------------------------------------------------------------------------------- the CSV reader


def test_csv_errors_name_the_row_and_the_field() -> None:
    header = "name,cuisine,area,opening_hours,tables_per_slot,timezone\n"
    row = "A,thai,B,daily 12:00-22:00,2,\n"
    cases = {
        header
        + row.replace(",2,", ",many,"): "row 2, tables_per_slot: must be a whole number from 0 to 500.",
        header + row.replace(",2,", ",2,Mars/Base"): (
            "row 2, timezone: unknown time zone 'Mars/Base' (use an IANA name like Europe/Paris)."
        ),
        header + "\n" + row + row.replace("A", " "): "row 4, name: must not be empty.",
        header + row + row.replace("A", "a"): "row 3, name: 'a' is also on row 2.",
        "name,cuisine,area,opening_hours\nA,thai,B,daily 12:00-22:00\n": (
            "Row 1 (the header) lacks tables_per_slot; the columns are name, cuisine, area, "
            "opening_hours, tables_per_slot, timezone (timezone may be left out)."
        ),
        "name,cuisine,area,hours,tables,x\n": "Row 1 (the header) has an unknown column 'tables'; "
        "the columns are name, cuisine, area, opening_hours, tables_per_slot, timezone.",
        header: "The file has a header but no restaurants under it.",
        "": "The file is empty; its first line names the columns: name, cuisine, area, opening_hours, "
        "tables_per_slot, timezone.",
        header + "A,thai,B,daily 12:00-22:00\n": "Row 2 has 4 values but the header names 6 columns "
        "(put a value with a comma inside double quotes).",
    }
    for text, sentence in cases.items():
        with pytest.raises(CatalogError) as refused:
            parse_catalog_csv(text.encode())
        assert str(refused.value) == sentence, text
    with pytest.raises(CatalogError, match="not UTF-8"):
        parse_catalog_csv(b"name\xff\xfe")
    with pytest.raises(CatalogError, match="too big: at most 64 KB"):
        parse_catalog_csv(b"x" * (MAX_IMPORT_BYTES + 1))


def test_csv_header_is_forgiving_and_timezone_optional() -> None:
    text = (
        "Name, Cuisine ,AREA,Opening Hours,tables_per_slot\n"
        'Roma,Italian,Old Town,"tue-sun 12:00-14:30,18:00-23:00",6\n'
    )
    [roma] = parse_catalog_csv(text.encode())
    assert roma == entry(
        "Roma",
        cuisine="italian",
        area="Old Town",
        opening_hours="tue-sun 12:00-14:30,18:00-23:00",
        tables_per_slot=6,
    )


_WORD = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "Zs"), exclude_characters="\x85\u2028\u2029"),
    min_size=1,
    max_size=30,
).filter(lambda text: text.strip() != "")


@st.composite
def opening_hours(draw: st.DrawFn) -> str:
    week = []
    for _ in DAY_NAMES:
        bounds = sorted(set(draw(st.lists(st.integers(0, 48), max_size=4))))
        pairs = tuple((bounds[i] * 30, bounds[i + 1] * 30) for i in range(0, len(bounds) - 1, 2))
        week.append(pairs)
    return OpeningHours(tuple(week)).format()


@st.composite
def entries(draw: st.DrawFn) -> list[RestaurantEntry]:
    made: list[RestaurantEntry] = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(1, 6))):
        name = " ".join(draw(_WORD).split())
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        made.append(
            RestaurantEntry(
                name=name,
                cuisine=draw(_WORD),
                area=draw(_WORD),
                opening_hours=draw(opening_hours()),
                tables_per_slot=draw(st.integers(0, 500)),
                timezone=draw(st.sampled_from([None, "Europe/Paris", "Asia/Tokyo", "UTC"])),
            )
        )
    return made


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(entries())
def test_any_valid_rows_round_trip_through_csv(made: list[RestaurantEntry]) -> None:
    assert parse_catalog_csv(catalog_csv(made).encode()) == made


def _csv_of(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.text(max_size=400).map(str.encode),
        st.lists(st.lists(st.text(max_size=20), max_size=8), max_size=6).map(_csv_of),
        st.lists(st.lists(st.text(max_size=20), min_size=6, max_size=6), max_size=5).map(
            lambda rows: _csv_of([list(CSV_COLUMNS), *rows])
        ),
    )
)
def test_garbage_gives_one_sentence_never_an_exception(data: bytes) -> None:
    try:
        parsed = parse_catalog_csv(data)
    except CatalogError as exc:
        message = str(exc)
        assert message and "\n" not in message.replace(repr("\n")[1:-1], "") and message.endswith((".", ")."))
    else:
        assert all(isinstance(item, RestaurantEntry) for item in parsed)


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {
            "name": st.text(max_size=120),
            "cuisine": st.text(max_size=60),
            "area": st.text(max_size=120),
            "opening_hours": st.one_of(st.text(max_size=80), opening_hours()),
            "tables_per_slot": st.integers(-5, 600),
            "timezone": st.one_of(
                st.none(), st.text(max_size=40), st.sampled_from(["Europe/Paris", "server"])
            ),
        }
    )
)
def test_any_command_options_give_an_entry_or_one_sentence_naming_the_field(values: dict[str, Any]) -> None:
    try:
        made = validate_entry(values)
    except CatalogError as exc:
        field, _, problem = str(exc).partition(": ")
        assert field in CSV_COLUMNS and problem.endswith(".")
    else:
        assert validate_entry(made.model_dump()) == made  # normalised once, stable after


async def test_a_removal_and_a_booking_racing_from_two_processes_never_both_happen(
    database_location: str,
) -> None:
    """Removal counts upcoming bookings and a booking checks the restaurant is still listed: across
    processes sharing PostgreSQL the two must see each other (row locks), whichever comes first."""
    first, second = await Storage.open(database_location), await Storage.open(database_location)
    try:
        catalog = catalog_of(first, Clock(dt.datetime.fromtimestamp(0, dt.UTC)))
        outcomes: set[tuple[str, str]] = set()
        for n in range(RACE_ROUNDS):
            name = f"Place {n}"
            added = await catalog.add(GUILD, ADMIN, entry(name))

            async def remove(name: str = name) -> str:
                try:
                    await catalog.remove(GUILD, ADMIN, name)
                except CatalogError:
                    return "kept"
                return "removed"

            booking = second.bookings.reserve(
                call_id=f"call_race_{n}",
                restaurant_id=added.restaurant_id,
                user_id=ALICE,
                user_name="Ada",
                guild_id=GUILD,
                starts_at=1800 * (n + 1),
                party_size=2,
                tables=1,
                notes="",
                capacity=3,
            )
            removal, booked = await asyncio.gather(remove(), booking)
            outcomes.add((removal, booked.outcome))
        assert outcomes <= {("kept", "booked"), ("removed", "gone")}, outcomes
    finally:
        await second.close()
        await first.close()
