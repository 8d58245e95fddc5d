""" "I was restarted while answering" only for turns an earlier run left running (issue 14).

Each journal entry carries the run id of the process that began it; on start the bot reports the
running turns of other runs, once, and never its own, however early they began (mentions sent the
moment the gateway connects) and however often `on_ready` fires again (a new gateway session).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.storage import Storage
from standins.discord import FakeChannel, FakeDiscord, FakeUser, StoredMessage
from standins.openai import FakeOpenAI, Reply
from tests.conftest import make_config
from tests.harness import FAST_BUCKET, Harness, World, build_world, running_bot

WAIT_S = 10.0
NOTE = "I was restarted while answering"
EARLIER_RUN = "an-earlier-run"
PEOPLE = 4
READY_AFTER_GUILDS_S = 0.5
"""discord.py's wait for guilds before on_ready (2 s by default): the mentions come well before it."""


def notes_in(server: FakeDiscord, channel_id: int) -> list[StoredMessage]:
    return [
        m for m in server.messages_in(channel_id) if m.author_id == server.bot_user.id and NOTE in m.content
    ]


def all_notes(server: FakeDiscord) -> list[StoredMessage]:
    return [m for channel_id in list(server.channels) for m in notes_in(server, channel_id)]


async def turn_left_running(tmp_path: Path, thread: FakeChannel, user: FakeUser, guild_id: int) -> int:
    """Journal a running turn in `thread` as an earlier process would have left it; its id."""
    storage = await Storage.open(make_config(tmp_path).storage.database)
    try:
        key = f"channel:{thread.id}"
        await storage.conversations.get_or_create(
            key, backend="responses", guild_id=guild_id, channel_id=thread.id
        )
        return await storage.turns.start(
            conversation_key=key,
            guild_id=guild_id,
            channel_id=thread.id,
            user_id=user.id,
            message_id=None,
            run_id=EARLIER_RUN,
        )
    finally:
        await storage.close()


def held_model(release: asyncio.Event) -> Any:
    """A model that answers each request once `release` is set: the turns stay running until then."""

    async def answer(body: dict[str, Any]) -> Reply:
        await release.wait()
        return Reply("Here is your answer.")

    return answer


async def mention_on_connect(server: FakeDiscord, world: World, people: list[FakeUser]) -> None:
    """Each person mentions the bot the moment its gateway connects, before discord.py is ready."""
    await server.wait_for(lambda: server.connected, timeout=WAIT_S)
    for person in people:
        mention = f"<@{server.bot_user.id}> hello from {person.name}"
        await server.user_message(world.general.id, person, mention, mentions_bot=True)


async def wait_for_answers(h: Harness, count: int) -> list[FakeChannel]:
    """Until `count` threads in #general hold the answer; those threads."""

    def answered() -> list[FakeChannel]:
        return [
            t
            for t in h.discord.threads_in(h.general.id)
            if any(m.content == "Here is your answer." for m in h.discord.messages_in(t.id))
        ]

    await h.discord.wait_for(lambda: len(answered()) >= count, timeout=WAIT_S)
    return answered()


async def test_mentions_during_start_up_get_no_note_and_an_earlier_runs_turn_gets_one(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    release = asyncio.Event()
    fake_openai.responses.default = held_model(release)
    async with FakeDiscord(rate_limits={"message_create": FAST_BUCKET}) as server:
        world = build_world(server)
        people = [server.add_user(f"person{n}", guilds=[world.guild.id]) for n in range(PEOPLE)]
        old_thread = server.add_thread(world.general.id, "cut off", owner=server.bot_user)
        lost = await turn_left_running(tmp_path, old_thread, world.alice, world.guild.id)
        sending = asyncio.create_task(mention_on_connect(server, world, people))
        async with running_bot(
            tmp_path, fake_openai, discord=server, world=world, guild_ready_timeout_s=READY_AFTER_GUILDS_S
        ) as h:
            await sending
            # Every mention's turn was journalled running before the bot was ready: the case of the bug.
            assert len(fake_openai.requests_to("/v1/responses", "POST")) == PEOPLE
            await server.wait_for(lambda: bool(notes_in(server, old_thread.id)), timeout=WAIT_S)
            release.set()
            threads = await wait_for_answers(h, PEOPLE)
            assert len(threads) == PEOPLE
            assert [n.channel_id for n in all_notes(server)] == [old_thread.id]
            assert await h.services.storage.turns.status(lost) == "interrupted"


async def test_a_new_gateway_session_reports_nothing_new(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A reconnect that IDENTIFYs anew fires on_ready again, with turns of this run under way."""
    release = asyncio.Event()
    fake_openai.responses.default = held_model(release)
    async with FakeDiscord(rate_limits={"message_create": FAST_BUCKET}) as server:
        world = build_world(server)
        old_thread = server.add_thread(world.general.id, "cut off", owner=server.bot_user)
        await turn_left_running(tmp_path, old_thread, world.alice, world.guild.id)
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            await server.wait_for(lambda: bool(notes_in(server, old_thread.id)), timeout=WAIT_S)
            for person in (world.alice, world.bob):
                await server.user_message(world.general.id, person, f"{h.bot_mention} hi", mentions_bot=True)
            await fake_openai.wait_for_requests("/v1/responses", 2, method="POST")

            ready_again = asyncio.Event()

            async def on_ready() -> None:
                ready_again.set()

            h.bot.add_listener(on_ready, "on_ready")
            await server.disconnect_gateway(4009, "Session timed out")  # not resumable: a new READY
            await asyncio.wait_for(ready_again.wait(), WAIT_S)
            assert len(server.identifies) == 2

            release.set()
            await wait_for_answers(h, 2)
            # One more turn after the reconnect: whatever that on_ready did is written by now.
            await server.user_message(world.general.id, world.admin, f"{h.bot_mention} hi", mentions_bot=True)
            await wait_for_answers(h, 3)
            assert [n.channel_id for n in all_notes(server)] == [old_thread.id]
