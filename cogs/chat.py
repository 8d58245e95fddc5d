"""Talking to the bot: mentions open threads, threads and DMs continue, replies stream in.

The cog decides whether and where to answer, turns a Discord message into a `UserTurn`, and hands
the engine's events to a `ReplyStreamer`; everything else lives in the core.

A mention that opens a thread starts its turn at once: the model's first token is the slowest part of
a reply, so its request must not wait behind Discord writes for the thread. A thread started from a
message has that message's id, so the conversation's key is known before the thread exists; the
thread's creation goes through the write budget meanwhile, and the reply is shown once it exists.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.assistants import Resolved
from bot.config import GuildSettings
from bot.discord.attachments import user_turn
from bot.discord.confirmation import DiscordConfirmer
from bot.discord.members import member_lookup
from bot.discord.render import MessageSink, ReplyStreamer, speaker_header
from bot.discord.render.discord_sink import DiscordSink
from bot.discord.render.webhook_sink import WebhookSink
from bot.discord.steps import steps_buttons
from bot.discord.webhooks import ChannelWebhooks, Speakable
from bot.engine import TurnContext, UserTurn, conversation_key
from bot.engine.events import Flagged, TurnEvent
from bot.engine.turn import Speaker
from bot.errors import DatabaseUnavailableError
from bot.moderation import describe_categories
from bot.storage import ShardSet
from bot.storage.runs import RUN_DEAD_AFTER_S

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

log = logging.getLogger(__name__)

MAX_THREAD_NAME_CHARS = 100
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
UNDELIVERED_NOTE = "⚠️ Discord would not let me finish writing this answer, so it is incomplete above."
Channel = discord.TextChannel | discord.Thread | discord.DMChannel | discord.VoiceChannel


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply is written: a thread, channel or DM, and (in a channel) the message it answers."""

    channel: Channel
    reply_to: discord.Message | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a message is answered: a thread or DM, a reply in a channel, or a thread to open.

    `channel`: where the answer goes, or (with `thread_from`) the channel the new thread opens in.
    """

    channel: Channel
    reply_to: discord.Message | None = None
    thread_from: discord.Message | None = None
    """Open a thread on this message and answer there (a reply in `channel` if Discord refuses)."""

    @property
    def channel_id(self) -> int:
        """The conversation's channel; a thread started from a message has that message's id."""
        return self.thread_from.id if self.thread_from is not None else self.channel.id

    @property
    def key(self) -> str:
        return conversation_key(self.channel_id)

    @property
    def guild_id(self) -> int | None:
        return None if isinstance(self.channel, discord.DMChannel) else self.channel.guild.id


class ChatCog(commands.Cog):
    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self._webhooks = ChannelWebhooks(bot, bot.writes)
        """The bot's webhook per channel, for named assistants' replies (kept for the process)."""
        self.services = bot.services
        self._reported_interruptions = False

    # -- messages --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self._worth_reading(message):
            return
        taken_at = time.monotonic()
        try:
            settings = await self.services.settings.effective(message.guild.id if message.guild else None)
            # One intake at a time per channel: messages enter their conversation in the order they came.
            async with self.services.state.intake.hold(message.channel.id):
                destination = await self._destination(message, settings)
                if destination is None or not await self._claim(message):
                    return
                answering = await self._assistant_for(destination, settings, message.author.id)
                turn = await self._user_turn(message, answering.settings)
                if not turn.text and not turn.image_urls:
                    return
                place = self._place(destination)  # a new thread: created meanwhile, through the budget
                events = self._reply(destination, place, turn, answering)
                first = await anext(events)  # the turn takes its place in the conversation's line
        except DatabaseUnavailableError as exc:  # the turn itself reports it as its failure
            log.warning("Message %s not answered: the database is unreachable", message.id)
            await self._send_note(message.channel, str(exc))
            return
        try:
            await self._show(
                destination,
                place,
                message,
                self._report_flags(message, answering.settings, _prepend(first, events)),
                taken_at=taken_at,
                speaker=answering.speaker,
            )
        finally:
            await events.aclose()  # if the reply stopped early, the engine cancels the turn

    async def _claim(self, message: discord.Message) -> bool:
        """Whether this process answers the message: two processes on overlapping shards (a deployment
        mistake) both receive it, and the first to claim it answers; taken before any thread opens."""
        if await self.services.storage.message_claims.claim(message.id, self.services.state.run_id):
            return True
        log.debug("Message %s is answered by another process", message.id)
        return False

    def _worth_reading(self, message: discord.Message) -> bool:
        """Ignore bots (this one too), webhooks, system messages and empty messages."""
        if not self.bot.accepting_messages or message.author.bot or message.webhook_id is not None:
            return False
        if message.type not in ANSWERED_TYPES:
            return False
        return bool(message.content.strip() or message.attachments)

    async def _destination(self, message: discord.Message, settings: GuildSettings) -> Destination | None:
        """Where to answer, or None to stay silent (not addressed, not allowed, cannot write)."""
        channel = message.channel
        if isinstance(channel, discord.DMChannel):
            return Destination(channel) if self.services.config.discord.allow_dms else None
        guild = message.guild
        me = self.bot.user
        if guild is None or me is None or not isinstance(channel, Channel):
            return None
        mentioned = any(user.id == me.id for user in message.mentions)
        permissions = channel.permissions_for(guild.me)
        if isinstance(channel, discord.Thread):
            if not permissions.send_messages_in_threads:
                return None
            if channel.owner_id == me.id or await self._is_conversation(channel):
                return Destination(channel)
            if mentioned and _allowed(settings, channel.parent_id, channel.id):
                return Destination(channel)  # a mention in someone else's thread: answer there, map it
            return None
        if not mentioned or not _allowed(settings, channel.id) or not permissions.send_messages:
            return None
        if (
            settings.mention_opens_thread
            and isinstance(channel, discord.TextChannel)
            and permissions.create_public_threads
            and permissions.send_messages_in_threads
        ):
            return Destination(channel, reply_to=message, thread_from=message)
        return Destination(channel, reply_to=message)

    async def _assistant_for(
        self, destination: Destination, settings: GuildSettings, author_id: int
    ) -> Resolved:
        """Who answers, and under which settings: a DM's pick, a thread's own (its channel's at its
        first turn, kept afterwards), or the channel's."""
        assistants = self.services.assistants
        channel = destination.channel
        if isinstance(channel, discord.DMChannel):  # a pick holds while the person is in its server
            return await assistants.for_dm(author_id, members=member_lookup(self.bot))
        guild_id = channel.guild.id
        if destination.thread_from is not None:  # a new thread: its id is the message's
            return await assistants.for_new_thread(
                settings, guild_id, destination.channel_id, channel.id, starter_id=author_id
            )
        if isinstance(channel, discord.Thread):
            return await assistants.for_thread(
                settings, guild_id, channel.id, channel.parent_id, starter_id=author_id
            )
        return await assistants.for_channel(settings, channel.id)

    async def _is_conversation(self, thread: discord.Thread) -> bool:
        return await self.services.storage.conversations.get(conversation_key(thread.id)) is not None

    def _place(self, destination: Destination) -> asyncio.Future[ReplyTarget]:
        """Where the reply is written: known now, or once Discord has created the thread."""
        if destination.thread_from is None:
            known: asyncio.Future[ReplyTarget] = asyncio.get_running_loop().create_future()
            known.set_result(ReplyTarget(destination.channel, destination.reply_to))
            return known
        return asyncio.create_task(self._open_thread(destination.thread_from, destination.channel))

    async def _open_thread(self, message: discord.Message, channel: Channel) -> ReplyTarget:
        """A public thread on the message; a reply in the channel instead if Discord refuses."""
        name = thread_name(self._clean_text(message), message.author.display_name)
        result = await self.bot.channel_writes.open_thread(
            message, name=name, reason="Conversation with the assistant"
        )
        if isinstance(result, discord.Thread):
            return ReplyTarget(result)
        # The turn is under way already (its conversation keyed by the thread it expected): its text,
        # streamed or not yet, goes to the channel as a reply instead.
        log.warning("Could not open a thread in #%s (%r); answering in the channel", channel, result)
        return ReplyTarget(channel, reply_to=message)

    async def _user_turn(self, message: discord.Message, settings: GuildSettings) -> UserTurn:
        """The message and its attachments, under the answering assistant's settings (its backend and
        tools decide where each file goes)."""
        config = self.services.config.discord
        return await user_turn(
            message,
            self._clean_text(message),
            settings,
            text_budget=config.max_text_attachment_chars,
            max_file_bytes=config.max_attachment_mb * 1024 * 1024,
        )

    def _clean_text(self, message: discord.Message) -> str:
        """The message as a person reads it (mentions as names), without the mention of the bot."""
        text = message.clean_content
        me = message.guild.me if message.guild else self.bot.user
        if me is not None:
            for name in {me.display_name, me.name}:
                text = text.replace(f"@{name}", "")
        return text.strip()

    def _reply(
        self,
        destination: Destination,
        place: asyncio.Future[ReplyTarget],
        turn: UserTurn,
        answering: Resolved,
    ) -> AsyncGenerator[TurnEvent, None]:
        """The turn under the answering assistant's settings and guild (a DM pick: its server's
        budgets, usage and knowledge; the conversation stays the DM's)."""
        confirmer = DiscordConfirmer(
            self.bot.channel_writes.question_writes(lambda: _channel_of(place)), self.services.state.questions
        )
        context = TurnContext(
            guild_id=answering.guild_for(destination.guild_id),
            channel_id=destination.channel_id,
            settings=answering.settings,
            confirmer=confirmer,
        )
        if answering.notice is not None:  # e.g. a DM pick dropped: said once, under this reply
            turn = replace(turn, notices=(answering.notice, *turn.notices))
        return self.services.engine.reply(destination.key, turn, context)

    async def _show(
        self,
        destination: Destination,
        place: asyncio.Future[ReplyTarget],
        message: discord.Message,
        events: AsyncIterator[TurnEvent],
        *,
        taken_at: float,
        speaker: Speaker | None = None,
    ) -> None:
        """Stream the reply; `taken_at` (monotonic) is when the message was taken, for the time to the
        reply's final write; `speaker`: the named assistant it is shown as (None: the bot itself)."""
        # The turn runs meanwhile: its events (streamed text too) wait in order in the engine's queue.
        # Waiting here, not in the writes, keeps the budget's slots for writes that can go.
        target = await asyncio.shield(place)
        sink: MessageSink = DiscordSink(target.channel, reply_to=target.reply_to)
        config = self.bot.stream_config
        if speaker is not None:  # a named assistant: under its name through a webhook, else a header line
            channel = target.channel
            # A webhook's message cannot be a reply: in a channel (no thread) the link to the question
            # matters more than the name as author, so the reply is the bot's own under the header.
            webhook = None
            if target.reply_to is None and isinstance(channel, Speakable):
                webhook = await self._webhooks.webhook_for(channel)
            if webhook is not None and isinstance(channel, Speakable):
                sink = WebhookSink(channel, webhook, speaker, self._webhooks, reply_to=target.reply_to)
            else:
                config = replace(config, header=speaker_header(speaker.name))
        streamer = ReplyStreamer(
            sink,
            self.bot.writes,
            config=config,
            reply_key=message.id,
            buttons_for=steps_buttons,  # a reply whose turn ran tools: what it did, on request
        )
        result = await streamer.render(events)
        if result.message_ids:
            self.bot.metrics.time_to_final_write_s.observe(time.monotonic() - taken_at)
        if not result.delivered:
            log.warning("Reply to message %s was not fully delivered (%s)", message.id, result.outcome)
            if result.message_ids:  # part of it shows: say that the rest is missing
                await self._send_note(target.channel, UNDELIVERED_NOTE)

    # -- moderation -------------------------------------------------------------------------------

    async def _report_flags(
        self, message: discord.Message, settings: GuildSettings, events: AsyncIterator[TurnEvent]
    ) -> AsyncIterator[TurnEvent]:
        """Pass the turn's events on; a moderation flag also goes to the guild's mod-log channel."""
        async for event in events:
            if isinstance(event, Flagged):
                await self._post_mod_log(message, settings, event)
            yield event

    async def _post_mod_log(self, message: discord.Message, settings: GuildSettings, flag: Flagged) -> None:
        """A note for moderators: who, where, which categories, and a jump link; nothing if unset."""
        if settings.mod_log_channel is None:
            return
        channel = self.bot.get_channel(settings.mod_log_channel)
        same_server = message.guild is None or getattr(channel, "guild", None) == message.guild
        if not isinstance(channel, discord.TextChannel | discord.Thread) or not same_server:
            log.warning(
                "mod_log_channel %s of guild %s is not a text channel of that server; flag not posted",
                settings.mod_log_channel,
                message.guild.id if message.guild else None,
            )
            return
        where = (
            "a direct message"
            if isinstance(message.channel, discord.DMChannel)
            else f"<#{message.channel.id}>"
        )
        note = (
            f"🚩 Moderation flagged a message from {message.author.mention} (`{message.author}`) in "
            f"{where} for {describe_categories(flag.categories)}; it was answered as usual. "
            f"{message.jump_url}"
        )
        await self._send_note(channel, note)

    # -- start-up ---------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Tell people whose answer a restart cut off (once per process)."""
        if self._reported_interruptions:
            return
        self._reported_interruptions = True
        await self._report_interrupted()
        # With several processes, a run whose process hangs (its session still open) is dead only once
        # its heartbeat is RUN_DEAD_AFTER_S old: one more look then (a killed one is dead at once).
        if self.services.storage.db.shared and not await self.bot.stop_requested_within(RUN_DEAD_AFTER_S):
            await self._report_interrupted()

    async def _report_interrupted(self) -> None:
        # Only turns of dead runs (not this one's, begun as soon as the gateway connected, nor those of
        # another process still running), in the guilds this process's shards receive.
        shards = ShardSet.of(self.bot.shard_ids, self.bot.shard_count or 1)
        try:
            left = await self.services.storage.turns.take_interrupted(
                current_run=self.services.state.run_id, shards=shards
            )
        except DatabaseUnavailableError:
            # They stay 'running' in the journal: the next start (or the second look) reports them.
            log.warning("Could not look for answers a restart cut off: the database is unreachable")
            return
        for turn in left:
            channel = self.bot.get_channel(turn.channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                continue
            note = "⚠️ I was restarted while answering"
            if turn.message_id is not None and isinstance(channel, discord.Thread | discord.TextChannel):
                note += f" {channel.jump_url}/{turn.message_id}"
            note += ". Please send your message again."
            await self._send_note(channel, note)

    async def _send_note(self, channel: discord.abc.Messageable, note: str) -> None:
        """A short message of the bot's own (not model text); a refusal is logged, not raised."""
        try:
            await self.bot.channel_writes.send_note(channel, note)
        except discord.HTTPException:
            log.warning("Could not send a note to channel %s", getattr(channel, "id", 0), exc_info=True)

    # -- commands ---------------------------------------------------------------------------------

    @app_commands.command(name="reset", description="Start a fresh conversation in this thread or DM.")
    async def reset(self, interaction: discord.Interaction) -> None:
        key = conversation_key(interaction.channel_id or 0)
        self.services.engine.cancel(key)
        if not await self.services.engine.reset(key):
            await interaction.response.send_message(
                "There is no conversation with me here yet: mention me to start one.", ephemeral=True
            )
            return
        await interaction.response.send_message(
            f"🔄 {interaction.user.display_name} started a fresh conversation; the past is forgotten.",
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="stop", description="Stop the answer I am writing here.")
    async def stop(self, interaction: discord.Interaction) -> None:
        stopped = self.services.engine.cancel(conversation_key(interaction.channel_id or 0))
        await interaction.response.send_message(
            "⏹️ Stopping the answer." if stopped else "I am not answering anything here right now.",
            ephemeral=True,
        )


def _allowed(settings: GuildSettings, *channel_ids: int | None) -> bool:
    return not settings.channels or any(cid in settings.channels for cid in channel_ids if cid is not None)


def thread_name(text: str, author: str) -> str:
    """A thread title from the message: its first line, whole words, at most 100 characters."""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    name = re.sub(r"\s+", " ", first_line).strip()
    if not name:
        return f"Chat with {author}"[:MAX_THREAD_NAME_CHARS]
    if len(name) <= MAX_THREAD_NAME_CHARS:
        return name
    cut = name[: MAX_THREAD_NAME_CHARS - 1]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


async def _channel_of(place: asyncio.Future[ReplyTarget]) -> discord.abc.Messageable:
    """The reply's channel, once known (shielded: a cancelled question must not cancel the thread)."""
    return (await asyncio.shield(place)).channel


async def _prepend(first: TurnEvent, rest: AsyncIterator[TurnEvent]) -> AsyncIterator[TurnEvent]:
    yield first
    async for event in rest:
        yield event


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(ChatCog(bot))
