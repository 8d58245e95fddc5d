"""Several bot processes, each running some shards, on one PostgreSQL database (and one Redis).

Each process is a real `python -m bot` (see process_support.py) with BOT_SHARD_COUNT/BOT_SHARD_IDS,
BOT_PROCESS_COUNT and BOT_REDIS_URL in its environment, against ONE sharded stand-in Discord (guild
`i` lives on shard `i`) and one stand-in OpenAI, both in the test's event loop. Each process has its
own output (a `BotProcess`) and, once it has journalled anything, its run id in the `runs` table;
tests read the database with psycopg directly (committed data only, as any other process sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from standins.discord import FakeChannel, FakeDiscord, FakeGuild, FakeUser, StoredMessage
from standins.openai import FakeOpenAI
from tests.faults.process_support import (
    CONFIG,
    EXIT_TIMEOUT_S,
    INTERRUPTED_NOTE,
    START_TIMEOUT_S,
    BotProcess,
    bot_env,
)
from tests.faults.support import WAIT_S, wait_for_content
from tests.harness import FAST_BUCKET

TROUBLE = ("ERROR", "CRITICAL", "Traceback")
"""What a process may not log in a test that expects no failure."""


@dataclass
class ShardGuild:
    """A guild on shard `shard_id`, with its #general."""

    guild: FakeGuild
    general: FakeChannel
    shard_id: int


@dataclass
class ShardProcess:
    """One `python -m bot` of the rig, and which of the rig's shards it was told to run."""

    name: str
    shard_ids: tuple[int, ...]
    bot: BotProcess
    runs_before: frozenset[str]
    """The run ids in the database before it started: its own is the one row that is not."""

    @property
    def process(self) -> asyncio.subprocess.Process:
        return self.bot.process

    def lines_matching(self, *words: str) -> list[str]:
        """Its log lines holding every one of `words` (case-insensitive)."""
        wanted = [w.lower() for w in words]
        return self.bot.matching(lambda line: all(w in line.lower() for w in wanted))


@dataclass
class ShardRig:
    """The sharded stand-ins, a guild per shard, the shared database (and Redis), the processes."""

    discord: FakeDiscord
    openai: FakeOpenAI
    guilds: list[ShardGuild]
    alice: FakeUser
    bob: FakeUser
    admin: FakeUser
    tmp_path: Path
    database_url: str
    redis_url: str | None
    shard_count: int

    @property
    def bot_mention(self) -> str:
        return self.discord.bot_user.mention

    def env(self, shard_ids: Sequence[int], process_count: int) -> dict[str, str]:
        env = bot_env(
            discord_base_url=self.discord.base_url,
            token=self.discord.token,
            openai_base_url=self.openai.base_url,
            database=self.database_url,
        )
        env |= {
            "BOT_SHARD_COUNT": str(self.shard_count),
            "BOT_SHARD_IDS": ",".join(str(i) for i in shard_ids),
            "BOT_PROCESS_COUNT": str(process_count),
        }
        if self.redis_url is not None:
            env["BOT_REDIS_URL"] = self.redis_url
        return env

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the shared database directly (committed data, as any process sees it)."""
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return [tuple(row) for row in connection.execute(sql, params).fetchall()]

    def run_ids(self) -> dict[str, frozenset[int]]:
        """Every run (process start) in the database, with the shard ids it registered."""
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            exists = connection.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return {}
            rows = connection.execute("SELECT run_id, shard_ids FROM runs").fetchall()
        return {str(run): frozenset(int(i) for i in str(ids).split(",") if i.strip()) for run, ids in rows}

    def run_id(self, process: ShardProcess) -> str:
        """The run id `process` registered: the one run of its shard ids that was not there before it."""
        new = [
            run
            for run, shards in self.run_ids().items()
            if run not in process.runs_before and shards == frozenset(process.shard_ids)
        ]
        assert len(new) == 1, f"{process.name}: expected one new run of its shards in `runs`, found {new}"
        return new[0]

    def answering_runs(self, message_id: int) -> list[str]:
        """The run id of every turn journalled for a user's message (one, if it was answered once)."""
        return [str(r) for (r,) in self.rows("SELECT run_id FROM turns WHERE message_id = %s", message_id)]

    @contextlib.asynccontextmanager
    async def process(
        self,
        name: str,
        shard_ids: Sequence[int],
        *,
        process_count: int | None = None,
    ) -> AsyncIterator[ShardProcess]:
        """`python -m bot` running `shard_ids`, yielded once each of them has a live gateway session
        made by it; killed on the way out. Nothing may be logged at ERROR, whatever the test did: a
        failure the bot meets is handled once, near the user, and logged as a warning at most."""
        count = process_count if process_count is not None else self.shard_count
        shards = [(shard_id, self.shard_count) for shard_id in shard_ids]
        before = {shard: self._identifies_of(shard) for shard in shards}
        runs_before = frozenset(self.run_ids())
        config = str(self.tmp_path / "config.toml")
        env = self.env(shard_ids, count)
        async with BotProcess.running("--config", config, env=env, cwd=self.tmp_path) as bot:
            started = ShardProcess(name, tuple(shard_ids), bot, runs_before)

            def connected() -> bool:
                live = self.discord.connected_shards
                return all(self._identifies_of(s) > before[s] and s in live for s in shards)

            await _until_connected(self.discord, bot, connected)
            try:
                yield started
            except BaseException:
                print(f"--- output of {name} ---\n{bot.output}")  # pytest shows it with the failure
                raise
        for trouble in TROUBLE:
            assert trouble not in bot.output, f"{name}:\n{bot.output}"

    def _identifies_of(self, shard: tuple[int, int]) -> int:
        return sum(list(i.get("shard", [0, 1])) == list(shard) for i in self.discord.identifies)

    # -- what people do, and what the bot answers ------------------------------------------------

    async def mention(self, where: ShardGuild, text: str, *, user: FakeUser | None = None) -> int:
        """Someone mentions the bot in the guild's #general; the message's id (that of the thread the
        bot opens on it, as a thread started from a message has the message's id)."""
        sent = await self.discord.user_message(
            where.general.id, user or self.alice, f"{self.bot_mention} {text}", mentions_bot=True
        )
        return int(sent["id"])

    async def open_thread(self, where: ShardGuild, text: str, *, user: FakeUser | None = None) -> FakeChannel:
        """A mention, then the echo answer in the thread it opened."""
        author = user or self.alice
        thread_id = await self.mention(where, text, user=author)
        await self.discord.wait_for(lambda: thread_id in self.discord.channels, timeout=WAIT_S)
        await wait_for_content(self.discord, thread_id, f"echo: {author.name}: {text}")
        return self.discord.channels[thread_id]

    async def config_set(self, channel_id: int, setting: str, value: str) -> None:
        """An admin changes a guild setting with /config set; until the bot confirms it."""
        record = await self.discord.slash_command(
            "config set", {"setting": setting, "value": value}, user=self.admin, channel_id=channel_id
        )
        await self.discord.wait_for(lambda: bool(record.followup_ids), timeout=WAIT_S)
        assert self.discord.message(record.followup_ids[0]).content.startswith("✅")

    async def say(self, channel_id: int, text: str, *, user: FakeUser | None = None) -> int:
        """Someone writes in a thread or DM; the message's id."""
        sent = await self.discord.user_message(channel_id, user or self.alice, text)
        return int(sent["id"])

    async def answered(self, channel_id: int, text: str, *, user: FakeUser | None = None) -> int:
        """Someone writes and gets the echo; the message's id."""
        author = user or self.alice
        message_id = await self.say(channel_id, text, user=author)
        await wait_for_content(self.discord, channel_id, f"echo: {author.name}: {text}")
        return message_id

    def echoes(self, channel_id: int, text: str, *, user: FakeUser | None = None) -> list[StoredMessage]:
        """The bot's answers holding the echo of `text` in a channel (one, if answered once)."""
        author = user or self.alice
        echo = f"echo: {author.name}: {text}"
        return [m for m in self.discord.bot_messages(channel_id) if echo in m.content]

    def model_request(self, text: str) -> dict[str, Any]:
        """The one model request that carried the user's `text`."""
        found: list[dict[str, Any]] = [
            r.json
            for r in self.openai.requests_to("/v1/responses", "POST")
            if r.json is not None and text in json.dumps(r.json.get("input"))
        ]
        assert len(found) == 1, f"{len(found)} model requests carried {text!r}"
        return found[0]

    def notes_in(self, channel_id: int) -> list[StoredMessage]:
        return [m for m in self.discord.bot_messages(channel_id) if INTERRUPTED_NOTE in m.content]

    async def wait_for_note(self, channel_id: int) -> StoredMessage:
        return await self.discord.wait_for_message(
            lambda m: INTERRUPTED_NOTE in m.content, channel_id=channel_id, timeout=START_TIMEOUT_S
        )


