"""Discord failing under a streamed reply: 429s (per route and global), 5xx, a gateway outage.

The reply is streamed (many deltas, the shortest edit interval) so posts and edits are in flight when
the fault lands. Afterwards the thread holds the exact answer, or the answer with a note saying it
could not be finished, and never a message twice: the bot's messages and their nonces are checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cogs.chat import UNDELIVERED_NOTE
from standins.discord import FakeDiscord
from standins.openai import FakeOpenAI, Reply
from tests.faults.support import WAIT_S, open_thread, wait_for_content
from tests.harness import running_bot

ANSWER = " ".join(f"word{i}" for i in range(40)) + "."
STREAMING = {"edit_interval_s": 0.2}
SLOW = Reply(ANSWER, deltas=20, delta_delay_s=0.05)


def assert_no_duplicates(server: FakeDiscord, channel_id: int) -> None:
    """Every message of the bot in the channel is there once: distinct contents and distinct nonces."""
    messages = server.bot_messages(channel_id)
    contents = [m.content for m in messages]
    assert len(set(contents)) == len(contents), contents
    nonces = [m.nonce for m in messages if m.nonce is not None]
    assert len(set(nonces)) == len(nonces), nonces


@pytest.mark.parametrize("scope", ["user", "global"])
@pytest.mark.parametrize("kind", ["message_create", "message_edit"])
async def test_429_during_a_streamed_reply_delays_it_but_it_arrives_once_and_exact(
    tmp_path: Path, fake_openai: FakeOpenAI, kind: str, scope: str
) -> None:
    async with running_bot(tmp_path, fake_openai, streaming=STREAMING) as h:
        thread = await open_thread(h, "hello")
        h.discord.fail_next(kind, 429, 2, retry_after=0.2, scope=scope)
        fake_openai.responses.push(SLOW)
        await h.discord.user_message(thread.id, h.alice, "tell me a long story")
        reply = await wait_for_content(h.discord, thread.id, ANSWER)
        await h.bot.services.engine.wait_idle()
        hits = h.discord.rate_limit_hits_of(scope=scope, kind=kind)
        assert len([hit for hit in hits if hit.injected]) == 2  # the faults really met the reply
        assert [m.content for m in h.discord.bot_messages(thread.id)] == ["echo: alice: hello", ANSWER]
        assert reply.edit_count >= 1 or kind == "message_create"
        assert_no_duplicates(h.discord, thread.id)


@pytest.mark.parametrize("applied", [False, True], ids=["refused", "applied then 5xx"])
@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("kind", ["message_create", "message_edit"])
async def test_a_5xx_during_a_streamed_reply_is_retried_without_duplicates(
    tmp_path: Path, fake_openai: FakeOpenAI, kind: str, status: int, applied: bool
) -> None:
    async with running_bot(tmp_path, fake_openai, streaming=STREAMING) as h:
        thread = await open_thread(h, "hello")
        h.discord.fail_next(kind, status, 1, applied=applied)
        fake_openai.responses.push(SLOW)
        await h.discord.user_message(thread.id, h.alice, "tell me a long story")
        await wait_for_content(h.discord, thread.id, ANSWER)
        await h.bot.services.engine.wait_idle()
        assert any(c.status == status for c in h.discord.calls_of(kind))  # the fault really happened
        assert [m.content for m in h.discord.bot_messages(thread.id)] == ["echo: alice: hello", ANSWER]
        assert_no_duplicates(h.discord, thread.id)


async def test_edits_failing_for_good_leave_a_note_that_the_answer_is_incomplete(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, streaming=STREAMING) as h:
        thread = await open_thread(h, "hello")
        h.discord.fail_next("message_edit", 503, 1000)  # the reply's first post works, no edit ever does
        fake_openai.responses.push(SLOW)
        await h.discord.user_message(thread.id, h.alice, "tell me a long story")
        note = await wait_for_content(h.discord, thread.id, UNDELIVERED_NOTE)
        await h.bot.services.engine.wait_idle()
        greeting, partial, last = h.discord.bot_messages(thread.id)
        assert last is note and greeting.content == "echo: alice: hello"
        assert partial.content != ANSWER and ANSWER.startswith(partial.content)
        assert_no_duplicates(h.discord, thread.id)


async def test_gateway_outage_mid_reply_the_reply_finishes_and_the_missed_message_is_answered_once(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, streaming=STREAMING) as h:
        thread = await open_thread(h, "hello")
        fake_openai.responses.push(SLOW)
        await h.discord.user_message(thread.id, h.alice, "tell me a long story")
        await h.discord.wait_for(lambda: len(h.discord.bot_messages(thread.id)) == 2, timeout=WAIT_S)
        async with h.discord.gateway_outage(code=4000):
            streaming = h.discord.bot_messages(thread.id)[1]
            # REST still works: the reply keeps growing while the gateway is down.
            await h.discord.wait_for(lambda: streaming.edit_count >= 1, timeout=WAIT_S)
            await h.discord.user_message(thread.id, h.alice, "said while you were away")
        await wait_for_content(h.discord, thread.id, "echo: alice: said while you were away")
        assert [m.content for m in h.discord.bot_messages(thread.id)] == [
            "echo: alice: hello",
            ANSWER,
            "echo: alice: said while you were away",
        ]
        assert len(h.discord.identifies) == 1 and len(h.discord.resumes) == 1  # resumed, not re-identified
        assert h.discord.resumes[0].replayed >= 1
        assert_no_duplicates(h.discord, thread.id)


async def test_gateway_reconnect_request_mid_reply_changes_nothing_visible(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, streaming=STREAMING) as h:
        thread = await open_thread(h, "hello")
        fake_openai.responses.push(SLOW)
        await h.discord.user_message(thread.id, h.alice, "tell me a long story")
        await h.discord.wait_for(lambda: len(h.discord.bot_messages(thread.id)) == 2, timeout=WAIT_S)
        await h.discord.request_reconnect()
        await h.discord.wait_for(lambda: len(h.discord.resumes) == 1, timeout=WAIT_S)
        await wait_for_content(h.discord, thread.id, ANSWER)
        await h.discord.user_message(thread.id, h.alice, "still there?")
        await wait_for_content(h.discord, thread.id, "echo: alice: still there?")
        assert len(h.discord.bot_messages(thread.id)) == 3
        assert_no_duplicates(h.discord, thread.id)
