"""The one database connection: SQLite (a file) or PostgreSQL (a URL), opening, migrations, transactions.

The stores are written once against `Connection`, the seam between the engines: statements in SQLite's
SQL with `?` placeholders, translated once for PostgreSQL by `bot.storage.dialect`; `execute_insert`
returns the new row's id (`lastrowid` on SQLite, `RETURNING id` on PostgreSQL); the schema version is
`PRAGMA user_version` on SQLite and the `schema_version` table on PostgreSQL.

All statements go through one connection, which runs them in the order they were sent. A
`transaction()` has the connection to itself from BEGIN to COMMIT; `read()` and `autocommit()` never run
inside another task's open transaction, but run alongside each other: each statement is a round trip
to the database, and with many turns at once, making them take turns (one lock hand-over per use, each
a pass of a busy event loop) was what held the turns up.

On PostgreSQL several processes share the database. A lost connection (a server restart) fails the
statement that met it with `DatabaseUnavailableError` (an open transaction is rolled back by the
server, never half-applied) and the next use reconnects, with a bounded backoff. `ConversationLocks`
keep one turn at a time per conversation across processes with advisory locks; those held on a lost
connection are gone with it (the process's own lanes still keep its turns apart).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import psycopg

from bot.errors import DatabaseUnavailableError, DatabaseUnusableError, SchemaTooNewError
from bot.storage.dialect import postgres_insert_returning_id, postgres_query, postgres_schema
from bot.storage.migrations import LATEST_VERSION, MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
IN_MEMORY = ":memory:"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
MIGRATION_LOCK_KEY = 0x626F745F736368  # any constant: PostgreSQL's advisory lock id for migrations
RECONNECT_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 14.5)
"""Before each attempt to connect again after the connection was lost: 30 s in all, then the use fails
(and the next use starts over)."""
CONNECT_TIMEOUT_S = 5


def advisory_lock_id(name: str) -> int:
    """PostgreSQL's 64-bit advisory lock id for `name`: the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def is_postgres_url(location: str | Path) -> bool:
    """Whether `BOT_DATABASE` / `[storage] database` names a PostgreSQL server rather than a file."""
    return str(location).startswith(POSTGRES_SCHEMES)


def display_location(location: str | Path) -> str:
    """The database as shown in logs and errors: a URL's password is left out."""
    text = str(location)
    if not is_postgres_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class NamedRow:
    """A PostgreSQL row read like an `sqlite3.Row`: by position or by column name."""

    __slots__ = ("_columns", "_values")

    def __init__(self, values: Sequence[Any], columns: dict[str, int]) -> None:
        self._values = values
        self._columns = columns

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._columns[key]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._columns)


Row: TypeAlias = sqlite3.Row | NamedRow


class Cursor(Protocol):
    """A statement's result, as both engines' cursors give it."""

    @property
    def rowcount(self) -> int: ...

    async def fetchone(self) -> Row | None: ...

    async def fetchall(self) -> Iterable[Row]: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[Row]: ...


