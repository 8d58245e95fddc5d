"""The `chat` backend's message history (OpenAI's Conversations keep their own)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.storage.database import Database


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One Chat Completions message with the token estimate used for trimming."""

    payload: dict[str, Any]
    token_estimate: int


class HistoryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def recent(self, key: str, generation: int, *, token_budget: int) -> list[HistoryMessage]:
        """The newest messages that fit the budget, oldest first, starting at a user message.

        Starting at a user turn keeps tool messages with the assistant message that asked for them.
        """
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT role, payload, token_estimate FROM chat_messages"
                " WHERE conversation_key = ? AND generation = ? ORDER BY id DESC",
                (key, generation),
            )
            kept: list[tuple[str, HistoryMessage]] = []
            spent = 0
            async for row in cursor:
                if spent + row["token_estimate"] > token_budget:
                    break
                spent += row["token_estimate"]
                kept.append((row["role"], HistoryMessage(json.loads(row["payload"]), row["token_estimate"])))
            await cursor.close()
        kept.reverse()
        while kept and kept[0][0] != "user":
            kept.pop(0)
        return [message for _, message in kept]

    async def append_turn(
        self, key: str, generation: int, turn_id: int, messages: Sequence[HistoryMessage]
    ) -> None:
        """Store a whole successful turn at once: a failed turn leaves no trace."""
        now = time.time()
        async with self._db.transaction() as connection:
            await connection.executemany(
                "INSERT INTO chat_messages (conversation_key, generation, turn_id, role, payload,"
                " token_estimate, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        generation,
                        turn_id,
                        message.payload["role"],
                        json.dumps(message.payload, separators=(",", ":")),
                        message.token_estimate,
                        now,
                    )
                    for message in messages
                ],
            )

    async def count(self, key: str) -> int:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT COUNT(*) FROM chat_messages WHERE conversation_key = ?", (key,)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
