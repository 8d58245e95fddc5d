"""The bot's own Discord writes outside a streamed reply, each with its place in the one write budget.

A streamed reply's writes are the `ReplyStreamer`'s; everything else the bot posts (a thread for a
conversation, a note, a confirmation question and its closing edit) goes through here, so the cogs
never pick write priorities or rate-limit routes themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.discord.confirmation import QuestionWrites
from bot.discord.render.scheduler import EDIT_ROUTE, POST_ROUTE, THREAD_ROUTE, WriteKind, WriteScheduler

NO_MENTIONS = discord.AllowedMentions.none()
log = logging.getLogger(__name__)


class ChannelWrites:
    def __init__(self, scheduler: WriteScheduler) -> None:
        self._scheduler = scheduler

    async def open_thread(
        self, message: discord.Message, *, name: str, reason: str
    ) -> discord.Thread | BaseException:
        """A public thread on `message`, or why not: Discord's refusal, or the write dropped because the
        bot is closing. A refusal is an expected answer here (the caller answers in the channel), not a
        failed write."""

        async def create() -> discord.Thread | Exception:
            try:
                return await message.create_thread(name=name, reason=reason)
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                return exc

        try:
            result = await self._scheduler.perform(
                WriteKind.FIRST, message.channel.id, create, route=THREAD_ROUTE
            )
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return exc
        assert isinstance(result, discord.Thread | BaseException)
        return result

    async def send_note(self, channel: discord.abc.Messageable, note: str) -> None:
        """A short message of the bot's own (never model text); raises `discord.HTTPException`."""
        channel_id = getattr(channel, "id", 0)
        await self._scheduler.perform(
            WriteKind.FINAL,
            channel_id,
            lambda: channel.send(note, allowed_mentions=NO_MENTIONS),
            route=POST_ROUTE,
        )

    def response_progress(self, interaction: discord.Interaction) -> ResponseProgress:
        """Progress edits of a command's deferred response while slow work runs, then its answer."""
        return ResponseProgress(self._scheduler, interaction)

    def question_writes(self, channel: Callable[[], Awaitable[discord.abc.Messageable]]) -> QuestionWrites:
        """A confirmation's post (in `channel()`, awaited when the question is asked) and its closing edit."""

        async def post(embed: discord.Embed, view: discord.ui.View) -> discord.Message:
            where = await channel()
            result = await self._scheduler.perform(
                WriteKind.FINAL,
                getattr(where, "id", 0),
                lambda: where.send(embed=embed, view=view, allowed_mentions=NO_MENTIONS),
                route=POST_ROUTE,
            )
            assert isinstance(result, discord.Message)
            return result

        async def edit(message: discord.Message, embed: discord.Embed, view: discord.ui.View) -> None:
            await self._scheduler.perform(
                WriteKind.FINAL,
                message.channel.id,
                lambda: message.edit(embed=embed, view=view),
                route=EDIT_ROUTE,
                target=("question", message.id),
            )

        return QuestionWrites(post, edit)


class ResponseProgress:
    """A slow command's deferred response ("Indexing handbook.pdf: 40/120 chunks"), then its answer in
    the same message.

    Progress edits are REFRESH writes, the answer a FINAL one, all on one target: the scheduler keeps
    the latest queued edit only, runs one at a time, and lets the answer replace a waiting edit, so a
    late progress edit can never overwrite the answer. A failed progress edit is logged, never raised.
    """

    def __init__(self, scheduler: WriteScheduler, interaction: discord.Interaction) -> None:
        self._scheduler = scheduler
        self._interaction = interaction
        self._channel = interaction.channel_id or 0
        self._target = ("response", interaction.id)
        self._pending: asyncio.Future[object] | None = None

    def show(self, content: str) -> None:
        """Queue an edit to `content` (replacing one still waiting); returns at once."""
        interaction = self._interaction
        future = self._scheduler.submit(
            WriteKind.REFRESH,
            self._channel,
            lambda: interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS),
            route=EDIT_ROUTE,
            target=self._target,
        )
        future.add_done_callback(_log_failed_progress)
        self._pending = future

    async def finish(self, content: str) -> discord.InteractionMessage:
        """Edit the placeholder into the answer, after any progress edit under way.

        Never a followup: a progress edit has already ended the "thinking…" state, so a followup would
        post a second message and leave the last count beside the answer for good.
        """
        interaction = self._interaction
        result = await self._scheduler.perform(
            WriteKind.FINAL,
            self._channel,
            lambda: interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS),
            route=EDIT_ROUTE,
            target=self._target,
        )
        assert isinstance(result, discord.InteractionMessage)
        return result

    async def abandon(self) -> None:
        """The work failed: drop a waiting edit and let one under way end (before the placeholder goes)."""
        self._scheduler.cancel(self._target)
        if self._pending is not None and not self._pending.done():
            await asyncio.wait([self._pending])


def _log_failed_progress(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("A progress edit failed: %s", future.exception())
