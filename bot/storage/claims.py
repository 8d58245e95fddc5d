"""Who answers a message: the first process to claim it, when several receive the same one.

Two processes that connect overlapping shards (a deployment mistake) both receive each message of those
guilds; a claim keyed by the message id, taken before anything is written to Discord, lets exactly one
of them answer. Slash commands and autocompletes are claimed the same way, by their interaction id
(Discord's ids are unique across messages and interactions, so they share the table). On SQLite (one
process) a claim always wins; it costs one INSERT.
"""

from __future__ import annotations

import time

from bot.storage.database import Database

CLAIM_KEPT_S = 24 * 3600
"""How long a claim is kept: Discord redelivers a message only within a gateway session's resume."""


class MessageClaims:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, message_id: int, run_id: str) -> bool:
        """Whether this run (`run_id`) answers the message; False if another run claimed it first.

        Claiming again from the same run is True again, so that a claim whose answer was lost with the
        connection can be retried.
        """
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "INSERT INTO message_claims (message_id, run_id, claimed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (message_id) DO NOTHING",
                (message_id, run_id, time.time()),
            )
            if cursor.rowcount == 1:
                return True
            cursor = await connection.execute(
                "SELECT run_id FROM message_claims WHERE message_id = ?", (message_id,)
            )
            row = await cursor.fetchone()
        return row is not None and row["run_id"] == run_id

    async def prune(self, *, older_than_s: float = CLAIM_KEPT_S) -> int:
        """Forget claims older than `older_than_s`; returns how many."""
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "DELETE FROM message_claims WHERE claimed_at < ?", (time.time() - older_than_s,)
            )
            return cursor.rowcount
