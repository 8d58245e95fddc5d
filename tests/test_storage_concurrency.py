"""The storage layer with many turns at once: shared reads, and turns that end together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.storage import Storage, utc_day
from bot.storage.database import Connection
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES


async def test_turns_ending_together_are_written_in_one_transaction_each_counted(storage: Storage) -> None:
    for channel in (1, 2):
        await storage.conversations.get_or_create(
            f"channel:{channel}", backend="responses", guild_id=7, channel_id=channel
        )
    turns = [
        await storage.turns.start(
            conversation_key=f"channel:{1 + n % 2}",
            guild_id=7,
            channel_id=1 + n % 2,
            user_id=n % 3,
            message_id=n,
            run_id="run-1",
        )
        for n in range(6)
    ]
    before = await storage.conversations.get("channel:1")
    transactions = 0
    original = storage.db.transaction

    @asynccontextmanager
    async def counted() -> AsyncIterator[Connection]:
        nonlocal transactions
        transactions += 1
        async with original() as connection:
            yield connection

    storage.db.transaction = counted  # type: ignore[method-assign]
    statuses = ["completed", "failed", "completed", "cancelled", "completed", "completed"]
    await asyncio.gather(
        *(
            storage.turns.finish(turn, status, input_tokens=10 * (n + 1), output_tokens=n)  # type: ignore[arg-type]
            for n, (turn, status) in enumerate(zip(turns, statuses, strict=True))
        )
    )
    assert transactions < len(turns)  # those that ended while one was being written went together
    assert [await storage.turns.status(t) for t in turns] == statuses
    assert await storage.turns.take_interrupted() == []
    after = await storage.conversations.get("channel:1")
    assert before is not None and after is not None and after.last_active_at > before.last_active_at
    today = utc_day()
    for user in range(3):
        ns = [n for n in range(6) if n % 3 == user]
        total = await storage.usage.user_total(7, user, since_day=today)
        assert (total.input_tokens, total.output_tokens, total.turns) == (
            sum(10 * (n + 1) for n in ns),
            sum(ns),
            len(ns),
        )


async def test_finishing_an_unknown_turn_writes_nothing(storage: Storage) -> None:
    await storage.turns.finish(12345, "completed", input_tokens=5, output_tokens=5)
    assert (await storage.usage.guild_total(None, since_day=utc_day())).turns == 0


async def test_reads_wait_for_an_open_transaction_but_not_for_each_other(storage: Storage) -> None:
    db = storage.db
    writing = asyncio.Event()
    release = asyncio.Event()

    async def transaction() -> None:
        async with db.transaction() as connection:
            await connection.execute(
                "INSERT INTO conversations (key, backend, generation, channel_id, created_at, last_active_at)"
                " VALUES ('channel:9', 'chat', 1, 9, 0, 0)"
            )
            writing.set()
            await release.wait()

    async def count() -> int:
        async with db.read() as connection:
            rows = await connection.execute_fetchall("SELECT COUNT(*) FROM conversations")
        return int(next(iter(rows))[0])

    writer = asyncio.create_task(transaction())
    await writing.wait()
    reader = asyncio.create_task(count())
    await asyncio.sleep(0.05)
    assert not reader.done()  # it would have seen the transaction's uncommitted row
    release.set()
    await writer
    assert await reader == 1

    async with db.read(), db.read() as connection:  # two reads at once: no deadlock
        rows = await connection.execute_fetchall("SELECT 1")
    assert [tuple(r) for r in rows] == [(1,)]
