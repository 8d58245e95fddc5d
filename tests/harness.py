"""End-to-end harness: the real `AssistantBot` connected to the stand-in Discord and OpenAI servers.

    async with running_bot(tmp_path, fake_openai) as h:
        await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} hi", mentions_bot=True)
        reply = await h.discord.wait_for_message(lambda m: ..., channel_id=...)

The bot connects exactly as to Discord (DISCORD_API_BASE_URL), so everything between a gateway event
and a REST call is the production code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.discord.app import EXTENSIONS, AssistantBot
from bot.discord.endpoint import restore_discord_urls, use_rest_base
from bot.services import Services
from standins.discord import FakeChannel, FakeDiscord, FakeGuild, FakeUser, RateLimitRule
from standins.openai import FakeOpenAI
from tests.conftest import fake_secrets, make_config

STARTUP_TIMEOUT_S = 10.0
# Discord's message buckets are 5 per 5 s; the same shape in a shorter window keeps tests quick.
FAST_BUCKET = RateLimitRule(limit=5, per_s=0.5)


@dataclass
class World:
    """A guild with a channel and a few people, built on the stand-in before the bot connects."""

    guild: FakeGuild
    general: FakeChannel
    alice: FakeUser
    bob: FakeUser
    admin: FakeUser


def build_world(server: FakeDiscord) -> World:
    guild = server.add_guild("Test Server")
    general = server.add_text_channel(guild.id, "general")
    admins = server.add_role(guild.id, "Admins", permissions=["manage_guild"])
    return World(
        guild=guild,
        general=general,
        alice=server.add_user("alice", guilds=[guild.id]),
        bob=server.add_user("bob", guilds=[guild.id]),
        admin=server.add_user("root", guilds=[guild.id], roles=[admins.id]),
    )


@dataclass
class Harness:
    bot: AssistantBot
    discord: FakeDiscord
    openai: FakeOpenAI
    world: World

    @property
    def services(self) -> Services:
        return self.bot.services

    @property
    def general(self) -> FakeChannel:
        return self.world.general

    @property
    def alice(self) -> FakeUser:
        return self.world.alice

    @property
    def bot_mention(self) -> str:
        return f"<@{self.discord.bot_user.id}>"


class _ErrorRecords(logging.Handler):
    """What the bot or discord.py logged at ERROR: failures they swallow instead of raising."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    openai: FakeOpenAI,
    /,
    *,
    discord: FakeDiscord | None = None,
    world: World | None = None,
    extensions: Sequence[str] = EXTENSIONS,
    allow_errors: bool = False,
    guild_ready_timeout_s: float = 0.05,
    discord_settings: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **config_sections: dict[str, Any],
) -> AsyncIterator[Harness]:
    """Start the bot against the stand-ins; on exit close it and fail if anything logged an error.

    `config_sections` override config.toml sections (`openai={...}` too: the stand-in is positional).
    Pass the same `discord`, `world` and `tmp_path` again to restart the bot on the same database.
    `guild_ready_timeout_s`: how long discord.py waits for guilds before `on_ready` (2 s on Discord).
    `discord_settings`: the `[discord]` section's overrides (`discord=` names the stand-in server).
    `secrets`: `Secrets` fields to override, e.g. `{"openai_api_key": None}` for a bot without OpenAI.
    """
    owns_server = discord is None
    server = discord or FakeDiscord(rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET})
    if owns_server:
        await server.start()
    world = world or build_world(server)
    discord_section = {"sync_commands": True, **(discord_settings or {})}
    config = make_config(tmp_path, **{"discord": discord_section, **config_sections})
    bot_secrets = fake_secrets(
        discord_token=SecretStr(server.token), discord_api_base_url=server.base_url, **(secrets or {})
    )
    errors = _ErrorRecords()
    for name in ("discord", "bot", "cogs", "tools"):
        logging.getLogger(name).addHandler(errors)
    use_rest_base(server.base_url)
    bot = AssistantBot(
        config,
        bot_secrets,
        extensions=extensions,
        openai_base_url=openai.base_url,
        guild_ready_timeout=guild_ready_timeout_s,
    )
    ready = asyncio.Event()
    bot.add_listener(_set_on_ready(ready), "on_ready")
    started = asyncio.create_task(bot.start(server.token))
    waiting = asyncio.create_task(ready.wait())
    try:
        done, _ = await asyncio.wait(
            {started, waiting}, timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if started in done:
            started.result()
            raise RuntimeError("the bot stopped during start-up")
        if waiting not in done:
            raise TimeoutError("the bot did not become ready")
        yield Harness(bot=bot, discord=server, openai=openai, world=world)
    finally:
        waiting.cancel()
        await bot.close()
        with contextlib.suppress(Exception):
            await started
        restore_discord_urls()
        for name in ("discord", "bot", "cogs", "tools"):
            logging.getLogger(name).removeHandler(errors)
        if owns_server:
            await server.close()
    if not allow_errors:
        assert [r.getMessage() for r in errors.records] == []


def _set_on_ready(event: asyncio.Event) -> Any:
    async def on_ready() -> None:
        event.set()

    return on_ready
