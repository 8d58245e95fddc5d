"""The turn journal: which turns are in flight, so a crash mid-reply is reported after restart."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from bot.storage.database import Database
from bot.storage.usage import ADD_USAGE_SQL, DM_GUILD_ID, utc_day

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


class TurnJournal:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(
        self,
        *,
        conversation_key: str,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        message_id: int | None,
    ) -> int:
        async with self._db.transaction() as connection:
            cursor = await connection.execute(
                "INSERT INTO turns (conversation_key, guild_id, channel_id, user_id, message_id, status,"
                " started_at) VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (conversation_key, guild_id, channel_id, user_id, message_id, time.time()),
            )
            turn_id = cursor.lastrowid
        assert turn_id is not None
        return turn_id

    async def finish(
        self, turn_id: int, status: TurnStatus, *, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        """Close the turn, count its tokens and mark its conversation active, all in one transaction."""
        now = time.time()
        async with self._db.transaction() as connection:
            cursor = await connection.execute(
                "UPDATE turns SET status = ?, finished_at = ? WHERE id = ?"
                " RETURNING conversation_key, guild_id, user_id",
                (status, now, turn_id),
            )
            row = await cursor.fetchone()
            await cursor.close()
            if row is None:
                return
            await connection.execute(
                "UPDATE conversations SET last_active_at = ? WHERE key = ?", (now, row["conversation_key"])
            )
            if input_tokens or output_tokens:
                await connection.execute(
                    ADD_USAGE_SQL,
                    (utc_day(), row["guild_id"] or DM_GUILD_ID, row["user_id"], input_tokens, output_tokens),
                )

    async def take_interrupted(self) -> list[InterruptedTurn]:
        """Turns a previous process left running: marked interrupted and returned, once."""
        async with self._db.transaction() as connection:
            cursor = await connection.execute("SELECT * FROM turns WHERE status = 'running' ORDER BY id")
            rows = await cursor.fetchall()
            await connection.execute(
                "UPDATE turns SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
                (time.time(),),
            )
        return [
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

    async def status(self, turn_id: int) -> TurnStatus | None:
        async with self._db.read() as connection:
            cursor = await connection.execute("SELECT status FROM turns WHERE id = ?", (turn_id,))
            row = await cursor.fetchone()
        return row["status"] if row else None
