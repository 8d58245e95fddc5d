"""Fixtures shared by the whole suite: the stand-in OpenAI server and the core built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.config import AppConfig, GuildSettings, Secrets
from bot.services import Services
from bot.storage import Storage
from standins.openai import FakeOpenAI

ServicesFactory = Callable[..., Awaitable[Services]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--load-seconds",
        type=float,
        default=None,
        help="seconds tests/faults/test_load.py keeps 200 people talking (default 60)",
    )


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    """A migrated database of its own, closed after the test."""
    opened = await Storage.open(tmp_path / "bot.db")
    yield opened
    await opened.close()


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> AppConfig:
    """The default configuration with a database under `tmp_path`, overridden per section."""
    data: dict[str, Any] = {"storage": {"database": str(tmp_path / "bot.db")}, "openai": {"max_retries": 2}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return AppConfig.model_validate(data)


def fake_secrets(**overrides: Any) -> Secrets:
    values: dict[str, Any] = {
        "discord_token": SecretStr("discord-test-token"),
        "openai_api_key": SecretStr("test"),
    }
    return Secrets(**{**values, **overrides})


@pytest.fixture
async def make_services(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[ServicesFactory]:
    """Build the core against the stand-in server; every instance is closed after the test."""
    started: list[Services] = []

    async def factory(**sections: dict[str, Any]) -> Services:
        config = make_config(tmp_path, **sections)
        if config.chat_backend.base_url is None:
            config = config.model_copy(
                update={
                    "chat_backend": config.chat_backend.model_copy(update={"base_url": fake_openai.base_url})
                }
            )
        services = await Services.start(config, fake_secrets(), openai_base_url=fake_openai.base_url)
        started.append(services)
        return services

    yield factory
    for services in started:
        await services.close()


def settings(**overrides: Any) -> GuildSettings:
    """Guild settings for a test: no tools unless asked, so schemas stay out of unrelated requests."""
    return GuildSettings(**{"enabled_tools": (), **overrides})
