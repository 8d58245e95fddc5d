"""A ``MessageSink`` over the channel's webhook: one reply's messages under a named assistant's name and
avatar (in a thread through the parent's webhook with ``thread=``), streamed, split, budgeted and
buttoned exactly like the bot's own (``DiscordSink``), with the same mapping of errors to outcomes.

Retries without a nonce. Discord's nonce, which makes a retried post of the bot safe, does not exist
for webhooks, and the streamer retries a post that FAILED. A failure that may have reached Discord
(a 5xx, a connection lost after sending, a timeout) is remembered by the slot's nonce, and before that
slot posts again the sink looks at the latest messages for one its webhook posted since, with one of
the texts it tried: found, that message is adopted and brought up to date instead of posting a copy.
A failure that surely did not reach Discord (no connection made, a 4xx) needs no look. (discord.py's
own retry of a 5xx inside one request is not covered: Discord very rarely stores a message it answers
with a 5xx, and a copy would then stay; the look costs a read only after a failure.)

Falling back. A post Discord refuses for the webhook (403, or 404 Unknown Webhook after it was made
again once) sends the rest of the reply as the bot's own messages, the first one under the header line,
and marks the channel so the next replies there use the header line; a warning says why. The streamer
asks ``write_bucket`` at each write, so from then on the bot's own messages are paced in the thread's
buckets while the webhook's earlier messages stay in the webhook's; typing is always the thread's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from discord.utils import MISSING

from bot.discord.render.discord_sink import (
    WRITE_ERRORS,
    DiscordSink,
    button_view,
    edit_fields,
    message_files,
    outcome_of,
)
from bot.discord.render.final_text import DEFAULT_MAX_FILE_BYTES
from bot.discord.render.split import MAX_MESSAGE_CHARS
from bot.discord.render.stream import (
    CHANNEL_ROUTES,
    WEBHOOK_ROUTES,
    PostResult,
    ReplyButton,
    SentMessage,
    WriteOutcome,
    WriteRoutes,
    speaker_header,
)
from bot.discord.webhooks import UNKNOWN_WEBHOOK, ChannelWebhooks, Speakable, webhook_username
from bot.engine.events import GeneratedFile
from bot.engine.turn import Speaker

log = logging.getLogger(__name__)

LOOKBACK_MESSAGES = 50
"""How many of the latest messages (newest first, one request) are read to find a post that failed but
may have landed: a busy channel's other messages since the attempt must not hide it."""
LOOKBACK_SLACK_S = 10.0
"""Messages older than this before the failed attempt began are not looked at (clocks differ)."""


@dataclass(slots=True)
class _Attempts:
    """A slot's post that failed in a way that may have reached Discord."""

    since: dt.datetime
    texts: set[str] = field(default_factory=set)


