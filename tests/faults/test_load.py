"""Load: 200 people talking to the bot in 50 threads at once, for a fixed time, on loopback only.

Each person writes in their thread, waits for the answer, and writes again (a bounded, closed loop:
at most one message of theirs is ever waiting). Answers stream (several deltas, so the bot posts and
then edits) under Discord's real limits: 5 messages per 5 s per channel and 50 requests a second in
all. Afterwards, from the stand-in's own records: every message was answered exactly once, each
thread's answers are in the order its messages were sent, nobody was told the bot was busy, and
nothing was logged at ERROR.

The duration is `pytest --load-seconds N` (default: `DEFAULT_LOAD_S` in tests/faults/conftest.py).
Everything (stand-ins, 200 people, the bot) shares one event loop, so the bot's writes reach the
stand-in with the loop's lag. No global 429 may come back: the write scheduler counts each request
against the global budget until a second after its response, so no lag can crowd Discord's window.
Per-channel 429s are reported (`-s`): the bot learns those buckets from the headers and handles them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

import pytest

from standins.discord import FakeChannel, FakeDiscord, FakeUser
from standins.openai import FakeOpenAI, Reply
from tests.harness import build_world, running_bot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

USERS = 200
THREADS = 50
DRAIN_TIMEOUT_S = 60.0  # after the deadline, for the answers still on their way
DISCORD_GLOBAL_LIMIT = 50  # requests per second, as on Discord


class Answers:
    """Watches the stand-in's REST log and wakes whoever waits for an exact message content."""

    def __init__(self, server: FakeDiscord) -> None:
        self._server = server
        self._cursor = 0
        self._seen: set[str] = set()
        self._waiting: dict[str, asyncio.Event] = {}

    def expect(self, content: str) -> asyncio.Event:
        event = self._waiting.setdefault(content, asyncio.Event())
        if content in self._seen:
            event.set()
        return event

    async def watch(self) -> None:
        server = self._server
        while True:
            await server.wait_for(lambda: len(server.calls) > self._cursor, timeout=3600)
            calls = server.calls[self._cursor :]
            self._cursor += len(calls)
            for call in calls:
                if call.kind not in ("message_create", "message_edit") or call.status >= 300:
                    continue
                content = call.json.get("content") if isinstance(call.json, dict) else None
                if isinstance(content, str):
                    self._seen.add(content)
                    if content in self._waiting:
                        self._waiting[content].set()


async def person(
    server: FakeDiscord, answers: Answers, user: FakeUser, thread: FakeChannel, deadline: float
) -> int:
    """Write, wait for the answer, write again, until the deadline; returns how many were answered."""
    loop = asyncio.get_running_loop()
    sent = 0
    while loop.time() < deadline:
        text = f"{user.name} says {sent}."  # the full stop: a streamed prefix never equals a whole answer
        answered = answers.expect(f"echo: {user.name}: {text}")
        await server.user_message(thread.id, user, text)
        await asyncio.wait_for(answered.wait(), DRAIN_TIMEOUT_S)
        sent += 1
    return sent


async def test_200_people_in_50_threads_every_message_answered_once_and_in_order(
    tmp_path: Path, fake_openai: FakeOpenAI, load_seconds: float
) -> None:
    fake_openai.responses.default = lambda body: Reply(
        "echo: " + body["input"][0]["content"][0]["text"], deltas=4, delta_delay_s=0.02
    )
    async with FakeDiscord(global_limit=DISCORD_GLOBAL_LIMIT) as server:
        world = build_world(server)
        threads = [
            server.add_thread(world.general.id, f"topic {n}", owner=server.bot_user) for n in range(THREADS)
        ]
        people = [server.add_user(f"user{n}", guilds=[world.guild.id]) for n in range(USERS)]
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            answers = Answers(server)

            watcher = asyncio.create_task(answers.watch())

            deadline = asyncio.get_running_loop().time() + load_seconds
            try:
                counts = await asyncio.gather(
                    *(
                        person(server, answers, user, threads[n % THREADS], deadline)
                        for n, user in enumerate(people)
                    )
                )
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await h.services.engine.wait_idle()

        turns = sum(counts)
        assert min(counts) >= 1, "everyone got at least one answer"
        for thread in threads:
            asked = [
                f"echo: {m.data['author']['username']}: {m.content}"
                for m in server.messages_in(thread.id)
                if m.author_id != server.bot_user.id
            ]
            replies = [m.content for m in server.bot_messages(thread.id)]
            assert replies == asked, f"thread {thread.name}: answers missing, doubled or out of order"
        contents = Counter(m.content for thread in threads for m in server.bot_messages(thread.id))
        assert sum(contents.values()) == turns and max(contents.values()) == 1
        assert server.rate_limit_hits_of("global") == [], "the global budget kept the bot under Discord's"
        print(  # shown with -s: what the run achieved
            f"\nload: {turns} turns in {load_seconds:.0f} s by {USERS} people in {THREADS} threads; "
            f"{len(server.rate_limit_hits)} Discord 429s"
        )
