"""Every reply shows which assistant answers, end to end: the real bot, discord.py and the stand-in
Discord and OpenAI. Where the bot may manage webhooks, two assistants in one channel's two threads
answer under their own names through the channel's one webhook; without Manage Webhooks the reply
starts with a header line; the default assistant is the bot itself, as always; a confirmation's
question stays the bot's own while the answer around it shows under the assistant."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.discord.render.stream import speaker_header
from standins.discord import FakeChannel, FakeDiscord, StoredMessage, permission_bits
from standins.discord.constants import DEFAULT_BOT_PERMISSIONS
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.command_support import WAIT_S, answer_buttons, answer_id_of, run
from tests.harness import FAST_BUCKET, Harness, build_world, running_bot

WEBHOOK_PERMISSIONS = DEFAULT_BOT_PERMISSIONS | permission_bits(["manage_webhooks"])
TUTOR: dict[str, Any] = {
    "name": "Math Tutor",
    "model": "gpt-5.4-mini",
    "instructions": "You are Math Tutor: teach mathematics step by step.",
    "knowledge": False,
    "avatar": "https://example.com/tutor.png",
}
# Open every day from 11:30 to 23:00, so "tomorrow at 8pm" is bookable whatever the real date.
BOOKING = {"restaurant": "Pizzeria Napoli", "party_size": 4, "time": "tomorrow at 8pm", "notes": None}
CONCIERGE: dict[str, Any] = {
    "name": "Concierge",
    "model": "gpt-5.4-mini",
    "instructions": "You are the Concierge: you book tables.",
    "knowledge": False,
}


@contextlib.asynccontextmanager
async def bot_with(tmp_path: Path, fake_openai: FakeOpenAI, *, permissions: int) -> AsyncIterator[Harness]:
    async with FakeDiscord(
        bot_permissions=permissions, rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            yield h


async def setup_assistant(h: Harness, options: dict[str, Any]) -> None:
    admin = h.world.admin
    await run(h, "assistant create", options, user=admin, channel_id=h.general.id)
    used = await run(h, "assistant use", {"name": options["name"]}, user=admin, channel_id=h.general.id)
    assert options["name"] in used.text


async def mention_and_wait(h: Harness, text: str, count: int) -> FakeChannel:
    """Mention the bot in #general; the ``count``-th thread once its reply shows ``text``."""
    await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True)
    await h.discord.wait_for(lambda: len(h.discord.threads_in(h.general.id)) >= count, timeout=WAIT_S)
    thread = h.discord.threads_in(h.general.id)[count - 1]
    await h.discord.wait_for(lambda: any(text in m.content for m in shown(h, thread)), timeout=WAIT_S)
    return thread


def shown(h: Harness, thread: FakeChannel) -> list[StoredMessage]:
    """What people see in a thread from the bot, its own messages and its webhook's."""
    return [*h.discord.bot_messages(thread.id), *h.discord.webhook_messages(thread.id)]


async def answer_in_general(h: Harness, text: str) -> StoredMessage:
    """The bot's answer in #general that shows ``text``, its own message or its webhook's."""
    await h.discord.wait_for(lambda: any(text in m.content for m in shown(h, h.general)), timeout=WAIT_S)
    [answer] = [m for m in shown(h, h.general) if text in m.content]
    return answer


async def test_two_assistants_in_one_channels_threads_answer_under_their_own_names(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, fake_openai, permissions=WEBHOOK_PERMISSIONS) as h:
        await setup_assistant(h, TUTOR)
        tutor_thread = await mention_and_wait(h, "What is 6 times 7?", 1)
        await setup_assistant(h, CONCIERGE)
        concierge_thread = await mention_and_wait(h, "A table for two tonight", 2)

        [tutor] = h.discord.webhook_messages(tutor_thread.id)
        assert tutor.author_name == "Math Tutor" and tutor.avatar_url == TUTOR["avatar"]
        [concierge] = h.discord.webhook_messages(concierge_thread.id)
        assert concierge.author_name == "Concierge" and concierge.avatar_url is None
        assert h.discord.bot_messages(tutor_thread.id) == h.discord.bot_messages(concierge_thread.id) == []
        [webhook] = h.discord.webhooks_in(h.general.id)  # one webhook serves both threads
        assert tutor.webhook_id == concierge.webhook_id == webhook.id
        assert not tutor.content.startswith("-#")  # the name shows as the author, not in the text

        # A thread keeps the assistant it started with after the channel moved on.
        await h.discord.user_message(tutor_thread.id, h.alice, "And 7 times 8?")
        await h.discord.wait_for(
            lambda: any("7 times 8" in m.content for m in h.discord.webhook_messages(tutor_thread.id)),
            timeout=WAIT_S,
        )
        assert {m.author_name for m in h.discord.webhook_messages(tutor_thread.id)} == {"Math Tutor"}


