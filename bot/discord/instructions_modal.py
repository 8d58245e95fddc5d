"""Instructions typed in a form: two paragraph boxes, because Discord caps one at 4,000 characters
and instructions may have 8,000. `/config set setting:instructions` and `/assistant edit` both use it."""

from __future__ import annotations

import logging

import discord

from bot.discord.app import send_ephemeral
from bot.errors import UserFacingError

log = logging.getLogger(__name__)

MAX_BOX_CHARS = 4000  # Discord's limit for one text input
MAX_TITLE_CHARS = 45  # Discord's limit for a modal's title
TIMEOUT_S = 900.0  # an interaction token lives 15 minutes
GENERIC_FAILURE = "Something went wrong on the bot's side; the error was logged."


class InstructionsModal(discord.ui.Modal):
    """The two boxes, prefilled with `current`; a subclass says what a submit saves (`save`). Modals are
    outside the command tree's error handler, so its rules are applied here: a `UserFacingError` is
    its sentence, anything else is logged and answered in one line."""

    def __init__(self, *, title: str, current: str, label: str, required: bool) -> None:
        cut_title = title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"
        super().__init__(title=cut_title, timeout=TIMEOUT_S)
        self.first: discord.ui.TextInput[InstructionsModal] = discord.ui.TextInput(
            label=label,
            custom_id="instructions",
            style=discord.TextStyle.paragraph,
            default=current[:MAX_BOX_CHARS] or None,
            max_length=MAX_BOX_CHARS,
            required=required,
        )
        self.rest: discord.ui.TextInput[InstructionsModal] = discord.ui.TextInput(
            label="Continued (only for very long instructions)",
            custom_id="instructions_continued",
            style=discord.TextStyle.paragraph,
            default=current[MAX_BOX_CHARS : 2 * MAX_BOX_CHARS] or None,
            max_length=MAX_BOX_CHARS,
            required=False,
        )
        self.add_item(self.first)
        self.add_item(self.rest)

    @property
    def instructions(self) -> str:
        """What was typed, both boxes joined."""
        return self.first.value + self.rest.value

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.save(interaction, self.instructions)

    async def save(self, interaction: discord.Interaction, instructions: str) -> None:
        """Check who submitted, acknowledge and store; raise `UserFacingError` to refuse."""
        raise NotImplementedError

    # discord.py's Modal narrows View.on_error (no item); mypy sees that as an incompatible override.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        if isinstance(error, UserFacingError):
            await send_ephemeral(interaction, str(error))
            return
        log.error("Saving instructions (%s) failed", self.title, exc_info=error)
        await send_ephemeral(interaction, GENERIC_FAILURE)
