"""/assistant: named assistants (create, edit, delete, list, show) and which one answers where (use).

The rules live in `bot.assistants.AssistantDirectory`; this turns options into its calls, checks who
may do what, and answers. Discord lets only a top-level command carry default permissions, and
`/assistant use` and `list` are for members too (a thread's starter, a DM), so the group has none:
`create`, `edit`, `delete` and `use` in a channel check Manage Server here, `use` in a thread its
starter or Manage Threads, `use` in a DM nothing (it is the person's own).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.assistants import (
    DEFAULT_NAME,
    KNOWLEDGE_TOOL,
    Assistant,
    AssistantDirectory,
    AssistantError,
    AssistantProfile,
    validate_profile,
)
from bot.config import ALL_TOOLS, GuildSettings
from bot.discord.instructions_modal import InstructionsModal
from bot.discord.members import member_lookup
from bot.engine import conversation_key
from bot.errors import UserFacingError
from bot.storage.assistants import AssistantChange, ChoiceScope
from cogs.embeds import MAX_CHOICE_CHARS, MAX_CHOICES, choices_containing, cut

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

log = logging.getLogger(__name__)

ASSISTANT_COLOUR = discord.Colour.blurple()
NO_MENTIONS = discord.AllowedMentions.none()
MAX_MESSAGE_CHARS = 2000
MAX_FIELD_VALUE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 4096
MAX_OPTION_CHARS = 6000  # Discord's limit for a string option
MAX_DM_MATCHES = 100
"""Assistants of any server a DM's autocomplete or pick starts from (the person's servers among them)."""
MAX_GUILD_NAMES = 1000
INSTRUCTIONS_PREVIEW_CHARS = 300
AUDIT_ENTRIES = 15
EDITED_FIELDS = (
    ("name", "name"),
    ("model", "model"),
    ("instructions", "instructions"),
    ("tools", "enabled_tools"),
    ("knowledge", "knowledge"),
    ("avatar", "avatar_url"),
)
SERVER_WORDS = frozenset({"server", "default", "inherit"})
NO_TOOL_WORDS = frozenset({"none", "off", "nothing"})
NO_AVATAR_WORDS = frozenset({"none", "off", "remove"})
DM_PICK = re.compile(r"([0-9]{1,20}):(.+)", re.DOTALL)
NEEDS_MANAGE_SERVER = "You need the Manage Server permission to {what}."
NOT_IN_DM = "Assistants belong to a server: use this in a server (in a DM, `/assistant use` picks one)."


def _md(text: str) -> str:
    return discord.utils.escape_markdown(text)


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise UserFacingError(NOT_IN_DM)
    return interaction.guild_id


def _require_manage_guild(interaction: discord.Interaction, what: str) -> None:
    if not interaction.permissions.manage_guild:
        raise UserFacingError(NEEDS_MANAGE_SERVER.format(what=what))


def parse_tools(text: str) -> tuple[str, ...] | None:
    """What an admin typed for tools: a list, `none` (no tools), `server` (the server's: None)."""
    lowered = text.strip().lower()
    if lowered in SERVER_WORDS or not lowered:
        return None
    if lowered in NO_TOOL_WORDS:
        return ()
    return tuple(part.replace("-", "_") for part in re.split(r"[\s,]+", lowered) if part)


def _avatar(text: str | None) -> str | None:
    if text is None or text.strip().lower() in NO_AVATAR_WORDS:
        return None
    return text


def tools_text(profile: AssistantProfile, server: GuildSettings | None = None) -> str:
    """The assistant's tools as a person reads them (knowledge included when switched on)."""
    if profile.enabled_tools is None:
        inherited = "" if server is None else f": {_tool_list(server.enabled_tools, knowledge=None)}"
        own = "the server's" + inherited
        return own if profile.knowledge or server is None else f"{own} (without knowledge)"
    return _tool_list(profile.enabled_tools, knowledge=profile.knowledge)


def _tool_list(tools: Iterable[str], *, knowledge: bool | None) -> str:
    names = [name for name in tools if knowledge is None or name != KNOWLEDGE_TOOL]
    if knowledge:
        names.append(KNOWLEDGE_TOOL)
    return ", ".join(f"`{name}`" for name in names) or "none"


def summary(profile: AssistantProfile) -> str:
    """One line: name, model, tools, knowledge."""
    return (
        f"**{_md(profile.name)}** · `{profile.model}` · tools: {tools_text(profile)} · "
        f"knowledge {'on' if profile.knowledge else 'off'}"
    )


def change_line(change: AssistantChange) -> str:
    """One audit row: when, who, and what changed."""
    name = f"**{_md(change.name)}**"
    if change.action == "create":
        what = f"created {name}"
    elif change.action == "delete":
        what = f"deleted {name}"
    elif change.action == "edit":
        old, new = change.old or {}, change.new or {}
        fields = [label for label, field in EDITED_FIELDS if old.get(field) != new.get(field)]
        what = f"edited {name}: {', '.join(fields) or 'nothing'}"
    else:
        where = change.new or {}
        place = f"<#{where.get('target')}>"
        scope = "thread" if where.get("scope") == ChoiceScope.CONVERSATION.value else "channel"
        chosen = "the default" if where.get("assistant") is None else name
        what = f"put {scope} {place} on {chosen}"
    return cut(f"<t:{int(change.at)}:R> <@{change.user_id}> {what}", 300)


def mentions_within(channel_ids: Iterable[int], limit: int) -> str:
    """`<#id>` mentions while they fit in `limit` characters, then "+N more" (an embed field holds 1024)."""
    ids = list(channel_ids)
    shown: list[str] = []
    for index, channel_id in enumerate(ids):
        mention = f"<#{channel_id}>"
        rest = len(ids) - index - 1
        tail = f" +{rest} more" if rest else ""
        if len(" ".join([*shown, mention])) + len(tail) > limit:
            break
        shown.append(mention)
    if len(shown) < len(ids):
        shown.append(f"+{len(ids) - len(shown)} more")
    return " ".join(shown)


def _counted(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


class AssistantsCog(commands.Cog):
    assistant = app_commands.Group(
        name="assistant", description="Named assistants: each with its own instructions, model and tools"
    )

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self.assistants: AssistantDirectory = bot.services.assistants
        self._guild_names: dict[int, str] = {}
        """Names of servers this process does not hold, as Discord gave them (for DM picks)."""

    async def _say(self, interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
        await interaction.followup.send(
            cut(text, MAX_MESSAGE_CHARS), ephemeral=ephemeral, allowed_mentions=NO_MENTIONS
        )

    # -- create ----------------------------------------------------------------------------------

    @assistant.command(name="create", description="Make a named assistant for this server (Manage Server)")
    @app_commands.describe(
        name="What it is called and shown as (1 to 32 characters)",
        model="Model it answers with, e.g. gpt-5.5",
        instructions="Its system prompt (default: the server's instructions; /assistant edit for long ones)",
        tools="Tools it may use, e.g. code_interpreter, rides; 'none'; default: the server's",
        knowledge="Whether it may search this server's knowledge (default: yes)",
        avatar="An https:// image URL it is shown with",
    )
    async def create(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 100],
        model: app_commands.Range[str, 1, 100],
        instructions: app_commands.Range[str, 1, MAX_OPTION_CHARS] | None = None,
        tools: str | None = None,
        knowledge: bool = True,
        avatar: str | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        _require_manage_guild(interaction, "create assistants")
        profile = validate_profile(
            {
                "name": name,
                "model": model,
                "instructions": instructions,
                "enabled_tools": None if tools is None else parse_tools(tools),
                "knowledge": knowledge,
                "avatar_url": _avatar(avatar),
            }
        )
        await interaction.response.defer(ephemeral=True, thinking=True)
        created = await self.assistants.create(guild_id, profile, user_id=interaction.user.id)
        await self._say(
            interaction,
            f"✅ Created {summary(created.profile)}. `/assistant use name:{created.name}` in a channel "
            "makes it answer there.",
        )

    # -- edit ------------------------------------------------------------------------------------

    @assistant.command(
        name="edit", description="Change an assistant; its instructions open in a box (Manage Server)"
    )
    @app_commands.describe(
        name="The assistant to change",
        new_name="A new name",
        model="Another model",
        tools="Tools it may use; 'none'; 'server' for the server's",
        knowledge="Whether it may search this server's knowledge",
        avatar="An https:// image URL, or 'none'",
    )
    async def edit(
        self,
        interaction: discord.Interaction,
        name: str,
        new_name: app_commands.Range[str, 1, 100] | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        tools: str | None = None,
        knowledge: bool | None = None,
        avatar: str | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        _require_manage_guild(interaction, "edit assistants")
        current = await self.assistants.get(guild_id, name)
        changes: dict[str, Any] = {}
        if new_name is not None:
            changes["name"] = new_name
        if model is not None:
            changes["model"] = model
        if tools is not None:
            changes["enabled_tools"] = parse_tools(tools)
        if knowledge is not None:
            changes["knowledge"] = knowledge
        if avatar is not None:
            changes["avatar_url"] = _avatar(avatar)
        validate_profile({**current.profile.model_dump(), **changes})  # wrong options: said before the box
        await interaction.response.send_modal(AssistantModal(self, current, changes))

    async def apply_edit(self, interaction: discord.Interaction, name: str, changes: dict[str, Any]) -> None:
        """Validate, store and confirm an edit (the interaction is already acknowledged)."""
        before, after = await self.assistants.edit(
            _guild_id(interaction), name, changes, user_id=interaction.user.id
        )
        if before.profile == after.profile:
            await self._say(interaction, f"Nothing changed: **{_md(after.name)}** already had those values.")
            return
        moved = [
            label
            for label, field in EDITED_FIELDS
            if getattr(before.profile, field) != getattr(after.profile, field)
        ]
        await self._say(
            interaction,
            f"✏️ Changed {', '.join(moved)} of {summary(after.profile)}. It applies from the next message.",
        )

    # -- delete ----------------------------------------------------------------------------------

    @assistant.command(name="delete", description="Delete an assistant (Manage Server)")
    @app_commands.describe(name="The assistant to delete")
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        _require_manage_guild(interaction, "delete assistants")
        await interaction.response.defer(ephemeral=True, thinking=True)
        removed = await self.assistants.delete(guild_id, name, user_id=interaction.user.id)
        used = []
        if removed.channels:
            used.append(_counted(removed.channels, "channel"))
        if removed.threads:
            used.append(_counted(removed.threads, "thread"))
        after = (
            f" The {' and '.join(used)} that used it now answer with the server's default."
            if used
            else " No channel used it."
        )
        await self._say(interaction, f"🗑️ Deleted **{_md(removed.change.name)}**.{after}")

    # -- audit -----------------------------------------------------------------------------------

    @assistant.command(name="audit", description="Recent changes to this server's assistants (Manage Server)")
    async def audit(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        _require_manage_guild(interaction, "see the assistants' changes")
        await interaction.response.defer(ephemeral=True, thinking=True)
        changes = await self.assistants.audit(guild_id, limit=AUDIT_ENTRIES)
        lines: list[str] = []
        for change in changes:
            line = change_line(change)
            if sum(len(kept) + 1 for kept in lines) + len(line) > MAX_DESCRIPTION_CHARS:
                break
            lines.append(line)
        embed = discord.Embed(title="Recent assistant changes", colour=ASSISTANT_COLOUR)
        embed.description = "\n".join(lines) or "No assistant has been changed in this server yet."
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- list and show ---------------------------------------------------------------------------

    @assistant.command(name="list", description="This server's assistants and where each answers")
    async def list_assistants(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        assistants = await self.assistants.in_guild(guild_id)
        where = await self.assistants.channels_using(guild_id)
        settings = await self.bot.services.settings.effective(guild_id)
        lines = [f"**default** · `{settings.model}` · the server's settings (`/config`)"]
        for assistant in assistants:
            channels = " ".join(f"<#{cid}>" for cid, name in where.items() if name == assistant.name)
            lines.append(summary(assistant.profile) + (f" · answers in {channels}" if channels else ""))
        here = await self._here(interaction)
        embed = discord.Embed(title="Assistants in this server", colour=ASSISTANT_COLOUR)
        embed.description = cut("\n".join(lines), MAX_DESCRIPTION_CHARS - 200)
        if not assistants:
            embed.description += "\n\n*No named assistants yet: admins make one with `/assistant create`.*"
        embed.description += f"\n\nHere: **{_md(here)}**"
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _here(self, interaction: discord.Interaction) -> str:
        """The name of the assistant that answers where the command was run."""
        channel = interaction.channel
        channel_id = interaction.channel_id or 0
        if isinstance(channel, discord.Thread):
            chosen = await self.assistants.chosen(ChoiceScope.CONVERSATION, channel_id)
            if chosen is not None:
                return chosen.name
            channel_id = channel.parent_id or channel_id
        chosen = await self.assistants.chosen(ChoiceScope.CHANNEL, channel_id)
        return DEFAULT_NAME if chosen is None else chosen.name

    @assistant.command(name="show", description="One assistant's instructions, model and tools")
    @app_commands.describe(name="The assistant to show")
    async def show(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        settings = await self.bot.services.settings.effective(guild_id)
        if name.strip().lower() == DEFAULT_NAME:
            embed = discord.Embed(title="default", colour=ASSISTANT_COLOUR)
            embed.description = "The server's own settings (`/config show`); its replies show as the bot."
            embed.add_field(name="Model", value=f"`{settings.model}`")
            embed.add_field(name="Tools", value=_tool_list(settings.enabled_tools, knowledge=None))
            await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        assistant = await self.assistants.get(guild_id, name)
        profile = assistant.profile
        where = await self.assistants.channels_using(guild_id)
        channels = mentions_within(
            [cid for cid, used in where.items() if used == assistant.name], MAX_FIELD_VALUE_CHARS
        )
        instructions = (
            "*the server's instructions*"
            if profile.instructions is None
            else _md(cut(profile.instructions, INSTRUCTIONS_PREVIEW_CHARS))
            + f" ({len(profile.instructions):,} characters)"
        )
        embed = discord.Embed(title=cut(profile.name, 256), colour=ASSISTANT_COLOUR)
        embed.add_field(name="Model", value=f"`{profile.model}`")
        embed.add_field(name="Knowledge", value="on" if profile.knowledge else "off")
        embed.add_field(
            name="Tools", value=cut(tools_text(profile, settings), MAX_FIELD_VALUE_CHARS), inline=False
        )
        embed.add_field(name="Instructions", value=cut(instructions, MAX_FIELD_VALUE_CHARS), inline=False)
        embed.add_field(name="Answers in", value=channels or "no channel yet", inline=False)
        if profile.avatar_url is not None:
            embed.set_thumbnail(url=profile.avatar_url)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- use -------------------------------------------------------------------------------------

    @assistant.command(
        name="use", description="Which assistant answers here: in this channel, this thread or your DMs"
    )
    @app_commands.describe(name="The assistant, or 'default' for the server's own settings")
    async def use(self, interaction: discord.Interaction, name: str) -> None:
        if interaction.guild_id is None:
            await self._use_in_dm(interaction, name)
            return
        guild_id = interaction.guild_id
        channel = interaction.channel
        if not isinstance(channel, discord.Thread):
            _require_manage_guild(interaction, "choose a channel's assistant")
        # Acknowledged before any read (Discord's three seconds), privately: a refusal is the person's
        # alone; the switch itself is then said in the channel, for everyone.
        await interaction.response.defer(ephemeral=True, thinking=True)
        if isinstance(channel, discord.Thread):
            await self._check_thread_switch(interaction, channel)
            assistant = await self._named(guild_id, name)
            await self.assistants.use_in_thread(guild_id, channel.id, assistant, user_id=interaction.user.id)
            who = "the server's default assistant" if assistant is None else f"**{_md(assistant.name)}**"
            said = f"🔁 {_md(interaction.user.display_name)} switched this conversation to {who}."
        else:
            assistant = await self._named(guild_id, name)
            channel_id = interaction.channel_id or 0
            await self.assistants.use_in_channel(guild_id, channel_id, assistant, user_id=interaction.user.id)
            who = "the server's default assistant" if assistant is None else f"**{_md(assistant.name)}**"
            said = (
                f"🔁 New conversations in this channel are answered by {who}; threads already open keep "
                "theirs."
            )
        await interaction.delete_original_response()
        await self._say(interaction, said, ephemeral=False)

    async def _named(self, guild_id: int, name: str) -> Assistant | None:
        """The assistant called `name` here, or None for `default`."""
        if name.strip().lower() == DEFAULT_NAME:
            return None
        return await self.assistants.get(guild_id, name)

    async def _check_thread_switch(self, interaction: discord.Interaction, thread: discord.Thread) -> None:
        """A conversation's assistant is switched by its starter or someone with Manage Threads."""
        me = self.bot.user
        is_ours = (me is not None and thread.owner_id == me.id) or (
            await self.bot.services.storage.conversations.get(conversation_key(thread.id)) is not None
        )
        if not is_ours:
            raise UserFacingError(
                "I have no conversation in this thread: mention me here first, or use this in its channel."
            )
        if interaction.permissions.manage_threads or await self._started(thread) == interaction.user.id:
            return
        raise UserFacingError(
            "Only the person who started this conversation, or someone with Manage Threads, can switch "
            "its assistant."
        )

    async def _started(self, thread: discord.Thread) -> int | None:
        """Who started a conversation thread: the author of its first message to the bot, recorded
        with its assistant at its first turn; else whoever opened the thread (the bot itself, for a
        thread recorded before starters were: then only Manage Threads switches it)."""
        starter = await self.assistants.starter_of(thread.id)
        return thread.owner_id if starter is None else starter

    async def _use_in_dm(self, interaction: discord.Interaction, name: str) -> None:
        """A person's pick for their DMs: an assistant of a server they share with the bot."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        if name.strip().lower() == DEFAULT_NAME:
            await self.assistants.use_in_dm(interaction.user.id, None)
            await self._say(interaction, "🔁 Our DMs are answered by my default assistant again.")
            return
        pick = DM_PICK.fullmatch(name.strip())
        if pick is not None:
            candidates = [
                a for a in await self.assistants.named(pick.group(2)) if a.guild_id == int(pick.group(1))
            ]
        else:
            candidates = (await self.assistants.named(name))[:MAX_DM_MATCHES]
        shared = await self._shared_guilds(interaction.user.id, [a.guild_id for a in candidates])
        usable = [a for a in candidates if a.guild_id in shared]
        shown = _md(cut(pick.group(2) if pick is not None else name.strip(), 60))
        if not usable:
            raise AssistantError(f"No server you share with me has an assistant called `{shown}`.")
        if len(usable) > 1:
            raise AssistantError(
                f"Several servers you share with me have an assistant called `{shown}`; "
                "pick one from the list."
            )
        [assistant] = usable
        await self.assistants.use_in_dm(interaction.user.id, assistant)
        guild_name = await self._guild_name(assistant.guild_id)
        where = f" of {_md(guild_name)}" if guild_name is not None else ""
        await self._say(interaction, f"🔁 Our DMs are now answered by **{_md(assistant.name)}**{where}.")

    async def _shared_guilds(self, user_id: int, guild_ids: list[int]) -> set[int]:
        """Which of these servers (in this order, a bounded number) have both the bot and the person:
        asked of Discord by REST, never of this process's cache (DMs reach shard 0 only, and another
        process may hold the server); answers are kept a few minutes."""
        return await self.assistants.shared_guilds(user_id, guild_ids, member_lookup(self.bot))

    async def _guild_name(self, guild_id: int) -> str | None:
        """A server's name: this process's cache, else asked of Discord once (kept); None if unknown."""
        guild = self.bot.get_guild(guild_id)
        if guild is not None:
            return guild.name
        if guild_id in self._guild_names:
            return self._guild_names[guild_id]
        try:
            data = await self.bot.http.get_guild(guild_id)
        except discord.HTTPException:
            return None
        if len(self._guild_names) >= MAX_GUILD_NAMES:
            self._guild_names.clear()
        self._guild_names[guild_id] = str(data["name"])
        return self._guild_names[guild_id]

    # -- autocomplete ----------------------------------------------------------------------------

    @edit.autocomplete("name")
    @delete.autocomplete("name")
    @show.autocomplete("name")
    async def name_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """This server's assistants whose name contains what was typed."""
        if interaction.guild_id is None:
            return []
        return choices_containing(
            (a.name for a in await self.assistants.in_guild(interaction.guild_id)), current
        )

    @use.autocomplete("name")
    async def use_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """`default`, then this server's assistants; in a DM, those of servers the person shares with
        the bot (as `guild:name`, shown with the server's name)."""
        wanted = current.strip().lower()
        offered = [
            app_commands.Choice(name=f"{DEFAULT_NAME} — the server's own settings", value=DEFAULT_NAME)
        ]
        if interaction.guild_id is not None:
            offered += [
                app_commands.Choice(name=a.name, value=a.name)
                for a in await self.assistants.in_guild(interaction.guild_id)
                if wanted in a.name.lower()
            ]
        else:
            offered[0] = app_commands.Choice(name=f"{DEFAULT_NAME} — my own settings", value=DEFAULT_NAME)
            found = await self.assistants.matching(wanted, limit=MAX_DM_MATCHES)
            shared = await self._shared_guilds(interaction.user.id, [a.guild_id for a in found])
            usable = [a for a in found if a.guild_id in shared][:MAX_CHOICES]
            names = await asyncio.gather(*(self._guild_name(a.guild_id) for a in usable))
            for assistant, guild_name in zip(usable, names, strict=True):
                label = cut(f"{assistant.name} — {guild_name or 'a server'}", MAX_CHOICE_CHARS)
                offered.append(
                    app_commands.Choice(name=label, value=f"{assistant.guild_id}:{assistant.name}")
                )
        if wanted and wanted not in DEFAULT_NAME:
            offered = offered[1:]
        return offered[:MAX_CHOICES]

    @create.autocomplete("tools")
    @edit.autocomplete("tools")
    async def tool_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """`server`, `none`, or the typed list with one more tool (`knowledge` has its own option)."""
        head, _, last = current.rpartition(",")
        typed = [part.strip() for part in head.split(",") if part.strip()]
        prefix = "".join(f"{part}, " for part in typed)
        values = [] if typed else ["server", "none"]
        values += [
            prefix + tool
            for tool in ALL_TOOLS
            if tool != KNOWLEDGE_TOOL and tool not in typed and tool.startswith(last.strip().lower())
        ]
        return [app_commands.Choice(name=cut(v, MAX_CHOICE_CHARS), value=v) for v in values][:MAX_CHOICES]


class AssistantModal(InstructionsModal):
    """An assistant's instructions in the two boxes; empty: the server's instructions. The other
    changes given with `/assistant edit` ride along."""

    def __init__(self, cog: AssistantsCog, assistant: Assistant, changes: dict[str, Any]) -> None:
        super().__init__(
            title=f"Instructions for {changes.get('name', assistant.name)}",
            current=assistant.profile.instructions or "",
            label="Instructions (empty: the server's)",
            required=False,
        )
        self.cog = cog
        self.name = assistant.name
        self.changes = changes

    async def save(self, interaction: discord.Interaction, instructions: str) -> None:
        _guild_id(interaction)
        _require_manage_guild(interaction, "edit assistants")  # permissions may have changed meanwhile
        await interaction.response.defer(ephemeral=True, thinking=True)
        changes = {**self.changes, "instructions": instructions.strip() or None}
        await self.cog.apply_edit(interaction, self.name, changes)


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(AssistantsCog(bot))
