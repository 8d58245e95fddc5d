"""Which model-side conversation a Discord channel (thread or DM) is."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.storage.database import Database, Row


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    key: str
    backend: str
    conversation_id: str | None
    generation: int
    guild_id: int | None
    channel_id: int
    created_at: float
    last_active_at: float


def _record(row: Row) -> ConversationRecord:
    return ConversationRecord(
        key=row["key"],
        backend=row["backend"],
        conversation_id=row["conversation_id"],
        generation=row["generation"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        created_at=row["created_at"],
        last_active_at=row["last_active_at"],
    )


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> ConversationRecord | None:
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall("SELECT * FROM conversations WHERE key = ?", (key,))
        return next((_record(row) for row in rows), None)

    async def get_or_create(
        self, key: str, *, backend: str, guild_id: int | None, channel_id: int
    ) -> ConversationRecord:
        """The channel's conversation; a new one (no model-side id yet) on its first turn.

        A conversation made for another backend starts a fresh generation: the two keep history in
        different places and cannot continue each other. Every turn asks, and the conversation is
        nearly always there: that case is a single read, without a transaction.
        """
        existing = await self.get(key)
        if existing is not None and existing.backend == backend:
            return existing
        now = time.time()
        if existing is None:  # a new conversation: one statement, no transaction
            async with self._db.autocommit() as connection:
                cursor = await connection.execute(
                    "INSERT INTO conversations (key, backend, conversation_id, generation, guild_id,"
                    " channel_id, created_at, last_active_at) VALUES (?, ?, NULL, 1, ?, ?, ?, ?)"
                    " ON CONFLICT (key) DO NOTHING",
                    (key, backend, guild_id, channel_id, now, now),
                )
            if cursor.rowcount == 1:
                return ConversationRecord(key, backend, None, 1, guild_id, channel_id, now, now)
        async with self._db.transaction() as connection:
            cursor = await connection.execute("SELECT * FROM conversations WHERE key = ?", (key,))
            row = await cursor.fetchone()
            if row is None:
                await connection.execute(
                    "INSERT INTO conversations (key, backend, conversation_id, generation, guild_id,"
                    " channel_id, created_at, last_active_at) VALUES (?, ?, NULL, 1, ?, ?, ?, ?)",
                    (key, backend, guild_id, channel_id, now, now),
                )
                return ConversationRecord(key, backend, None, 1, guild_id, channel_id, now, now)
            record = _record(row)
            if record.backend == backend:
                return record
            await connection.execute(
                "UPDATE conversations SET backend = ?, conversation_id = NULL, generation = generation + 1,"
                " created_at = ?, last_active_at = ? WHERE key = ?",
                (backend, now, now, key),
            )
            return ConversationRecord(
                key, backend, None, record.generation + 1, guild_id, channel_id, now, now
            )

    async def set_conversation_id(self, key: str, generation: int, conversation_id: str) -> bool:
        """Remember the model-side id, unless the conversation was reset meanwhile."""
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "UPDATE conversations SET conversation_id = ? WHERE key = ? AND generation = ?",
                (conversation_id, key, generation),
            )
        return cursor.rowcount == 1

    async def touch(self, key: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                "UPDATE conversations SET last_active_at = ? WHERE key = ?", (time.time(), key)
            )

    async def reset(self, key: str) -> bool:
        """Start afresh: forget the model-side id and the local history of this channel."""
        async with self._db.transaction() as connection:
            cursor = await connection.execute(
                "UPDATE conversations SET conversation_id = NULL, generation = generation + 1,"
                " created_at = ?, last_active_at = ? WHERE key = ?",
                (time.time(), time.time(), key),
            )
            await connection.execute("DELETE FROM chat_messages WHERE conversation_key = ?", (key,))
            return cursor.rowcount == 1

    async def count(self) -> int:
        async with self._db.read() as connection:
            cursor = await connection.execute("SELECT COUNT(*) FROM conversations")
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
