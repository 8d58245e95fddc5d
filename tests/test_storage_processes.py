"""Several bot processes on one PostgreSQL database: two `Storage` objects on one URL are two processes.

Conversation locks across processes, one answer per message, the runs and their shards, interrupted
turns per process, and a connection lost under the bot (the server ends its session).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from bot.engine import TurnContext, UserTurn, conversation_key
from bot.engine.events import Completed, Failed, Queued, TurnEvent
from bot.errors import DatabaseUnavailableError
from bot.storage import ShardSet, Storage
from bot.storage.runs import RUN_DEAD_AFTER_S
from standins.openai import FakeOpenAI, Reply
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES
from tests.conftest import ServicesFactory, settings
from tests.postgres_server import PostgresServer

KEY = "channel:42"
SAFETY_NET_S = 30
"""Only so that a broken lock fails the test instead of hanging it."""


@pytest.fixture
def shared_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


@pytest.fixture
async def first(shared_url: str) -> AsyncIterator[Storage]:
    opened = await Storage.open(shared_url)
    yield opened
    await opened.close()


@pytest.fixture
async def second(shared_url: str) -> AsyncIterator[Storage]:
    opened = await Storage.open(shared_url)
    yield opened
    await opened.close()


async def backend_pid(storage: Storage) -> int:
    async with storage.db.read() as connection:
        rows = await connection.execute_fetchall("SELECT pg_backend_pid()")
    return int(rows[0][0])


async def terminate(url: str, pid: int) -> None:
    """What a server restart does to a session: the server ends it (and waits until it has ended)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s, %s)", (pid, SAFETY_NET_S * 1000))