async def _until_connected(discord: FakeDiscord, bot: BotProcess, connected: Callable[[], bool]) -> None:
    """Until `connected()` holds at the stand-in, failing with the output if the process exits first."""
    waiting = asyncio.ensure_future(discord.wait_for(connected, timeout=START_TIMEOUT_S))
    exited = asyncio.ensure_future(bot.process.wait())
    try:
        await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (waiting, exited):
            waiter.cancel()
    if exited.done() and not exited.cancelled():
        await asyncio.wait_for(bot._reader, EXIT_TIMEOUT_S)
        raise AssertionError(f"the bot exited with {bot.process.returncode}:\n{bot.output}")
    waiting.result()  # raises TimeoutError if it never connected


@contextlib.asynccontextmanager
async def shard_stand_ins(
    tmp_path: Path,
    database_url: str,
    *,
    shard_count: int = 2,
    redis_url: str | None = None,
    global_limit: int | None = None,
    concurrent_sessions: bool = False,
) -> AsyncIterator[ShardRig]:
    """One sharded stand-in Discord (guild `i` on shard `i`), one stand-in OpenAI, a config.toml.

    `concurrent_sessions`: two processes that identify as the same shard both get its events, as
    Discord does (for the tests of overlapping shard ids).
    """
    async with (
        FakeOpenAI() as openai,
        FakeDiscord(
            rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET},
            global_limit=global_limit,
        ) as discord,
    ):
        discord.max_concurrency = 16  # every shard identifies at once, as a large bot's do
        discord.concurrent_sessions = concurrent_sessions
        guilds = []
        for shard_id in range(shard_count):
            guild = discord.add_guild(f"Shard {shard_id}", on_shard=(shard_id, shard_count))
            guilds.append(ShardGuild(guild, discord.add_text_channel(guild.id, "general"), shard_id))
        ids = [g.guild.id for g in guilds]
        admins = [discord.add_role(g, "Admins", permissions=["manage_guild"]) for g in ids]
        (tmp_path / "config.toml").write_text(
            CONFIG.format(backend="responses", discord_settings=""), encoding="utf-8"
        )
        yield ShardRig(
            discord=discord,
            openai=openai,
            guilds=guilds,
            alice=discord.add_user("alice", guilds=ids),
            bob=discord.add_user("bob", guilds=ids),
            admin=discord.add_user("root", guilds=ids, roles=[role.id for role in admins]),
            tmp_path=tmp_path,
            database_url=database_url,
            redis_url=redis_url,
            shard_count=shard_count,
        )
