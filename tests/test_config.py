"""Configuration: the file, the environment, and how `python -m bot` reports problems."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.config import AppConfig, GuildSettings, ProviderConfig, load_config, load_secrets
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ENV = {"DISCORD_TOKEN": "token", "OPENAI_API_KEY": "sk-test"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nmodel = "gpt-5.4-mini"\n[streaming]\nedit_interval_s = 2.0\n')
    config = load_config(path, required=True, env={})
    assert config.defaults.model == "gpt-5.4-mini"
    assert config.streaming.edit_interval_s == 2.0
    assert config.defaults.backend == "responses"  # absent: the default
    assert config.engine == AppConfig().engine


def test_missing_default_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "config.toml", required=False, env={}) == AppConfig()


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", required=True, env={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[defaults\nmodel = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, required=True, env={})
    assert str(path) in str(info.value) and "not valid TOML" in str(info.value)


@pytest.mark.parametrize(
    ("text", "setting", "fragment"),
    [
        ('[defaults]\nbackend = "assistants"\n', "defaults.backend", "responses"),
        ('[defaults]\ntimezone = "Mars/Olympus"\n', "defaults.timezone", "unknown time zone"),
        ('[defaults]\nenabled_tools = ["teleport"]\n', "defaults.enabled_tools", "unknown tool"),
        ("[streaming]\nedit_interval_s = 0\n", "streaming.edit_interval_s", "greater than or equal"),
        ("[engine]\nmax_tool_round = 3\n", "engine.max_tool_round", "not a known setting"),
        ('[defaults]\nuser_cooldown_s = "soon"\n', "defaults.user_cooldown_s", "valid number"),
    ],
)
def test_invalid_value_names_setting_and_file(tmp_path: Path, text: str, setting: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, required=True, env={})
    assert info.value.setting == setting
    assert fragment in info.value.problem
    assert str(path) in str(info.value)


def test_bot_database_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(tmp_path / "config.toml", required=False, env={"BOT_DATABASE": "/tmp/x.db"})
    assert config.storage.database == Path("/tmp/x.db")


def test_bot_database_may_be_a_postgresql_url(tmp_path: Path) -> None:
    url = "postgresql://bot:secret@db.internal:5432/bot"
    (tmp_path / "config.toml").write_text("[storage]\nknowledge_memory_mb = 64\n", encoding="utf-8")
    config = load_config(tmp_path / "config.toml", required=True, env={"BOT_DATABASE": url})
    assert config.storage.database == url  # not folded into a path
    assert config.storage.knowledge_memory_mb == 64  # the rest of [storage] still applies


def test_secrets_come_from_the_environment() -> None:
    secrets = load_secrets(AppConfig(), env={**ENV, "DISCORD_API_BASE_URL": "http://127.0.0.1:9/"})
    assert secrets.discord_token.get_secret_value() == "token"
    assert secrets.discord_api_base_url == "http://127.0.0.1:9"


def test_missing_token_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_secrets(AppConfig(), env={"OPENAI_API_KEY": "sk"})
    assert info.value.setting == "DISCORD_TOKEN"


def test_openai_key_required_for_responses_backend_only() -> None:
    with pytest.raises(ConfigError) as info:
        load_secrets(AppConfig(), env={"DISCORD_TOKEN": "t"})
    assert info.value.setting == "OPENAI_API_KEY"
    local = AppConfig.model_validate(
        {"defaults": {"backend": "chat"}, "chat_backend": {"base_url": "http://127.0.0.1:11434/v1"}}
    )
    assert load_secrets(local, env={"DISCORD_TOKEN": "t"}).openai_api_key is None


def test_example_config_equals_the_defaults_and_documents_every_setting() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert AppConfig.model_validate(tomllib.loads(text)) == AppConfig()
    sections = {name: field.annotation for name, field in AppConfig.model_fields.items()}
    sections["providers"] = ProviderConfig  # a table of these
    for section, model in sections.items():
        assert f"[{section}]" in text
        for name in model.model_fields:  # type: ignore[union-attr]
            assert re.search(rf"^#? ?{name} = ", text, re.MULTILINE), f"{section}.{name} is not documented"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        timeout=60,
    )


def test_cli_missing_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli(env={"OPENAI_API_KEY": "sk"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: environment: DISCORD_TOKEN is not set (put it in .env or the environment)"
    ]
    assert "Traceback" not in result.stderr


def test_cli_invalid_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\nmoderation = "maybe"\n')
    result = run_cli("--config", str(path), env=ENV, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "defaults.moderation" in lines[0]


def test_cli_reads_dotenv(tmp_path: Path) -> None:
    """The token comes from .env, so the next missing secret is the one reported."""
    (tmp_path / ".env").write_text("DISCORD_TOKEN=from-dotenv\n")
    result = run_cli(env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "OPENAI_API_KEY is not set" in result.stderr


def test_guild_settings_deduplicate_tools() -> None:
    settings = GuildSettings(enabled_tools=("rides", "rides", "knowledge"))
    assert settings.enabled_tools == ("rides", "knowledge")
