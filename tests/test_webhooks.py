"""Replies shown under a named assistant: the header line where no webhook can be used (kept within
Discord's 2000 characters while streaming), and the webhook sink against the stand-in Discord through
discord.py: a streamed reply in a thread, edits, files, buttons, a deleted webhook made again once, a
refused webhook falling back to the bot's own messages, and a failed post that landed not posted twice."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass

import discord
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.discord.logs import REDACT_WEBHOOK_TOKENS
from bot.discord.render.scheduler import (
    EDIT_ROUTE,
    POST_ROUTE,
    TYPING_ROUTE,
    WEBHOOK_DELETE_ROUTE,
    WEBHOOK_EDIT_ROUTE,
    WEBHOOK_POST_ROUTE,
    WriteKind,
    WriteScheduler,
    parse_rate_limit,
)
from bot.discord.render.scheduler.core import Job
from bot.discord.render.split import MAX_MESSAGE_CHARS, split_message
from bot.discord.render.stream import (
    CHANNEL_ROUTES,
    WEBHOOK_ROUTES,
    ReplyButton,
    ReplyStreamer,
    SentMessage,
    StreamConfig,
    StreamResult,
    WriteOutcome,
    WriteRoutes,
    speaker_header,
)
from bot.discord.render.webhook_sink import WebhookSink
from bot.discord.webhooks import WEBHOOK_ROUTE, ChannelWebhooks, may_use_webhooks, webhook_username
from bot.engine.events import Completed, GeneratedFile, Started, TextDelta, ToolStarted, TurnEvent, Usage
from bot.engine.turn import Speaker
from standins.discord import FakeChannel, FakeDiscord, FakeUser, permission_bits
from standins.discord.constants import DEFAULT_BOT_PERMISSIONS
from tests.test_fake_discord import StandInBot, running
from tests.test_stream import Call, FakeSink, done, model, run_virtual, stream, streamed

TUTOR = Speaker("Math Tutor", "https://example.com/tutor.png")
HEADER = speaker_header(TUTOR.name)
WEBHOOK_PERMISSIONS = DEFAULT_BOT_PERMISSIONS | permission_bits(["manage_webhooks"])


# -- the header line ----------------------------------------------------------------------------------


def test_header_starts_the_first_message_while_streaming_and_at_the_end() -> None:
    text = " ".join(f"word{i}" for i in range(900))  # several messages
    result, sink = run_virtual(
        lambda: stream([Started(), *streamed(text, 60, 6.0), done(text)], config=StreamConfig(header=HEADER))
    )
    first_id = min(sink.contents)
    first_writes = [c for c in sink.writes() if c.message_id == first_id]
    assert len(first_writes) >= 2 and all(c.text.startswith(HEADER + "\n") for c in first_writes)
    assert sink.messages() == split_message(f"{HEADER}\n{text}")
    assert not any(m.startswith(HEADER) for m in sink.messages()[1:])
    assert result.final_text == f"{HEADER}\n{text}" and result.delivered


def test_header_comes_with_the_tool_line_before_any_text() -> None:
    events: list[TurnEvent | float] = [Started(), ToolStarted("c1", "lookup", "Looking it up"), 2.0]
    events += [TextDelta("\n\nFound it."), done("\n\nFound it.")]
    _, sink = run_virtual(lambda: stream(events, config=StreamConfig(header=HEADER)))
    first = sink.writes()[0]
    assert first.text == f"{HEADER}\n-# 🔧 Looking it up"
    assert sink.messages() == [f"{HEADER}\nFound it."]


def test_without_a_header_nothing_changes() -> None:
    text = "Plain answer."
    result, sink = run_virtual(lambda: stream([Started(), TextDelta(text), done(text)]))
    assert sink.messages() == [text] and result.final_text == text


_PIECES = st.sampled_from(["word", "x" * 300, "```py\n", "```", "\n", "\n\n", " ", "  ", "é", "🙂"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(_PIECES, min_size=1, max_size=80),
    name=st.text(min_size=0, max_size=120),
    chunks=st.integers(min_value=1, max_value=30),
)
def test_no_message_exceeds_2000_characters_with_a_header(pieces: list[str], name: str, chunks: int) -> None:
    text = "".join(pieces) * 8
    header = speaker_header(name)

    async def main() -> tuple[StreamResult, FakeSink]:
        return await stream(
            [Started(), *streamed(text, chunks, 3.0), done(text)], config=StreamConfig(header=header)
        )

    result, sink = run_virtual(main)  # FakeSink asserts every write is within 2000 characters
    assert all(len(c.text) <= MAX_MESSAGE_CHARS for c in sink.calls)
    messages = sink.messages()
    assert messages and messages[0].startswith(header)
    assert messages == split_message(result.final_text)
    assert result.final_text.startswith(header)


@given(st.text(max_size=200))
def test_the_header_is_one_line_that_can_neither_mention_nor_format(name: str) -> None:
    header = speaker_header(name)
    assert "\n" not in header and header.startswith("-# 🤖 **") and header.endswith("**")
    inner = header[len("-# 🤖 **") : -2]
    assert not re.search(r"(?<!\\)[@<*_~`|]", inner), inner


def test_webhook_usernames_avoid_the_words_discord_refuses() -> None:
    assert webhook_username("Discord Helper") != "Discord Helper"
    assert "discord" not in webhook_username("My DISCORD clyde bot").lower()
    assert "clyde" not in webhook_username("My DISCORD clyde bot").lower()
    assert webhook_username("Math Tutor") == "Math Tutor"
    assert len(webhook_username("x" * 200)) == 80 and webhook_username("  \n ") == "Assistant"


def test_webhook_responses_are_learnt_per_webhook() -> None:
    headers = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "2.0"}
    post = parse_rate_limit("POST", "/api/v10/webhooks/77/tok-en_1", 200, headers)
    edit = parse_rate_limit("PATCH", "/api/v10/webhooks/77/tok/messages/9", 200, headers)
    delete = parse_rate_limit("DELETE", "/api/v10/webhooks/77/tok/messages/9", 204, headers)
    assert post is not None and (post.channel, post.route, post.limit) == (77, WEBHOOK_POST_ROUTE, 5)
    assert edit is not None and (edit.channel, edit.route) == (77, WEBHOOK_EDIT_ROUTE)
    assert delete is not None and (delete.channel, delete.route) == (77, WEBHOOK_DELETE_ROUTE)
    limited = parse_rate_limit("POST", "/api/v10/webhooks/77/tok", 429, {"Retry-After": "1"})
    assert limited is not None and limited.channel == 77 and limited.route == WEBHOOK_POST_ROUTE
    in_channel = parse_rate_limit("POST", "/api/v10/channels/77/messages", 200, headers)
    assert in_channel is not None and in_channel.route == POST_ROUTE


@dataclass
class WebhookFakeSink(FakeSink):
    """A recording sink in a thread (``channel_id``) whose writes use a webhook's buckets, as
    ``WebhookSink``'s do; ``bucket`` can be changed during a reply, as a fallback changes it."""

    bucket: tuple[Hashable, WriteRoutes] = (500, WEBHOOK_ROUTES)

    def write_bucket(self, message: SentMessage | None) -> tuple[Hashable, WriteRoutes]:
        return self.bucket


