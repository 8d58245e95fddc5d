"""Start-up against the stand-ins as a real process: what the log says, and that the bot comes up anyway.

- `command_guild_ids` naming a guild the bot is not in: Discord answers 403 Missing Access for it; one
  warning, the other guild and the global commands are synced, and the bot serves.
- At INFO the log has neither discord.py's voice warnings nor a line per OpenAI request (at DEBUG the
  request lines are there: the check looks for the right text).
- Discord unreachable at start: one warning per attempt, no traceback, and the bot connects once the
  stand-in comes up on the address it was given.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from standins.discord import FakeDiscord
from standins.openai import FakeOpenAI
from tests.faults.process_support import START_TIMEOUT_S, BotProcess, bot_env
from tests.faults.support import WAIT_S, refused_port
from tests.harness import World, build_world

pytestmark = pytest.mark.slow

NOT_A_GUILD_OF_THE_BOT = 424242424242424242
CONFIG = """\
[discord]
sync_commands = true
command_guild_ids = [{guild_ids}]

[openai]
max_retries = 0
"""
UNREACHABLE = "Discord is unreachable"


def write_config(tmp_path: Path, *guild_ids: int) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(guild_ids=", ".join(map(str, guild_ids))), encoding="utf-8")
    return path


async def wait_connected(discord: FakeDiscord, bot: BotProcess) -> None:
    try:
        await discord.wait_for(
            lambda: bool(discord.identifies) and discord.connected, timeout=START_TIMEOUT_S
        )
    except TimeoutError:
        raise AssertionError(f"the bot did not connect:\n{bot.output}") from None


async def answers_a_mention(discord: FakeDiscord, world: World) -> None:
    mention = f"<@{discord.bot_user.id}> hello"
    await discord.user_message(world.general.id, world.alice, mention, mentions_bot=True)
    await discord.wait_for_message(lambda m: m.content == "echo: alice: hello", timeout=WAIT_S)


def assert_no_trouble(bot: BotProcess) -> None:
    for trouble in ("ERROR", "CRITICAL", "Traceback"):
        assert trouble not in bot.output, bot.output


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
async def test_a_guild_the_bot_is_not_in_is_skipped_with_one_warning_and_the_bot_serves(
    tmp_path: Path, log_level: str
) -> None:
    async with FakeOpenAI() as openai, FakeDiscord() as discord:
        world = build_world(discord)
        config = write_config(tmp_path, world.guild.id, NOT_A_GUILD_OF_THE_BOT)
        env = bot_env(
            discord_base_url=discord.base_url,
            token=discord.token,
            openai_base_url=openai.base_url,
            database=tmp_path / "bot.db",
        )
        args = ["--config", str(config), *(["--log-level", log_level] if log_level != "INFO" else [])]
        async with BotProcess.running(*args, env=env, cwd=tmp_path) as bot:
            await wait_connected(discord, bot)
            await answers_a_mention(discord, world)
            await bot.wait_for_lines(lambda line: "Synced" in line and "slash commands" in line)

        assert discord.guild_commands.get(world.guild.id), "the guild the bot is in got its commands"
        assert discord.global_commands, "the global commands were synced after the skipped guild"
        assert NOT_A_GUILD_OF_THE_BOT not in discord.guild_commands
        [warning] = bot.matching(lambda line: "command_guild_ids" in line)
        assert "WARNING" in warning
        assert warning.endswith(
            f"command_guild_ids: the bot is not in guild {NOT_A_GUILD_OF_THE_BOT} "
            "(Discord answered 403 Missing Access); skipped"
        ), warning
        assert_no_trouble(bot)
        assert bot.matching(lambda line: "voice will NOT be supported" in line) == []
        assert openai.requests, "the reply came from a model request"
        request_lines = bot.matching(lambda line: re.search(r"HTTP Request: POST \S+/v1/", line) is not None)
        if log_level == "DEBUG":
            assert request_lines, bot.output
        else:
            assert request_lines == [], bot.output


async def test_discord_unreachable_at_start_is_retried_until_it_comes_up(tmp_path: Path) -> None:
    async with FakeOpenAI() as openai:
        discord = FakeDiscord()
        world = build_world(discord)
        with contextlib.ExitStack() as refusing:
            port = refusing.enter_context(refused_port())  # bound, not listening: connections refused
            env = bot_env(
                discord_base_url=f"http://127.0.0.1:{port}",
                token=discord.token,
                openai_base_url=openai.base_url,
                database=tmp_path / "bot.db",
            )
            async with BotProcess.running(
                "--config", str(write_config(tmp_path)), env=env, cwd=tmp_path
            ) as bot:
                try:
                    await bot.wait_for_lines(lambda line: UNREACHABLE in line, count=2)
                    refusing.close()
                    await discord.start(port)  # Discord is back, where the bot has been looking
                    await wait_connected(discord, bot)
                    await answers_a_mention(discord, world)
                finally:
                    await discord.close()

        attempts = bot.matching(lambda line: UNREACHABLE in line)
        numbers = [int(re.search(r"attempt (\d+) failed", line).group(1)) for line in attempts]  # type: ignore[union-attr]
        assert numbers == list(range(1, len(attempts) + 1))  # one line per attempt
        assert all("WARNING" in line for line in attempts)
        assert_no_trouble(bot)
