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
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.errors import DatabaseUnusableError, SchemaTooNewError
from bot.storage.migrations import LATEST_VERSION, MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
IN_MEMORY = ":memory:"


@dataclass(frozen=True)
class DatabaseStatus:
    """What `inspect_database` found at a path; `version` is None when the file is not there yet."""

    path: str
    version: int | None

    def describe(self) -> str:
        """One line for `python -m bot --check`."""
        if self.version is None:
            return f"{self.path} (not there yet: created at start, schema version {LATEST_VERSION})"
        if self.version < LATEST_VERSION:
            return f"{self.path} (schema version {self.version}: migrated to {LATEST_VERSION} at start)"
        return f"{self.path} (schema version {self.version}, current)"


def check_database_path(path: Path) -> None:
    """Raise `DatabaseUnusableError` if the bot could not create or write a database at `path`.

    Changes nothing (a test file in the folder is removed at once). SQLite itself only says "unable
    to open database file", and only once the bot is logged in to Discord; this names the path and
    what is wrong with it.
    """
    if path.is_dir():
        raise DatabaseUnusableError(str(path), "is a folder, not a database file")
    folder = path.parent
    existing = folder
    while not existing.exists():  # the nearest folder that is there (the rest is created at start)
        existing = existing.parent
    if not existing.is_dir():
        raise DatabaseUnusableError(str(path), f"its folder cannot be created: {existing} is a file")
    if existing != folder:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DatabaseUnusableError(
                str(path), f"its folder cannot be created: {existing} is not writable"
            )
    else:
        # Trying is the only sure test: permission bits say nothing for root, special file systems or ACLs.
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise DatabaseUnusableError(
                str(path),
                f"the folder {folder} is not writable ({exc.strerror}); SQLite writes its -wal file there",
            ) from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseUnusableError(str(path), "is read-only")


async def inspect_database(path: str | Path) -> DatabaseStatus:
    """Whether the bot could use the database at `path`, and its schema version, changing nothing.

    No folder or file is created and nothing is migrated: `--check` may run beside a running bot, and
    a migration under an older bot would break it. Raises `DatabaseUnusableError` or
    `SchemaTooNewError`.
    """
    path_text = str(path)
    read_only_uri = None if path_text == IN_MEMORY else _read_only_uri(Path(path_text))
    if read_only_uri is None:
        return DatabaseStatus(path_text, None)
    try:
        async with aiosqlite.connect(read_only_uri, uri=True) as connection:
            cursor = await connection.execute("PRAGMA user_version")
            row = await cursor.fetchone()
    except sqlite3.Error as exc:
        raise DatabaseUnusableError(path_text, f"cannot be opened ({exc})") from None
    version = int(row[0]) if row else 0
    if version > LATEST_VERSION:
        raise SchemaTooNewError(path_text, version, LATEST_VERSION)
    return DatabaseStatus(path_text, version)


def _read_only_uri(path: Path) -> str | None:
    """The URI that opens the database at `path` read-only; None if there is no file yet."""
    check_database_path(path)
    return path.resolve().as_uri() + "?mode=ro" if path.exists() else None


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
        """Open (creating if needed) and migrate; refuse a schema newer than this code knows.

        A path that cannot be opened or written raises `DatabaseUnusableError` naming it.
        """
        path_text = str(path)
        if path_text != IN_MEMORY:
            check_database_path(Path(path_text))
            try:
                Path(path_text).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnusableError(
                    path_text, f"its folder cannot be created ({exc.strerror})"
                ) from None
        try:
            connection = await aiosqlite.connect(path_text, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseUnusableError(path_text, f"cannot be opened ({exc})") from None
        connection.row_factory = aiosqlite.Row
        try:
            await connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            try:
                await connection.execute_fetchall("PRAGMA journal_mode=WAL")  # read: it ends the statement
                # A file SQLite could only open read-only fails here, not at the first write.
                await connection.execute("BEGIN IMMEDIATE")
                await connection.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise DatabaseUnusableError(path_text, f"cannot be opened for writing ({exc})") from None
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA foreign_keys=ON")
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
