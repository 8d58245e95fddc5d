"""The tool call ledger: a model's call id runs once, whatever retries or double clicks happen."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from bot.storage.database import Database


@dataclass(frozen=True, slots=True)
class CallClaim:
    """`new`: the caller runs it. `done`: it ran; here is its output. `running`: another run holds it."""

    state: Literal["new", "done", "running"]
    output: str | None = None


class ToolCallLedger:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, call_id: str, *, conversation_key: str, name: str) -> CallClaim:
        async with self._db.transaction() as connection:
            cursor = await connection.execute(
                "INSERT INTO tool_calls (call_id, conversation_key, name, status, created_at)"
                " VALUES (?, ?, ?, 'running', ?) ON CONFLICT (call_id) DO NOTHING",
                (call_id, conversation_key, name, time.time()),
            )
            if cursor.rowcount == 1:
                return CallClaim("new")
            cursor = await connection.execute(
                "SELECT status, output FROM tool_calls WHERE call_id = ?", (call_id,)
            )
            row = await cursor.fetchone()
        assert row is not None
        if row["status"] == "done":
            return CallClaim("done", row["output"])
        return CallClaim("running")

    async def complete(self, call_id: str, output: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                "UPDATE tool_calls SET status = 'done', output = ?, finished_at = ? WHERE call_id = ?",
                (output, time.time(), call_id),
            )

    async def output(self, call_id: str) -> str | None:
        """What a call that ran to its end returned; None if it never finished (or never started)."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT output FROM tool_calls WHERE call_id = ? AND status = 'done'", (call_id,)
            )
            row = await cursor.fetchone()
        return row["output"] if row else None

    async def release(self, call_id: str) -> None:
        """Forget a claim whose run did not happen (e.g. cancelled before it started)."""
        async with self._db.transaction() as connection:
            await connection.execute(
                "DELETE FROM tool_calls WHERE call_id = ? AND status = 'running'", (call_id,)
            )
