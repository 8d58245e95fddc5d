"""/help: what the bot can do here, read from this server's settings and the commands it really has."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.assistants import Resolved
from bot.config import FUNCTION_TOOL_FAMILIES, HOSTED_TOOLS, IMAGE_TOOL, GuildSettings
from bot.features import Feature
from cogs.embeds import cut

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

HELP_COLOUR = discord.Colour.blurple()
NO_MENTIONS = discord.AllowedMentions.none()
MAX_FIELD_VALUE_CHARS = 1024
TOOL_LABELS = {
    "restaurants": "find restaurants, check opening hours and book tables",
    "rides": "estimate fares and order rides",
    "knowledge": "look things up in this server's knowledge",
    "code_interpreter": "run Python code (calculations, charts, files)",
    "web_search": "search the web and cite sources",
    IMAGE_TOOL: "draw pictures in the conversation",
}
# Optional commands, each listed only when its extension is loaded.
COMMAND_LINES = (
    ("imagine", "`/imagine` — create images from a description"),
    ("assistant", "`/assistant list` — this server's named assistants and where each answers"),
    ("remember", "`/remember` — add a note or a document (PDF, DOCX, Markdown, HTML) to the knowledge"),
    ("search", "`/search` — search this server's knowledge"),
    ("forget", "`/forget` — remove a knowledge entry"),
    ("extract", "`/extract` — pull an event, contact or tasks out of some text"),
    ("usage", "`/usage` — your token usage and budgets"),
    ("config", "`/config show` — this server's settings for the bot"),
    ("restaurants", "`/restaurants list` — the restaurants to book here (admins add, edit, import)"),
)


class HelpCog(commands.Cog):
    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What I can do here and how to talk to me")
    async def help(self, interaction: discord.Interaction) -> None:
        guild_settings = await self.bot.services.settings.effective(interaction.guild_id)
        answering = await self._answering(interaction, guild_settings)
        embed = self.help_embed(interaction, guild_settings, answering)
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _answering(self, interaction: discord.Interaction, settings: GuildSettings) -> Resolved:
        """The assistant that answers where /help was asked (its tools are the ones listed)."""
        assistants = self.bot.services.assistants
        channel = interaction.channel
        if interaction.guild_id is None:
            return await assistants.for_dm(interaction.user.id)
        if isinstance(channel, discord.Thread):
            return await assistants.answering_in(settings, channel.id, channel.parent_id)
        return await assistants.answering_in(settings, interaction.channel_id or 0)

    def help_embed(
        self, interaction: discord.Interaction, guild_settings: GuildSettings, answering: Resolved
    ) -> discord.Embed:
        settings = answering.settings
        where = interaction.guild.name if interaction.guild else "our direct messages"
        embed = discord.Embed(title=cut(f"What I can do in {where}", 256), colour=HELP_COLOUR)
        embed.add_field(name="Talking to me", value=self._talking(interaction, guild_settings), inline=False)
        if answering.assistant is not None:
            embed.add_field(
                name="Who answers here",
                value=cut(
                    f"**{discord.utils.escape_markdown(answering.assistant.name)}**, a named assistant "
                    f"(model {discord.utils.escape_markdown(settings.model)}). `/assistant show` tells "
                    "more; `/assistant use` switches.",
                    MAX_FIELD_VALUE_CHARS,
                ),
                inline=False,
            )
        embed.add_field(
            name="In a conversation",
            value=(
                "Attach images, text files or documents (PDF, DOCX) and I read them"
                + (
                    "; the code interpreter gets every file I can work with"
                    if "code_interpreter" in self._usable(settings)
                    else ""
                )
                + ".\n`/stop` stops the answer I am writing; `/reset` starts over (I forget what was said).\n"
                "**Steps** under an answer shows what I did for it."
            ),
            inline=False,
        )
        embed.add_field(name="What I can do for you", value=self._tools(settings), inline=False)
        embed.add_field(name="Commands", value=self._commands(settings), inline=False)
        off = self._off_here(settings)
        if off:
            embed.add_field(
                name="Off on this bot", value=cut("\n".join(off), MAX_FIELD_VALUE_CHARS), inline=False
            )
        limits = self._limits(settings)
        if limits:
            embed.add_field(name="Limits here", value=limits, inline=False)
        if interaction.guild is not None:
            embed.set_footer(text="Server admins change all of this with /config set.")
        return embed

    def _talking(self, interaction: discord.Interaction, settings: GuildSettings) -> str:
        me = self.bot.user.mention if self.bot.user else "me"
        if interaction.guild is None:
            return "Just write to me here; every message continues our conversation."
        if settings.channels:
            places = "in " + ", ".join(f"<#{channel}>" for channel in settings.channels)
        else:
            places = "in any channel I can write in"
        lines = [f"Mention {me} {places}."]
        if settings.mention_opens_thread:
            lines.append("I open a thread for our conversation: keep talking there, no mention needed.")
        else:
            lines.append("I answer right below your message; mention me again to go on.")
        if self.bot.config.discord.allow_dms:
            lines.append("You can also send me a direct message.")
        return cut("\n".join(lines), MAX_FIELD_VALUE_CHARS)

    def _tools(self, settings: GuildSettings) -> str:
        """The tools switched on here that this bot really offers, as lines for people."""
        usable = self._usable(settings)
        if not usable:
            return "Answer questions and chat; no tools are switched on here."
        lines = [f"• {TOOL_LABELS.get(tool, tool)}" for tool in usable]
        if settings.confirm_side_effects and {"restaurants", "rides"} & set(usable):
            lines.append("I ask you before booking or ordering anything.")
        return cut("\n".join(lines), MAX_FIELD_VALUE_CHARS)

    def _usable(self, settings: GuildSettings) -> list[str]:
        """The tools switched on here that this bot really offers (hosted ones need `responses`)."""
        features = self.bot.services.features
        installed = {
            tool.family for tool in self.bot.services.tools.enabled((*FUNCTION_TOOL_FAMILIES, IMAGE_TOOL))
        }
        if not features.knowledge.on:
            installed.discard("knowledge")
        hosted = settings.backend == "responses" and features.hosted_tools.on
        # Drawings: OpenAI's hosted tool on `responses`, the installed function on `chat`.
        drawing = settings.images_enabled and (
            hosted if settings.backend == "responses" else IMAGE_TOOL in installed
        )
        installed.discard(IMAGE_TOOL)
        return [
            tool
            for tool in settings.enabled_tools
            if tool in installed or (tool in HOSTED_TOOLS and hosted) or (tool == IMAGE_TOOL and drawing)
        ]

    def _commands(self, settings: GuildSettings) -> str:
        lines = []
        for name, line in COMMAND_LINES:
            if self.bot.tree.get_command(name) is None:
                continue
            feature = self._feature_of(name, settings)
            if feature is not None and not feature.on:
                line = f"`/{name}` — off on this bot (see below)"
            elif name == "imagine" and not settings.images_enabled:
                line = "`/imagine` — image generation is switched off here"
            lines.append(line)
        return cut("\n".join(lines) or "`/help` — this message", MAX_FIELD_VALUE_CHARS)

    def _feature_of(self, command: str, settings: GuildSettings) -> Feature | None:
        """The feature a command belongs to, if it is one that may be off on this bot."""
        features = self.bot.services.features
        if command in ("remember", "search"):
            return features.knowledge
        if command == "imagine":
            return features.images
        if command == "extract":
            return features.extraction(settings)
        return None

    def _off_here(self, settings: GuildSettings) -> list[str]:
        """What this bot cannot do here, each in the sentence its command answers with."""
        reasons: list[str] = []
        for name, _ in COMMAND_LINES:
            feature = self._feature_of(name, settings)
            if self.bot.tree.get_command(name) is None or feature is None or feature.on:
                continue
            if feature.off_reason not in reasons:
                reasons.append(feature.off_reason)
        moderation = self.bot.services.features.moderation
        if settings.moderation != "off" and not moderation.on:
            reasons.append(moderation.off_reason)
        return reasons

    def _limits(self, settings: GuildSettings) -> str:
        lines = []
        if settings.user_cooldown_s:
            lines.append(f"One message every {settings.user_cooldown_s:g} s per member.")
        if settings.daily_token_budget_user:
            lines.append(f"{settings.daily_token_budget_user:,} tokens a day per member.")
        if settings.daily_token_budget_guild:
            lines.append(f"{settings.daily_token_budget_guild:,} tokens a day for the whole server.")
        if lines and self.bot.tree.get_command("usage") is not None:
            lines.append("See yours with `/usage`.")
        return "\n".join(lines)


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(HelpCog(bot))