async def until_a_session_waits_for_a_lock(url: str) -> None:
    """Until the server shows a session waiting for an advisory lock (each look is a round trip)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        async with asyncio.timeout(SAFETY_NET_S):
            while True:
                cursor = await admin.execute(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                row = await cursor.fetchone()
                if row is not None and row[0]:
                    return


async def conversation_count(storage: Storage) -> int:
    async with storage.db.read() as connection:
        rows = await connection.execute_fetchall("SELECT COUNT(*) FROM conversations")
    return int(rows[0][0])


# ------------------------------------------------------------------------------ conversation locks


async def test_a_conversation_held_by_one_process_is_held_by_the_other_only_after_release(
    first: Storage, second: Storage, shared_url: str
) -> None:
    held = await first.conversation_locks.try_hold(KEY)
    assert held is not None
    assert await second.conversation_locks.try_hold(KEY) is None
    assert await second.conversation_locks.try_hold("channel:43") is not None  # another conversation

    released = asyncio.Event()
    order: list[str] = []
    waiting = asyncio.create_task(second.conversation_locks.hold(KEY))
    waiting.add_done_callback(lambda _: order.append("second holds" if released.is_set() else "too soon"))
    await until_a_session_waits_for_a_lock(shared_url)
    assert await first.conversations.get(KEY) is None  # a round trip of the holder meanwhile
    assert not waiting.done()
    order.append("first releases")
    released.set()
    await held.release()
    async with asyncio.timeout(SAFETY_NET_S):
        second_held = await waiting
    assert order == ["first releases", "second holds"]
    assert await first.conversation_locks.try_hold(KEY) is None  # now the second process's
    await second_held.release()
    again = await first.conversation_locks.try_hold(KEY)
    assert again is not None
    await again.release()


async def test_waiting_for_another_process_does_not_hold_up_the_waiting_process(
    first: Storage, second: Storage, shared_url: str
) -> None:
    held = await first.conversation_locks.try_hold(KEY)
    assert held is not None
    waiting = asyncio.create_task(second.conversation_locks.hold(KEY))
    await until_a_session_waits_for_a_lock(shared_url)
    # The waiting process's other statements, reads and writes, go on over its shared connection.
    record = await second.conversations.get_or_create(KEY, backend="chat", guild_id=1, channel_id=42)
    assert record.key == KEY
    assert await second.conversations.get(KEY) is not None
    async with second.db.transaction() as connection:
        await connection.execute("UPDATE conversations SET last_active_at = 1 WHERE key = ?", (KEY,))
    assert not waiting.done()
    await held.release()
    async with asyncio.timeout(SAFETY_NET_S):
        await (await waiting).release()


async def test_a_waiting_hold_given_up_leaves_no_lock_behind(
    first: Storage, second: Storage, shared_url: str
) -> None:
    held = await first.conversation_locks.try_hold(KEY)
    assert held is not None
    waiting = asyncio.create_task(second.conversation_locks.hold(KEY))
    await until_a_session_waits_for_a_lock(shared_url)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await held.release()
    mine = await first.conversation_locks.try_hold(KEY)  # the abandoned wait took nothing
    assert mine is not None
    await mine.release()


async def test_a_lock_lost_with_its_connection_frees_the_conversation(
    first: Storage, second: Storage, shared_url: str
) -> None:
    held = await first.conversation_locks.try_hold(KEY)
    assert held is not None
    await terminate(shared_url, await backend_pid(first))
    other = await second.conversation_locks.try_hold(KEY)  # the server let go with the session
    assert other is not None
    await held.release()  # no error, and nothing released on the new session
    assert await first.conversation_locks.try_hold(KEY) is None
    await other.release()


async def test_a_turn_waits_queued_while_another_process_answers_its_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, shared_url: str
) -> None:
    services = await make_services(storage={"database": shared_url})
    neighbour = await Storage.open(shared_url)
    try:
        key = conversation_key(1001)
        held = await neighbour.conversation_locks.try_hold(key)
        assert held is not None
        fake_openai.responses.push(Reply("Answered after the other process."))
        turn = UserTurn(text="hi", author_id=7, author_name="Ada")
        events = services.engine.reply(
            key, turn, TurnContext(guild_id=5, channel_id=1001, settings=settings())
        )
        assert await anext(events) == Queued(1)
        seen: list[TurnEvent] = []
        rest = asyncio.create_task(_drain(events, seen))
        await until_a_session_waits_for_a_lock(shared_url)
        assert not rest.done() and seen == []
        await held.release()
        async with asyncio.timeout(SAFETY_NET_S):
            await rest
        assert isinstance(seen[-1], Completed) and seen[-1].text == "Answered after the other process."
    finally:
        await neighbour.close()


async def test_a_turn_that_meets_a_lost_connection_fails_with_a_sentence_and_the_next_turn_works(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, shared_url: str
) -> None:
    services = await make_services(storage={"database": shared_url})
    ask = TurnContext(guild_id=5, channel_id=1001, settings=settings())
    await terminate(shared_url, await backend_pid(services.storage))
    cut = [
        e async for e in services.engine.reply(KEY, UserTurn(text="hi", author_id=7, author_name="Ada"), ask)
    ]
    assert cut[-1] == Failed("connection", str(DatabaseUnavailableError()))
    fake_openai.responses.push(Reply("Back again."))
    events = [
        e
        async for e in services.engine.reply(KEY, UserTurn(text="again", author_id=8, author_name="Bo"), ask)
    ]
    assert isinstance(events[-1], Completed) and events[-1].text == "Back again."


async def _drain(events: AsyncIterator[TurnEvent], into: list[TurnEvent]) -> None:
    async for event in events:
        into.append(event)


async def test_sqlite_conversation_locks_never_wait(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "bot.db")
    try:
        one = await storage.conversation_locks.try_hold(KEY)
        two = await storage.conversation_locks.try_hold(KEY)  # one process: its lanes are the lock
        assert one is not None and two is not None
        await one.release()
        await two.release()
    finally:
        await storage.close()


# ------------------------------------------------------------------------------ message claims


async def test_a_message_claimed_by_two_processes_at_once_has_exactly_one_winner(
    first: Storage, second: Storage
) -> None:
    message_ids = range(1_000_000_000_000_000_000, 1_000_000_000_000_000_040)
    results = await asyncio.gather(
        *(first.message_claims.claim(m, "run-a") for m in message_ids),
        *(second.message_claims.claim(m, "run-b") for m in message_ids),
    )
    a_won, b_won = results[: len(message_ids)], results[len(message_ids) :]
    assert all(a != b for a, b in zip(a_won, b_won, strict=True))  # exactly one of the two, each time
    for message_id, a in zip(message_ids, a_won, strict=True):
        assert await first.message_claims.claim(message_id, "run-a") is a  # asking again: same answer
        assert await second.message_claims.claim(message_id, "run-b") is not a


async def test_claims_are_one_per_message_and_old_ones_are_pruned(storage: Storage) -> None:
    assert await storage.message_claims.claim(11, "run-a")
    assert not await storage.message_claims.claim(11, "run-b")
    assert await storage.message_claims.claim(12, "run-b")
    async with storage.db.autocommit() as connection:
        await connection.execute(
            "UPDATE message_claims SET claimed_at = ? WHERE message_id = 11", (time.time() - 2 * 86400,)
        )
    assert await storage.message_claims.prune() == 1
    assert await storage.message_claims.claim(11, "run-b")  # forgotten: claimable again
    assert not await storage.message_claims.claim(12, "run-a")


# ------------------------------------------------------------------------------ runs and interrupted turns


async def test_a_run_on_shards_another_live_run_has_is_warned_of_once(
    first: Storage, second: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.storage.runs"):
        assert await first.runs.register("run-a", ShardSet.of([0, 1], 4)) == []
        overlapping = await second.runs.register("run-b", ShardSet.of([1, 2], 4))
    assert [run.run_id for run in overlapping] == ["run-a"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "run-a also runs shard(s) 1 of 4" in warnings[0]
    assert "conversation locks" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.storage.runs"):
        assert await second.runs.register("run-c", ShardSet.of([3], 4)) == []  # apart: fine
        await first.runs.stop("run-a")
        assert [r.run_id for r in await second.runs.register("run-d", ShardSet.of([0], 4))] == []
    assert caplog.records == []  # run-a stopped; run-b and run-c run other shards


async def test_sqlite_runs_are_registered_without_overlap_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await Storage.open(tmp_path / "bot.db")
    try:
        with caplog.at_level(logging.WARNING):
            await storage.runs.register("old", ShardSet.of(None, 1))  # a crashed run, just before
            assert await storage.runs.register("new", ShardSet.of(None, 1)) == []
        assert caplog.records == []
        assert [run.run_id for run in await storage.runs.live(exclude="new")] == ["old"]
    finally:
        await storage.close()


async def test_heartbeats_keep_a_run_alive_until_it_stops(first: Storage) -> None:
    await first.runs.register("run-a", ShardSet.of(None, 1))
    async with first.db.autocommit() as connection:
        await connection.execute("UPDATE runs SET heartbeat_at = 0")
    assert await first.runs.live() == []
    beaten = asyncio.Event()
    heartbeat = first.runs.heartbeat

    async def heartbeat_seen(run_id: str) -> None:
        await heartbeat(run_id)
        beaten.set()

    first.runs.heartbeat = heartbeat_seen  # type: ignore[method-assign]
    stopped = asyncio.Event()
    beating = asyncio.create_task(first.runs.beat_until("run-a", stopped, interval_s=0.01))
    async with asyncio.timeout(SAFETY_NET_S):
        await beaten.wait()
    assert [run.run_id for run in await first.runs.live()] == ["run-a"]
    stopped.set()
    await beating
    await first.runs.stop("run-a")
    assert await first.runs.live() == []


async def test_a_run_whose_process_died_is_dead_at_once(shared_url: str, second: Storage) -> None:
    killed = await Storage.open(shared_url)
    await killed.runs.register("killed", ShardSet.of(None, 1))
    turn_id = await killed.turns.start(
        conversation_key=KEY, guild_id=None, channel_id=42, user_id=1, message_id=None, run_id="killed"
    )
    assert [run.run_id for run in await second.runs.live()] == ["killed"]
    await terminate(shared_url, await backend_pid(killed))  # the process is gone: so is its session
    try:
        assert await second.runs.live() == []  # its heartbeat is recent, but its lock went with it
        taken = await second.turns.take_interrupted(current_run="restarted", shards=ShardSet.of([0], 2))
        assert [t.turn_id for t in taken] == [turn_id]
    finally:
        await killed.close()


SHARDS_OF_TWO = {0: 4 << 22, 1: 5 << 22}
"""A guild id on each shard of two: `(guild_id >> 22) % 2`."""


async def test_take_interrupted_takes_only_dead_runs_turns_on_its_own_shards(
    first: Storage, second: Storage
) -> None:
    await first.runs.register("alive", ShardSet.of([1], 2))
    await first.runs.register("dead", ShardSet.of([0], 2))
    await first.runs.register("stopped", ShardSet.of([0], 2))
    async with first.db.autocommit() as connection:
        await connection.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE run_id = 'dead'", (time.time() - RUN_DEAD_AFTER_S - 1,)
        )
    await first.runs.stop("stopped")

    async def running(run_id: str | None, guild_id: int | None, channel_id: int) -> int:
        return await first.turns.start(
            conversation_key=f"channel:{channel_id}",
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=1,
            message_id=None,
            run_id=run_id or "",
        )

    alive_turn = await running("alive", SHARDS_OF_TWO[0], 1)
    dead_here = await running("dead", SHARDS_OF_TWO[0], 2)
    dead_dm = await running("dead", None, 3)
    dead_elsewhere = await running("dead", SHARDS_OF_TWO[1], 4)
    stopped_here = await running("stopped", SHARDS_OF_TWO[0], 5)
    mine = await running("me", SHARDS_OF_TWO[0], 6)
    no_run = await running(None, SHARDS_OF_TWO[0], 7)
    async with first.db.autocommit() as connection:
        await connection.execute("UPDATE turns SET run_id = NULL WHERE id = ?", (no_run,))

    taken = await second.turns.take_interrupted(current_run="me", shards=ShardSet.of([0], 2))
    assert [t.turn_id for t in taken] == [dead_here, dead_dm, stopped_here, no_run]
    assert await second.turns.take_interrupted(current_run="me", shards=ShardSet.of([0], 2)) == []
    for turn_id in (alive_turn, dead_elsewhere, mine):
        assert await first.turns.status(turn_id) == "running"
    elsewhere = await first.turns.take_interrupted(current_run="other", shards=ShardSet.of([1], 2))
    assert [t.turn_id for t in elsewhere] == [dead_elsewhere]  # the DM is shard 0's: not here


async def test_sqlite_take_interrupted_takes_every_other_runs_turns(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "bot.db")
    try:
        await storage.runs.register("earlier", ShardSet.of(None, 1))  # heartbeat recent: killed just now
        turn_id = await storage.turns.start(
            conversation_key="channel:1",
            guild_id=9,
            channel_id=1,
            user_id=1,
            message_id=None,
            run_id="earlier",
        )
        taken = await storage.turns.take_interrupted(current_run="now", shards=ShardSet.of(None, 1))
        assert [t.turn_id for t in taken] == [turn_id]  # one process per file: every other run is dead
    finally:
        await storage.close()


# ------------------------------------------------------------------------------ a lost connection


async def test_a_lost_connection_fails_the_statement_once_and_the_next_one_reconnects(
    first: Storage, second: Storage, shared_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await first.conversations.get_or_create(KEY, backend="chat", guild_id=1, channel_id=42)
    await first.runs.register("run-a", ShardSet.of(None, 1))
    before = await backend_pid(first)
    with caplog.at_level(logging.INFO, logger="bot.storage.database"):
        await terminate(shared_url, before)
        with pytest.raises(DatabaseUnavailableError) as raised:
            await first.conversations.get(KEY)
        assert "try again" in str(raised.value)
        assert await first.conversations.get(KEY) is not None  # the next use: a new session
        assert await first.conversations.get(KEY) is not None
    assert await backend_pid(first) != before
    assert [run.run_id for run in await second.runs.live()] == ["run-a"]  # alive again on the new session
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if m.startswith("Lost the connection")]) == 1
    assert len([m for m in messages if m.startswith("Reconnected")]) == 1


async def test_a_transaction_cut_by_a_lost_connection_leaves_nothing_behind(
    first: Storage, shared_url: str
) -> None:
    pid = await backend_pid(first)
    insert = (
        "INSERT INTO conversations (key, backend, generation, channel_id, created_at, last_active_at)"
        " VALUES (?, 'chat', 1, ?, 0, 0)"
    )
    with pytest.raises(DatabaseUnavailableError):
        async with first.db.transaction() as connection:
            await connection.execute(insert, ("channel:1", 1))
            await terminate(shared_url, pid)
            await connection.execute(insert, ("channel:2", 2))  # never on a new session, half-way
    assert await conversation_count(first) == 0
    async with first.db.transaction() as connection:  # the next transaction works, whole
        await connection.execute(insert, ("channel:3", 3))
    assert await conversation_count(first) == 1
