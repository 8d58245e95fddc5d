"""Fixtures shared by the whole suite: the stand-in OpenAI server and the core built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from bot.config import AppConfig, GuildSettings, Secrets
from bot.services import Services
from bot.storage import Storage
from standins.openai import FakeOpenAI
from tests.postgres_server import PostgresServer, running_postgres
from tests.redis_server import RedisServer, running_redis

if TYPE_CHECKING:
    from tests.llama_server import LlamaServer

ServicesFactory = Callable[..., Awaitable[Services]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--load-seconds",
        type=float,
        default=None,
        help="seconds tests/faults/test_load.py keeps 200 people talking (default 60)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """`slow` (as in tests/faults/conftest.py): also marks tests here that run real processes."""
    config.addinivalue_line("markers", "slow: runs real processes or a long load; part of the default run")


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (each test gets a database of its own)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis server for the whole session; a test that stops it must start it again."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real llama.cpp server (llama-cpp-python's) for the session, on a tiny model written for it."""
    from tests.llama_server import running_llama_server, write_tiny_model  # gguf only where it is used

    model = tmp_path_factory.mktemp("llama") / "tiny-llama.gguf"
    write_tiny_model(model)
    with running_llama_server(model) as server:
        yield server


DATABASE_ENGINES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets `DATABASE_ENGINES = conftest.DATABASE_ENGINES` runs its database tests on both."""
    engines = getattr(metafunc.module, "DATABASE_ENGINES", None)
    if engines and "database_location" in metafunc.fixturenames:
        metafunc.parametrize("database_location", engines, indirect=True)


@pytest.fixture
def database_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: an SQLite file, or (where a module asks for both engines) a fresh PostgreSQL
    database's URL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return str(tmp_path / "bot.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
async def storage(database_location: str) -> AsyncIterator[Storage]:
    """A migrated database of its own, closed after the test (see `database_location`)."""
    opened = await Storage.open(database_location)
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