class RecordingScheduler(WriteScheduler):
    """The scheduler, noting the channel key and route of each write submitted and each cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[tuple[Hashable, str]] = []
        self.cancelled: list[Hashable] = []

    def submit(
        self,
        kind: WriteKind,
        channel: Hashable,
        job: Job,
        *,
        route: str,
        target: Hashable | None = None,
        reply: Hashable | None = None,
        delay_s: float = 0.0,
    ) -> asyncio.Future[object]:
        self.submitted.append((channel, route))
        return super().submit(kind, channel, job, route=route, target=target, reply=reply, delay_s=delay_s)

    def cancel(self, target: Hashable) -> bool:
        cancelled = super().cancel(target)
        if cancelled:
            self.cancelled.append(target)
        return cancelled


def test_replies_through_one_webhook_share_its_buckets_of_5_per_2_seconds() -> None:
    text = " ".join(f"word{i}" for i in range(400))

    async def main() -> list[Call]:
        scheduler = WriteScheduler()
        sinks = [WebhookFakeSink(channel_id=600 + i) for i in range(4)]  # four threads, one webhook
        try:
            await asyncio.gather(
                *(
                    ReplyStreamer(sink, scheduler).render(
                        model([Started(), *streamed(text, 100, 10.0), done(text)])
                    )
                    for sink in sinks
                )
            )
        finally:
            await scheduler.close()
        assert all(sink.messages() == split_message(text) for sink in sinks)
        return sorted((c for sink in sinks for c in sink.calls if c.op == "edit"), key=lambda c: c.at)

    edits = run_virtual(main)
    starts = [c.at for c in edits]
    for i, at in enumerate(starts):
        in_window = [t for t in starts[i:] if t < at + 2.0 - 1e-9]
        assert len(in_window) <= 5, "Discord's bucket: 5 edits per 2 s per webhook"
    busiest_5s = max(len([t for t in starts if at <= t < at + 5.0]) for at in starts)
    assert busiest_5s > 5, "paced by the webhook's bucket, not a channel's 5 per 5 s"


def test_typing_is_the_threads_and_a_write_queued_in_a_bucket_that_changed_is_queued_anew() -> None:
    sink = WebhookFakeSink(channel_id=601)

    async def events() -> AsyncIterator[TurnEvent]:
        yield Started()
        yield TextDelta("First words")
        await asyncio.sleep(0.3)  # posted; the next refresh waits for the edit interval
        yield TextDelta(", more words")
        await asyncio.sleep(0.1)
        sink.bucket = (601, CHANNEL_ROUTES)  # as a fallback to the bot's own messages does
        yield done("First words, more words, the end.")

    async def main() -> tuple[StreamResult, RecordingScheduler]:
        scheduler = RecordingScheduler()
        config = StreamConfig(typing_delay_s=0.0)
        try:
            result = await ReplyStreamer(sink, scheduler, config=config).render(events())
        finally:
            await scheduler.close()
        return result, scheduler

    result, scheduler = run_virtual(main)
    assert result.outcome == "completed" and result.delivered
    assert sink.messages() == ["First words, more words, the end."]
    assert (601, TYPING_ROUTE) in scheduler.submitted, "typing is the thread's, not the webhook's"
    assert not any(route == TYPING_ROUTE and channel != 601 for channel, route in scheduler.submitted)
    assert scheduler.submitted[-1] == (601, EDIT_ROUTE) and scheduler.cancelled, (
        "the refresh queued in the webhook's bucket was taken back and the final edit queued in the new one"
    )


# -- the webhook sink against the stand-in ----------------------------------------------------------


@dataclass
class Place:
    server: FakeDiscord
    bot: StandInBot
    general: FakeChannel
    no_webhooks: FakeChannel
    thread: FakeChannel
    alice: FakeUser
    scheduler: RecordingScheduler
    webhooks: ChannelWebhooks

    def channel(self, fake: FakeChannel) -> discord.TextChannel | discord.Thread:
        found = self.bot.get_channel(fake.id)
        assert isinstance(found, discord.TextChannel | discord.Thread)
        return found

    async def sink(self, fake: FakeChannel, speaker: Speaker = TUTOR) -> WebhookSink:
        channel = self.channel(fake)
        webhook = await self.webhooks.webhook_for(channel)
        assert webhook is not None
        return WebhookSink(channel, webhook, speaker, self.webhooks)

    async def reply(
        self,
        sink: WebhookSink,
        events: Sequence[TurnEvent | float],
        buttons: Sequence[ReplyButton] = (),
    ) -> StreamResult:
        streamer = ReplyStreamer(sink, self.scheduler, buttons_for=lambda _: buttons)
        return await asyncio.wait_for(streamer.render(model(events)), 20.0)


@pytest.fixture
async def place() -> AsyncIterator[Place]:
    async with FakeDiscord(bot_permissions=WEBHOOK_PERMISSIONS) as server:
        guild = server.add_guild("Test Guild")
        general = server.add_text_channel(guild.id, "general")
        no_webhooks = server.add_text_channel(guild.id, "plain", deny={"manage_webhooks"})
        alice = server.add_user("alice", guilds=[guild.id])
        thread = server.add_thread(general.id, "alice's question", owner=alice)
        scheduler = RecordingScheduler()
        try:
            async with running(StandInBot(server.base_url), server) as bot:
                webhooks = ChannelWebhooks(bot, scheduler)
                yield Place(server, bot, general, no_webhooks, thread, alice, scheduler, webhooks)
        finally:
            await scheduler.close()


async def test_streamed_reply_in_a_thread_shows_under_the_assistant(place: Place) -> None:
    server = place.server
    text = " ".join(f"step{i}" for i in range(700))  # about 4,800 characters: three messages
    plot = GeneratedFile("plot.png", b"\x89PNG fake")
    sink = await place.sink(place.thread)
    result = await place.reply(
        sink,
        [Started(), *streamed(text, 40, 3.0), Completed(text, Usage(1, 1), files=(plot,))],
        buttons=[ReplyButton("Steps", "steps:42")],
    )
    assert result.delivered and result.outcome == "completed"
    shown = server.webhook_messages(place.thread.id)
    assert [m.content for m in shown] == split_message(text)
    assert {m.author_name for m in shown} == {"Math Tutor"}
    assert {m.avatar_url for m in shown} == {TUTOR.avatar_url}
    assert all(m.allowed_mentions == {"parse": []} for m in shown)
    assert any(m.edit_count > 0 for m in shown), "the reply was edited as it streamed"
    last = shown[-1]
    assert [f.filename for f in last.files] == ["plot.png"]
    assert [c["custom_id"] for row in last.components for c in row["components"]] == ["steps:42"]
    assert server.bot_messages(place.thread.id) == [] and server.webhook_messages(place.general.id) == []
    executes = server.calls_of("channel_webhook_execute")
    assert executes and all(c.query.get("thread_id") == str(place.thread.id) for c in executes)
    edits = server.calls_of("channel_webhook_message_edit")
    assert edits and all(c.query.get("thread_id") == str(place.thread.id) for c in edits)
    assert len(server.calls_of("webhook_create")) == 1
    # the button works: a click on the webhook's message reaches the bot
    record = await server.click_button(last.id, "steps:42", user=place.alice)
    assert record.message_id == last.id


async def test_one_webhook_per_channel_is_found_again_not_made_twice(place: Place) -> None:
    server = place.server
    channel, thread = place.channel(place.general), place.channel(place.thread)
    first, second = await asyncio.gather(
        place.webhooks.webhook_for(channel), place.webhooks.webhook_for(thread)
    )
    assert first is not None and second is not None and first.id == second.id
    assert len(server.calls_of("webhook_create")) == 1
    again = ChannelWebhooks(place.bot, place.scheduler)  # a restarted process finds it
    found = await again.webhook_for(channel)
    assert found is not None and found.id == first.id and len(server.calls_of("webhook_create")) == 1


async def test_no_webhook_without_manage_webhooks_or_in_a_dm(place: Place) -> None:
    plain = place.channel(place.no_webhooks)
    assert not may_use_webhooks(plain)
    assert await place.webhooks.webhook_for(plain) is None
    dm = await place.bot.create_dm(discord.Object(place.alice.id))
    assert not may_use_webhooks(dm)
    assert place.server.calls_of("webhooks_list") == [] and place.server.calls_of("webhook_create") == []


async def test_a_deleted_webhook_is_made_again_once(place: Place) -> None:
    server = place.server
    sink = await place.sink(place.thread)
    [old] = server.webhooks_in(place.general.id)
    server.delete_webhook(old.id)
    result = await place.reply(sink, [Started(), TextDelta("Still here."), done("Still here.")])
    assert result.delivered
    [new] = server.webhooks_in(place.general.id)
    assert new.id != old.id and len(server.calls_of("webhook_create")) == 2
    [shown] = server.webhook_messages(place.thread.id)
    assert shown.webhook_id == new.id and shown.author_name == "Math Tutor"
    assert [c.status for c in server.calls_of("channel_webhook_execute")] == [404, 200]


async def test_a_refused_webhook_falls_back_to_the_bots_messages_under_the_header(place: Place) -> None:
    server = place.server
    sink = await place.sink(place.thread)
    [old] = server.webhooks_in(place.general.id)
    server.delete_webhook(old.id)
    place.general.deny.add("manage_webhooks")  # and the bot may no longer make one
    result = await place.reply(sink, [Started(), TextDelta("Answer."), done("Answer.")])
    assert result.delivered and sink.falling_back
    [shown] = server.bot_messages(place.thread.id)
    assert shown.content == f"{HEADER}\nAnswer."
    assert server.webhook_messages(place.thread.id) == []
    # the next reply in that channel does not try the webhook again for a while
    assert await place.webhooks.webhook_for(place.channel(place.thread)) is None


async def test_a_fallback_in_a_channel_stays_a_reply_to_the_question(place: Place) -> None:
    server = place.server
    general = place.channel(place.general)
    asked = await server.user_message(place.general.id, place.alice, "What is 6 times 7?")
    question = await general.fetch_message(int(asked["id"]))
    webhook = await place.webhooks.webhook_for(general)
    assert webhook is not None
    sink = WebhookSink(general, webhook, TUTOR, place.webhooks, reply_to=question)
    server.delete_webhook(webhook.id)
    place.general.deny.add("manage_webhooks")
    result = await place.reply(sink, [Started(), TextDelta("42."), done("42.")])
    assert result.delivered and sink.falling_back
    [shown] = server.bot_messages(place.general.id)
    assert shown.content == f"{HEADER}\n42."
    assert shown.data["message_reference"]["message_id"] == str(question.id)


async def test_after_a_fallback_the_bots_own_writes_are_paced_in_the_threads_buckets(place: Place) -> None:
    server = place.server
    sink = await place.sink(place.thread)
    [old] = server.webhooks_in(place.general.id)
    thread_id = place.thread.id
    assert sink.channel_id == thread_id and sink.write_bucket(None) == (old.id, WEBHOOK_ROUTES)
    server.delete_webhook(old.id)
    place.general.deny.add("manage_webhooks")  # refused: the reply goes on as the bot's own messages
    events: list[TurnEvent | float] = [
        Started(),
        TextDelta("First words"),
        0.3,
        TextDelta(", more words"),
        done("First words, more."),
    ]
    streamer = ReplyStreamer(sink, place.scheduler, config=StreamConfig(typing_delay_s=0.0))
    result = await asyncio.wait_for(streamer.render(model(events)), 20.0)
    assert result.delivered and sink.falling_back
    [shown] = server.bot_messages(thread_id)
    assert shown.content == f"{HEADER}\nFirst words, more." and shown.edit_count > 0
    writes = [(key, route) for key, route in place.scheduler.submitted if route != WEBHOOK_ROUTE]
    assert all(key == thread_id for key, route in writes if route == TYPING_ROUTE)
    assert (thread_id, TYPING_ROUTE) in writes, "typing is keyed by the thread, not the channel's webhook"
    assert writes.count((old.id, WEBHOOK_POST_ROUTE)) == 1  # the attempt through the webhook
    after = writes[writes.index((old.id, WEBHOOK_POST_ROUTE)) + 1 :]
    assert (thread_id, EDIT_ROUTE) in after
    assert all(key == thread_id and route in (EDIT_ROUTE, POST_ROUTE, TYPING_ROUTE) for key, route in after)
    assert sink.write_bucket(None) == (thread_id, CHANNEL_ROUTES)


async def test_a_failed_post_that_landed_is_adopted_not_posted_twice(place: Place) -> None:
    server = place.server
    sink = await place.sink(place.thread)
    server.fail_next("channel_webhook_execute", 502, applied=True)  # stored, then answered 502
    result = await place.reply(sink, [Started(), TextDelta("Only once."), done("Only once.")])
    assert result.delivered
    shown = server.webhook_messages(place.thread.id)
    assert [m.content for m in shown] == ["Only once."]
    assert [c.status for c in server.calls_of("channel_webhook_execute")] == [502]
    assert server.calls_of("messages_list"), "it looked for the message before posting again"


async def test_a_post_that_failed_twice_and_landed_the_second_time_shows_once(place: Place) -> None:
    server = place.server
    sink = await place.sink(place.thread)
    server.fail_next("channel_webhook_execute", 502)  # refused before storing
    server.fail_next("channel_webhook_execute", 502, applied=True)  # stored, then answered 502
    result = await place.reply(sink, [Started(), TextDelta("Once."), done("Once.")])
    assert result.delivered
    assert [m.content for m in server.webhook_messages(place.thread.id)] == ["Once."]
    assert [c.status for c in server.calls_of("channel_webhook_execute")] == [502, 502]


async def test_a_landed_post_is_found_in_a_busy_thread_not_posted_twice(place: Place) -> None:
    server = place.server
    sink = await place.sink(place.thread)
    for i in range(12):  # more than a short look would read, all just before the attempt
        await server.user_message(place.thread.id, place.alice, f"chatter {i}")
    server.fail_next("channel_webhook_execute", 502, applied=True)  # stored, then answered 502
    failed = await sink.post("Only once.", nonce="slot-0")
    assert failed.outcome is WriteOutcome.FAILED and failed.message is None
    for i in range(3):
        await server.user_message(place.thread.id, place.alice, f"after {i}")
    again = await sink.post("Only once.", nonce="slot-0")
    [landed] = server.webhook_messages(place.thread.id)
    assert again.outcome is WriteOutcome.OK and again.message is not None
    assert again.message.id == landed.id and landed.content == "Only once."
    assert [c.status for c in server.calls_of("channel_webhook_execute")] == [502]


def test_webhook_and_interaction_tokens_are_blanked_in_discord_py_debug_lines() -> None:
    secret = "aBc-123_XYZ.secret"
    lines = [
        (
            "Webhook ID %s with %s %s has returned status code %s",
            (7, "POST", f"https://d/api/v10/webhooks/7/{secret}?wait=1", 200),
        ),
        (
            "%s %s has received %s",
            ("POST", "https://d/api/v10/channels/1/webhooks", {"id": "7", "token": secret}),
        ),
        (  # discord.py answers an interaction at its callback URL, which carries the interaction's token
            "Webhook ID %s with %s %s has returned status code %s",
            (9, "POST", f"https://d/api/v10/interactions/9/{secret}/callback", 204),
        ),
        (
            "Webhook ID %s with %s %s has returned status code %s",
            (9, "PATCH", f"https://d/api/v10/webhooks/9/{secret}/messages/@original", 200),
        ),
        ("plain %s", ("nothing secret",)),
    ]
    shown: list[str] = []
    for message, args in lines:
        record = logging.LogRecord("discord.http", logging.DEBUG, __file__, 1, message, args, None)
        assert REDACT_WEBHOOK_TOKENS.filter(record)
        shown.append(record.getMessage())
    assert not any(secret in line for line in shown), shown
    assert "/interactions/9/<token>/callback has returned" in shown[2]
    assert shown[-1] == "plain nothing secret"
