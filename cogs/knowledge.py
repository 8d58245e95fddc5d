"""/remember, /search and /forget: the server's knowledge, kept by the core's `KnowledgeBase`.

`/remember file:` reads a document (`bot/documents.py`) and indexes it with a message that counts the
chunks while they are embedded, then becomes the answer; the file is one entry, cited by name and page
in /search and in conversations, and forgotten whole.

A guild may keep its knowledge in an OpenAI vector store instead (`knowledge_store`). Its files are
numbered F1, F2, ... and the bot's own entries 1, 2, ...: /forget takes either whatever the setting is
now (a guild that changed it can still clear out the other store), and /search says which it searched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import GuildSettings
from bot.documents import (
    KIND_NAMES,
    SUPPORTED_FORMATS,
    DocumentTooLargeError,
    ParsedDocument,
    document_kind,
    parse_document,
)
from bot.errors import UserFacingError
from bot.knowledge import (
    MAX_QUERY_CHARS,
    MAX_SEARCH_RESULTS,
    Remembered,
    SearchResults,
    parse_entry_reference,
)
from bot.storage import KnowledgeEntry
from bot.vector_knowledge import FILE_LABEL_PREFIX, VectorSearchHit, check_file, file_label
from cogs.deferral import public_thinking
from cogs.embeds import add_fields, cut, field_share

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

MAX_TEXT_OPTION_CHARS = 6000  # Discord's limit for a string option
SNIPPET_CHARS = 700
MAX_CHOICE_NAME_CHARS = 100
MAX_AUTOCOMPLETE_CHOICES = 25
SEARCH_COLOUR = discord.Colour.blurple()
NO_MENTIONS = discord.AllowedMentions.none()
JUMP_URL_BASE = "https://discord.com/channels"
MAX_FIELD_NAME_CHARS = 256  # Discord's limit for an embed field's name
LOCAL_STORE = "this server's own knowledge"
OPENAI_STORE = "this server's OpenAI vector store"


def _search_head(query: str, store: str) -> discord.Embed:
    """A search's embed before its results: what was asked, and in which store."""
    return discord.Embed(
        title="Knowledge search",
        description=cut(f"Closest matches for **{discord.utils.escape_markdown(query)}** in {store}", 4000),
        colour=SEARCH_COLOUR,
    )


def search_embed(query: str, results: SearchResults, vector_files: int = 0) -> discord.Embed:
    """The top matches as embed fields: entry, score, source link and the passage itself; the footer
    says the bot's own knowledge was searched (and what was not: `vector_files` in the OpenAI store)."""
    embed = _search_head(query, LOCAL_STORE)
    footer = f"Searched {LOCAL_STORE} · {results.model} · {results.dims} dimensions"
    if results.skipped_entries:
        footer += f" · {results.skipped_entries} entries from another embedding model not searched"
    if vector_files:
        footer += f" · {_count(vector_files, 'file')} in {OPENAI_STORE} not searched"
    embed.set_footer(text=footer)
    names = [
        cut(f"{rank}. #{hit.entry.id} · {hit.score:.2f} · {hit.citation}", MAX_FIELD_NAME_CHARS)
        for rank, hit in enumerate(results.hits, 1)
    ]
    share = field_share(embed, names)  # ten long passages must share Discord's 6000 characters
    fields: list[tuple[str, str, bool]] = []
    for name, hit in zip(names, results.hits, strict=True):
        entry = hit.entry
        source = f"[{cut(entry.source, 60)}]({entry.jump_url})" if entry.jump_url else entry.source
        credit = f"— {source}, added by <@{entry.author_id}>"
        passage = cut(hit.text, max(1, min(SNIPPET_CHARS, share - len(credit) - 1)))
        fields.append((name, f"{passage}\n{credit}", False))
    return add_fields(embed, fields)


