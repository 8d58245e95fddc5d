"""The files a conversation gave OpenAI: uploaded attachments its code interpreter can read again.

Kept per conversation and generation, so a later turn ("now make the bars red") still hands the
container the conversation's files, and /reset (a new generation) forgets them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.storage.database import Database


@dataclass(frozen=True, slots=True)
class ConversationFile:
    """One uploaded attachment: OpenAI's file id and what the person attached."""

    file_id: str
    filename: str
    size_bytes: int
    uploaded_at: float


class ConversationFileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, key: str, generation: int, file_id: str, filename: str, size_bytes: int) -> None:
        async with self._db.autocommit() as connection:
            await connection.execute(
                "INSERT INTO conversation_files (conversation_key, generation, file_id, filename,"
                " size_bytes, uploaded_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key, generation, file_id, filename, size_bytes, time.time()),
            )

    async def prune(self, *, older_than_s: float) -> int:
        """Forget files uploaded more than `older_than_s` ago (expired at OpenAI); returns how many."""
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "DELETE FROM conversation_files WHERE uploaded_at < ?", (time.time() - older_than_s,)
            )
            return cursor.rowcount

    async def newest(self, key: str, generation: int, limit: int) -> list[ConversationFile]:
        """The conversation's newest `limit` files, oldest of them first; of files with the same name
        only the newest (the container holds each at /mnt/data/<name>: a second would shadow it)."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT file_id, filename, size_bytes, uploaded_at FROM conversation_files"
                " WHERE id IN (SELECT MAX(id) FROM conversation_files"
                " WHERE conversation_key = ? AND generation = ? GROUP BY filename)"
                " ORDER BY id DESC LIMIT ?",
                (key, generation, limit),
            )
        files = [
            ConversationFile(row["file_id"], row["filename"], row["size_bytes"], row["uploaded_at"])
            for row in rows
        ]
        files.reverse()
        return files
