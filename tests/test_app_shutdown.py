"""The bot's close, in process: once only, and complete even when a stop signal comes during start-up.

The whole SIGTERM path, as a real process, is in tests/faults/test_sigterm.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.discord import app
from bot.discord.app import AssistantBot
from bot.discord.endpoint import restore_discord_urls, use_rest_base
from bot.services import Services
from standins.discord import FakeDiscord
from standins.openai import FakeOpenAI
from tests.conftest import fake_secrets, make_config
from tests.faults.support import refused_port
from tests.harness import build_world


async def test_a_stop_signal_during_start_up_still_closes_the_database(
    tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeDiscord() as server:
        build_world(server)
        use_rest_base(server.base_url)
        try:
            config = make_config(tmp_path, discord={"sync_commands": False})
            token = SecretStr(server.token)
            secrets = fake_secrets(discord_token=token, discord_api_base_url=server.base_url)
            bot = AssistantBot(config, secrets, openai_base_url=fake_openai.base_url)
            start_services = Services.start

            async def signalled_while_starting(*args: Any, **kwargs: Any) -> Services:
                bot.request_stop()  # SIGTERM in the middle of setup_hook: the close begins first...
                return await start_services(*args, **kwargs)  # ...and the core is built after it

            monkeypatch.setattr(Services, "start", signalled_while_starting)
            async with bot:
                await bot.login(server.token)
                database = config.storage.database
                assert isinstance(database, Path)
                wal = database.with_name(database.name + "-wal")
                assert wal.exists()  # the database is open
                await bot.close()
                assert not bot.accepting_messages
                assert not wal.exists()  # and closed cleanly: SQLite removes the log with the last close
                await bot.close()  # a second close (as `async with` may do) is a no-op
        finally:
            restore_discord_urls()


class _LogSeen(logging.Handler):
    """Sets `seen` when a record containing `text` is logged (the bot's loop logs it: same thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_a_stop_signal_ends_the_wait_for_an_unreachable_discord(tmp_path: Path) -> None:
    """Under a supervisor's stop during a Discord outage at start-up, the bot must not sit out a long
    backoff wait (up to 60 s) past the supervisor's kill timeout: the stop ends the wait at once."""
    refused = _LogSeen("Discord is unreachable")
    with refused_port() as port:
        base_url = f"http://127.0.0.1:{port}"
        use_rest_base(base_url)
        try:
            config = make_config(tmp_path, discord={"sync_commands": False})
            secrets = fake_secrets(discord_api_base_url=base_url)
            bot = AssistantBot(config, secrets)
            hour_long_waits = app.Backoff(first_s=3600.0, max_s=3600.0)
            app.log.addHandler(refused)
            login = asyncio.create_task(app.login_with_retry(bot, "token", backoff=hour_long_waits))
            await refused.seen.wait()  # the first attempt was refused; its wait begins
            bot.request_stop()
            assert await login is False  # not logged in, and no hour spent (pytest's timeout is 120 s)
            await bot.close()
        finally:
            app.log.removeHandler(refused)
            restore_discord_urls()
