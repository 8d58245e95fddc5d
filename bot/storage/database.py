"""The one SQLite connection: opening, WAL, migrations, and transactions.

All statements go through one aiosqlite connection (one writer thread, which runs them in the order
they were sent). A `transaction()` has the connection to itself from BEGIN to COMMIT; `read()` and
`autocommit()` never run inside another task's open transaction, but run alongside each other: each
statement is a round trip to the database thread, and with many turns at once, making them take turns
(one lock hand-over per use, each a pass of a busy event loop) was what held the turns up.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from bot.errors import SchemaTooNewError
from bot.storage.migrations import LATEST_VERSION, MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


class Database:
    """A migrated SQLite database; `Storage` builds its stores on top of it."""

    def __init__(self, connection: aiosqlite.Connection, path: str) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        """Held by a transaction from start to end, and for an instant by each read to get in."""
        self._sharing = 0
        self._unshared = asyncio.Event()
        self._unshared.set()
        self.path = path

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating if needed) and migrate; refuse a schema newer than this code knows."""
        path_text = str(path)
        if path_text != ":memory:":
            Path(path_text).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path_text, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA foreign_keys=ON")
            await connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            database = cls(connection, path_text)
            await database._migrate()
        except BaseException:
            await connection.close()
            raise
        return database

    async def close(self) -> None:
        async with self._lock:
            await self._unshared.wait()
            await self._connection.close()

    async def schema_version(self) -> int:
        async with self.read() as connection:
            cursor = await connection.execute("PRAGMA user_version")
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        cursor = await self._connection.execute("PRAGMA user_version")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST_VERSION:
            raise SchemaTooNewError(self.path, current, LATEST_VERSION)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            log.info("Migrating database to version %d: %s", migration.version, migration.description)
            async with self.transaction() as connection:
                for statement in _statements(migration.sql):
                    await connection.execute(statement)
                await connection.execute(f"PRAGMA user_version={migration.version}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One atomic unit of writes: all of it lands, or none of it does."""
        async with self._lock:
            await self._unshared.wait()  # the reads already under way end first
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """Reads, never interleaved with another task's open transaction (other reads may interleave)."""
        async with self._lock:  # no transaction is open once we have it; we let go at once
            self._sharing += 1
            self._unshared.clear()
        try:
            yield self._connection
        finally:
            self._sharing -= 1
            if not self._sharing:
                self._unshared.set()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write statement, atomic on its own, without BEGIN and COMMIT (two more round trips).

        Like `read()`, it never runs inside another task's transaction.
        """
        async with self.read() as connection:
            yield connection


def _statements(script: str) -> list[str]:
    """Split a migration script into statements, as SQLite itself would (comments may hold ';')."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete statement in migration: {buffer.strip()[:80]}")
    return statements
