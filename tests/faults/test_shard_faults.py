"""Faults with several shard processes on one PostgreSQL database and one Redis.

Real `python -m bot` processes (see shard_processes.py) against one sharded stand-in Discord: a shard
process killed with SIGKILL mid-reply and mid-booking while its neighbour goes on; PostgreSQL restarted
under the bots; Redis (the shared Discord write budget) stopped under load; two processes given
overlapping shard ids (each message answered once, a setting changed through one used by both). What
users see is read off the stand-in Discord, what was stored off the database with psycopg.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from standins.discord import CALLBACK_UPDATE_MESSAGE, FakeChannel, FakeUser, RateLimitRule, StoredMessage
from standins.openai import FunctionCall, Reply
from tests.command_support import answer_id_of
from tests.faults.process_support import kill, terminate
from tests.faults.shard_processes import ShardGuild, ShardRig, shard_stand_ins
from tests.faults.support import MAX_WARNING_CHARS, WAIT_S, wait_for_content
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

# Pizzeria Napoli is open every day from 11:30 to 23:00: "tomorrow at 8pm" is always bookable.
BOOKING = {"restaurant": "Pizzeria Napoli", "party_size": 4, "time": "tomorrow at 8pm", "notes": None}
LONG_STORY = " ".join(f"word{i}" for i in range(60))


class Gate:
    """A model answer that waits until the test opens the gate (a turn held in flight)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.opened = asyncio.Event()

    async def __call__(self, body: dict[str, Any]) -> Reply:
        await self.opened.wait()
        return Reply(self.text)


async def held_turn(rig: ShardRig, channel_id: int, text: str, answer: str) -> tuple[Gate, int]:
    """Someone writes in a thread; the model request arrives and its answer waits for the gate.
    Returns the gate and the message's id."""
    gate = Gate(answer)
    rig.openai.responses.push(gate)
    requests = len(rig.openai.requests_to("/v1/responses", "POST"))
    message_id = await rig.say(channel_id, text)
    await rig.openai.wait_for_requests("/v1/responses", requests + 1, timeout=WAIT_S)
    return gate, message_id


async def ask_for_a_booking(rig: ShardRig, where: ShardGuild) -> tuple[FakeChannel, StoredMessage]:
    """Alice asks for a table; the model calls book_restaurant; the thread and the Confirm question."""
    rig.openai.responses.push(Reply(calls=[FunctionCall("book_restaurant", BOOKING)]))
    thread_id = await rig.mention(where, "book a table for 4 at Pizzeria Napoli tomorrow at 8pm")
    prompt = await rig.discord.wait_for_message(
        lambda m: bool(m.components), channel_id=thread_id, timeout=WAIT_S
    )
    return rig.discord.channels[thread_id], prompt


async def confirm(rig: ShardRig, prompt: StoredMessage) -> None:
    click = await rig.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=rig.alice)
    await rig.discord.wait_for(lambda: click.acknowledged, timeout=WAIT_S)
    assert click.response_type == CALLBACK_UPDATE_MESSAGE


def turn_status(rig: ShardRig, message_id: int) -> list[str]:
    return [str(s) for (s,) in rig.rows("SELECT status FROM turns WHERE message_id = %s", message_id)]


def reservations(rig: ShardRig) -> list[tuple[Any, ...]]:
    return rig.rows("SELECT call_id, user_id, party_size, status FROM reservations ORDER BY id")


