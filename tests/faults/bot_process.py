"""The bot as a real process (`python -m bot`), its log read line by line as it is written.

Waiting is on a condition the reader notifies at each line (bounded by a deadline), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # interpreter start, imports, login; discord.py then waits 2 s for guilds
EXIT_TIMEOUT_S = 10.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def bot_env(*, discord_base_url: str, token: str, openai_base_url: str, database: Path) -> dict[str, str]:
    """Only what the bot needs, pointed at the stand-ins (no variable of the developer's leaks in)."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "DISCORD_TOKEN": token,
        "DISCORD_API_BASE_URL": discord_base_url,
        "OPENAI_API_KEY": "test",
        "OPENAI_BASE_URL": openai_base_url,
        "BOT_DATABASE": str(database),
    }


class BotProcess:
    """A running `python -m bot`; `lines` is its output (stdout and stderr) so far."""

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

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._changed:
                self.lines.append(_ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self.ended = True
            self._changed.notify_all()
