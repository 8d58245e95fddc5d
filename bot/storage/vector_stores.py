"""Each guild's OpenAI vector store (its id) and the files members added to it.

OpenAI holds the files and their vectors; this table is what the bot needs to show, list and forget
them without asking OpenAI: the entry number members see, the file's name, size, who added it, when,
and whether OpenAI has finished processing it. A store found deleted at OpenAI is marked lost by
dropping the guild's row (conversations then stop searching it); its file rows stay until the guild's
next store is made, which names them as files to add again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from bot.storage.database import Database, Row

VectorFileStatus = Literal["in_progress", "completed"]

_FILE_COLUMNS = "id, guild_id, store_id, file_id, filename, size_bytes, author_id, added_at, status"


@dataclass(frozen=True, slots=True)
class VectorStoreFileEntry:
    """One file in a guild's vector store; `id` is the entry number /forget takes."""

    id: int
    guild_id: int
    store_id: str
    file_id: str
    filename: str
    size_bytes: int
    author_id: int
    added_at: float
    status: VectorFileStatus


def _entry(row: Row) -> VectorStoreFileEntry:
    return VectorStoreFileEntry(
        id=row["id"],
        guild_id=row["guild_id"],
        store_id=row["store_id"],
        file_id=row["file_id"],
        filename=row["filename"],
        size_bytes=row["size_bytes"],
        author_id=row["author_id"],
        added_at=row["added_at"],
        status=row["status"],
    )