async def test_a_killed_shard_process_leaves_its_neighbour_answering_and_reports_only_its_own_cut_turns(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    async with shard_stand_ins(tmp_path, postgres_server.new_database(), redis_url=redis_server.url) as rig:
        zero, one = rig.guilds
        async with rig.process("shard 1", [1], process_count=2) as p1:
            async with rig.process("shard 0", [0], process_count=2) as p0:
                # Mid-booking: Alice pressed Confirm, the booking ran, the model's answer never comes.
                booking_thread, prompt = await ask_for_a_booking(rig, zero)
                rig.openai.responses.push(Reply("Booked!", delay_s=60))
                requests = len(rig.openai.requests_to("/v1/responses", "POST"))
                await confirm(rig, prompt)
                await rig.openai.wait_for_requests("/v1/responses", requests + 1, timeout=WAIT_S)
                # Mid-reply: a long answer streaming in another thread.
                story_thread = await rig.open_thread(zero, "hello")
                rig.openai.responses.push(Reply(LONG_STORY, deltas=60, delta_delay_s=0.2))
                asked = await rig.say(story_thread.id, "tell me a long story")
                await rig.discord.wait_for_message(
                    lambda m: m.content.startswith("word0"), channel_id=story_thread.id, timeout=WAIT_S
                )
                await kill(p0.process)
            dead_run = rig.run_id(p0)
            [(_, user_id, party, status)] = reservations(rig)
            assert (user_id, party, status) == (rig.alice.id, 4, "confirmed")
            assert turn_status(rig, asked) == ["running"]

            # Shard 1's process answers its guild while shard 0's is dead.
            neighbour_thread = await rig.open_thread(one, "are you there, shard one?")
            answered_alone = await rig.answered(neighbour_thread.id, "still there?")
            assert rig.answering_runs(answered_alone) == [rig.run_id(p1)]
            await terminate(p1.process)

        # Shard 1's process restarted while shard 0's is dead: the dead run's turns are not its to take
        # (it could not even post in shard 0's channels).
        async with rig.process("shard 1, restarted", [1], process_count=2) as p1_again:
            await p1_again.bot.wait_for("Logged in as")  # its start-up look for cut turns is under way
            await rig.answered(neighbour_thread.id, "back too?")  # ... and done: one database connection
            assert turn_status(rig, asked) == ["running"]

            # A turn of shard 1 in flight while shard 0 starts again: alive, so not shard 0's to take.
            gate, slow = await held_turn(rig, neighbour_thread.id, "a slow question", "a slow answer")
            async with rig.process("shard 0, restarted", [0], process_count=2) as p0_again:
                note = await rig.wait_for_note(story_thread.id)
                assert str(asked) in note.content
                await rig.wait_for_note(booking_thread.id)
                assert turn_status(rig, asked) == ["interrupted"]
                assert turn_status(rig, slow) == ["running"]
                gate.opened.set()
                await wait_for_content(rig.discord, neighbour_thread.id, "a slow answer")
                await rig.answered(story_thread.id, "are you back?")
                assert rig.run_id(p0_again) != dead_run

        # Each cut turn reported once, in its own thread, and nowhere else.
        assert len(rig.notes_in(story_thread.id)) == len(rig.notes_in(booking_thread.id)) == 1
        assert rig.notes_in(neighbour_thread.id) == []
        # The booking made before the kill, once; no turn answered twice.
        [(_, user_id, party, status)] = reservations(rig)
        assert (user_id, party, status) == (rig.alice.id, 4, "confirmed")
        for channel_id, text in (
            (story_thread.id, "hello"),
            (story_thread.id, "are you back?"),
            (neighbour_thread.id, "are you there, shard one?"),
            (neighbour_thread.id, "still there?"),
            (neighbour_thread.id, "back too?"),
        ):
            assert len(rig.echoes(channel_id, text)) == 1, text


@contextlib.contextmanager
def stopped(server: PostgresServer | RedisServer) -> Iterator[None]:
    """The server is down inside the block, and up again after it (whatever happened inside)."""
    server.stop()
    try:
        yield
    finally:
        server.start()


def assert_short_notes(rig: ShardRig, channel_id: int) -> None:
    """Whatever the bot posted besides echoes is a short message a person can read."""
    for message in rig.discord.bot_messages(channel_id):
        if "echo: " in message.content:
            continue
        assert len(message.content) <= MAX_WARNING_CHARS and "\n" not in message.content.strip(), message
        assert "Traceback" not in message.content and "psycopg" not in message.content, message


async def test_postgresql_restarted_under_two_shard_processes_loses_no_turn_and_answers_none_twice(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    async with shard_stand_ins(tmp_path, postgres_server.new_database(), redis_url=redis_server.url) as rig:
        async with (
            rig.process("shard 0", [0], process_count=2) as p0,
            rig.process("shard 1", [1], process_count=2) as p1,
        ):
            for process in (p0, p1):
                await process.bot.wait_for("Logged in as")  # started: the outage meets only the turns
            threads = [await rig.open_thread(where, f"hello shard {where.shard_id}") for where in rig.guilds]
            gates = [(await held_turn(rig, t.id, "in flight", "answered in flight"))[0] for t in threads]
            during: list[tuple[ShardGuild, int]] = []
            with stopped(postgres_server):
                for gate in gates:
                    gate.opened.set()
                for where in rig.guilds:
                    text = f"while the database is down {where.shard_id}"
                    during.append((where, await rig.mention(where, text)))
                for process in (p0, p1):
                    await process.bot.wait_for("Lost the connection to the database")
            # Each mention made during the outage is answered, or told of it, once the database is back.
            await rig.discord.wait_for(lambda: all(responded(rig, w, m) for w, m in during), timeout=WAIT_S)
            # After the restart: the bots are back on the database, in old threads and new ones.
            for thread in threads:
                await rig.answered(thread.id, "after the restart")
            for where in rig.guilds:
                await rig.open_thread(where, f"a new thread after the restart {where.shard_id}")

        for thread in threads:
            for text in ("hello shard", "in flight", "after the restart"):
                assert len([m for m in rig.discord.bot_messages(thread.id) if text in m.content]) <= 1
            assert len(rig.echoes(thread.id, "after the restart")) == 1
            assert_short_notes(rig, thread.id)
        for where, message_id in during:
            assert_short_notes(rig, where.general.id)
            if message_id in rig.discord.channels:
                assert_short_notes(rig, message_id)
                assert len(rig.discord.bot_messages(message_id)) <= 1
        # No message was answered by two turns.
        twice = (
            "SELECT message_id FROM turns WHERE message_id IS NOT NULL"
            " GROUP BY message_id HAVING count(*) > 1"
        )
        assert rig.rows(twice) == []


def responded(rig: ShardRig, where: ShardGuild, message_id: int) -> bool:
    """The bot did something about a mention: a note in the channel or a message in its thread."""
    in_thread = message_id in rig.discord.channels and bool(rig.discord.bot_messages(message_id))
    return in_thread or bool(rig.discord.bot_messages(where.general.id))


BURST_THREADS_PER_GUILD = 15
"""Replies at once per shard process: their writes together need more than the global limit allows."""


async def test_redis_stopped_under_load_each_process_falls_back_to_its_share_with_no_global_429(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    async with shard_stand_ins(
        tmp_path, postgres_server.new_database(), redis_url=redis_server.url, global_limit=50
    ) as rig:
        # Per-channel buckets out of the way: only the global limit (50 in any second) can refuse.
        rig.discord.rate_limits.update(
            message_create=RateLimitRule(limit=1000, per_s=1.0), message_edit=RateLimitRule(1000, 1.0)
        )
        guild_ids = [where.guild.id for where in rig.guilds]
        people = [  # one person per thread: each has a turn of their own in flight, within their limits
            (
                rig.discord.add_thread(where.general.id, f"chat {n}", owner=rig.discord.bot_user),
                rig.discord.add_user(f"person {where.shard_id}-{n}", guilds=guild_ids),
            )
            for where in rig.guilds
            for n in range(BURST_THREADS_PER_GUILD)
        ]
        rig.openai.responses.default = streamed_echo
        async with (
            rig.process("shard 0", [0], process_count=2) as p0,
            rig.process("shard 1", [1], process_count=2) as p1,
        ):
            await burst(rig, people, "with redis")
            with_redis = len(rig.discord.rate_limit_hits_of("global"))
            assert with_redis == 0  # one budget for both: 45 writes a second between them
            with stopped(redis_server):
                await burst(rig, people, "without redis")
                for process in (p0, p1):
                    await process.bot.wait_for("Redis is unreachable")
            without_redis = len(rig.discord.rate_limit_hits_of("global")) - with_redis
            fallback = [len(p.lines_matching("warning", "redis is unreachable")) for p in (p0, p1)]
        assert without_redis == 0  # each on its own share: 1/2 of 45 writes a second
        assert fallback == [1, 1]


def streamed_echo(body: dict[str, Any]) -> Reply:
    """Every answer streams in 10 pieces over a second: a post and refresh edits for each reply."""
    text = f"streamed answer {len(str(body.get('input')))} " + " ".join(f"w{i}" for i in range(30))
    return Reply(text, deltas=10, delta_delay_s=0.1, pace="deltas")


async def burst(rig: ShardRig, people: list[tuple[FakeChannel, FakeUser]], text: str) -> None:
    """Everyone writes in their thread at once; until every reply is complete (its last piece shown)."""
    for thread, person in people:
        await rig.say(thread.id, f"{text} in {thread.name}", user=person)
    threads = [thread for thread, _ in people]
    await rig.discord.wait_for(
        lambda: all(
            sum(m.content.endswith(" w29") for m in rig.discord.bot_messages(t.id)) >= 1 + ("without" in text)
            for t in threads
        ),
        timeout=60,
    )


async def test_overlapping_shard_ids_answer_each_mention_once_and_the_second_process_warns(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    async with shard_stand_ins(
        tmp_path, postgres_server.new_database(), redis_url=redis_server.url, concurrent_sessions=True
    ) as rig:
        zero, one = rig.guilds
        async with (
            rig.process("shards 0 and 1", [0, 1], process_count=2) as both,
            rig.process("shard 1 too", [1], process_count=2) as second,
        ):
            await second.bot.wait_for("Another bot process is running shards of this one")
            assert both.lines_matching("another bot process") == []
            mentions = [
                (where, f"mention {n} in shard {where.shard_id}") for n in range(3) for where in (one, zero)
            ]
            threads = [await rig.open_thread(where, text) for where, text in mentions]
            follow_ups = [await rig.answered(t.id, "and a follow-up") for t in threads]
            runs = {rig.run_id(both), rig.run_id(second)}
        for thread, (where, text) in zip(threads, mentions, strict=True):
            assert [t.id for t in rig.discord.threads_in(where.general.id)].count(thread.id) == 1
            assert len(rig.echoes(thread.id, text)) == 1
            assert len(rig.echoes(thread.id, "and a follow-up")) == 1
            assert rig.discord.bot_messages(thread.id)[0].content == f"echo: alice: {text}"
        assert (
            len(rig.discord.threads_in(zero.general.id)) == len(rig.discord.threads_in(one.general.id)) == 3
        )
        for message_id in [t.id for t in threads] + follow_ups:
            [run] = rig.answering_runs(message_id)
            assert run in runs
        # Both processes received shard 1's messages; the claim decided who answered.
        shard_1_created = [
            r for r in rig.discord.dispatched if r.event == "MESSAGE_CREATE" and r.shard == (1, 2)
        ]
        assert len({r.data["id"] for r in shard_1_created}) < len(shard_1_created)


NEW_INSTRUCTIONS = "Answer as the assistant of shard one."
MAX_MENTIONS = 10
"""Mentions sent until each of two overlapping processes has answered one (they take turns winning
the claim in practice; this bounds an unlucky run)."""


async def mentions_until_each_answered(
    rig: ShardRig, where: ShardGuild, label: str, runs: set[str]
) -> list[str]:
    """Mentions in `where` until every run of `runs` has answered at least one; their texts."""
    texts: list[str] = []
    answering: set[str] = set()
    while answering != runs:
        assert len(texts) < MAX_MENTIONS, f"after {len(texts)} mentions only {answering} answered"
        text = f"{label} {len(texts)}"
        thread = await rig.open_thread(where, text)
        answering.update(rig.answering_runs(thread.id))
        texts.append(text)
    return texts


async def test_a_setting_changed_through_one_of_two_overlapping_processes_is_used_by_both(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    """Both processes receive the /config set; the one that loses the race to acknowledge it must log
    nothing at ERROR (checked as each stops): it was the other's to answer, as a claimed message is."""
    async with shard_stand_ins(
        tmp_path, postgres_server.new_database(), redis_url=redis_server.url, concurrent_sessions=True
    ) as rig:
        one = rig.guilds[1]
        async with (
            rig.process("shards 0 and 1", [0, 1], process_count=2) as both,
            rig.process("shard 1 too", [1], process_count=2) as second,
        ):
            runs = {rig.run_id(both), rig.run_id(second)}
            # Both have answered in the guild, so both hold its settings...
            before = await mentions_until_each_answered(rig, one, "before the change", runs)
            # ... when one of them takes the /config set (both receive it; one acknowledges it).
            await rig.config_set(one.general.id, "instructions", NEW_INSTRUCTIONS)
            after = await mentions_until_each_answered(rig, one, "after the change", runs)
            audit = rig.rows("SELECT guild_id, name FROM guild_settings_audit")
            assert audit == [(one.guild.id, "instructions")]  # changed once, by one of them
            for text in before:
                assert NEW_INSTRUCTIONS not in json.dumps(rig.model_request(text).get("instructions"))
            for text in after:
                assert NEW_INSTRUCTIONS in json.dumps(rig.model_request(text).get("instructions")), text
