"""The discord.py side of ``MessageSink``: one reply's writes to a thread, channel or DM.

Everything carrying model text goes out with ``AllowedMentions.none()``: a model can be talked into
writing ``@everyone`` or a user's mention, and the bot must never ping on its behalf. Discord errors
become a ``WriteOutcome`` (logged here) so a failed write never crashes the reply.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.discord.render.final_text import DEFAULT_MAX_FILE_BYTES
from bot.discord.render.stream import PostResult, ReplyButton, SentMessage, WriteOutcome
from bot.engine.events import GeneratedFile

if TYPE_CHECKING:
    from discord.abc import MessageableChannel

log = logging.getLogger(__name__)

WRITE_ERRORS = (discord.DiscordException, aiohttp.ClientError, OSError)  # OSError covers TimeoutError
"""What a write to Discord raises when it fails: each becomes a `WriteOutcome`, never an exception."""


def outcome_of(error: Exception) -> WriteOutcome:
    """What a failed write means for the streamer (see ``WriteOutcome``)."""
    if isinstance(error, discord.Forbidden | discord.NotFound):
        return WriteOutcome.GONE
    if isinstance(error, discord.DiscordServerError | discord.RateLimited):
        return WriteOutcome.FAILED
    if isinstance(error, discord.HTTPException):
        return WriteOutcome.FAILED if error.status == 429 or error.status >= 500 else WriteOutcome.REJECTED
    return WriteOutcome.FAILED


class DiscordSink:
    """Posts, edits, typing and deletes in one channel for one reply.

    ``reply_to``: answer as a reply to that message (when no thread could be made), without pinging
    its author; only the reply's first message is a reply, continuations are plain messages.
    """

    def __init__(
        self,
        channel: MessageableChannel,
        *,
        reply_to: discord.Message | None = None,
        max_file_bytes: int | None = None,
        suppress_embeds: bool = False,
    ) -> None:
        self._channel = channel
        self._reply_to = reply_to
        self._suppress_embeds = suppress_embeds
        self._no_mentions = discord.AllowedMentions.none()
        if max_file_bytes is None:
            guild = getattr(channel, "guild", None)
            max_file_bytes = guild.filesize_limit if guild is not None else DEFAULT_MAX_FILE_BYTES
        self._max_file_bytes = max_file_bytes

    @property
    def channel_id(self) -> int:
        return self._channel.id

    @property
    def max_file_bytes(self) -> int:
        return self._max_file_bytes

    async def post(
        self,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        nonce: str | None = None,
        buttons: Sequence[ReplyButton] = (),
    ) -> PostResult:
        reference = None
        if self._reply_to is not None:
            reference = self._reply_to.to_reference(fail_if_not_exists=False)
        try:
            message = await self._channel.send(
                content=text,
                files=message_files(files) if files else None,  # type: ignore[arg-type]
                allowed_mentions=self._no_mentions,
                reference=reference,  # type: ignore[arg-type]
                mention_author=False,
                suppress_embeds=self._suppress_embeds,
                nonce=nonce,  # type: ignore[arg-type]  # None: discord.py picks one
                view=button_view(buttons) if buttons else None,  # type: ignore[arg-type]  # None: none
            )
        except WRITE_ERRORS as error:
            return PostResult(None, self._failed("post", error))
        self._reply_to = None  # continuations are plain messages
        if message.content.strip() != text.strip() or len(message.attachments) != len(files):
            # Discord already had a message with this nonce (an earlier try it stored but answered
            # with an error) and returned that one, as it was: bring it up to date.
            return PostResult(message, await self.edit(message, text, files, buttons=buttons))
        return PostResult(message, WriteOutcome.OK)

    async def edit(
        self,
        message: SentMessage,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        buttons: Sequence[ReplyButton] = (),
    ) -> WriteOutcome:
        target = self._editable(message)
        try:
            await target.edit(content=text, allowed_mentions=self._no_mentions, **edit_fields(files, buttons))
        except WRITE_ERRORS as error:
            return self._failed("edit", error)
        return WriteOutcome.OK

    async def typing(self) -> WriteOutcome:
        try:
            await self._channel.typing()
        except WRITE_ERRORS as error:
            return self._failed("typing", error)
        return WriteOutcome.OK

    async def delete(self, message: SentMessage) -> WriteOutcome:
        try:
            await self._editable(message).delete()
        except WRITE_ERRORS as error:
            return self._failed("delete", error)
        return WriteOutcome.OK

    def _editable(self, message: SentMessage) -> discord.Message | discord.PartialMessage:
        if isinstance(message, discord.Message | discord.PartialMessage):
            return message
        get_partial = getattr(self._channel, "get_partial_message", None)
        if get_partial is None:
            raise TypeError(f"cannot edit messages in {type(self._channel).__name__}")
        partial: discord.PartialMessage = get_partial(message.id)
        return partial

    def _failed(self, action: str, error: Exception) -> WriteOutcome:
        outcome = outcome_of(error)
        if isinstance(error, discord.HTTPException):
            log.warning(
                "Discord refused a %s in channel %s: %s %s (code %s): %s",
                action,
                self.channel_id,
                error.status,
                outcome.value,
                error.code,
                error.text,
            )
        else:
            log.warning("A %s in channel %s failed (%s): %r", action, self.channel_id, outcome.value, error)
        return outcome


def button_view(buttons: Sequence[ReplyButton]) -> discord.ui.View:
    """A view of plain buttons, stopped before it is sent: discord.py then keeps no listener for it (one
    per reply would pile up), and the clicks go to the handlers registered for their custom ids."""
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(
            discord.ui.Button(
                label=button.label,
                custom_id=button.custom_id,
                emoji=button.emoji,
                style=discord.ButtonStyle.secondary,
            )
        )
    view.stop()
    return view


def edit_fields(files: Sequence[GeneratedFile], buttons: Sequence[ReplyButton]) -> dict[str, Any]:
    """What an edit changes besides its text, only what is given: files replace the attachments, and
    an absent view keeps the buttons the message has."""
    fields: dict[str, Any] = {}
    if files:
        fields["attachments"] = message_files(files)
    if buttons:
        fields["view"] = button_view(buttons)
    return fields


def message_files(files: Sequence[GeneratedFile]) -> list[discord.File]:
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in files]
