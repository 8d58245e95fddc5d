"""The bot as a real process (`python -m bot --config ...`) against the stand-in servers.

The stand-in Discord and OpenAI servers live in the test's own event loop on 127.0.0.1; the bot is
pointed at them through its environment, with its database in the test's folder, which the tests
read directly with sqlite3 (committed data only, as a restarted bot would see it). Shared by the
SIGKILL restart tests (test_process_kills.py) and the graceful-stop tests (test_sigterm.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standins.discord import FakeChannel, FakeDiscord, StoredMessage
from standins.openai import FakeOpenAI
from tests.faults.support import WAIT_S, bot_messages, threads_of, wait_for_content
from tests.harness import FAST_BUCKET, World, build_world

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # interpreter start, imports, login; discord.py then waits 2 s for guilds
EXIT_TIMEOUT_S = 10.0
LOG_LINE_LIMIT = 1024 * 1024
INTERRUPTED_NOTE = "I was restarted while answering"
CONFIG = """\
[discord]
sync_commands = true
{discord_settings}

[openai]
max_retries = 0

[streaming]
edit_interval_s = 0.2

[engine]
confirmation_timeout_s = 600

[defaults]
backend = "{backend}"
"""


@dataclass
class Rig:
    """The stand-ins, the world on them, and where the bot's files go."""

    discord: FakeDiscord
    openai: FakeOpenAI
    world: World
    tmp_path: Path
    backend: str
    log: BotLog | None = None
    """The output of the bot process running (or last run)."""

    @property
    def database(self) -> Path:
        return self.tmp_path / "bot.db"

    def env(self) -> dict[str, str]:
        keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG")}
        return {
            **keep,
            "PYTHONPATH": str(REPO_ROOT),
            "DISCORD_TOKEN": self.discord.token,
            "DISCORD_API_BASE_URL": self.discord.base_url,
            "OPENAI_API_KEY": "test",
            "OPENAI_BASE_URL": self.openai.base_url,
            "BOT_DATABASE": str(self.database),
        }

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the bot's database directly (committed data only, as a restarted bot would see it)."""
        with contextlib.closing(sqlite3.connect(self.database)) as connection:
            return [tuple(row) for row in connection.execute(sql, params)]

    def durable_state(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything that must survive a crash unchanged, as sorted rows."""
        return {
            "conversations": self.rows(
                "SELECT key, backend, conversation_id, generation FROM conversations ORDER BY key"
            ),
            "settings": self.rows("SELECT guild_id, name, value FROM guild_settings ORDER BY guild_id, name"),
            "settings audit": self.rows(
                "SELECT guild_id, name, new_value FROM guild_settings_audit ORDER BY id"
            ),
            "usage": self.rows(
                "SELECT guild_id, user_id, SUM(turns), SUM(input_tokens) > 0 FROM usage_daily"
                " GROUP BY guild_id, user_id ORDER BY guild_id, user_id"
            ),
            "reservations": self.rows(
                "SELECT call_id, user_id, party_size, status FROM reservations ORDER BY id"
            ),
            "history": self.rows("SELECT conversation_key, role, payload FROM chat_messages ORDER BY id"),
        }


@contextlib.asynccontextmanager
async def stand_ins(
    tmp_path: Path, backend: str = "responses", *, discord_settings: str = ""
) -> AsyncIterator[Rig]:
    """The stand-ins and a config.toml; `discord_settings`: extra lines for its [discord] section."""
    async with (
        FakeOpenAI() as openai,
        FakeDiscord(rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}) as discord,
    ):
        world = build_world(discord)
        (tmp_path / "config.toml").write_text(
            CONFIG.format(backend=backend, discord_settings=discord_settings), encoding="utf-8"
        )
        yield Rig(discord, openai, world, tmp_path, backend)


@dataclass(eq=False)
class BotLog:
    """The running bot's output, copied line by line into its log file; a test can wait for a line."""

    path: Path
    lines: list[str] = field(default_factory=list)
    ended: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def copy(self, output: asyncio.StreamReader) -> None:
        with self.path.open("wb") as file:
            async for line in output:
                file.write(line)
                file.flush()
                async with self.changed:
                    self.lines.append(line.decode("utf-8", errors="replace"))
                    self.changed.notify_all()
        async with self.changed:
            self.ended = True
            self.changed.notify_all()

    async def wait_for(self, text: str) -> None:
        """Until the bot logs a line holding `text` (fails if it exits first)."""
        async with asyncio.timeout(WAIT_S), self.changed:
            await self.changed.wait_for(lambda: self.ended or any(text in line for line in self.lines))
        assert any(text in line for line in self.lines), "".join(self.lines)


@contextlib.asynccontextmanager
async def bot_process(rig: Rig) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot` against the rig, yielded once it is connected; killed on the way out.

    Its output goes to `bot-N.log` through `rig.log`, where a test can wait for a line.
    """
    number = len(rig.discord.identifies)
    log = rig.log = BotLog(rig.tmp_path / f"bot-{number}.log")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(rig.tmp_path / "config.toml"),
        cwd=rig.tmp_path,  # no .env of the developer's is picked up
        env=rig.env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        limit=LOG_LINE_LIMIT,
    )
    assert process.stdout is not None
    copying = asyncio.create_task(log.copy(process.stdout))
    try:
        connected = asyncio.ensure_future(
            rig.discord.wait_for(
                lambda: len(rig.discord.identifies) > number and rig.discord.connected,
                timeout=START_TIMEOUT_S,
            )
        )
        exited = asyncio.ensure_future(process.wait())
        try:
            await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (connected, exited):
                waiter.cancel()
        if exited.done() and not exited.cancelled():
            await copying
            raise AssertionError(f"the bot exited with {process.returncode}:\n{log.path.read_text()}")
        connected.result()  # raises TimeoutError if the bot never connected
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S)
        await asyncio.wait_for(copying, EXIT_TIMEOUT_S)
    logged = log.path.read_text(encoding="utf-8", errors="replace")
    for trouble in ("ERROR", "CRITICAL", "Traceback"):  # the level is padded and coloured: no spaces
        assert trouble not in logged, logged


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S) == -signal.SIGKILL


async def stop(process: asyncio.subprocess.Process) -> None:
    """Ctrl-C: the bot finishes what it was doing (turns closed, usage counted), then exits 0."""
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S) == 0


async def terminate(process: asyncio.subprocess.Process) -> None:
    """What docker stop, systemctl stop and Kubernetes send: the same graceful stop, exit 0."""
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S) == 0


async def open_thread(rig: Rig, text: str) -> FakeChannel:
    """Alice mentions the bot in #general; the thread it opens, once the answer is complete."""
    general = rig.world.general
    before = len(threads_of(rig.discord, general))
    mention = f"<@{rig.discord.bot_user.id}> {text}"
    await rig.discord.user_message(general.id, rig.world.alice, mention, mentions_bot=True)
    await rig.discord.wait_for(lambda: len(threads_of(rig.discord, general)) > before, timeout=WAIT_S)
    return threads_of(rig.discord, general)[before]


def notes_in(rig: Rig, thread: FakeChannel) -> list[StoredMessage]:
    return [m for m in bot_messages(rig.discord, thread.id) if INTERRUPTED_NOTE in m.content]


async def answered(rig: Rig, thread: FakeChannel, text: str) -> None:
    """Alice writes in the thread and gets the echo: the conversation works."""
    await rig.discord.user_message(thread.id, rig.world.alice, text)
    await wait_for_content(rig.discord, thread.id, f"echo: alice: {text}")


def turn_statuses(rig: Rig) -> list[tuple[str, int | None]]:
    return rig.rows("SELECT status, message_id FROM turns ORDER BY id")
