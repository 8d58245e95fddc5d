"""/config: each server tunes the bot for itself (show, set, reset, audit), validated by the core.

Discord only lets a top-level command carry default permissions, and `/config show` is for everyone,
so the `/config` group has none; `set`, `reset` and `audit` check Manage Server at run time (which
also holds when a server changes the command's permissions in its integration settings).

`/config set setting:instructions` without a value opens a modal with the current instructions in two
paragraph boxes (Discord caps a box at 4000 characters; instructions may have 8000); with a value,
that one line becomes the instructions.
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import FUNCTION_TOOL_FAMILIES, HOSTED_TOOLS, IMAGE_TOOL, GuildSettings
from bot.discord.instructions_modal import InstructionsModal
from bot.errors import UserFacingError
from bot.guild_settings import (
    CHANNEL_SETTINGS,
    EVERYWHERE_WORDS,
    SETTING_NAMES,
    UNSET_WORDS,
    InvalidSettingError,
    SettingsService,
    SettingView,
    choices_of,
    expected,
    parse_setting_value,
    setting_kind,
    setting_name,
)
from bot.storage import SettingChange
from cogs.embeds import cut

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

log = logging.getLogger(__name__)

MAX_VALUE_OPTION_CHARS = 6000  # Discord's limit for a string option
MAX_CHOICES = 25
MAX_CHOICE_CHARS = 100
MAX_FIELD_VALUE_CHARS = 1024
MAX_FIELDS_PER_EMBED = 25
MAX_EMBED_CHARS = 5400  # Discord allows 6000 per message; the rest is for the title and description
MAX_DESCRIPTION_CHARS = 4096
INSTRUCTIONS_PREVIEW_CHARS = 200
AUDIT_ENTRIES = 15
CONFIG_COLOUR = discord.Colour.blurple()
NO_MENTIONS = discord.AllowedMentions.none()
NEXT_MESSAGE = "It applies from the next message."
RESERVED_WORDS = EVERYWHERE_WORDS | UNSET_WORDS
WIDE_SETTINGS = frozenset({"instructions", "channels", "enabled_tools"})
VALUE_EXAMPLES = {
    "user_cooldown_s": ("off", "10s", "30s", "1m", "5m"),
    "max_queued_turns_per_user": ("1", "3", "5", "10"),
    "daily_token_budget_guild": ("unlimited", "200k", "1M", "5M"),
    "daily_token_budget_user": ("unlimited", "20k", "50k", "200k"),
}


def show_value(name: str, value: Any) -> str:
    """A setting's value as a person reads it: mentions for channels, "unlimited" for 0 budgets."""
    kind = setting_kind(name)
    if kind == "bool":
        return "on" if value else "off"
    if kind == "ids":
        return " ".join(f"<#{channel}>" for channel in value) if value else "all channels"
    if kind == "optional_id":
        return "none" if value is None else f"<#{value}>"
    if kind == "tools":
        return ", ".join(f"`{tool}`" for tool in value) if value else "none"
    if kind in ("int", "float") and isinstance(value, int | float):
        if "budget" in name:
            return "unlimited" if value == 0 else f"{value:,} tokens"
        if name.endswith("_s"):
            return "off" if value == 0 else f"{value:g} s"
        return f"{value:g}" if isinstance(value, float) else str(value)
    if name == "instructions":
        flat = " ".join(str(value).split())
        preview = discord.utils.escape_markdown(cut(flat, INSTRUCTIONS_PREVIEW_CHARS))
        return f"“{preview}” ({len(str(value)):,} characters)"
    text = str(value)
    return f"`{text}`" if "`" not in text else discord.utils.escape_markdown(text)