class VectorStoreRegistry:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_id(self, guild_id: int) -> str | None:
        """The guild's vector store, or None before its first file."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT store_id FROM vector_stores WHERE guild_id = ?", (guild_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else str(row["store_id"])

    async def claim_store(self, guild_id: int, store_id: str) -> str:
        """Record `store_id` as the guild's store unless it already has one; returns the one it has.

        Two processes creating a store at once both call this: the first wins, the other learns the
        winner's id (and deletes its own store at OpenAI).
        """
        async with self._db.transaction() as connection:
            await connection.execute(
                "INSERT INTO vector_stores (guild_id, store_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO NOTHING",
                (guild_id, store_id, time.time()),
            )
            cursor = await connection.execute(
                "SELECT store_id FROM vector_stores WHERE guild_id = ?", (guild_id,)
            )
            row = await cursor.fetchone()
        assert row is not None  # inserted or already there, in this transaction
        return str(row["store_id"])

    async def replace_store(
        self, guild_id: int, old_store_id: str, new_store_id: str
    ) -> list[VectorStoreFileEntry]:
        """The guild's store is now `new_store_id` (the old one is gone at OpenAI); the old store's
        file entries are removed and returned. Nothing changes if the guild's store is no longer
        `old_store_id` (another process replaced it first): returns [] then."""
        async with self._db.transaction() as connection:
            await connection.lock_key(f"vector_store:{guild_id}")
            cursor = await connection.execute(
                "UPDATE vector_stores SET store_id = ?, created_at = ? WHERE guild_id = ? AND store_id = ?",
                (new_store_id, time.time(), guild_id, old_store_id),
            )
            if cursor.rowcount == 0:
                return []
            lost = await connection.execute_fetchall(
                f"SELECT {_FILE_COLUMNS} FROM vector_store_files WHERE guild_id = ? AND store_id = ?"
                " ORDER BY id",
                (guild_id, old_store_id),
            )
            await connection.execute(
                "DELETE FROM vector_store_files WHERE guild_id = ? AND store_id = ?", (guild_id, old_store_id)
            )
        return [_entry(row) for row in lost]

    async def mark_lost(self, guild_id: int, store_id: str) -> bool:
        """The guild's store `store_id` is confirmed gone at OpenAI: the guild has no store from now on
        (conversations stop asking file search to read it); its file entries stay as the record of
        what was lost, until `take_files_of_other_stores` hands them to the next store's first file.
        False if the guild's store is another one by now (replaced meanwhile)."""
        async with self._db.transaction() as connection:
            await connection.lock_key(f"vector_store:{guild_id}")
            cursor = await connection.execute(
                "DELETE FROM vector_stores WHERE guild_id = ? AND store_id = ?", (guild_id, store_id)
            )
            return bool(cursor.rowcount)

    async def take_files_of_other_stores(self, guild_id: int, store_id: str) -> list[VectorStoreFileEntry]:
        """Remove and return the guild's file entries that are not in `store_id` (the files of a store
        marked lost), oldest first."""
        async with self._db.transaction() as connection:
            await connection.lock_key(f"vector_store:{guild_id}")
            rows = await connection.execute_fetchall(
                "DELETE FROM vector_store_files WHERE guild_id = ? AND store_id <> ?"
                f" RETURNING {_FILE_COLUMNS}",
                (guild_id, store_id),
            )
        return sorted((_entry(row) for row in rows), key=lambda entry: entry.id)

    async def add_file(
        self,
        *,
        guild_id: int,
        store_id: str,
        file_id: str,
        filename: str,
        size_bytes: int,
        author_id: int,
        status: VectorFileStatus = "in_progress",
    ) -> VectorStoreFileEntry:
        now = time.time()
        async with self._db.transaction() as connection:
            entry_id = await connection.execute_insert(
                "INSERT INTO vector_store_files (guild_id, store_id, file_id, filename, size_bytes,"
                " author_id, added_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (guild_id, store_id, file_id, filename, size_bytes, author_id, now, status),
            )
        return VectorStoreFileEntry(
            entry_id, guild_id, store_id, file_id, filename, size_bytes, author_id, now, status
        )

    async def set_status(self, entry_id: int, status: VectorFileStatus) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                "UPDATE vector_store_files SET status = ? WHERE id = ?", (status, entry_id)
            )

    async def get_file(self, guild_id: int, entry_id: int) -> VectorStoreFileEntry | None:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT {_FILE_COLUMNS} FROM vector_store_files WHERE guild_id = ? AND id = ?",
                (guild_id, entry_id),
            )
            row = await cursor.fetchone()
        return None if row is None else _entry(row)

    async def file_by_openai_id(self, guild_id: int, file_id: str) -> VectorStoreFileEntry | None:
        """The entry of an OpenAI file id (what a search result or a citation names)."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT {_FILE_COLUMNS} FROM vector_store_files WHERE guild_id = ? AND file_id = ?"
                " ORDER BY id DESC",
                (guild_id, file_id),
            )
            row = await cursor.fetchone()
        return None if row is None else _entry(row)

    async def remove_file(self, guild_id: int, entry_id: int) -> VectorStoreFileEntry | None:
        """Delete one entry; None if it was not there (someone removed it meanwhile)."""
        async with self._db.transaction() as connection:
            rows = await connection.execute_fetchall(
                f"DELETE FROM vector_store_files WHERE guild_id = ? AND id = ? RETURNING {_FILE_COLUMNS}",
                (guild_id, entry_id),
            )
        return _entry(rows[0]) if rows else None

    async def file_count(self, guild_id: int) -> int:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT COUNT(*) FROM vector_store_files WHERE guild_id = ?", (guild_id,)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def files(
        self, guild_id: int, *, author_id: int | None = None, matching: str = "", limit: int = 25
    ) -> list[VectorStoreFileEntry]:
        """The guild's files, newest first: someone's own, or those whose name contains `matching`."""
        sql = f"SELECT {_FILE_COLUMNS} FROM vector_store_files WHERE guild_id = ?"
        params: list[object] = [guild_id]
        if author_id is not None:
            sql += " AND author_id = ?"
            params.append(author_id)
        if matching:
            sql += " AND (CAST(id AS TEXT) LIKE ? ESCAPE '\\' OR filename LIKE ? ESCAPE '\\')"
            pattern = "%" + matching.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [pattern, pattern]
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(sql, params)
        return [_entry(row) for row in rows]