class WebhookSink:
    """Posts, edits and deletes one reply's messages through ``webhook`` in ``channel`` under ``speaker``;
    typing is the bot's (a webhook cannot type). ``webhooks`` replaces a deleted webhook, once.

    ``reply_to``: the message the reply answers, if it is a reply in a channel. A webhook's message
    cannot be a reply, so such replies are best shown as the bot's own under the header line (the chat
    cog does so); given here, the fallback's first message is a reply to it.
    """

    def __init__(
        self,
        channel: Speakable,
        webhook: discord.Webhook,
        speaker: Speaker,
        webhooks: ChannelWebhooks,
        *,
        reply_to: discord.Message | None = None,
        max_file_bytes: int | None = None,
    ) -> None:
        self._channel = channel
        self._reply_to = reply_to
        self._thread: Any = channel if isinstance(channel, discord.Thread) else MISSING
        self._webhook = webhook
        self._webhooks = webhooks
        self._speaker = speaker
        self._username = webhook_username(speaker.name)
        self._no_mentions = discord.AllowedMentions.none()
        self._max_file_bytes = max_file_bytes or channel.guild.filesize_limit or DEFAULT_MAX_FILE_BYTES
        self._replaced = False
        self._owners: dict[int, discord.Webhook] = {}
        """The webhook that posted each message (the one to edit it with)."""
        self._fallback: DiscordSink | None = None
        self._headed: set[int] = set()
        """Messages the fallback posted under the header line (their edits keep it)."""
        self._uncertain: dict[str, _Attempts] = {}

    @property
    def channel_id(self) -> int:
        """The thread's or channel's id: the bucket of typing (the bot's), and of the fallback's writes."""
        return self._channel.id

    def write_bucket(self, message: SentMessage | None) -> tuple[Hashable, WriteRoutes]:
        """The webhook's buckets (keyed by its id, shared by its channel's threads) for its posts and
        the messages it posted; the channel's for the bot's own after a fallback."""
        if message is None:
            if self._fallback is not None:
                return self._channel.id, CHANNEL_ROUTES
            return self._webhook.id, WEBHOOK_ROUTES
        owner = self._owners.get(message.id)
        if owner is None:
            return self._channel.id, CHANNEL_ROUTES
        return owner.id, WEBHOOK_ROUTES

    @property
    def max_file_bytes(self) -> int:
        return self._max_file_bytes

    @property
    def falling_back(self) -> bool:
        """Whether the rest of the reply goes out as the bot's own messages."""
        return self._fallback is not None

    async def post(
        self,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        nonce: str | None = None,
        buttons: Sequence[ReplyButton] = (),
    ) -> PostResult:
        if self._fallback is not None:
            return await self._fallback_post(text, files, nonce, buttons)
        attempts = self._uncertain.get(nonce) if nonce is not None else None
        if nonce is not None and attempts is not None:
            landed = await self._landed(attempts)
            if landed is not None:
                del self._uncertain[nonce]
                log.info(
                    "A post that failed in channel %s had landed; bringing it up to date", self._channel.id
                )
                self._owners[landed.id] = self._webhook
                return PostResult(landed, await self.edit(landed, text, files, buttons=buttons))
        started = discord.utils.utcnow()
        while True:
            try:
                message = await self._send(text, files, buttons)
            except discord.NotFound as error:
                if error.code == UNKNOWN_WEBHOOK and not self._replaced:
                    self._replaced = True
                    replacement = await self._webhooks.replace(self._channel, self._webhook)
                    if replacement is not None:
                        self._webhook = replacement
                        continue
                if error.code == UNKNOWN_WEBHOOK:
                    return await self._fall_back(error, text, files, nonce, buttons)
                return PostResult(None, self._failed("post", error))
            except discord.Forbidden as error:
                return await self._fall_back(error, text, files, nonce, buttons)
            except WRITE_ERRORS as error:
                if nonce is not None and _may_have_landed(error):
                    attempts = self._uncertain.setdefault(nonce, _Attempts(started))
                    attempts.texts.add(text.strip())
                return PostResult(None, self._failed("post", error))
            self._owners[message.id] = self._webhook
            if nonce is not None:
                self._uncertain.pop(nonce, None)
            return PostResult(message, WriteOutcome.OK)

    async def edit(
        self,
        message: SentMessage,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        buttons: Sequence[ReplyButton] = (),
    ) -> WriteOutcome:
        owner = self._owners.get(message.id)
        if owner is None:  # posted by the fallback: the bot's own message
            assert self._fallback is not None
            if message.id in self._headed:
                text = _under_header(self._header(), text)
            return await self._fallback.edit(message, text, files, buttons=buttons)
        try:
            await owner.edit_message(
                message.id,
                content=text,
                allowed_mentions=self._no_mentions,
                thread=self._thread,
                **edit_fields(files, buttons),
            )
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
        owner = self._owners.get(message.id)
        if owner is None:
            assert self._fallback is not None
            return await self._fallback.delete(message)
        try:
            await owner.delete_message(message.id, thread=self._thread)
        except WRITE_ERRORS as error:
            return self._failed("delete", error)
        return WriteOutcome.OK

    # -- internals ---------------------------------------------------------------------------------

    async def _send(
        self, text: str, files: Sequence[GeneratedFile], buttons: Sequence[ReplyButton]
    ) -> discord.WebhookMessage:
        extra: dict[str, Any] = {}
        if files:
            extra["files"] = message_files(files)
        if buttons:
            extra["view"] = button_view(buttons)
        if self._speaker.avatar_url:
            extra["avatar_url"] = self._speaker.avatar_url
        return await self._webhook.send(
            content=text,
            username=self._username,
            allowed_mentions=self._no_mentions,
            thread=self._thread,
            wait=True,
            **extra,
        )

    async def _landed(self, attempts: _Attempts) -> discord.Message | None:
        """The message a failed post may have left, if the latest messages hold it. Read newest first:
        a read ``after`` a point gets the oldest messages after it, and in a busy channel those can all
        be others' while the post that landed is newer."""
        oldest = attempts.since - dt.timedelta(seconds=LOOKBACK_SLACK_S)
        try:
            async for message in self._channel.history(limit=LOOKBACK_MESSAGES, oldest_first=False):
                if message.created_at < oldest:
                    break
                if (
                    message.webhook_id == self._webhook.id
                    and message.id not in self._owners
                    and message.content.strip() in attempts.texts
                ):
                    return message
        except WRITE_ERRORS as error:
            log.warning(
                "Could not look for a post that may have landed in channel %s: %r", self._channel.id, error
            )
        return None

    async def _fall_back(
        self,
        error: discord.HTTPException,
        text: str,
        files: Sequence[GeneratedFile],
        nonce: str | None,
        buttons: Sequence[ReplyButton],
    ) -> PostResult:
        log.warning(
            "Discord refused the webhook of channel %s (%s, code %s): the rest of this reply is the bot's "
            "own messages, and replies there show a header line for now",
            self._channel.id,
            error.status,
            error.code,
        )
        self._webhooks.set_unusable(self._channel)
        self._fallback = DiscordSink(
            self._channel, reply_to=self._reply_to, max_file_bytes=self._max_file_bytes
        )
        return await self._fallback_post(text, files, nonce, buttons)

    async def _fallback_post(
        self, text: str, files: Sequence[GeneratedFile], nonce: str | None, buttons: Sequence[ReplyButton]
    ) -> PostResult:
        assert self._fallback is not None
        first = not self._owners and not self._headed
        if first:
            text = _under_header(self._header(), text)
        posted = await self._fallback.post(text, files, nonce=nonce, buttons=buttons)
        if first and posted.message is not None:
            self._headed.add(posted.message.id)
        return posted

    def _header(self) -> str:
        return speaker_header(self._speaker.name)

    def _failed(self, action: str, error: Exception) -> WriteOutcome:
        outcome = outcome_of(error)
        if isinstance(error, discord.HTTPException):
            log.warning(
                "Discord refused a webhook %s in channel %s: %s %s (code %s): %s",
                action,
                self._channel.id,
                error.status,
                outcome.value,
                error.code,
                error.text,
            )
        else:
            log.warning(
                "A webhook %s in channel %s failed (%s): %r", action, self._channel.id, outcome.value, error
            )
        return outcome


def _may_have_landed(error: BaseException) -> bool:
    """Whether a failed request may still have been carried out by Discord."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500
    if isinstance(error, aiohttp.ClientConnectorError):
        return False  # no connection was made: nothing was sent
    return isinstance(error, aiohttp.ClientError | OSError | TimeoutError)


def _under_header(header: str, text: str) -> str:
    """``text`` under the header line when both fit in one message (a fallback's first message)."""
    if text.startswith(header):
        return text
    joined = f"{header}\n{text}"
    return joined if len(joined) <= MAX_MESSAGE_CHARS else text
