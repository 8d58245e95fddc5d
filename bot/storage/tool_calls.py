"""The tool call ledger: a model's call id runs once, whatever retries, double clicks or processes happen.

A claim is one `INSERT ... ON CONFLICT DO NOTHING` on the call id (the primary key), so among claimers
in any number of processes exactly one gets `new`; the others wait for it on the key's row lock and
then read what it left (`running`, or `done` with the output). A claim still `running` after
`ABANDONED_AFTER_S` was left by a process that stopped mid-call (every run, confirmation wait included,
ends long before). Whether such a call ran is unknown, so only a caller that says running it again is
harmless (a read-only tool) takes it over; the others get `abandoned`, and nothing with an effect
(a booking, a ride) is ever done twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from bot.storage.database import Connection, Database

ABANDONED_AFTER_S = 15 * 60.0
"""A claim older than this, still running, belongs to a process that stopped (a confirmation waits 2 min)."""
CLAIM_ATTEMPTS = 3
"""A claim whose row vanished between our insert and read (released meanwhile) is tried again."""


@dataclass(frozen=True, slots=True)
class CallClaim:
    """`new`: the caller runs it. `done`: it ran; here is its output. `running`: another run holds it.

    `abandoned`: a run that stopped long ago held it; whether its effect happened is unknown.
    """

    state: Literal["new", "done", "running", "abandoned"]
    output: str | None = None


class ToolCallLedger:
    def __init__(self, db: Database, *, abandoned_after_s: float = ABANDONED_AFTER_S) -> None:
        self._db = db
        self._abandoned_after_s = abandoned_after_s

    async def claim(
        self, call_id: str, *, conversation_key: str, name: str, take_over_abandoned: bool = False
    ) -> CallClaim:
        """Claim `call_id` for this run; `take_over_abandoned` for calls that are harmless to run again."""
        for _ in range(CLAIM_ATTEMPTS):
            async with self._db.transaction() as connection:
                claim = await self._claim_once(
                    connection, call_id, conversation_key, name, take_over_abandoned
                )
            if claim is not None:
                return claim
        return CallClaim("running")  # claimed and released over and over: someone else is on it

    async def _claim_once(
        self,
        connection: Connection,
        call_id: str,
        conversation_key: str,
        name: str,
        take_over_abandoned: bool,
    ) -> CallClaim | None:
        now = time.time()
        cursor = await connection.execute(
            "INSERT INTO tool_calls (call_id, conversation_key, name, status, created_at)"
            " VALUES (?, ?, ?, 'running', ?) ON CONFLICT (call_id) DO NOTHING",
            (call_id, conversation_key, name, now),
        )
        if cursor.rowcount == 1:
            return CallClaim("new")
        cursor = await connection.execute(
            "SELECT status, output, created_at FROM tool_calls WHERE call_id = ?", (call_id,)
        )
        row = await cursor.fetchone()
        if row is None:  # PostgreSQL only: released after our insert saw it, before this read
            return None
        if row["status"] == "done":
            return CallClaim("done", row["output"])
        if row["created_at"] > now - self._abandoned_after_s:
            return CallClaim("running")
        if not take_over_abandoned:
            return CallClaim("abandoned")
        # Only one taker: the update holds the row and checks it is still the claim we judged abandoned.
        cursor = await connection.execute(
            "UPDATE tool_calls SET created_at = ?"
            " WHERE call_id = ? AND status = 'running' AND created_at = ?",
            (now, call_id, row["created_at"]),
        )
        return CallClaim("new") if cursor.rowcount == 1 else None

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