class Connection(ABC):
    """What the stores use inside `Database.read()`, `autocommit()` and `transaction()`."""

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    @abstractmethod
    async def execute_insert(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run an INSERT of one row into a table with an `id` column; returns that id."""

    async def execute_fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        cursor = await self.execute(sql, params)
        return list(await cursor.fetchall())

    # The rest is `Database`'s own: transactions, the schema and its version.
    @abstractmethod
    async def begin(self) -> None: ...

    @abstractmethod
    async def commit(self) -> None: ...

    @abstractmethod
    async def rollback(self) -> None: ...

    @abstractmethod
    async def execute_schema(self, statement: str) -> None:
        """One migration statement (written for SQLite)."""

    @abstractmethod
    async def lock_schema(self) -> None:
        """Inside a transaction: keep other processes from migrating until it ends."""

    @abstractmethod
    async def lock_key(self, name: str) -> None:
        """Inside a transaction: wait for other processes' transactions holding the same key.

        Released at commit or rollback. What a check-then-write holds so that two processes cannot
        both pass the check (PostgreSQL's READ COMMITTED lets them; SQLite's BEGIN IMMEDIATE cannot).
        """

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def set_schema_version(self, version: int) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class _SqliteConnection(Connection):
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return await self._connection.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._connection.executemany(sql, rows)

    async def execute_insert(self, sql: str, params: Sequence[object] = ()) -> int:
        cursor = await self._connection.execute(sql, params)  # lastrowid: no second round trip
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def execute_fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return list(await self._connection.execute_fetchall(sql, params))

    async def begin(self) -> None:
        await self._connection.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write

    async def commit(self) -> None:
        await self._connection.execute("COMMIT")

    async def rollback(self) -> None:
        await self._connection.execute("ROLLBACK")

    async def execute_schema(self, statement: str) -> None:
        await self._connection.execute(statement)

    async def lock_schema(self) -> None:
        """BEGIN IMMEDIATE already holds SQLite's one write lock."""

    async def lock_key(self, name: str) -> None:
        """BEGIN IMMEDIATE already holds SQLite's one write lock."""

    async def schema_version(self) -> int:
        cursor = await self._connection.execute("PRAGMA user_version")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def set_schema_version(self, version: int) -> None:
        await self._connection.execute(f"PRAGMA user_version={int(version)}")

    async def close(self) -> None:
        await self._connection.close()


def _named_rows(cursor: psycopg.AsyncCursor[Any]) -> psycopg.rows.RowMaker[NamedRow]:
    columns = {column.name: index for index, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> NamedRow:
        return NamedRow(values, columns)

    return make


PostgresDriverConnection: TypeAlias = psycopg.AsyncConnection[NamedRow]


class _PostgresConnection(Connection):
    """The shared connection: reconnected at the next use after it was lost, never inside a transaction."""

    def __init__(self, connection: PostgresDriverConnection, url: str) -> None:
        self._connection = connection
        self.url = url
        self._translated: dict[str, str] = {}
        """Each distinct statement is translated once."""
        self._in_transaction = False
        self._closed = False
        self._reconnecting = asyncio.Lock()
        self._lost_at: float | None = None
        """When the outage began (monotonic): logged once when it begins and once when it ends."""
        self.session = 0
        """Bumped at each reconnection: session-level advisory locks of an earlier session are gone."""
        self.process_locks: set[int] = set()
        """Session-level advisory locks held while the process runs: taken again on each new session."""

    def _postgres(self, sql: str) -> str:
        translated = self._translated.get(sql)
        if translated is None:
            translated = self._translated[sql] = postgres_query(sql)
        return translated

    @asynccontextmanager
    async def _using(self) -> AsyncIterator[PostgresDriverConnection]:
        """The live connection; a statement that meets a lost connection raises DatabaseUnavailableError."""
        connection = self._connection
        if connection.closed:
            if self._in_transaction or self._closed:  # a transaction never goes on in another session
                raise DatabaseUnavailableError()
            connection = await self._reconnect()
        try:
            yield connection
        except psycopg.Error as exc:
            if not connection.closed:
                raise
            self._note_lost(exc)
            raise DatabaseUnavailableError() from exc

    def _note_lost(self, exc: BaseException) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning("Lost the connection to the database (%s); reconnecting at the next use", exc)

    async def _reconnect(self) -> PostgresDriverConnection:
        """A new session, tried a few times with growing waits; DatabaseUnavailableError if none comes."""
        async with self._reconnecting:
            if not self._connection.closed:  # another task reconnected meanwhile
                return self._connection
            self._note_lost(psycopg.OperationalError("connection closed"))
            problem: psycopg.Error | None = None
            for attempt, delay_s in enumerate(RECONNECT_DELAYS_S, start=1):
                if delay_s:
                    await asyncio.sleep(delay_s)  # a backoff timer between attempts, not a wait for a state
                try:
                    connection = await self._new_session()
                except psycopg.Error as exc:
                    problem = exc
                    log.debug("Reconnecting to the database: attempt %d failed (%s)", attempt, exc)
                    continue
                self._connection = connection
                self.session += 1
                lost_for_s = time.monotonic() - (self._lost_at or time.monotonic())
                self._lost_at = None
                log.info("Reconnected to the database after %.1f s", lost_for_s)
                return connection
            raise DatabaseUnavailableError() from problem

    async def _new_session(self) -> PostgresDriverConnection:
        """A connection holding this process's locks again (the old session's went with it)."""
        connection = await _connect_driver(self.url)
        try:
            for lock_id in sorted(self.process_locks):
                await connection.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        except BaseException:
            await connection.close()
            raise
        return connection

    async def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        async with self._using() as connection:
            return await connection.execute(self._postgres(sql), params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        async with self._using() as connection, connection.cursor() as cursor:
            await cursor.executemany(self._postgres(sql), rows)

    async def execute_insert(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._using() as connection:
            cursor = await connection.execute(postgres_insert_returning_id(sql), params)
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def begin(self) -> None:
        async with self._using() as connection:
            await connection.execute("BEGIN")
        self._in_transaction = True

    async def commit(self) -> None:
        try:
            async with self._using() as connection:
                await connection.execute("COMMIT")
        finally:
            self._in_transaction = False

    async def rollback(self) -> None:
        """Nothing to say on a lost connection: the server rolled the transaction back with its session."""
        self._in_transaction = False
        connection = self._connection
        if connection.closed:
            return
        try:
            await connection.execute("ROLLBACK")
        except psycopg.Error as exc:
            if not connection.closed:
                raise
            self._note_lost(exc)

    async def execute_schema(self, statement: str) -> None:
        async with self._using() as connection:
            await connection.execute(postgres_query(postgres_schema(statement)))

    async def lock_schema(self) -> None:
        async with self._using() as connection:
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))

    async def lock_key(self, name: str) -> None:
        async with self._using() as connection:
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_lock_id(name),))

    async def schema_version(self) -> int:
        async with self._using() as connection:
            return await postgres_schema_version(connection)

    async def set_schema_version(self, version: int) -> None:
        async with self._using() as connection:
            await connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            await connection.execute("DELETE FROM schema_version")
            await connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    async def close(self) -> None:
        self._closed = True
        await self._connection.close()


