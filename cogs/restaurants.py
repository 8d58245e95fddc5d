"""/restaurants: each server runs its own catalog for table bookings (list, add, edit, remove,
import a CSV, audit). The rules live in `tools.restaurants.catalog.RestaurantCatalog`; this only
turns options into its calls and its answers into ephemeral messages.

Like /config, the group has no default permissions because `list` is for everyone; the others check
Manage Server at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError
from bot.storage.bookings import RestaurantChange, RestaurantFields
from cogs.embeds import choices_containing, cut
from tools.hours import OpeningHours
from tools.restaurants.catalog import (
    CSV_EXAMPLE,
    MAX_IMPORT_BYTES,
    CatalogError,
    RestaurantCatalog,
    validate_entry,
)
from tools.restaurants.model import MAX_TABLES_PER_SLOT

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

CATALOG_COLOUR = discord.Colour.blurple()
NO_MENTIONS = discord.AllowedMentions.none()
MAX_DESCRIPTION_CHARS = 4096
MAX_MESSAGE_CHARS = 2000
AUDIT_ENTRIES = 15
IMPORT_HELP = f"A CSV file with a header, for example:\n```csv\n{CSV_EXAMPLE}```"
TablesPerSlot = app_commands.Range[int, 0, MAX_TABLES_PER_SLOT]


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise UserFacingError("Restaurant catalogs are per server; use this command in a server.")
    return interaction.guild_id


def _md(text: str) -> str:
    return discord.utils.escape_markdown(text)


def restaurant_line(fields: RestaurantFields) -> str:
    """One restaurant as admins and members read it."""
    zone = f" ({fields.timezone})" if fields.timezone else ""
    return (
        f"**{_md(fields.name)}** · {_md(fields.cuisine)} · {_md(fields.area)} · "
        f"{fields.tables_per_slot} tables a slot · {OpeningHours.parse(fields.opening_hours).format()}{zone}"
    )


def describe_change(change: RestaurantChange) -> str:
    """What a change did: added, removed, or each field from old to new."""
    if change.old is None and change.new is not None:
        return f"added {restaurant_line(change.new)}"
    if change.old is None or change.new is None:
        return f"removed **{_md(change.name)}**"
    old, new = change.old, change.new
    moves = [
        f"{label} {_md(str(before or 'server'))} → {_md(str(after or 'server'))}"
        for label, before, after in (
            ("name", old.name, new.name),
            ("cuisine", old.cuisine, new.cuisine),
            ("area", old.area, new.area),
            ("hours", old.opening_hours, new.opening_hours),
            ("tables", old.tables_per_slot, new.tables_per_slot),
            ("time zone", old.timezone, new.timezone),
        )
        if before != after
    ]
    return f"edited **{_md(old.name)}**: {'; '.join(moves)}"


def change_line(change: RestaurantChange) -> str:
    """One audit row: when, who, what, from and to."""
    return cut(f"<t:{int(change.at)}:R> <@{change.user_id}> {describe_change(change)}", 400)


def _lines_within(lines: Sequence[str], limit: int) -> str:
    kept: list[str] = []
    for line in lines:
        if sum(len(k) + 1 for k in kept) + len(line) > limit:
            break
        kept.append(line)
    return "\n".join(kept)


class RestaurantsCog(commands.Cog):
    restaurants = app_commands.Group(
        name="restaurants", description="This server's restaurants for table bookings", guild_only=True
    )

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self.catalog = RestaurantCatalog(bot.services.storage.bookings)

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.followup.send(
            cut(text, MAX_MESSAGE_CHARS), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @restaurants.command(name="list", description="The restaurants members can book here")
    async def list_restaurants(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = await self.catalog.view(guild_id)
        embed = discord.Embed(title="Restaurants to book here", colour=CATALOG_COLOUR)
        lines = [restaurant_line(record.fields) for record in view.restaurants]
        note = (
            "*The demo catalog: admins add their own with /restaurants add or /restaurants import.*\n"
            if view.demo
            else ""
        )
        body = _lines_within(lines, MAX_DESCRIPTION_CHARS - len(note) - 40)
        shown = body.count("\n") + 1 if body else 0
        more = f"\n…and {len(lines) - shown} more" if shown < len(lines) else ""
        embed.description = note + (body or "No restaurants yet.") + more
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @restaurants.command(name="add", description="Add a restaurant members can book (Manage Server)")
    @app_commands.describe(
        name="What members call it",
        cuisine="Kind of food, e.g. italian",
        area="Neighbourhood, e.g. Old Town",
        opening_hours="e.g. mon-fri 12:00-14:30,18:00-23:00; sat-sun 12:00-23:00 (or daily 11:00-22:00)",
        tables_per_slot="Tables of 4 per half-hour slot",
        timezone="IANA time zone of its hours, e.g. Europe/Paris (default: the server's)",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def add(
        self,
        interaction: discord.Interaction,
        name: str,
        cuisine: str,
        area: str,
        opening_hours: str,
        tables_per_slot: TablesPerSlot,
        timezone: str | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        entry = validate_entry(
            {
                "name": name,
                "cuisine": cuisine,
                "area": area,
                "opening_hours": opening_hours,
                "tables_per_slot": tables_per_slot,
                "timezone": timezone,
            }
        )
        await interaction.response.defer(ephemeral=True, thinking=True)
        change = await self.catalog.add(guild_id, interaction.user.id, entry)
        assert change.new is not None
        await self._say(interaction, f"✅ Added {restaurant_line(change.new)}")

    @restaurants.command(name="edit", description="Change a restaurant of this server (Manage Server)")
    @app_commands.describe(
        name="The restaurant to change",
        new_name="A new name",
        cuisine="Kind of food",
        area="Neighbourhood",
        opening_hours="e.g. mon-fri 12:00-14:30,18:00-23:00; sat-sun 12:00-23:00",
        tables_per_slot="Tables of 4 per half-hour slot (0 stops new bookings)",
        timezone="IANA time zone, or 'server' for the server's",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def edit(
        self,
        interaction: discord.Interaction,
        name: str,
        new_name: str | None = None,
        cuisine: str | None = None,
        area: str | None = None,
        opening_hours: str | None = None,
        tables_per_slot: TablesPerSlot | None = None,
        timezone: str | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        given = {
            "name": new_name,
            "cuisine": cuisine,
            "area": area,
            "opening_hours": opening_hours,
            "tables_per_slot": tables_per_slot,
            "timezone": timezone,
        }
        changes = {field: value for field, value in given.items() if value is not None}
        if not changes:
            raise UserFacingError("Give at least one thing to change (new_name, cuisine, area, ...).")
        await interaction.response.defer(ephemeral=True, thinking=True)
        change = await self.catalog.edit(guild_id, interaction.user.id, name, changes)
        if change is None:
            await self._say(interaction, "Nothing changed: it already had those values.")
            return
        said = describe_change(change)
        await self._say(interaction, f"✏️ {said[:1].upper()}{said[1:]}")

    @restaurants.command(name="remove", description="Remove a restaurant of this server (Manage Server)")
    @app_commands.describe(name="The restaurant to remove")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        change = await self.catalog.remove(guild_id, interaction.user.id, name)
        await self._say(interaction, f"🗑️ Removed **{_md(change.name)}**; past reservations stay on record.")

    @restaurants.command(
        name="import", description="Add or update restaurants from a CSV file, all or nothing (Manage Server)"
    )
    @app_commands.describe(
        file="CSV with a header: name,cuisine,area,opening_hours,tables_per_slot[,timezone]"
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def import_file(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        guild_id = _guild_id(interaction)
        if file.size > MAX_IMPORT_BYTES:
            raise UserFacingError(f"That file is too big to import (at most {MAX_IMPORT_BYTES // 1024} KB).")
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await file.read()
        try:
            summary = await self.catalog.import_csv(guild_id, interaction.user.id, data)
        except CatalogError as exc:
            await self._say(interaction, f"Nothing was imported: {exc}\n{IMPORT_HELP}")
            return
        await self._say(
            interaction,
            f"📥 Imported {_md(file.filename)}: {summary.sentence()}. "
            "Restaurants the file leaves out are unchanged.",
        )

    @restaurants.command(
        name="audit", description="Recent changes to this server's restaurants (Manage Server)"
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def audit(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        changes = await self.catalog.audit(guild_id, limit=AUDIT_ENTRIES)
        embed = discord.Embed(title="Recent restaurant changes", colour=CATALOG_COLOUR)
        embed.description = (
            _lines_within([change_line(change) for change in changes], MAX_DESCRIPTION_CHARS)
            or "No restaurant has been changed in this server yet."
        )
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @edit.autocomplete("name")
    @remove.autocomplete("name")
    async def name_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """This server's own restaurants whose name contains what was typed."""
        if interaction.guild_id is None:
            return []
        return choices_containing(await self.catalog.own_names(interaction.guild_id), current)


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(RestaurantsCog(bot))