async def test_without_manage_webhooks_the_reply_starts_with_the_header_line(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, fake_openai, permissions=DEFAULT_BOT_PERMISSIONS) as h:
        await setup_assistant(h, TUTOR)
        thread = await mention_and_wait(h, "What is 6 times 7?", 1)
        [reply] = h.discord.bot_messages(thread.id)
        assert reply.content.startswith(speaker_header("Math Tutor") + "\n")
        assert h.discord.webhook_messages(thread.id) == []
        assert h.discord.calls_of("webhooks_list") == h.discord.calls_of("webhook_create") == []


async def test_a_reply_in_the_channel_is_the_bots_own_reply_to_the_question_under_the_header(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, fake_openai, permissions=WEBHOOK_PERMISSIONS) as h:
        await setup_assistant(h, TUTOR)
        answer = await run(
            h, "config set", {"setting": "mention_opens_thread", "value": "off"}, user=h.world.admin
        )
        assert "off" in answer.text.lower()
        sent = await h.discord.user_message(
            h.general.id, h.alice, f"{h.bot_mention} What is 6 times 7?", mentions_bot=True
        )
        reply = await answer_in_general(h, "6 times 7")
        # a webhook's message cannot be a reply: the bot's own keeps the link to the question
        assert reply.webhook_id is None and reply.content.startswith(speaker_header("Math Tutor") + "\n")
        assert reply.data["message_reference"]["message_id"] == str(sent["id"])
        assert h.discord.threads_in(h.general.id) == [] and h.discord.webhook_messages(h.general.id) == []
        assert h.discord.calls_of("webhooks_list") == h.discord.calls_of("webhook_create") == []


async def test_a_reply_whose_thread_discord_refused_is_a_reply_to_the_question_under_the_header(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, fake_openai, permissions=WEBHOOK_PERMISSIONS) as h:
        await setup_assistant(h, TUTOR)
        async with h.discord.holding("thread_create_from_message"):
            sent = await h.discord.user_message(
                h.general.id, h.alice, f"{h.bot_mention} What is 6 times 7?", mentions_bot=True
            )
            await h.discord.wait_for(lambda: len(h.discord.held) == 1, timeout=WAIT_S)
            await h.discord.set_denied(h.general.id, ["create_threads", "create_public_threads"])
        reply = await answer_in_general(h, "6 times 7")
        assert [c.status for c in h.discord.calls_of("thread_create_from_message")] == [403]
        assert reply.webhook_id is None and reply.content.startswith(speaker_header("Math Tutor") + "\n")
        assert reply.data["message_reference"]["message_id"] == str(sent["id"])
        assert h.discord.webhook_messages(h.general.id) == []


async def test_the_default_assistant_is_the_bot_itself(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with bot_with(tmp_path, fake_openai, permissions=WEBHOOK_PERMISSIONS) as h:
        thread = await mention_and_wait(h, "Hello there", 1)
        [reply] = h.discord.bot_messages(thread.id)
        assert not reply.content.startswith("-# 🤖")
        assert h.discord.webhook_messages(thread.id) == []
        assert h.discord.calls_of("webhooks_list") == h.discord.calls_of("webhook_create") == []


async def test_a_confirmation_is_the_bots_own_while_the_answer_shows_under_the_assistant(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, fake_openai, permissions=WEBHOOK_PERMISSIONS) as h:
        await setup_assistant(h, CONCIERGE)  # the server's tools: booking included
        h.openai.responses.push(
            Reply(calls=[FunctionCall("book_restaurant", BOOKING)]), Reply("Result: booked for four.")
        )
        await h.discord.user_message(
            h.general.id, h.alice, f"{h.bot_mention} a table for 4 at Pizzeria Napoli tomorrow at 8pm"
        )
        prompt = await h.discord.wait_for_message(lambda m: bool(m.components), timeout=WAIT_S)
        assert prompt.webhook_id is None and answer_buttons(prompt) == {"confirm": False, "cancel": False}
        thread = h.discord.channels[prompt.channel_id]
        await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice)
        await h.discord.wait_for(
            lambda: any("Result: booked" in m.content for m in h.discord.webhook_messages(thread.id)),
            timeout=WAIT_S,
        )
        assert {m.author_name for m in h.discord.webhook_messages(thread.id)} == {"Concierge"}
        assert answer_buttons(h.discord.message(prompt.id)) == {"confirm": True, "cancel": True}
