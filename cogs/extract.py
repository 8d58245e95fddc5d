"""/extract and the "Extract data" message menu: structured data out of free text.

The slash command takes the kind as an option; the context menu asks for it with a private select
menu, then posts the result where everyone can see it, linked to the message it came from.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.app import send_ephemeral
from bot.errors import UserFacingError
from bot.extraction import (
    EXTRACTION_KINDS,
    KINDS,
    Extracted,
    ExtractionKind,
    NothingFound,
    display_fields,
    extract,
)
from cogs.deferral import public_thinking
from cogs.embeds import add_fields

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

log = logging.getLogger(__name__)

MAX_TEXT_OPTION_CHARS = 6000  # Discord's limit for a string option
MAX_CONTENT_CHARS = 2000
PICKER_TIMEOUT_S = 120.0
EXTRACT_COLOUR = discord.Colour.green()
NO_MENTIONS = discord.AllowedMentions.none()
KIND_CHOICES = [app_commands.Choice(name=KINDS[kind].label, value=kind) for kind in EXTRACTION_KINDS]


def result_embed(result: Extracted, source_url: str | None = None) -> discord.Embed:
    """The extracted fields, one per line of the target model, empty ones left out."""
    embed = discord.Embed(title=KINDS[result.kind].label, colour=EXTRACT_COLOUR)
    if source_url:
        embed.description = f"From [this message]({source_url})"
    fields = [(label, value, len(value) < 40) for label, value in display_fields(result.data)]
    return add_fields(embed, fields)


def _kind(value: str) -> ExtractionKind:
    for kind in EXTRACTION_KINDS:
        if kind == value:
            return kind
    raise UserFacingError(f"Unknown kind {value!r}; choose one of {', '.join(EXTRACTION_KINDS)}.")


class ExtractCog(commands.Cog):
    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Extract data", callback=self.extract_from_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(
        name="extract", description="Pull structured data (event, contact, tasks...) out of text"
    )
    @app_commands.describe(kind="What to extract", text="The text to extract it from")
    @app_commands.choices(kind=KIND_CHOICES)
    async def extract_command(
        self,
        interaction: discord.Interaction,
        kind: str,
        text: app_commands.Range[str, 1, MAX_TEXT_OPTION_CHARS],
    ) -> None:
        await self.extract_and_answer(interaction, _kind(kind), text)

    async def extract_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Ask which kind to extract (privately); the choice runs the extraction."""
        if not message.content.strip():
            raise UserFacingError("That message has no text to extract from.")
        picker = KindPicker(self, message)
        await interaction.response.send_message(
            "What should I extract from that message?", view=picker, ephemeral=True
        )
        picker.prompt = interaction

    async def extract_and_answer(
        self,
        interaction: discord.Interaction,
        kind: ExtractionKind,
        text: str,
        *,
        source_url: str | None = None,
    ) -> None:
        """Acknowledge, extract, and answer with an embed plus the JSON (or say plainly why not)."""
        services = self.bot.services
        async with public_thinking(interaction):
            settings = await services.settings.effective(interaction.guild_id)
            services.features.extraction(settings).require()
            client = services.openai if settings.backend == "responses" else services.chat_client
            outcome = await services.metered.call(
                settings,
                lambda: extract(client, backend=settings.backend, model=settings.model, kind=kind, text=text),
                guild_id=interaction.guild_id,
                user_id=interaction.user.id,
            )
            label = KINDS[kind].label.lower()
            if isinstance(outcome, NothingFound):
                raise UserFacingError(f"I found no {label} in that text, so there is nothing to extract.")
            if not isinstance(outcome, Extracted):
                raise UserFacingError(f"The model declined to extract a {label}: {outcome.reason}")
        data = outcome.as_json()
        block = f"```json\n{data}\n```"
        send: dict[str, Any] = {"embed": result_embed(outcome, source_url), "allowed_mentions": NO_MENTIONS}
        if len(block) <= MAX_CONTENT_CHARS:
            send["content"] = block
        else:
            send["content"] = "The JSON is attached."
            send["file"] = discord.File(io.BytesIO(data.encode()), filename=f"{kind}.json")
        await interaction.followup.send(**send)


class KindPicker(discord.ui.View):
    """A private select menu: which kind to extract from the right-clicked message."""

    def __init__(self, cog: ExtractCog, message: discord.Message) -> None:
        super().__init__(timeout=PICKER_TIMEOUT_S)
        self.cog = cog
        self.message = message
        self.prompt: discord.Interaction | None = None
        select: discord.ui.Select[KindPicker] = discord.ui.Select(
            custom_id="extract-kind",
            placeholder="Kind of data",
            options=[discord.SelectOption(label=KINDS[kind].label, value=kind) for kind in EXTRACTION_KINDS],
        )
        select.callback = self.chosen  # type: ignore[method-assign]
        self.select = select
        self.add_item(select)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return self.prompt is None or interaction.user.id == self.prompt.user.id

    async def chosen(self, interaction: discord.Interaction) -> None:
        self.stop()
        try:
            kind = _kind(self.select.values[0])
            await self.cog.extract_and_answer(
                interaction, kind, self.message.content, source_url=self.message.jump_url
            )
        finally:
            if self.prompt is not None:
                try:
                    await self.prompt.delete_original_response()
                except discord.HTTPException:
                    log.info("Could not remove the extraction picker", exc_info=True)

    async def on_timeout(self) -> None:
        if self.prompt is not None:
            try:
                await self.prompt.edit_original_response(
                    content="No kind was chosen; nothing was extracted.", view=None
                )
            except discord.HTTPException:
                log.info("Could not close the extraction picker", exc_info=True)

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        """Views are outside the command tree's error handler: the same rules, applied here."""
        if isinstance(error, UserFacingError):
            await send_ephemeral(interaction, str(error))
            return
        log.error("Extraction from a message failed", exc_info=error)
        await send_ephemeral(interaction, "Something went wrong on the bot's side; the error was logged.")


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(ExtractCog(bot))
