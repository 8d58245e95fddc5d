"""A guild's knowledge: entries (what someone asked the bot to remember) and their embedded chunks.

Vectors are stored as little-endian float32 BLOBs next to their text, tagged through their entry with
the embedding model and dimensions, so vectors of different spaces are never loaded together. An entry
made from a file keeps the file's type, size and page count; each of its chunks its page and headings,
so a passage is cited as "handbook.pdf, p. 12 (Safety › Fire exits)" (by the page's printed label where
the PDF has labels).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from bot.storage.database import Database, Row

_ENTRY_COLUMNS = (
    "id, guild_id, author_id, title, source, jump_url, model, dims, chunk_count, created_at,"
    " file_type, file_bytes, page_count"
)


@dataclass(frozen=True, slots=True)
class KnowledgeEntry:
    id: int
    guild_id: int
    author_id: int
    title: str
    source: str
    jump_url: str | None
    model: str
    dims: int
    chunk_count: int
    created_at: float
    file_type: str | None = None  # pdf | docx | markdown | html | text; None: a note given as text
    file_bytes: int | None = None
    page_count: int | None = None


@dataclass(frozen=True, slots=True)
class DocumentFile:
    """What an entry made from a file records about the file (its name is the entry's `source`)."""

    file_type: str
    file_bytes: int
    page_count: int | None = None


class NewChunk(NamedTuple):
    """A chunk to store: text, float32 vector bytes, and where in its document it was."""

    text: str
    vector: bytes
    page: int | None = None
    headings: tuple[str, ...] = ()
    page_label: str | None = None  # the page's printed number ("viii"), where the PDF has labels


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk's text with the entry it belongs to (for search results and citations)."""

    id: int
    ordinal: int
    text: str
    entry: KnowledgeEntry
    page: int | None = None
    headings: tuple[str, ...] = ()
    page_label: str | None = None


@dataclass(frozen=True, slots=True)
class VectorRows:
    """A page of one (guild, model, dims) space's vectors; `last_entry_id` is where the next starts."""

    chunk_ids: list[int]
    entry_ids: list[int]
    vectors: list[bytes]
    last_entry_id: int


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    """A model and dimension a guild has entries in, and how many."""

    model: str
    dims: int
    entries: int


def _entry(row: Row) -> KnowledgeEntry:
    return KnowledgeEntry(
        id=row["id"],
        guild_id=row["guild_id"],
        author_id=row["author_id"],
        title=row["title"],
        source=row["source"],
        jump_url=row["jump_url"],
        model=row["model"],
        dims=row["dims"],
        chunk_count=row["chunk_count"],
        created_at=row["created_at"],
        file_type=row["file_type"],
        file_bytes=row["file_bytes"],
        page_count=row["page_count"],
    )


def _headings(stored: str | None) -> tuple[str, ...]:
    return tuple(str(title) for title in json.loads(stored)) if stored else ()


class KnowledgeStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        *,
        guild_id: int,
        author_id: int,
        title: str,
        source: str,
        jump_url: str | None,
        model: str,
        dims: int,
        chunks: Sequence[tuple[str, bytes] | NewChunk],
        document: DocumentFile | None = None,
    ) -> tuple[KnowledgeEntry, list[int]]:
        """Store an entry and its chunks ((text, float32 vector) or `NewChunk`s with their page and
        headings) in one transaction; returns the chunk ids."""
        rows = [NewChunk(*chunk) for chunk in chunks]
        if any(len(row.vector) != dims * 4 for row in rows):
            raise ValueError(f"every vector must have {dims} float32 values")
        file_type, file_bytes, page_count = (
            (document.file_type, document.file_bytes, document.page_count) if document else (None, None, None)
        )
        now = time.time()
        async with self._db.transaction() as connection:
            entry_id = await connection.execute_insert(
                "INSERT INTO knowledge_entries (guild_id, author_id, title, source, jump_url, model, dims,"
                " chunk_count, created_at, file_type, file_bytes, page_count)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    author_id,
                    title,
                    source,
                    jump_url,
                    model,
                    dims,
                    len(rows),
                    now,
                    file_type,
                    file_bytes,
                    page_count,
                ),
            )
            await connection.executemany(
                "INSERT INTO knowledge_chunks (entry_id, ordinal, text, vector, page, headings, page_label)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        entry_id,
                        ordinal,
                        row.text,
                        row.vector,
                        row.page,
                        json.dumps(list(row.headings), ensure_ascii=False) if row.headings else None,
                        row.page_label,
                    )
                    for ordinal, row in enumerate(rows)
                ],
            )
            cursor = await connection.execute(
                "SELECT id FROM knowledge_chunks WHERE entry_id = ? ORDER BY ordinal", (entry_id,)
            )
            chunk_ids = [row[0] for row in await cursor.fetchall()]
        entry = KnowledgeEntry(
            entry_id,
            guild_id,
            author_id,
            title,
            source,
            jump_url,
            model,
            dims,
            len(rows),
            now,
            file_type,
            file_bytes,
            page_count,
        )
        return entry, chunk_ids

    async def set_jump_url(self, entry_id: int, jump_url: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                "UPDATE knowledge_entries SET jump_url = ? WHERE id = ?", (jump_url, entry_id)
            )

    async def get(self, guild_id: int, entry_id: int) -> KnowledgeEntry | None:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM knowledge_entries WHERE guild_id = ? AND id = ?",
                (guild_id, entry_id),
            )
            row = await cursor.fetchone()
        return _entry(row) if row else None

    async def delete(self, guild_id: int, entry_id: int) -> KnowledgeEntry | None:
        """Remove an entry and (by cascade) its chunks; None if the guild has no such entry."""
        async with self._db.transaction() as connection:
            cursor = await connection.execute(
                f"DELETE FROM knowledge_entries WHERE guild_id = ? AND id = ? RETURNING {_ENTRY_COLUMNS}",
                (guild_id, entry_id),
            )
            row = await cursor.fetchone()
            await cursor.close()
        return _entry(row) if row else None

    async def entries(
        self, guild_id: int, *, author_id: int | None = None, matching: str = "", limit: int = 25
    ) -> list[KnowledgeEntry]:
        """Newest first; `author_id` keeps one member's entries, `matching` filters id or title."""
        where = "guild_id = ?"
        params: list[object] = [guild_id]
        if author_id is not None:
            where += " AND author_id = ?"
            params.append(author_id)
        if matching:
            where += " AND (CAST(id AS TEXT) LIKE ? ESCAPE '\\' OR title LIKE ? ESCAPE '\\')"
            pattern = "%" + matching.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [pattern, pattern]
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM knowledge_entries WHERE {where} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            )
            rows = await cursor.fetchall()
        return [_entry(row) for row in rows]

    async def spaces(self, guild_id: int) -> list[EmbeddingSpace]:
        """The (model, dims) pairs a guild has entries in, largest first."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT model, dims, COUNT(*) AS n FROM knowledge_entries WHERE guild_id = ?"
                " GROUP BY model, dims ORDER BY n DESC, model",
                (guild_id,),
            )
            rows = await cursor.fetchall()
        return [EmbeddingSpace(row["model"], row["dims"], row["n"]) for row in rows]

    async def vector_count(self, guild_id: int, model: str, dims: int) -> int:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT COALESCE(SUM(chunk_count), 0) FROM knowledge_entries"
                " WHERE guild_id = ? AND model = ? AND dims = ?",
                (guild_id, model, dims),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def vectors(
        self, guild_id: int, model: str, dims: int, *, after_entry_id: int = 0, entries: int = 100
    ) -> VectorRows:
        """The vectors of the next `entries` entries of a (guild, model, dims) space after `after_entry_id`.

        Paged by entry, in index order (no sort), so loading a large guild never holds the database
        for long; an empty page means the end.
        """
        space = "e.guild_id = ? AND e.model = ? AND e.dims = ?"
        async with self._db.read() as connection:
            cursor = await connection.execute(
                f"SELECT e.id FROM knowledge_entries AS e WHERE {space} AND e.id > ? ORDER BY e.id LIMIT ?",
                (guild_id, model, dims, after_entry_id, entries),
            )
            entry_ids = [row[0] for row in await cursor.fetchall()]
            if not entry_ids:
                return VectorRows([], [], [], after_entry_id)
            cursor = await connection.execute(
                "SELECT c.id, c.entry_id, c.vector FROM knowledge_entries AS e"
                f" JOIN knowledge_chunks AS c ON c.entry_id = e.id WHERE {space} AND e.id > ? AND e.id <= ?"
                " ORDER BY e.id, c.ordinal",
                (guild_id, model, dims, after_entry_id, entry_ids[-1]),
            )
            rows = await cursor.fetchall()
        return VectorRows(
            chunk_ids=[row[0] for row in rows],
            entry_ids=[row[1] for row in rows],
            vectors=[row[2] for row in rows],
            last_entry_id=entry_ids[-1],
        )

    async def chunks(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks with these ids, with their entries (missing ids are left out)."""
        if not chunk_ids:
            return {}
        marks = ", ".join("?" * len(chunk_ids))
        columns = ", ".join(f"e.{name.strip()} AS {name.strip()}" for name in _ENTRY_COLUMNS.split(","))
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT c.id AS chunk_id, c.ordinal, c.text, c.page, c.page_label,"
                f" c.headings AS chunk_headings, {columns}"
                " FROM knowledge_chunks AS c"
                f" JOIN knowledge_entries AS e ON e.id = c.entry_id WHERE c.id IN ({marks})",
                tuple(chunk_ids),
            )
            rows = await cursor.fetchall()
        return {
            row["chunk_id"]: StoredChunk(
                row["chunk_id"],
                row["ordinal"],
                row["text"],
                _entry(row),
                row["page"],
                _headings(row["chunk_headings"]),
                row["page_label"],
            )
            for row in rows
        }
