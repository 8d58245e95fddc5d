"""A mention's model request goes out at once; the thread it opens is created through the write budget
meanwhile, and the reply's text that arrives before the thread exists waits for it, in order (issue 14).

Discord's thread route is held by the stand-in (``FakeDiscord.holding``), so "before" is an order of
events at the stand-ins, never a measured time.
"""

from __future__ import annotations

import functools
from pathlib import Path

from standins.discord import FakeDiscord
from standins.openai import FakeOpenAI, Reply
from tests.harness import Harness, running_bot

WAIT_S = 10.0
THREAD_ROUTE = "thread_create_from_message"
ANSWER = "First part of the answer, then the second part, and the end of it."


def answered_in(server: FakeDiscord, channel_id: int) -> bool:
    return bool(server.bot_messages(channel_id))


async def mention(h: Harness, text: str) -> int:
    """Alice mentions the bot in #general; the id of her message."""
    payload = await h.discord.user_message(
        h.general.id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True
    )
    return int(payload["id"])


async def wait_until_answered_while_held(h: Harness) -> None:
    """Until the model request came and its whole answer streamed, the thread creation still held."""
    await h.discord.wait_for(lambda: len(h.discord.held) == 1, timeout=WAIT_S)
    await h.openai.wait_for(
        lambda: any(r.finished_at is not None for r in h.openai.requests_to("/v1/responses", "POST")),
        timeout=WAIT_S,
    )
    created = [c for c in h.discord.calls if c.kind == THREAD_ROUTE]
    assert created == []  # Discord has not answered the thread creation: the model did not wait for it
    assert [c for c in h.discord.calls if c.kind in {"message_create", "message_edit"}] == []


async def test_model_request_goes_out_while_discord_is_still_creating_the_thread(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.default = lambda body: Reply(ANSWER, deltas=6)
    async with running_bot(tmp_path, fake_openai) as h:
        async with h.discord.holding(THREAD_ROUTE):
            message_id = await mention(h, "Tell me something in parts")
            await wait_until_answered_while_held(h)
        await h.discord.wait_for(lambda: bool(h.discord.threads_in(h.general.id)), timeout=WAIT_S)
        (thread,) = h.discord.threads_in(h.general.id)
        assert thread.id == message_id  # the key the turn started under is the thread's
        await h.discord.wait_for(
            lambda: [m.content for m in h.discord.bot_messages(thread.id)] == [ANSWER], timeout=WAIT_S
        )
        assert h.discord.bot_messages(h.general.id) == []
        # The conversation the turn started under is the thread's: a follow-up there continues it.
        record = await h.services.storage.conversations.get(f"channel:{thread.id}")
        assert record is not None and record.channel_id == thread.id
        await h.discord.user_message(thread.id, h.alice, "and more")
        first, follow_up = await fake_openai.wait_for_requests("/v1/responses", 2, method="POST")
        assert follow_up.json["conversation"] == first.json["conversation"] == record.conversation_id


async def test_text_streamed_before_a_refused_thread_is_answered_in_the_channel(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Discord refuses the thread after the answer streamed (the permission was taken away meanwhile):
    nothing of the answer is lost, it goes to the channel as a reply, as without thread permission."""
    fake_openai.responses.default = lambda body: Reply(ANSWER, deltas=6)
    async with running_bot(tmp_path, fake_openai) as h:
        async with h.discord.holding(THREAD_ROUTE):
            message_id = await mention(h, "Tell me something in parts")
            await wait_until_answered_while_held(h)
            await h.discord.set_denied(h.general.id, ["create_threads"])
        await h.discord.wait_for(
            lambda: [m.content for m in h.discord.bot_messages(h.general.id)] == [ANSWER], timeout=WAIT_S
        )
        (refused,) = [c for c in h.discord.calls if c.kind == THREAD_ROUTE]
        assert refused.status == 403
        assert h.discord.threads_in(h.general.id) == []
        (reply,) = h.discord.bot_messages(h.general.id)
        assert reply.data["message_reference"]["message_id"] == str(message_id)


async def test_quick_mentions_each_get_their_own_thread_and_answer(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Three mentions while the first thread creation is held (discord.py sends the others of that
    route once it knows the bucket): three model requests at once, each answer in the thread of its
    own message once Discord creates them."""
    async with running_bot(tmp_path, fake_openai) as h:
        async with h.discord.holding(THREAD_ROUTE):
            ids = [await mention(h, f"question {n}") for n in range(3)]
            await fake_openai.wait_for_requests("/v1/responses", 3)
            assert [c for c in h.discord.calls if c.kind == THREAD_ROUTE] == []
        for n, message_id in enumerate(ids):
            await h.discord.wait_for(functools.partial(answered_in, h.discord, message_id), timeout=WAIT_S)
            (answer,) = h.discord.bot_messages(message_id)
            assert answer.content == f"echo: alice: question {n}"  # the stand-in model echoes


async def test_replies_waiting_for_their_threads_hold_no_write_budget(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """More mentions in one channel than its thread bucket takes at once, on a small global budget:
    the answers, ready long before their threads, wait outside the budget (a post waiting for its
    thread inside it would hold the slot the thread's creation needs), and every one arrives."""
    people = 12
    async with running_bot(tmp_path, fake_openai, streaming={"global_writes_per_s": 6}) as h:
        users = [h.discord.add_user(f"person{n}", guilds=[h.world.guild.id]) for n in range(people)]
        for user in users:
            await h.discord.user_message(h.general.id, user, f"{h.bot_mention} hi", mentions_bot=True)

        def answered() -> int:
            return sum(
                any(m.content.startswith("echo: person") for m in h.discord.bot_messages(t.id))
                for t in h.discord.threads_in(h.general.id)
            )

        await h.discord.wait_for(lambda: answered() == people, timeout=30.0)
