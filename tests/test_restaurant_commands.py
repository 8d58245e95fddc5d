"""/restaurants end to end: the real bot, discord.py and the stand-in Discord and OpenAI servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from standins.discord import Upload
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.command_support import WAIT_S, answer_id_of, choices, run
from tests.harness import Harness, running_bot
from tools.restaurants.catalog import CSV_EXAMPLE

PERMISSION_REFUSAL = "You need the Manage Server permission for this."
GARDEN: dict[str, Any] = {
    "name": "Secret Garden",
    "cuisine": "Vegetarian",
    "area": "North Park",
    "opening_hours": "daily 11:00-23:00",  # open every day, so "tomorrow at 8pm" is bookable
    "tables_per_slot": 2,
}


def guild_id(h: Harness) -> int:
    return h.world.guild.id


async def own_names(h: Harness) -> list[str]:
    return [r.name for r in await h.services.storage.bookings.restaurants(guild_id(h))]


def csv_file(text: str) -> Upload:
    return Upload("restaurants.csv", text.encode(), content_type="text/csv")


async def test_an_admin_adds_a_restaurant_and_a_member_books_it_through_the_tool(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        listed = await run(h, "restaurants list", user=h.alice)
        assert listed.ephemeral and "The demo catalog" in listed.text and "Pizzeria Napoli" in listed.text

        added = await run(h, "restaurants add", GARDEN, user=h.world.admin)
        assert added.ephemeral
        assert added.text == (
            "✅ Added **Secret Garden** · vegetarian · North Park · 2 tables a slot · mon-sun 11:00-23:00"
        )
        listed = await run(h, "restaurants list", user=h.alice)
        assert "Secret Garden" in listed.text
        assert "Pizzeria Napoli" not in listed.text and "demo" not in listed.text

        booking = {"restaurant": "Secret Garden", "party_size": 2, "time": "tomorrow at 8pm", "notes": None}
        h.openai.responses.push(
            Reply(calls=[FunctionCall("book_restaurant", booking)]),
            Reply("Booked."),
        )
        await h.discord.user_message(
            h.general.id,
            h.alice,
            f"{h.bot_mention} a table at Secret Garden tomorrow at 8pm",
            mentions_bot=True,
        )
        prompt = await h.discord.wait_for_message(lambda m: bool(m.components), timeout=WAIT_S)
        await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice)
        await h.discord.wait_for(
            lambda: any(m.content == "Booked." for m in h.discord.messages_in(prompt.channel_id)),
            timeout=WAIT_S,
        )
        [row] = await h.services.storage.bookings.reservations_for(h.alice.id, guild_id(h), since=0)
        assert (row.restaurant_name, row.party_size, row.status) == ("Secret Garden", 2, "confirmed")

        refused = await run(h, "restaurants remove", {"name": "Secret Garden"}, user=h.world.admin)
        assert refused.text.startswith("Secret Garden has 1 upcoming booking, so it stays")
        assert await own_names(h) == ["Secret Garden"]


async def test_a_member_without_manage_server_cannot_change_the_catalog(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        bob = h.world.bob
        attempts: list[tuple[str, dict[str, Any]]] = [
            ("restaurants add", GARDEN),
            ("restaurants edit", {"name": "Trattoria Roma", "tables_per_slot": 1}),
            ("restaurants remove", {"name": "Trattoria Roma"}),
            ("restaurants import", {"file": csv_file(CSV_EXAMPLE)}),
            ("restaurants audit", {}),
        ]
        for command, options in attempts:
            refused = await run(h, command, options, user=bob)
            assert refused.ephemeral and refused.text == PERMISSION_REFUSAL, command
        assert not await h.services.storage.bookings.has_own_catalog(guild_id(h))
        assert await h.services.storage.bookings.catalog_audit(guild_id(h)) == []
        assert h.discord.global_commands["restaurants"]["dm_permission"] is False


async def test_a_csv_import_with_a_bad_row_names_it_and_changes_nothing(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin = h.world.admin
        await run(h, "restaurants add", GARDEN, user=admin)
        bad = CSV_EXAMPLE + "Casa Nova,spanish,Harbour,mon-fri 18:00,4,\n"
        refused = await run(h, "restaurants import", {"file": csv_file(bad)}, user=admin)
        assert refused.ephemeral
        first_line = refused.text.splitlines()[0]
        assert first_line == (
            "Nothing was imported: row 4, opening_hours: interval '18:00' needs a start and an end, "
            "like 12:00-14:30."
        )
        assert "name,cuisine,area,opening_hours,tables_per_slot,timezone" in refused.text  # the example
        assert await own_names(h) == ["Secret Garden"]

        done = await run(h, "restaurants import", {"file": csv_file(CSV_EXAMPLE)}, user=admin)
        assert done.text == (
            "📥 Imported restaurants.csv: added 2, updated 0, unchanged 0. "
            "Restaurants the file leaves out are unchanged."
        )
        assert await own_names(h) == ["Sakura Sushi", "Secret Garden", "Trattoria Roma"]

        too_big = await run(h, "restaurants import", {"file": csv_file("x" * (64 * 1024 + 1))}, user=admin)
        assert too_big.text == "That file is too big to import (at most 64 KB)."


async def test_edit_and_remove_autocomplete_this_servers_names_and_are_audited(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin = h.world.admin
        offered = await choices(h, "restaurants edit", {"name": ""}, focused="name", user=admin)
        assert offered == []  # the shared demo catalog is not this server's to change
        await run(h, "restaurants add", GARDEN, user=admin)
        await run(h, "restaurants add", {**GARDEN, "name": "Garden Grill", "cuisine": "barbecue"}, user=admin)

        offered = await choices(h, "restaurants edit", {"name": "gard"}, focused="name", user=admin)
        assert [c["value"] for c in offered] == ["Garden Grill", "Secret Garden"]
        offered = await choices(h, "restaurants remove", {"name": "secret"}, focused="name", user=admin)
        assert [c["value"] for c in offered] == ["Secret Garden"]

        edited = await run(
            h,
            "restaurants edit",
            {"name": "Secret Garden", "tables_per_slot": 4, "timezone": "Europe/Paris"},
            user=admin,
        )
        assert edited.text == ("✏️ Edited **Secret Garden**: tables 2 → 4; time zone server → Europe/Paris")
        bad: dict[str, Any] = {"name": "Secret Garden", "opening_hours": "weekdays 9:00-17:00"}
        refused = await run(h, "restaurants edit", bad, user=admin)
        assert refused.text.startswith("opening_hours: unknown days 'weekdays'")
        removed = await run(h, "restaurants remove", {"name": "Garden Grill"}, user=admin)
        assert removed.text == "🗑️ Removed **Garden Grill**; past reservations stay on record."

        audit = await run(h, "restaurants audit", user=admin)
        lines = audit.embeds[0]["description"].splitlines()
        assert len(lines) == 4 and all(f"<@{admin.id}>" in line for line in lines)
        assert "removed **Garden Grill**" in lines[0]
        assert "edited **Secret Garden**: tables 2 → 4" in lines[1]
        assert "added **Secret Garden**" in lines[3]
