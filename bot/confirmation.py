"""Asking the user before a tool books or orders anything: an embed with Confirm / Cancel buttons.

`DiscordConfirmer` is the engine's `Confirmer` on Discord. Only the person the tool acts for can
answer (anyone else is told so privately); the first press decides, and at once disables the
buttons and stops the view, so a double click cannot answer twice. No answer within the timeout
counts as declined (TIMED_OUT). The message is then edited to show the outcome.

The confirmer posts through a callable it is given, so the chat extension can route the message
through the bot's write scheduler; `post_to(channel)` is the plain version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import discord

from bot.tooling import ConfirmationOutcome, ConfirmationRequest

log = logging.getLogger(__name__)

Post = Callable[[discord.Embed, discord.ui.View], Awaitable[discord.Message]]
Clock = Callable[[], dt.datetime]

CONFIRM_ID = "assistant:confirm"
CANCEL_ID = "assistant:cancel"
MAX_FIELD_CHARS = 1024  # Discord's limit for an embed field value
MAX_TITLE_CHARS = 256
INLINE_FIELD_CHARS = 40

_OUTCOME_TEXT: dict[ConfirmationOutcome, tuple[str, str, discord.Colour]] = {
    ConfirmationOutcome.APPROVED: ("Confirmed", "Confirmed by <@{user}>.", discord.Colour.green()),
    ConfirmationOutcome.DECLINED: ("Cancelled", "<@{user}> said no; nothing was done.", discord.Colour.red()),
    ConfirmationOutcome.TIMED_OUT: (
        "Expired",
        "No answer in time; nothing was done.",
        discord.Colour.greyple(),
    ),
}
_STOPPED_TEXT = ("Stopped", "The request was stopped; nothing was done.", discord.Colour.greyple())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _with_fields(embed: discord.Embed, request: ConfirmationRequest) -> discord.Embed:
    for name, value in request.fields:
        shown = value if len(value) <= MAX_FIELD_CHARS else value[: MAX_FIELD_CHARS - 1] + "…"
        embed.add_field(name=name, value=shown or "—", inline=len(shown) <= INLINE_FIELD_CHARS)
    return embed


def confirmation_embed(request: ConfirmationRequest, *, expires_at: dt.datetime) -> discord.Embed:
    """What the user is asked: the action, its facts, and when the question expires."""
    embed = discord.Embed(
        title=request.title[:MAX_TITLE_CHARS],
        description=(
            f"<@{request.user_id}>, please confirm. This expires {discord.utils.format_dt(expires_at, 'R')}."
        ),
        colour=discord.Colour.blurple(),
    )
    embed.set_footer(text="Only the person who asked can answer.")
    return _with_fields(embed, request)


def outcome_embed(
    request: ConfirmationRequest, outcome: ConfirmationOutcome, *, stopped: bool = False
) -> discord.Embed:
    """The same facts, marked with how it ended."""
    label, description, colour = _STOPPED_TEXT if stopped else _OUTCOME_TEXT[outcome]
    embed = discord.Embed(
        title=f"{label}: {request.title}"[:MAX_TITLE_CHARS],
        description=description.format(user=request.user_id),
        colour=colour,
    )
    return _with_fields(embed, request)


class ConfirmationView(discord.ui.View):
    """The two buttons; `outcome` is set once, by the first answer (a press or the timeout)."""

    def __init__(self, request: ConfirmationRequest) -> None:
        super().__init__(timeout=None)  # the confirmer owns the timeout
        self.request = request
        self.outcome: ConfirmationOutcome | None = None
        self.decided = asyncio.Event()

    def settle(self, outcome: ConfirmationOutcome) -> bool:
        """Record `outcome` unless something was recorded first; True if this call decided."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.decided.set()
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        self.stop()
        return True

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.user.id == self.request.user_id:
            return True
        await interaction.response.send_message(
            f"Only <@{self.request.user_id}> can answer this.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return False

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.success, custom_id=CONFIRM_ID)
    async def confirm_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmationView]
    ) -> None:
        await self._answer(interaction, ConfirmationOutcome.APPROVED)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id=CANCEL_ID)
    async def cancel_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmationView]
    ) -> None:
        await self._answer(interaction, ConfirmationOutcome.DECLINED)

    async def _answer(self, interaction: discord.Interaction, outcome: ConfirmationOutcome) -> None:
        if not self.settle(outcome):
            await interaction.response.send_message(
                "This was already answered.", ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
            return
        try:
            await interaction.response.edit_message(embed=outcome_embed(self.request, outcome), view=self)
        except discord.HTTPException:
            log.warning("Could not show the answer to confirmation %s", self.request.call_id, exc_info=True)


class DiscordConfirmer:
    """Implements `bot.tooling.Confirmer` with a message in the conversation's channel."""

    def __init__(self, post: Post, *, clock: Clock = _utc_now) -> None:
        self._post = post
        self._clock = clock

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
        view = ConfirmationView(request)
        expires_at = self._clock() + dt.timedelta(seconds=timeout_s)
        message = await self._post(confirmation_embed(request, expires_at=expires_at), view)
        try:
            await asyncio.wait_for(view.decided.wait(), timeout=timeout_s)
        except TimeoutError:
            if view.settle(ConfirmationOutcome.TIMED_OUT):
                await self._close(message, outcome_embed(request, ConfirmationOutcome.TIMED_OUT), view)
        except asyncio.CancelledError:  # the turn was stopped (or the bot is shutting down)
            if view.settle(ConfirmationOutcome.DECLINED):
                stopped = outcome_embed(request, ConfirmationOutcome.DECLINED, stopped=True)
                try:
                    await self._close(message, stopped, view)
                except Exception:  # best effort: the cancellation must go on whatever happens here
                    log.debug("Could not mark confirmation %s as stopped", request.call_id, exc_info=True)
            raise
        assert view.outcome is not None
        return view.outcome

    async def _close(self, message: discord.Message, embed: discord.Embed, view: ConfirmationView) -> None:
        try:
            await message.edit(embed=embed, view=view)
        except discord.HTTPException:
            log.warning("Could not close confirmation %s", view.request.call_id, exc_info=True)


def post_to(channel: discord.abc.Messageable) -> Post:
    """The plain way to post a confirmation: straight into `channel`, mentioning no one."""

    async def post(embed: discord.Embed, view: discord.ui.View) -> discord.Message:
        return await channel.send(embed=embed, view=view, allowed_mentions=discord.AllowedMentions.none())

    return post
