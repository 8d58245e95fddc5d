"""The runs (bot processes) using the database, with the shards each connects, kept alive by a heartbeat.

Several processes share a PostgreSQL database, each connecting some of the Discord shards. A run is
registered at start (one warning if a live run claims a shard of ours: a deployment mistake, though the
message claims and conversation locks still keep a message from being answered twice), beats while it
runs and is marked stopped on a clean close. A run is alive while it is not stopped, its heartbeat is
recent and (PostgreSQL) its session holds the run's advisory lock, which the server lets go the moment
the process dies: a process killed and started again at once finds its earlier run dead. Only a dead
run's turns are taken as interrupted (`TurnJournal.take_interrupted`). On SQLite there is one process,
so every other run is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from bot.errors import DatabaseUnavailableError
from bot.storage.database import Database

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 15.0
"""How often a run says it is alive."""
RUN_DEAD_AFTER_S = 3 * HEARTBEAT_INTERVAL_S
"""A run whose heartbeat is older than this is dead (killed, or cut off from the database)."""
DISCORD_SHARD_SHIFT = 22
"""Discord: a guild's shard is `(guild_id >> 22) % shard_count`; direct messages are shard 0's."""


@dataclass(frozen=True, slots=True)
class ShardSet:
    """The shards one process connects, of `count` in all."""

    ids: frozenset[int]
    count: int

    @classmethod
    def of(cls, ids: Iterable[int] | None, count: int) -> ShardSet:
        """`ids` None: every shard."""
        return cls(frozenset(range(count)) if ids is None else frozenset(ids), count)

    @property
    def is_all(self) -> bool:
        return self.ids == frozenset(range(self.count))

    def owns_guild(self, guild_id: int | None) -> bool:
        """Whether this process receives the guild's messages (a DM, `guild_id` None, is shard 0's)."""
        shard = 0 if guild_id is None else (guild_id >> DISCORD_SHARD_SHIFT) % self.count
        return shard in self.ids

    def text(self) -> str:
        return ",".join(str(shard) for shard in sorted(self.ids))

    @classmethod
    def parse(cls, text: str, count: int) -> ShardSet:
        return cls(frozenset(int(part) for part in text.split(",") if part), count)


@dataclass(frozen=True, slots=True)
class LiveRun:
    run_id: str
    shards: ShardSet
    heartbeat_at: float


class RunRegistry:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, run_id: str, shards: ShardSet) -> list[LiveRun]:
        """Record this run as alive; returns the other live runs claiming any of its shards (logged
        once, as a warning). None on SQLite: one process uses the file."""
        now = time.time()
        await self._db.hold_while_open(run_lock_name(run_id))
        async with self._db.autocommit() as connection:
            await connection.execute(
                "INSERT INTO runs (run_id, shard_ids, shard_count, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (run_id, shards.text(), shards.count, now, now),
            )
        if not self._db.shared:
            return []
        overlapping = [run for run in await self.live(exclude=run_id) if _overlap(shards, run.shards)]
        if overlapping:
            log.warning(
                "Another bot process is running shards of this one (%s); run the shards apart "
                "(--shard-ids). Each message is still answered once and each conversation by one "
                "process at a time (message claims and conversation locks).",
                "; ".join(_describe_overlap(shards, run) for run in overlapping),
            )
        return overlapping

    async def live(
        self, *, exclude: str | None = None, dead_after_s: float = RUN_DEAD_AFTER_S
    ) -> list[LiveRun]:
        """The runs not stopped whose heartbeat is recent and (PostgreSQL) whose process holds its lock."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT run_id, shard_ids, shard_count, heartbeat_at FROM runs"
                " WHERE stopped_at IS NULL AND heartbeat_at >= ? AND run_id IS NOT ? ORDER BY started_at",
                (time.time() - dead_after_s, exclude),
            )
        held = await self._db.held_anywhere(run_lock_name(row["run_id"]) for row in rows)
        return [
            LiveRun(row["run_id"], ShardSet.parse(row["shard_ids"], row["shard_count"]), row["heartbeat_at"])
            for row in rows
            if run_lock_name(row["run_id"]) in held
        ]

    async def heartbeat(self, run_id: str) -> None:
        async with self._db.autocommit() as connection:
            await connection.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id)
            )

    async def stop(self, run_id: str) -> None:
        """A clean close: the run's turns are no longer anyone's."""
        async with self._db.autocommit() as connection:
            await connection.execute("UPDATE runs SET stopped_at = ? WHERE run_id = ?", (time.time(), run_id))

    async def beat_until(
        self, run_id: str, stopped: asyncio.Event, *, interval_s: float = HEARTBEAT_INTERVAL_S
    ) -> None:
        """Heartbeat every `interval_s` until `stopped` is set; a database outage skips a beat."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):  # the interval is a timer; the event ends it early
                    await stopped.wait()
            if stopped.is_set():
                return
            try:
                await self.heartbeat(run_id)
            except DatabaseUnavailableError:
                log.debug("Heartbeat of run %s skipped: the database is unreachable", run_id)


def run_lock_name(run_id: str) -> str:
    """The advisory lock a run's process holds while it runs."""
    return f"run:{run_id}"


def _overlap(mine: ShardSet, theirs: ShardSet) -> bool:
    """Shard ids only compare under one shard count; under different counts the guilds overlap."""
    return mine.count != theirs.count or bool(mine.ids & theirs.ids)


def _describe_overlap(mine: ShardSet, run: LiveRun) -> str:
    if mine.count != run.shards.count:
        return (
            f"run {run.run_id} runs shards {run.shards.text()} of {run.shards.count} "
            f"(this one: {mine.text()} of {mine.count})"
        )
    shared = ",".join(str(shard) for shard in sorted(mine.ids & run.shards.ids))
    return f"run {run.run_id} also runs shard(s) {shared} of {mine.count}"
