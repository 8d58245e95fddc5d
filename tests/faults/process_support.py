"""The bot as a real process (`python -m bot --config ...`) against the stand-in servers.

The stand-in Discord and OpenAI servers live in the test's own event loop on 127.0.0.1; the bot is
pointed at them through its environment, with its database in the test's folder, which the tests
read directly with sqlite3 (committed data only, as a restarted bot would see it). Its output is read
line by line as it is written: a test waits on a condition the reader notifies at each line (bounded
by a deadline), never a sleep. Shared by the SIGKILL restart tests (test_process_kills.py), the
graceful-stop tests (test_sigterm.py) and the start-up tests (test_startup_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from standins.discord import FakeChannel, FakeDiscord, StoredMessage
from standins.openai import FakeOpenAI
from tests.faults.support import WAIT_S, wait_for_content
from tests.harness import FAST_BUCKET, World, build_world

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # interpreter start, imports, login; discord.py then waits 2 s for guilds
EXIT_TIMEOUT_S = 10.0
LOG_LINE_LIMIT = 1024 * 1024
INTERRUPTED_NOTE = "I was restarted while answering"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
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
    log: BotProcess | None = None
    """The bot process running (or last run), with its output."""
    openai_api_key: str | None = "test"
    """None: no OPENAI_API_KEY in the bot's environment at all (a chat backend that needs none)."""

    @property
    def database(self) -> Path:
        return self.tmp_path / "bot.db"

    def env(self) -> dict[str, str]:
        return bot_env(
            discord_base_url=self.discord.base_url,
            token=self.discord.token,
            openai_base_url=self.openai.base_url,
            database=self.database,
            openai_api_key=self.openai_api_key,
        )

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


def bot_env(
    *,
    discord_base_url: str,
    token: str,
    openai_base_url: str,
    database: Path | str,
    openai_api_key: str | None = "test",
) -> dict[str, str]:
    """Only what the bot needs, pointed at the stand-ins (no variable of the developer's leaks in);
    `database`: an SQLite file or a postgresql:// URL; `openai_api_key` None: no key at all."""
    keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG")}
    key = {"OPENAI_API_KEY": openai_api_key} if openai_api_key is not None else {}
    return {
        **keep,
        "PYTHONPATH": str(REPO_ROOT),
        "DISCORD_TOKEN": token,
        "DISCORD_API_BASE_URL": discord_base_url,
        **key,
        "OPENAI_BASE_URL": openai_base_url,
        "BOT_DATABASE": str(database),
    }


class BotProcess:
    """A running `python -m bot`; `lines` is its output (stdout and stderr, colours removed) so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ended = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, *args: str, env: dict[str, str], cwd: Path) -> AsyncIterator[BotProcess]:
        """Start it (in `cwd`, so no .env of the developer's is picked up); killed on the way out."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=LOG_LINE_LIMIT,
        )
        bot = cls(process)
        try:
            yield bot
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S)
            await asyncio.wait_for(bot._reader, EXIT_TIMEOUT_S)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def matching(self, predicate: Callable[[str], bool]) -> list[str]:
        return [line for line in self.lines if predicate(line)]

    async def wait_for_lines(
        self,
        predicate: Callable[[str], bool],
        count: int = 1,
        timeout: float = START_TIMEOUT_S,  # noqa: ASYNC109
    ) -> list[str]:
        """Until `count` lines match (failing, with the output, if the process ends or time runs out)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.matching(predicate)) >= count or self.ended)
        except TimeoutError:
            raise AssertionError(f"no {count} matching lines within {timeout} s:\n{self.output}") from None
        found = self.matching(predicate)
        assert len(found) >= count, f"the bot exited with {self.process.returncode}:\n{self.output}"
        return found

    async def wait_for(self, text: str) -> None:
        """Until the bot logs a line holding `text` (fails if it exits first)."""
        await self.wait_for_lines(lambda line: text in line, timeout=WAIT_S)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._changed:
                self.lines.append(_ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self.ended = True
            self._changed.notify_all()


@contextlib.asynccontextmanager
async def bot_process(rig: Rig) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot` against the rig, yielded once it is connected; killed on the way out.

    Its output is `rig.log`, where a test can wait for a line; nothing may be logged at ERROR.
    """
    number = len(rig.discord.identifies)
    config = str(rig.tmp_path / "config.toml")
    async with BotProcess.running("--config", config, env=rig.env(), cwd=rig.tmp_path) as bot:
        rig.log = bot
        connected = asyncio.ensure_future(
            rig.discord.wait_for(
                lambda: len(rig.discord.identifies) > number and rig.discord.connected,
                timeout=START_TIMEOUT_S,
            )
        )
        exited = asyncio.ensure_future(bot.process.wait())
        try:
            await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (connected, exited):
                waiter.cancel()
        if exited.done() and not exited.cancelled():
            await asyncio.wait_for(bot._reader, EXIT_TIMEOUT_S)
            raise AssertionError(f"the bot exited with {bot.process.returncode}:\n{bot.output}")
        connected.result()  # raises TimeoutError if the bot never connected
        yield bot.process
    for trouble in ("ERROR", "CRITICAL", "Traceback"):
        assert trouble not in bot.output, bot.output


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
    before = len(rig.discord.threads_in(general.id))
    mention = f"<@{rig.discord.bot_user.id}> {text}"
    await rig.discord.user_message(general.id, rig.world.alice, mention, mentions_bot=True)
    await rig.discord.wait_for(lambda: len(rig.discord.threads_in(general.id)) > before, timeout=WAIT_S)
    return rig.discord.threads_in(general.id)[before]


def notes_in(rig: Rig, thread: FakeChannel) -> list[StoredMessage]:
    return [m for m in rig.discord.bot_messages(thread.id) if INTERRUPTED_NOTE in m.content]


async def answered(rig: Rig, thread: FakeChannel, text: str) -> None:
    """Alice writes in the thread and gets the echo: the conversation works."""
    await rig.discord.user_message(thread.id, rig.world.alice, text)
    await wait_for_content(rig.discord, thread.id, f"echo: alice: {text}")


def turn_statuses(rig: Rig) -> list[tuple[str, int | None]]:
    return rig.rows("SELECT status, message_id FROM turns ORDER BY id")
