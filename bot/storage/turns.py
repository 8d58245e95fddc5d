"""The turn journal: which turns are in flight, so a crash mid-reply is reported after restart.

Each turn carries the run id of the process that began it (``ProcessState.run_id``): on start, only
turns an *earlier* run left running are interrupted ones; this run's own turns, begun the moment the
gateway connected, are alive. (With several processes on one database, a run id is also the key that
tells a dead process's turns from a live neighbour's: see `bot.storage.runs`.)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from bot.storage.database import Database
from bot.storage.runs import DISCORD_SHARD_SHIFT, RUN_DEAD_AFTER_S, RunRegistry, ShardSet
from bot.storage.usage import DM_GUILD_ID, utc_day

TurnStatus = Literal["running", "completed", "failed", "cancelled", "interrupted"]


@dataclass(frozen=True, slots=True)
class InterruptedTurn:
    turn_id: int
    conversation_key: str
    guild_id: int | None
    channel_id: int
    user_id: int
    message_id: int | None
    started_at: float


FINISH_TURN_SQL = "UPDATE turns SET status = ?, finished_at = ? WHERE id = ?"
TOUCH_CONVERSATION_SQL = (
    "UPDATE conversations SET last_active_at = ?"
    " WHERE key = (SELECT conversation_key FROM turns WHERE id = ?)"
)
# Parameters: day, input_tokens, output_tokens, turn id. The guild and user come from the turn's row.
ADD_TURN_USAGE_SQL = (
    "INSERT INTO usage_daily (day, guild_id, user_id, input_tokens, output_tokens, turns)"
    f" SELECT ?, COALESCE(guild_id, {DM_GUILD_ID}), user_id, ?, ?, 1 FROM turns WHERE id = ?"
    " ON CONFLICT (day, guild_id, user_id) DO UPDATE SET"
    " input_tokens = usage_daily.input_tokens + excluded.input_tokens,"
    " output_tokens = usage_daily.output_tokens + excluded.output_tokens, turns = usage_daily.turns + 1"
)


@dataclass(slots=True)
class _Finish:
    turn_id: int
    status: TurnStatus
    finished_at: float
    input_tokens: int
    output_tokens: int
    written: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TurnJournal:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._runs = RunRegistry(db)
        self._finishing: list[_Finish] = []
        self._writer: asyncio.Task[None] | None = None

    async def start(
        self,
        *,
        conversation_key: str,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        message_id: int | None,
        run_id: str,
    ) -> int:
        """Journal a turn as running, begun by the process run ``run_id``; returns its id."""
        async with self._db.autocommit() as connection:
            return await connection.execute_insert(  # the insert and its row id in one round trip
                "INSERT INTO turns (conversation_key, guild_id, channel_id, user_id, message_id, status,"
                " started_at, run_id) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (conversation_key, guild_id, channel_id, user_id, message_id, time.time(), run_id),
            )

    async def finish(
        self, turn_id: int, status: TurnStatus, *, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        """Close the turn, count its tokens and mark its conversation active, all in one transaction.

        Turns that end together share that transaction (a group commit): with hundreds of replies
        ending at once, one transaction each held the database, and every turn starting meanwhile,
        for seconds. Returns once this turn's transaction is committed.
        """
        finish = _Finish(turn_id, status, time.time(), input_tokens, output_tokens)
        self._finishing.append(finish)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_finished())
        await finish.written

    async def _write_finished(self) -> None:
        """Write the turns that ended, a batch per transaction, until none is left."""
        while self._finishing:
            batch, self._finishing = self._finishing, []
            day = utc_day()
            try:
                async with self._db.transaction() as connection:
                    await connection.executemany(
                        FINISH_TURN_SQL, [(f.status, f.finished_at, f.turn_id) for f in batch]
                    )
                    await connection.executemany(
                        TOUCH_CONVERSATION_SQL, [(f.finished_at, f.turn_id) for f in batch]
                    )
                    counted = [f for f in batch if f.input_tokens or f.output_tokens]
                    if counted:
                        await connection.executemany(
                            ADD_TURN_USAGE_SQL,
                            [(day, f.input_tokens, f.output_tokens, f.turn_id) for f in counted],
                        )
            except BaseException as exc:
                for finish in batch:
                    if finish.written.done():
                        continue
                    if isinstance(exc, Exception):
                        finish.written.set_exception(exc)
                    else:
                        finish.written.cancel()  # the writer itself was cancelled (shutdown)
                if not isinstance(exc, Exception):
                    raise
            else:
                for finish in batch:
                    if not finish.written.done():
                        finish.written.set_result(None)

    async def take_interrupted(
        self,
        *,
        current_run: str | None = None,
        shards: ShardSet | None = None,
        dead_after_s: float = RUN_DEAD_AFTER_S,
    ) -> list[InterruptedTurn]:
        """Turns dead runs left running: marked interrupted and returned, once.

        ``current_run``: this process's run id, whose turns are alive and left alone (turns journalled
        before run ids existed count as earlier runs'). None takes every running turn: for a database
        no process is using. On a database several processes share (PostgreSQL), a run still alive
        (`RunRegistry.live`: not stopped, heartbeat within ``dead_after_s``, its lock held) keeps its
        turns too, and
        ``shards`` (this process's) limits the turns to the guilds it receives, so that the note
        reaches a channel it can see. One UPDATE ... RETURNING: two processes never take the same turn.
        """
        conditions = ["status = 'running'"]
        params: list[object] = [time.time()]
        if current_run is not None:
            conditions.append("run_id IS NOT ?")  # IS NOT: NULL counts as other
            params.append(current_run)
        if self._db.shared:
            alive = [run.run_id for run in await self._runs.live(dead_after_s=dead_after_s)]
            if alive:
                conditions.append(f"(run_id IS NULL OR run_id NOT IN ({', '.join('?' * len(alive))}))")
                params.extend(alive)
        if shards is not None and not shards.is_all:
            marks = ", ".join("?" * len(shards.ids))
            dms = " OR guild_id IS NULL" if 0 in shards.ids else ""
            conditions.append(f"(((guild_id >> {DISCORD_SHARD_SHIFT}) % ?) IN ({marks}){dms})")
            params.extend([shards.count, *sorted(shards.ids)])
        async with self._db.autocommit() as connection:
            rows = await connection.execute_fetchall(
                "UPDATE turns SET status = 'interrupted', finished_at = ?"
                f" WHERE {' AND '.join(conditions)} RETURNING *",
                params,
            )
        turns = [
            InterruptedTurn(
                turn_id=row["id"],
                conversation_key=row["conversation_key"],
                guild_id=row["guild_id"],
                channel_id=row["channel_id"],
                user_id=row["user_id"],
                message_id=row["message_id"],
                started_at=row["started_at"],
            )
            for row in rows
        ]
        return sorted(turns, key=lambda turn: turn.turn_id)

    async def status(self, turn_id: int) -> TurnStatus | None:
        async with self._db.read() as connection:
            cursor = await connection.execute("SELECT status FROM turns WHERE id = ?", (turn_id,))
            row = await cursor.fetchone()
        return row["status"] if row else None