async def postgres_schema_version(connection: psycopg.AsyncConnection[Any]) -> int:
    """The version in the `schema_version` table; 0 for a database the bot never migrated."""
    cursor = await connection.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    exists = await cursor.fetchone()
    if not exists or not exists[0]:
        return 0
    cursor = await connection.execute("SELECT max(version) FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def _connect_driver(url: str) -> PostgresDriverConnection:
    """Connect in autocommit mode (`Database` says BEGIN and COMMIT itself) with rows read by name."""
    return await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=_named_rows, connect_timeout=CONNECT_TIMEOUT_S
    )


async def _connect_postgres(url: str) -> PostgresDriverConnection:
    """`_connect_driver`, for the start: a server that cannot be reached is one line for the owner."""
    try:
        return await _connect_driver(url)
    except psycopg.Error as exc:
        raise DatabaseUnusableError(display_location(url), f"cannot be connected to ({exc})") from None


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

    No folder, file or table is created and nothing is migrated: `--check` may run beside a running
    bot, and a migration under an older bot would break it. Raises `DatabaseUnusableError` or
    `SchemaTooNewError`.
    """
    path_text = str(path)
    if is_postgres_url(path_text):
        shown = display_location(path_text)
        server = await _connect_postgres(path_text)
        try:
            version = await postgres_schema_version(server)
        except psycopg.Error as exc:
            raise DatabaseUnusableError(shown, f"cannot be read ({exc})") from None
        finally:
            await server.close()
        if version > LATEST_VERSION:
            raise SchemaTooNewError(shown, version, LATEST_VERSION)
        return DatabaseStatus(shown, version)
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
    """A migrated database, SQLite or PostgreSQL; `Storage` builds its stores on top of it."""

    def __init__(self, connection: Connection, path: str) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        """Held by a transaction from start to end, and for an instant by each read to get in."""
        self._sharing = 0
        self._unshared = asyncio.Event()
        self._unshared.set()
        self.path = path
        """Where the database is, as shown to people (a URL without its password)."""
        self.conversation_locks = ConversationLocks(self)

    @property
    def shared(self) -> bool:
        """Whether other processes may use this database too (PostgreSQL; an SQLite file has one)."""
        return isinstance(self._connection, _PostgresConnection)

    async def hold_while_open(self, name: str) -> None:
        """PostgreSQL: hold the advisory lock `name` on the shared session until this database closes
        (taken again after a reconnection), so that other processes can tell this one is alive: the
        server lets go the moment the process dies. Nothing on SQLite."""
        connection = self._connection
        if not isinstance(connection, _PostgresConnection):
            return
        lock_id = advisory_lock_id(name)
        async with self.autocommit() as shared:
            await shared.execute("SELECT pg_advisory_lock(?)", (lock_id,))
        connection.process_locks.add(lock_id)

    async def held_anywhere(self, names: Iterable[str]) -> set[str]:
        """Which of the advisory locks `names` some session holds now (PostgreSQL); all of them on SQLite."""
        wanted = {advisory_lock_id(name): name for name in names}
        if not self.shared or not wanted:
            return set(wanted.values())
        async with self.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
                " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        return {wanted[row[0]] for row in rows if row[0] in wanted}

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating if needed) and migrate; refuse a schema newer than this code knows.

        `path` is an SQLite file or a `postgresql://` URL. A database that cannot be opened or written
        raises `DatabaseUnusableError` naming it.
        """
        path_text = str(path)
        if is_postgres_url(path_text):
            connection: Connection = _PostgresConnection(await _connect_postgres(path_text), path_text)
        else:
            connection = _SqliteConnection(await _open_sqlite(path_text))
        try:
            database = cls(connection, display_location(path_text))
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
            return await connection.schema_version()

    async def _migrate(self) -> None:
        """Apply the migrations this database has not had, each in a transaction with its version.

        The version is read again under the migration lock: another process may have migrated first.
        """
        if await self._connection.schema_version() > LATEST_VERSION:
            raise SchemaTooNewError(self.path, await self._connection.schema_version(), LATEST_VERSION)
        for migration in MIGRATIONS:
            async with self.transaction() as connection:
                await connection.lock_schema()
                current = await connection.schema_version()
                if current > LATEST_VERSION:
                    raise SchemaTooNewError(self.path, current, LATEST_VERSION)
                if migration.version <= current:
                    continue
                log.info("Migrating database to version %d: %s", migration.version, migration.description)
                for statement in _statements(migration.sql):
                    await connection.execute_schema(statement)
                await connection.set_schema_version(migration.version)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One atomic unit of writes: all of it lands, or none of it does."""
        async with self._lock:
            await self._unshared.wait()  # the reads already under way end first
            await self._connection.begin()
            try:
                yield self._connection
            except BaseException:
                await self._connection.rollback()
                raise
            await self._connection.commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
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
    async def autocommit(self) -> AsyncIterator[Connection]:
        """One write statement, atomic on its own, without BEGIN and COMMIT (two more round trips).

        Like `read()`, it never runs inside another task's transaction.
        """
        async with self.read() as connection:
            yield connection


class HeldConversation(Protocol):
    """A conversation held by this process until `release` (safe to call after the connection was lost)."""

    async def release(self) -> None: ...


class _NothingHeld:
    """SQLite: one process, whose lanes are the whole lock."""

    async def release(self) -> None:
        return None


NOTHING_HELD = _NothingHeld()


class _HeldOnSharedSession:
    def __init__(self, database: Database, connection: _PostgresConnection, lock_id: int) -> None:
        self._database = database
        self._connection = connection
        self._session = connection.session
        self._lock_id = lock_id

    async def release(self) -> None:
        # Shielded: an unlock cut short would leave the lock held by the shared session for good.
        await asyncio.shield(self._unlock())

    async def _unlock(self) -> None:
        if self._connection.session != self._session:
            return  # that session is gone, and its locks with it
        try:
            async with self._database.autocommit() as connection:
                await connection.execute("SELECT pg_advisory_unlock(?)", (self._lock_id,))
        except DatabaseUnavailableError:
            pass  # lost with the session


class _HeldOnOwnSession:
    def __init__(self, connection: PostgresDriverConnection, lock_id: int) -> None:
        self._connection = connection
        self._lock_id = lock_id

    async def release(self) -> None:
        await asyncio.shield(self._unlock())

    async def _unlock(self) -> None:
        """Unlocked before the session closes: the server ends a closed session a moment later, and the
        next turn here would find the conversation still held."""
        try:
            await self._connection.execute("SELECT pg_advisory_unlock(%s)", (self._lock_id,))
        except psycopg.Error:
            pass  # a lost session: its lock went with it
        finally:
            await self._connection.close()


class ConversationLocks:
    """One turn at a time per conversation across processes: a PostgreSQL advisory lock per
    conversation key, held by the process running its turn; nothing to do on SQLite.

    The uncontended case is one statement on the shared connection (and one to release). A process
    that must wait does so on a session of its own, so that the shared connection, which every other
    statement of the process uses, is never held up by a waiting lock. A lock's session lost (a server
    restart) takes the lock with it; this process's lanes still keep its own turns apart.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    async def try_hold(self, key: str) -> HeldConversation | None:
        """Hold the conversation now, or None if another process holds it."""
        connection = self._database._connection
        if not isinstance(connection, _PostgresConnection):
            return NOTHING_HELD
        lock_id = conversation_lock_id(key)
        async with self._database.autocommit() as shared:
            cursor = await shared.execute("SELECT pg_try_advisory_lock(?)", (lock_id,))
            row = await cursor.fetchone()
        if row is None or not row[0]:
            return None
        return _HeldOnSharedSession(self._database, connection, lock_id)

    async def hold(self, key: str) -> HeldConversation:
        """Wait (on a session of its own) until the conversation is this process's, and hold it."""
        connection = self._database._connection
        if not isinstance(connection, _PostgresConnection):
            return NOTHING_HELD
        try:
            waiter = await _connect_driver(connection.url)
        except psycopg.Error as exc:
            raise DatabaseUnavailableError() from exc
        lock_id = conversation_lock_id(key)
        try:
            # Cancelled, psycopg cancels the wait on the server; closing the session drops the lock anyway.
            await waiter.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        except BaseException as exc:
            await waiter.close()
            if isinstance(exc, psycopg.Error):
                raise DatabaseUnavailableError() from exc
            raise
        return _HeldOnOwnSession(waiter, lock_id)


def conversation_lock_id(key: str) -> int:
    """The advisory lock of a conversation, apart from `Connection.lock_key`'s names."""
    return advisory_lock_id(f"conversation-lane:{key}")


async def _open_sqlite(path_text: str) -> aiosqlite.Connection:
    """Open the SQLite file (its folder created if needed) in WAL mode, checked to be writable."""
    if path_text != IN_MEMORY:
        check_database_path(Path(path_text))
        try:
            Path(path_text).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnusableError(path_text, f"its folder cannot be created ({exc.strerror})") from None
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
    except BaseException:
        await connection.close()
        raise
    return connection


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
