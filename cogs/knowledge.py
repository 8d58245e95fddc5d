"""/remember, /search and /forget: the server's knowledge, kept by the core's `KnowledgeBase`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import GuildSettings
from bot.errors import UserFacingError
from bot.knowledge import MAX_QUERY_CHARS, MAX_SEARCH_RESULTS, SearchResults
from cogs.deferral import public_thinking
from cogs.embeds import add_fields, field_share

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

TEXT_FILE_SUFFIXES = (".txt", ".md", ".markdown")
MAX_ATTACHMENT_BYTES = 1024 * 1024
MAX_TEXT_OPTION_CHARS = 6000  # Discord's limit for a string option
SNIPPET_CHARS = 700
MAX_CHOICE_NAME_CHARS = 100
MAX_AUTOCOMPLETE_CHOICES = 25
SEARCH_COLOUR = discord.Colour.blurple()
NO_MENTIONS = discord.AllowedMentions.none()
JUMP_URL_BASE = "https://discord.com/channels"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def search_embed(query: str, results: SearchResults) -> discord.Embed:
    """The top matches as embed fields: entry, score, source link and the passage itself."""
    embed = discord.Embed(
        title="Knowledge search",
        description=_cut(f"Closest matches for **{discord.utils.escape_markdown(query)}**", 4000),
        colour=SEARCH_COLOUR,
    )
    footer = f"{results.model} · {results.dims} dimensions"
    if results.skipped_entries:
        footer += f" · {results.skipped_entries} entries from another embedding model not searched"
    embed.set_footer(text=footer)
    names = [
        f"{rank}. #{hit.entry.id} · {hit.score:.2f} · {hit.entry.title}"
        for rank, hit in enumerate(results.hits, 1)
    ]
    share = field_share(embed, names)  # ten long passages must share Discord's 6000 characters
    fields: list[tuple[str, str, bool]] = []
    for name, hit in zip(names, results.hits, strict=True):
        entry = hit.entry
        source = f"[{_cut(entry.source, 60)}]({entry.jump_url})" if entry.jump_url else entry.source
        credit = f"— {source}, added by <@{entry.author_id}>"
        passage = _cut(hit.text, max(1, min(SNIPPET_CHARS, share - len(credit) - 1)))
        fields.append((name, f"{passage}\n{credit}", False))
    return add_fields(embed, fields)


class KnowledgeCog(commands.Cog):
    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self.knowledge = bot.services.knowledge

    def _allowance(
        self, interaction: discord.Interaction, settings: GuildSettings
    ) -> AbstractAsyncContextManager[None]:
        """Knowledge records its own embedding usage (also when it runs as a tool in a conversation)."""
        return self.bot.services.metered.allowance(
            settings, guild_id=interaction.guild_id, user_id=interaction.user.id
        )

    @app_commands.guild_only()
    @app_commands.command(name="remember", description="Add a note or a text file to this server's knowledge")
    @app_commands.describe(
        text="The text to remember", file="A .txt or .md file to remember (instead of, or after, the text)"
    )
    async def remember(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_TEXT_OPTION_CHARS] | None = None,
        file: discord.Attachment | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        self.bot.services.features.knowledge.require()
        if text is None and file is None:
            raise UserFacingError("Give some text or attach a .txt or .md file to remember.")
        if file is not None:
            if not file.filename.lower().endswith(TEXT_FILE_SUFFIXES):
                raise UserFacingError("Only text files (.txt or .md) can be remembered.")
            if file.size > MAX_ATTACHMENT_BYTES:
                raise UserFacingError(
                    f"That file is too big to remember (at most {MAX_ATTACHMENT_BYTES // 1024} KB)."
                )
        services = self.bot.services
        async with public_thinking(interaction):
            parts = [text] if text else []
            if file is not None:
                try:
                    parts.append((await file.read()).decode("utf-8-sig"))
                except UnicodeDecodeError:
                    raise UserFacingError(f"{file.filename} is not UTF-8 text.") from None
            settings = await services.settings.effective(guild_id)
            async with self._allowance(interaction, settings):
                remembered = await self.knowledge.remember(
                    guild_id=guild_id,
                    author_id=interaction.user.id,
                    text="\n\n".join(parts),
                    model=settings.embedding_model,
                    source=file.filename if file is not None else "text",
                )
        entry = remembered.entry
        chunks = f"{entry.chunk_count} chunk{'s' if entry.chunk_count != 1 else ''}"
        message = await interaction.followup.send(
            f"Remembered entry **#{entry.id}** ({discord.utils.escape_markdown(entry.title)}, {chunks}). "
            "Find it with /search; remove it with /forget.",
            allowed_mentions=NO_MENTIONS,
            wait=True,
        )
        # A webhook message does not know its guild (its own jump_url says @me): build the link here.
        await self.knowledge.link(entry.id, f"{JUMP_URL_BASE}/{guild_id}/{message.channel.id}/{message.id}")

    @app_commands.guild_only()
    @app_commands.command(name="search", description="Search this server's knowledge")
    @app_commands.describe(query="What to look for", count=f"How many matches (1-{MAX_SEARCH_RESULTS})")
    async def search(
        self,
        interaction: discord.Interaction,
        query: app_commands.Range[str, 1, MAX_QUERY_CHARS],
        count: app_commands.Range[int, 1, MAX_SEARCH_RESULTS] = 5,
    ) -> None:
        guild_id = _guild_id(interaction)
        services = self.bot.services
        services.features.knowledge.require()
        async with public_thinking(interaction):
            settings = await services.settings.effective(guild_id)
            async with self._allowance(interaction, settings):
                results = await self.knowledge.search(
                    guild_id=guild_id,
                    query=query,
                    count=count,
                    model=settings.embedding_model,
                    user_id=interaction.user.id,
                )
            if not results.hits:
                raise UserFacingError(
                    "Nothing in this server's knowledge matches that (add some with /remember)."
                )
        await interaction.followup.send(embed=search_embed(query, results), allowed_mentions=NO_MENTIONS)

    @app_commands.guild_only()
    @app_commands.command(name="forget", description="Remove an entry from this server's knowledge")
    @app_commands.describe(entry="The entry to remove (its number, or start typing its title)")
    async def forget(self, interaction: discord.Interaction, entry: int) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        removed = await self.knowledge.forget(
            guild_id=guild_id,
            entry_id=entry,
            user_id=interaction.user.id,
            is_admin=interaction.permissions.manage_guild,
        )
        await interaction.followup.send(
            f"Forgot entry #{removed.id} ({discord.utils.escape_markdown(removed.title)}) "
            f"and its {removed.chunk_count} chunk{'s' if removed.chunk_count != 1 else ''}.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @forget.autocomplete("entry")
    async def forget_entry_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        """The caller's own entries (every entry for admins), filtered by what they typed."""
        if interaction.guild_id is None:
            return []
        author = None if interaction.permissions.manage_guild else interaction.user.id
        entries = await self.knowledge.entries(
            interaction.guild_id,
            author_id=author,
            matching=current.strip().lstrip("#"),
            limit=MAX_AUTOCOMPLETE_CHOICES,
        )
        return [
            app_commands.Choice(
                name=_cut(f"#{e.id} · {e.title} ({e.source})", MAX_CHOICE_NAME_CHARS), value=e.id
            )
            for e in entries
        ]


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise UserFacingError("Knowledge is kept per server; use this command in a server.")
    return interaction.guild_id


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(KnowledgeCog(bot))
