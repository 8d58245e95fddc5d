"""Asking the user before a tool books or orders anything: an embed with Confirm / Cancel buttons.

`DiscordConfirmer` is the engine's `Confirmer` on Discord. Only the person the tool acts for can
answer (anyone else is told so privately); the first press decides and disables the buttons, so a
double click cannot answer twice. No answer within the timeout counts as declined (TIMED_OUT). The
message is then edited to show the outcome.

The buttons are `AnswerButton`s, registered once at start-up rather than tied to a live view: each
carries its question's token, so every click is answered, also a click that arrives before the bot
knows the question's message id, and a click on a question left on screen when the bot restarted
(which closes it: "nothing was done").

The confirmer writes through the `QuestionWrites` it is given, so the chat extension can route the
question and the edit that closes it through the bot's write scheduler; `direct_writes(channel)` is
the plain version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import discord

from bot.tooling import ConfirmationOutcome, ConfirmationRequest, OpenQuestion, OpenQuestions

log = logging.getLogger(__name__)

Post = Callable[[discord.Embed, discord.ui.View], Awaitable[discord.Message]]
Edit = Callable[[discord.Message, discord.Embed, discord.ui.View], Awaitable[object]]
Clock = Callable[[], dt.datetime]

Answer = Literal["confirm", "cancel"]
ANSWER_ID = re.compile(r"assistant:(?P<answer>confirm|cancel):(?P<user>[0-9]{1,20}):(?P<token>[0-9a-f]{32})")
"""A button's custom_id: the answer, who may give it, and the question's token (at most 81 of
Discord's 100 characters)."""
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
_CLOSED_TEXT = (
    "Expired",
    "This question is no longer open (the bot restarted since it was asked); nothing was done."
    " Ask again if you still want it.",
)


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


def closed_embed(shown: discord.Embed | None) -> discord.Embed:
    """A question this process never asked (from before a restart), marked closed with its facts."""
    label, description = _CLOSED_TEXT
    title = shown.title if shown is not None and shown.title else "Confirmation"
    embed = discord.Embed(
        title=f"{label}: {title}"[:MAX_TITLE_CHARS], description=description, colour=discord.Colour.greyple()
    )
    for field in shown.fields if shown is not None else ():
        embed.add_field(name=field.name or "—", value=field.value or "—", inline=bool(field.inline))
    return embed


def answer_id(answer: Answer, user_id: int, token: str) -> str:
    return f"assistant:{answer}:{user_id}:{token}"


@runtime_checkable
class AsksQuestions(Protocol):
    """A client that keeps its open questions (the bot: `ProcessState.questions`)."""

    @property
    def questions(self) -> OpenQuestions: ...


class AnswerButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ANSWER_ID):
    """Confirm or Cancel under a question; `AssistantBot` registers the class with `add_dynamic_items`."""

    def __init__(self, answer: Answer, user_id: int, token: str, *, disabled: bool = False) -> None:
        confirm = answer == "confirm"
        super().__init__(
            discord.ui.Button(
                label="Confirm" if confirm else "Cancel",
                style=discord.ButtonStyle.success if confirm else discord.ButtonStyle.secondary,
                custom_id=answer_id(answer, user_id, token),
                disabled=disabled,
            )
        )
        self.answer: Answer = answer
        self.user_id = user_id
        self.token = token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AnswerButton:
        answer: Answer = "confirm" if match["answer"] == "confirm" else "cancel"
        return cls(answer, int(match["user"]), match["token"])

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.user.id == self.user_id:
            return True
        await interaction.response.send_message(
            f"Only <@{self.user_id}> can answer this.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        question = client.questions.get(self.token) if isinstance(client, AsksQuestions) else None
        if question is None:
            await self._close_unknown(interaction)
            return
        outcome = ConfirmationOutcome.APPROVED if self.answer == "confirm" else ConfirmationOutcome.DECLINED
        if not question.settle(outcome):
            await interaction.response.send_message(
                "This was already answered.", ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
            return
        try:
            await interaction.response.edit_message(
                embed=outcome_embed(question.request, outcome), view=question_view(question, disabled=True)
            )
        except discord.HTTPException:
            log.warning(
                "Could not show the answer to confirmation %s", question.request.call_id, exc_info=True
            )

    async def _close_unknown(self, interaction: discord.Interaction) -> None:
        message = interaction.message
        shown = message.embeds[0] if message is not None and message.embeds else None
        log.info("Closing confirmation %s: not asked by this process", self.token)
        view = answer_view(self.user_id, self.token, disabled=True)
        try:
            await interaction.response.edit_message(embed=closed_embed(shown), view=view)
        except discord.HTTPException:
            log.warning("Could not close confirmation %s", self.token, exc_info=True)


def answer_view(user_id: int, token: str, *, disabled: bool = False) -> discord.ui.View:
    """Confirm and Cancel for one question (the confirmer owns the timeout; clicks reach AnswerButton)."""
    view = discord.ui.View(timeout=None)
    for answer in ("confirm", "cancel"):
        view.add_item(AnswerButton(answer, user_id, token, disabled=disabled))
    return view


def question_view(question: OpenQuestion, *, disabled: bool = False) -> discord.ui.View:
    return answer_view(question.request.user_id, question.token, disabled=disabled)


@dataclass(frozen=True)
class QuestionWrites:
    """How a question reaches Discord: posted, and later edited to show how it ended."""

    post: Post
    edit: Edit


class DiscordConfirmer:
    """Implements `bot.tooling.Confirmer` with a message in the conversation's channel."""

    def __init__(self, writes: QuestionWrites, questions: OpenQuestions, *, clock: Clock = _utc_now) -> None:
        self._writes = writes
        self._questions = questions
        self._clock = clock

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
        question = self._questions.ask(request)
        try:
            return await self._ask(question, timeout_s)
        finally:
            self._questions.close(question)

    async def _ask(self, question: OpenQuestion, timeout_s: float) -> ConfirmationOutcome:
        request = question.request
        expires_at = self._clock() + dt.timedelta(seconds=timeout_s)
        embed = confirmation_embed(request, expires_at=expires_at)
        message = await self._writes.post(embed, question_view(question))
        try:
            await asyncio.wait_for(question.decided.wait(), timeout=timeout_s)
        except TimeoutError:
            if question.settle(ConfirmationOutcome.TIMED_OUT):
                await self._close(message, outcome_embed(request, ConfirmationOutcome.TIMED_OUT), question)
        except asyncio.CancelledError:  # the turn was stopped (or the bot is shutting down)
            if question.settle(ConfirmationOutcome.DECLINED):
                stopped = outcome_embed(request, ConfirmationOutcome.DECLINED, stopped=True)
                try:
                    await self._close(message, stopped, question)
                except Exception:  # best effort: the cancellation must go on whatever happens here
                    log.debug("Could not mark confirmation %s as stopped", request.call_id, exc_info=True)
            raise
        assert question.outcome is not None
        return question.outcome

    async def _close(self, message: discord.Message, embed: discord.Embed, question: OpenQuestion) -> None:
        try:
            await self._writes.edit(message, embed, question_view(question, disabled=True))
        except discord.HTTPException:
            log.warning("Could not close confirmation %s", question.request.call_id, exc_info=True)


def direct_writes(channel: discord.abc.Messageable) -> QuestionWrites:
    """The plain way: straight into `channel`, mentioning no one."""

    async def post(embed: discord.Embed, view: discord.ui.View) -> discord.Message:
        return await channel.send(embed=embed, view=view, allowed_mentions=discord.AllowedMentions.none())

    async def edit(message: discord.Message, embed: discord.Embed, view: discord.ui.View) -> None:
        await message.edit(embed=embed, view=view)

    return QuestionWrites(post, edit)