def settings_embeds(
    views: Sequence[SettingView], *, guild_name: str, allow_dms: bool, on_this_bot: Sequence[str] = ()
) -> list[discord.Embed]:
    """`/config show`: one field per setting, marked ✏️ when the server changed it; as many embeds as
    Discord's size limits need (one per message). `on_this_bot`: what the bot's owner made available,
    and the settings it does not apply, one line each."""
    embeds: list[discord.Embed] = []
    size = 0
    for view in views:
        source = "✏️ *set for this server*" if view.source == "server" else "*default*"
        value = f"{cut(show_value(view.name, view.value), MAX_FIELD_VALUE_CHARS - 40)}\n{source}"
        if (
            not embeds
            or len(embeds[-1].fields) >= MAX_FIELDS_PER_EMBED
            or size + len(value) > MAX_EMBED_CHARS
        ):
            embeds.append(discord.Embed(colour=CONFIG_COLOUR))
            size = 0
        embeds[-1].add_field(name=view.name, value=value, inline=view.name not in WIDE_SETTINGS)
        size += len(view.name) + len(value)
    first = embeds[0]
    first.title = cut(f"Bot settings in {guild_name}", 256)
    first.description = (
        "✏️ marks what this server changed with `/config set`; the rest are the bot's defaults. "
        "`/config reset` puts a setting back. Direct messages with the bot are "
        f"{'allowed' if allow_dms else 'off'} (set by the bot's owner)."
    )
    if on_this_bot:
        lines = "\n".join(f"• {line}" for line in on_this_bot)
        first.description = cut(f"{first.description}\n\n**On this bot:**\n{lines}", MAX_DESCRIPTION_CHARS)
    return embeds


def change_line(change: SettingChange, defaults: GuildSettings) -> str:
    """One audit row: when, who, what, from and to."""

    def side(value: Any) -> str:
        if value is None:
            return f"default ({show_value(change.name, getattr(defaults, change.name))})"
        return show_value(change.name, value)

    verb = "reset" if change.new_value is None else "set"
    line = f"<t:{int(change.at)}:R> <@{change.user_id}> {verb} **{change.name}**: "
    return cut(line + f"{side(change.old_value)} → {side(change.new_value)}", 300)


def resolve_channel_names(text: str, guild: discord.Guild) -> str:
    """`#general` or `general` -> `<#id>` for this guild's channels; other words (`all`, `none`) are kept."""

    def replace(token: str) -> str:
        if token.startswith("<#") or token.isdigit() or token.lower() in RESERVED_WORDS:
            return token  # `#all` still names a channel called "all"
        name = token.removeprefix("#").lower()
        channel = discord.utils.find(lambda c: c.name.lower() == name, guild.channels)
        return f"<#{channel.id}>" if channel is not None else token

    return " ".join(replace(token) for token in re.split(r"[\s,]+", text.strip()) if token)


def check_channels(name: str, value: Any, guild: discord.Guild) -> None:
    """Every id in `value` must be a channel of this guild the setting can use: somewhere members talk
    for `channels`, a text channel or thread for the others (the mod log)."""
    usable: tuple[type, ...] = (discord.TextChannel, discord.Thread)
    if setting_kind(name) == "ids":
        usable += (discord.VoiceChannel, discord.ForumChannel)
    ids = value if isinstance(value, list) else [] if value is None else [value]
    for channel_id in ids:
        if not isinstance(channel_id, int):
            raise InvalidSettingError(
                f"`{name}`: {expected(name)} (`{cut(str(channel_id), 40)}` is not one)."
            )
        channel = guild.get_channel_or_thread(channel_id)
        if channel is None:
            raise InvalidSettingError(f"`{name}`: `{channel_id}` is not a channel of this server.")
        if not isinstance(channel, usable):
            raise InvalidSettingError(f"`{name}`: <#{channel_id}> is not a channel the bot can use for this.")


def _guild(interaction: discord.Interaction) -> discord.Guild:
    if interaction.guild is None:
        raise UserFacingError("Settings are per server; use this command in a server.")
    return interaction.guild


def _require_manage_guild(interaction: discord.Interaction) -> None:
    """The runtime half of the permission rule (for modals, which have no command checks)."""
    if not interaction.permissions.manage_guild:
        raise UserFacingError("You need the Manage Server permission for this.")


def _matching(options: Iterable[tuple[str, str]], typed: str) -> list[app_commands.Choice[str]]:
    """Autocomplete choices (label, value) whose label or value contains what was typed."""
    wanted = typed.strip().lower()
    found = [
        app_commands.Choice(name=cut(label, MAX_CHOICE_CHARS), value=value[:MAX_CHOICE_CHARS])
        for label, value in options
        if wanted in label.lower() or wanted in value.lower()
    ]
    return found[:MAX_CHOICES]


