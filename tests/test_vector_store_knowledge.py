"""Knowledge in an OpenAI vector store: the `knowledge_store` setting, files added to the guild's store
(created once), the hosted `file_search` tool in conversations with its file citations shown as
sources, and /search and /forget over the store.

Everything runs against the stand-in OpenAI server, which keeps vector stores and files in the real
shapes; the storage tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import GuildSettings, load_config
from bot.errors import ConfigError
from bot.features import OPENAI_KNOWLEDGE_STORE_OFF, Features
from bot.guild_settings import InvalidSettingError, SettingsCache, SettingsService
from bot.storage import Storage
from tests import conftest
from tests.conftest import fake_secrets, make_config

DATABASE_ENGINES = conftest.DATABASE_ENGINES
GUILD = 4242
ADMIN = 7


# ------------------------------------------------------------------------------ the setting


def settings_service(storage: Storage) -> SettingsService:
    return SettingsService(storage, SettingsCache(), GuildSettings())


async def test_the_openai_store_is_refused_on_the_chat_backend_both_ways(storage: Storage) -> None:
    service = settings_service(storage)
    await service.set(GUILD, "knowledge_store", "openai", user_id=ADMIN)
    with pytest.raises(InvalidSettingError, match=r"Set `knowledge_store` back to `local` first"):
        await service.set(GUILD, "backend", "chat", user_id=ADMIN)
    await service.set(GUILD, "knowledge_store", "local", user_id=ADMIN)
    await service.set(GUILD, "backend", "chat", user_id=ADMIN)
    with pytest.raises(InvalidSettingError) as refused:
        await service.set(GUILD, "knowledge_store", "openai", user_id=ADMIN)
    assert str(refused.value) == (
        "An OpenAI vector store is searched by OpenAI's hosted file_search, which only works with the"
        " `responses` backend; this server uses `chat`."
    )
    assert (await service.effective(GUILD)).knowledge_store == "local"


def test_the_openai_store_is_refused_without_an_openai_key(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    without_key = Features.of(config, fake_secrets(openai_api_key=None))
    assert without_key.setting_refusal("knowledge_store", "openai") == OPENAI_KNOWLEDGE_STORE_OFF
    assert without_key.setting_refusal("knowledge_store", "local") is None
    with_key = Features.of(config, fake_secrets())
    assert with_key.setting_refusal("knowledge_store", "openai") is None


def test_a_config_file_with_the_openai_store_on_the_chat_backend_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[defaults]\nbackend = "chat"\nknowledge_store = "openai"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, required=True, env={})
    assert str(info.value) == (
        f'{path}: defaults.knowledge_store is "openai", a vector store searched by OpenAI\'s hosted'
        ' file_search, which needs backend = "responses" (not "chat")'
    )