def vector_search_embed(query: str, hits: list[VectorSearchHit], local_entries: int = 0) -> discord.Embed:
    """The OpenAI vector store's top passages as embed fields: file, score, name and the passage; the
    footer says the store was searched (and what was not: `local_entries` of the bot's own)."""
    embed = _search_head(query, OPENAI_STORE)
    footer = f"Searched {OPENAI_STORE}"
    if local_entries:
        footer += f" · {_count(local_entries, 'entry', 'entries')} of {LOCAL_STORE} not searched"
    embed.set_footer(text=footer)
    names = [
        cut(
            f"{rank}. {_file_prefix(hit)}{hit.score:.2f} · {hit.filename}",
            MAX_CHOICE_NAME_CHARS * 2,
        )
        for rank, hit in enumerate(hits, 1)
    ]
    share = field_share(embed, names)
    fields = [
        (name, cut(hit.text or "…", max(1, min(SNIPPET_CHARS, share))), False)
        for name, hit in zip(names, hits, strict=True)
    ]
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
    @app_commands.command(name="remember", description="Add a note or a document to this server's knowledge")
    @app_commands.describe(
        text="The text to remember", file=f"A document to remember instead: {SUPPORTED_FORMATS}"
    )
    async def remember(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_TEXT_OPTION_CHARS] | None = None,
        file: discord.Attachment | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        if (text is None) == (file is None):
            raise UserFacingError(
                "Give either some text or a file to remember (one of the two; remember each separately)."
            )
        services = self.bot.services
        if file is not None:
            await self._remember_file(interaction, guild_id, file)
            return
        assert text is not None
        services.features.knowledge.require()
        async with public_thinking(interaction):
            settings = await services.settings.effective(guild_id)
            async with self._allowance(interaction, settings):
                remembered = await self.knowledge.remember(
                    guild_id=guild_id,
                    author_id=interaction.user.id,
                    text=text,
                    model=settings.embedding_model,
                )
        entry = remembered.entry
        message = await interaction.followup.send(
            _remembered_sentence(remembered), allowed_mentions=NO_MENTIONS, wait=True
        )
        # A webhook message does not know its guild (its own jump_url says @me): build the link here.
        await self.knowledge.link(entry.id, f"{JUMP_URL_BASE}/{guild_id}/{message.channel.id}/{message.id}")

    async def _remember_file(
        self, interaction: discord.Interaction, guild_id: int, file: discord.Attachment
    ) -> None:
        """Read the document and index it with a progress message; or, where the guild keeps its
        knowledge in an OpenAI vector store, hand the file to that store."""
        services = self.bot.services
        settings = await services.settings.effective(guild_id)
        max_bytes = services.config.storage.knowledge_document_max_mb << 20
        if settings.knowledge_store == "openai":
            await self._add_to_vector_store(interaction, guild_id, file, settings, max_bytes)
            return
        services.features.knowledge.require()
        _refuse_too_large(file, max_bytes)
        kind = document_kind(file.filename, file.content_type)
        progress = self.bot.channel_writes.response_progress(interaction)
        async with public_thinking(interaction):
            try:
                data = await file.read()
                document = await asyncio.to_thread(
                    parse_document, file.filename, data, file.content_type, max_bytes=max_bytes
                )
                async with self._allowance(interaction, settings):
                    remembered = await self.knowledge.remember_document(
                        document,
                        guild_id=guild_id,
                        author_id=interaction.user.id,
                        model=settings.embedding_model,
                        progress=_progress_shown(progress.show, document),
                    )
            except BaseException:
                await progress.abandon()  # no progress edit may land after the placeholder is gone
                raise
        entry = remembered.entry
        message = await progress.finish(_remembered_sentence(remembered, KIND_NAMES[kind]))
        await self.knowledge.link(entry.id, f"{JUMP_URL_BASE}/{guild_id}/{message.channel.id}/{message.id}")

    async def _add_to_vector_store(
        self,
        interaction: discord.Interaction,
        guild_id: int,
        file: discord.Attachment,
        settings: GuildSettings,
        max_bytes: int,
    ) -> None:
        """`knowledge_store = "openai"`: the file goes to the guild's OpenAI vector store as it is.

        Its type and size are checked from the attachment's metadata, and the member's limits before
        anything is downloaded: a refused file costs neither the download nor the upload.
        """
        check_file(file.filename, file.size)
        _refuse_too_large(file, max_bytes)
        async with public_thinking(interaction), self._allowance(interaction, settings):
            data = await file.read()
            added = await self.bot.services.vector_knowledge.add_file(
                guild_id=guild_id, user_id=interaction.user.id, filename=file.filename, data=data
            )
        await interaction.followup.send(added.message, allowed_mentions=NO_MENTIONS)

    async def _keeps_knowledge_at_openai(self, guild_id: int) -> bool:
        """Whether the guild's `knowledge_store` is its OpenAI vector store."""
        return (await self.bot.services.settings.effective(guild_id)).knowledge_store == "openai"

    async def _search_vector_store(
        self, interaction: discord.Interaction, guild_id: int, query: str, count: int
    ) -> None:
        """/search in the guild's OpenAI vector store: OpenAI ranks the passages of its files."""
        async with public_thinking(interaction):
            hits = await self.bot.services.vector_knowledge.search(
                guild_id=guild_id, query=query, count=count
            )
            local_entries = await self.knowledge.entry_count(guild_id)
            if not hits:
                raise UserFacingError(
                    f"Nothing in {OPENAI_STORE} matches that (add files with /remember)."
                    + _not_searched(local_entries, "entry", "entries", LOCAL_STORE)
                )
        await interaction.followup.send(
            embed=vector_search_embed(query, hits, local_entries), allowed_mentions=NO_MENTIONS
        )

    async def _forget_vector_file(self, interaction: discord.Interaction, guild_id: int, entry: int) -> None:
        """/forget of a file in the guild's OpenAI vector store (the interaction is acknowledged)."""
        removed = await self.bot.services.vector_knowledge.forget(
            guild_id=guild_id,
            entry_id=entry,
            user_id=interaction.user.id,
            is_admin=interaction.permissions.manage_guild,
        )
        await interaction.followup.send(
            f"Forgot file {file_label(removed.id)} ({discord.utils.escape_markdown(removed.filename)}):"
            f" it is out of {OPENAI_STORE}.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

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
        if await self._keeps_knowledge_at_openai(guild_id):
            await self._search_vector_store(interaction, guild_id, query, count)
            return
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
            vector_files = await services.vector_knowledge.file_count(guild_id)
            if not results.hits:
                raise UserFacingError(
                    "Nothing in this server's knowledge matches that (add some with /remember)."
                    + _not_searched(vector_files, "file", "files", OPENAI_STORE)
                )
        await interaction.followup.send(
            embed=search_embed(query, results, vector_files), allowed_mentions=NO_MENTIONS
        )

    @app_commands.guild_only()
    @app_commands.command(name="forget", description="Remove an entry from this server's knowledge")
    @app_commands.describe(
        entry="The entry to remove: its number (#12), a vector-store file's (F3), or start typing its title"
    )
    async def forget(self, interaction: discord.Interaction, entry: str) -> None:
        """Either store's entry, whatever `knowledge_store` says now: the reference names the store."""
        guild_id = _guild_id(interaction)
        reference = parse_entry_reference(str(entry))
        await interaction.response.defer(ephemeral=True, thinking=True)
        if reference.in_vector_store:
            await self._forget_vector_file(interaction, guild_id, reference.entry_id)
            return
        removed = await self.knowledge.forget(
            guild_id=guild_id,
            entry_id=reference.entry_id,
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
    ) -> list[app_commands.Choice[str]]:
        """The caller's own entries (every entry for admins) in both stores, newest first, filtered by
        what they typed: a guild that changed `knowledge_store` can still forget what the other holds."""
        guild_id = interaction.guild_id
        if guild_id is None:
            return []
        author = None if interaction.permissions.manage_guild else interaction.user.id
        typed = current.strip().lstrip("#").strip()
        file_typed = typed[1:] if typed[:1].upper() == FILE_LABEL_PREFIX and typed[1:].isdigit() else typed
        entries = await self.knowledge.entries(
            guild_id, author_id=author, matching=typed, limit=MAX_AUTOCOMPLETE_CHOICES
        )
        files = await self.bot.services.vector_knowledge.files(
            guild_id, author_id=author, matching=file_typed, limit=MAX_AUTOCOMPLETE_CHOICES
        )
        choices = [(e.created_at, f"#{e.id} · {e.title} ({_what_it_is(e)})", str(e.id)) for e in entries] + [
            (f.added_at, f"{file_label(f.id)} · {f.filename} (OpenAI vector store)", file_label(f.id))
            for f in files
        ]
        choices.sort(key=lambda choice: choice[0], reverse=True)
        return [
            app_commands.Choice(name=cut(name, MAX_CHOICE_NAME_CHARS), value=value)
            for _, name, value in choices[:MAX_AUTOCOMPLETE_CHOICES]
        ]


def _remembered_sentence(remembered: Remembered, kind: str | None = None) -> str:
    """What /remember answers: the entry number (for /forget) and what it holds."""
    entry = remembered.entry
    title = discord.utils.escape_markdown(entry.title)
    chunks = f"{entry.chunk_count} chunk{'s' if entry.chunk_count != 1 else ''}"
    if kind is None:
        return (
            f"Remembered entry **#{entry.id}** ({title}, {chunks}). "
            "Find it with /search; remove it with /forget."
        )
    if entry.page_count:
        chunks = f"{entry.page_count} page{'s' if entry.page_count != 1 else ''}, {chunks}"
    return (
        f"Remembered entry **#{entry.id}**: the {kind} **{title}** ({chunks}). "
        f"Find it with /search; remove all of it with /forget entry:{entry.id}."
    )


def _file_prefix(hit: VectorSearchHit) -> str:
    """ "F3 · " for a file the bot added; nothing for one added to the store some other way."""
    return f"{file_label(hit.entry.id)} · " if hit.entry else ""


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _not_searched(n: int, one: str, many: str, store: str) -> str:
    """The other store's size, when it has anything (the guild changed `knowledge_store`)."""
    return f" {_count(n, one, many)} in {store} {'was' if n == 1 else 'were'} not searched." if n else ""


def _refuse_too_large(file: discord.Attachment, max_bytes: int) -> None:
    """`[storage] knowledge_document_max_mb`, checked before anything is downloaded."""
    if file.size > max_bytes:
        raise DocumentTooLargeError(
            f"{file.filename} is too large to remember ({file.size / (1 << 20):.1f} MB; "
            f"the limit is {max_bytes >> 20} MB)."
        )


def _what_it_is(entry: KnowledgeEntry) -> str:
    """How the autocomplete describes an entry: "PDF, 200 pages" for a file, a note's source else."""
    kind = KIND_NAMES.get(entry.file_type) if entry.file_type else None  # type: ignore[call-overload]
    if kind is None:
        return entry.source
    return (
        f"{kind}, {entry.page_count} page{'s' if entry.page_count != 1 else ''}" if entry.page_count else kind
    )


def _progress_shown(show: Callable[[str], None], document: ParsedDocument) -> Callable[[int, int], None]:
    """The count after each embedding batch but the last (a document of one batch shows none)."""
    name = discord.utils.escape_markdown(document.filename)

    def shown(done: int, total: int) -> None:
        if done < total:
            show(f"Indexing {name}: {done}/{total} chunks…")

    return shown


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise UserFacingError("Knowledge is kept per server; use this command in a server.")
    return interaction.guild_id


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(KnowledgeCog(bot))
