"""Settings changed by another process, told to this one: PostgreSQL's LISTEN/NOTIFY.

Each process keeps its guilds' settings in memory (`bot.guild_settings.SettingsCache`). A change is
written with `pg_notify('guild_settings', '<guild id>')` in its own transaction, so it is delivered at
commit (never for a change rolled back) to every listening process, the writer's own too. The
listener here, on a connection of its own, has its process forget that guild's copy, so the next
message there reads the database. Notifications sent while the listener's connection is down are lost:
so when it is lost every copy is forgotten, and forgotten again once it listens again (reconnecting
with a capped backoff, for as long as it takes). SQLite is one process: there is nothing to tell.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from bot.storage.database import Connection, Database, is_postgres_url

log = logging.getLogger(__name__)

CHANNEL = "guild_settings"
RECONNECT_FIRST_DELAY_S = 0.1
RECONNECT_MAX_DELAY_S = 30.0


def tells_other_processes(db: Database) -> bool:
    """Whether other processes may share this database (PostgreSQL) and must hear of changes."""
    return is_postgres_url(db.path)


async def notify_settings_changed(connection: Connection, guild_id: int) -> None:
    """Inside the change's transaction: every listening process hears of it at commit."""
    await connection.execute(f"SELECT pg_notify('{CHANNEL}', ?)", (str(guild_id),))


class SettingsChangeListener:
    """Listens on `guild_settings` and calls `changed(guild_id)`, or `missed()` when it may have missed some.

    `handled` and `connections` count what it did, and `wait_until` waits for them, for the tests.
    """

    def __init__(
        self,
        url: str,
        *,
        changed: Callable[[int], Awaitable[None]],
        missed: Callable[[], Awaitable[None]],
    ) -> None:
        self._url = url
        self._changed = changed
        self._missed = missed
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self.handled = 0
        """Notifications acted on."""
        self.connections = 0
        """Times it started listening (more than one: it reconnected)."""

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (for an operator, or a test, to find it)."""
        return None if self._connection is None else self._connection.info.backend_pid

    async def start(self) -> None:
        """Listen before returning, so every change committed from now on is heard."""
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="settings-change-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def wait_until(self, done: Callable[[SettingsChangeListener], bool]) -> None:
        """Until `done(self)` holds, checked after each notification and each (re)connection."""
        async with self._progress:
            await self._progress.wait_for(lambda: done(self))

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self.connections += 1

    async def _run(self) -> None:
        while True:
            assert self._connection is not None
            try:
                async for notification in self._connection.notifies():
                    await self._handle(notification.payload)
            except psycopg.OperationalError as exc:
                log.warning("Lost the settings listener's connection (%s); reconnecting", exc)
            await self._connection.close()
            self._connection = None
            await self._missed()  # copies cached meanwhile may miss a change: read the database again
            await self._reconnect()
            await self._missed()  # and those cached while nobody listened
            await self._tell()

    async def _reconnect(self) -> None:
        delay_s = RECONNECT_FIRST_DELAY_S
        while True:
            try:
                await self._listen()
            except psycopg.OperationalError as exc:
                log.warning("Settings listener cannot reconnect (%s); again in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)  # a retry's pace, not a wait for something to happen
                delay_s = min(delay_s * 2, RECONNECT_MAX_DELAY_S)
            else:
                log.info("Settings listener reconnected; every guild's settings will be read again")
                return

    async def _handle(self, payload: str) -> None:
        try:
            guild_id = int(payload)
        except ValueError:
            log.warning("Ignoring a %s notification that names no guild: %r", CHANNEL, payload[:40])
        else:
            await self._changed(guild_id)
        self.handled += 1
        await self._tell()

    async def _tell(self) -> None:
        async with self._progress:
            self._progress.notify_all()