class ConfigCog(commands.Cog):
    config = app_commands.Group(
        name="config", description="This server's settings for the bot", guild_only=True
    )

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self.settings: SettingsService = bot.services.settings

    # -- show ------------------------------------------------------------------------------------

    @config.command(name="show", description="The bot's settings here, and which this server changed")
    async def show(self, interaction: discord.Interaction) -> None:
        guild = _guild(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        views = await self.settings.describe(guild.id)
        features = self.bot.services.features
        current = await self.settings.effective(guild.id)
        on_this_bot = [
            *(feature.describe() for feature in (*features.bot_wide(), features.extraction(current))),
            *features.ignored_settings(current),
        ]
        embeds = settings_embeds(
            views, guild_name=guild.name, allow_dms=self.bot.config.discord.allow_dms, on_this_bot=on_this_bot
        )
        for embed in embeds:
            await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- set -------------------------------------------------------------------------------------

    @config.command(name="set", description="Change one setting for this server (Manage Server)")
    @app_commands.describe(
        setting="The setting to change",
        value="The new value (for instructions, leave empty to edit them in a box)",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_setting(
        self,
        interaction: discord.Interaction,
        setting: str,
        value: app_commands.Range[str, 1, MAX_VALUE_OPTION_CHARS] | None = None,
    ) -> None:
        guild = _guild(interaction)
        name = setting_name(setting)
        if value is None:
            if name == "instructions":
                current = await self.settings.effective(guild.id)
                await interaction.response.send_modal(ServerInstructionsModal(self, current.instructions))
                return
            raise InvalidSettingError(f"Give a value for `{name}`: {expected(name)}.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.apply(interaction, guild, name, value)

    async def apply(
        self, interaction: discord.Interaction, guild: discord.Guild, name: str, value: str
    ) -> None:
        """Validate, store and confirm one change (the interaction is already acknowledged)."""
        typed: Any = value
        refusal = self.bot.services.features.setting_refusal(name, value.strip().lower())
        if refusal is not None:
            raise InvalidSettingError(refusal)
        if name in CHANNEL_SETTINGS:
            current = await self.settings.effective(guild.id)
            typed = parse_setting_value(name, resolve_channel_names(value, guild), current)
            check_channels(name, typed, guild)
        change = await self.settings.set(guild.id, name, typed, user_id=interaction.user.id)
        now = show_value(name, getattr(await self.settings.effective(guild.id), name))
        if change.old_value is None:
            before = f"{show_value(name, getattr(self.settings.defaults, name))}, the default"
        else:
            before = show_value(name, change.old_value)
        await interaction.followup.send(
            cut(f"✅ **{name}** is now {now} for this server (was {before}). {NEXT_MESSAGE}", 2000),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    # -- reset -----------------------------------------------------------------------------------

    @config.command(name="reset", description="Put one setting back to the bot's default (Manage Server)")
    @app_commands.describe(setting="The setting to put back")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def reset_setting(self, interaction: discord.Interaction, setting: str) -> None:
        guild = _guild(interaction)
        name = setting_name(setting)
        await interaction.response.defer(ephemeral=True, thinking=True)
        change = await self.settings.reset(guild.id, name, user_id=interaction.user.id)
        default = show_value(name, getattr(self.settings.defaults, name))
        if change is None:
            message = f"**{name}** already uses the default ({default}); nothing changed."
        else:
            message = (
                f"↩️ **{name}** is back to the default, {default} (was {show_value(name, change.old_value)}). "
                f"{NEXT_MESSAGE}"
            )
        await interaction.followup.send(cut(message, 2000), ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- audit -----------------------------------------------------------------------------------

    @config.command(name="audit", description="Recent changes to this server's settings (Manage Server)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def audit(self, interaction: discord.Interaction) -> None:
        guild = _guild(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        changes = await self.settings.audit(guild.id, limit=AUDIT_ENTRIES)
        embed = discord.Embed(title="Recent settings changes", colour=CONFIG_COLOUR)
        if not changes:
            embed.description = "No setting has been changed in this server yet."
        else:
            lines: list[str] = []
            for change in changes:
                line = change_line(change, self.settings.defaults)
                if sum(len(kept) + 1 for kept in lines) + len(line) > MAX_DESCRIPTION_CHARS:
                    break
                lines.append(line)
            embed.description = "\n".join(lines)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- autocomplete ----------------------------------------------------------------------------

    @set_setting.autocomplete("setting")
    async def setting_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Every setting with its description, filtered by what was typed."""
        fields = GuildSettings.model_fields
        return _matching(
            ((f"{name} — {fields[name].description or ''}", name) for name in SETTING_NAMES), current
        )

    @reset_setting.autocomplete("setting")
    async def reset_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The settings this server changed first (with their value), then the rest."""
        if interaction.guild_id is None:
            return []
        changed = await self.settings.overrides(interaction.guild_id)
        names = [name for name in SETTING_NAMES if name in changed]
        names += [name for name in SETTING_NAMES if name not in changed]
        labels = (
            (
                f"{name} — set here: {_plain(show_value(name, changed[name]))}" if name in changed else name,
                name,
            )
            for name in names
        )
        return _matching(labels, current)

    @set_setting.autocomplete("value")
    async def value_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Useful values for the chosen setting: on/off, the allowed words, channels, time zones..."""
        typed_setting = getattr(interaction.namespace, "setting", None)
        guild = interaction.guild
        if not isinstance(typed_setting, str) or guild is None:
            return []
        try:
            name = setting_name(typed_setting)
        except InvalidSettingError:
            return []
        settings = await self.settings.effective(guild.id)
        return _matching(_value_suggestions(name, settings, guild, current), current)


def _value_suggestions(
    name: str, settings: GuildSettings, guild: discord.Guild, typed: str
) -> list[tuple[str, str]]:
    """(label, value) pairs to offer while an admin types the value of `name`."""
    kind = setting_kind(name)
    if kind == "bool":
        return [("on", "on"), ("off", "off")]
    if kind == "choice":
        return [(option, option) for option in choices_of(name)]
    if kind == "tools":
        enabled = settings.enabled_tools
        hosted = HOSTED_TOOLS if settings.backend == "responses" else ()
        usable = (*FUNCTION_TOOL_FAMILIES, *hosted, IMAGE_TOOL)
        options = [("all", "all"), ("none", "none")]
        if enabled:
            options.append((f"keep: {', '.join(enabled)}", ", ".join(enabled)))
        options += [(f"+{tool} (add)", f"+{tool}") for tool in usable if tool not in enabled]
        options += [(f"-{tool} (remove)", f"-{tool}") for tool in enabled]
        return options
    if kind in ("ids", "optional_id"):
        head, _, last = typed.rpartition(" ")
        prefix = f"{head} " if head else ""
        options = [("all channels", "all")] if kind == "ids" else [("none", "none")]
        options += [
            (f"{prefix}#{channel.name}", f"{prefix}#{channel.name}")
            for channel in guild.text_channels
            if last.lstrip("#").lower() in channel.name.lower()
        ]
        return options
    if kind in ("int", "float"):
        return [(example, example) for example in VALUE_EXAMPLES.get(name, ())]
    if name == "timezone":
        wanted = typed.strip().lower()
        zones = sorted(zone for zone in zoneinfo.available_timezones() if wanted in zone.lower())
        return [(zone, zone) for zone in zones[:MAX_CHOICES]]
    current = str(getattr(settings, name))
    if len(current) <= MAX_CHOICE_CHARS and name != "instructions":
        return [(current, current)]
    return []


def _plain(text: str) -> str:
    """Display text without markdown, for autocomplete labels (which do not render it)."""
    return text.replace("`", "").replace("*", "")


class ServerInstructionsModal(InstructionsModal):
    """The server's system prompt, in the two boxes."""

    def __init__(self, cog: ConfigCog, current: str) -> None:
        super().__init__(
            title="Instructions for this server", current=current, label="Instructions", required=True
        )
        self.cog = cog

    async def save(self, interaction: discord.Interaction, instructions: str) -> None:
        guild = _guild(interaction)
        _require_manage_guild(interaction)  # permissions may have changed while the box was open
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.cog.apply(interaction, guild, "instructions", instructions)


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(ConfigCog(bot))
