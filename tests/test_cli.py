"""`python -m bot` as a person meets it: --help, --check, and start-up failures as one line and exit 2.

Each failure is a real process that stops before connecting anywhere; DISCORD_API_BASE_URL points at a
refused port all the same, so a check that let a bad start through would hang (and time out) rather
than reach Discord.
"""

from __future__ import annotations

import ast
import logging
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import (
    DEFAULT_CONFIG_PATH,
    DOTENV_LOOKUP,
    ENVIRONMENT_VARIABLES,
    AppConfig,
    ChatBackendConfig,
    load_config,
)
from bot.discord.app import RETRY_FIRST_S, RETRY_MAX_S, Backoff
from bot.discord.logs import VOICE_WARNINGS, DropVoiceWarnings
from bot.errors import ConfigError
from bot.storage.migrations import LATEST_VERSION
from tests.faults.support import refused_port
from tests.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
CLI_TIMEOUT_S = 60
PROVIDERS = """\
[providers.citytables]
serves = "restaurants"
base_url = "https://tables.example/v1"

[providers.cabs]
serves = "rides"
base_url = "https://cabs.example/v1"
"""


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` in `cwd` with only the given variables (plus a refused Discord address)."""
    with refused_port() as port:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            capture_output=True,
            text=True,
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(ROOT),
                "DISCORD_API_BASE_URL": f"http://127.0.0.1:{port}",
                "DISCORD_TOKEN": "secret-discord-token",
                "OPENAI_API_KEY": "sk-secret-openai-key",
                **env,
            },
            cwd=cwd,
            timeout=CLI_TIMEOUT_S,
        )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit 2 and exactly one line on stderr, an `error:` line, and nothing else."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# ------------------------------------------------------------------ --help and the environment list


def test_help_names_every_environment_variable_the_dotenv_lookup_and_the_config_path(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for variable in ENVIRONMENT_VARIABLES:
        assert re.search(rf"^\s+{variable.name}\s", result.stdout, re.MULTILINE), variable.name
    assert DOTENV_LOOKUP in squeeze(result.stdout)
    assert "api_key_env" in result.stdout  # the provider keys, named by the configuration
    assert f"{DEFAULT_CONFIG_PATH} in the current folder" in result.stdout


def test_the_environment_list_is_what_the_code_reads() -> None:
    read = environment_reads(ROOT / "bot")
    listed = {variable.name for variable in ENVIRONMENT_VARIABLES}
    by_the_bot = {variable.name for variable in ENVIRONMENT_VARIABLES if not variable.read_by_sdk}
    chat_key = ChatBackendConfig().api_key_env  # read under the name the config gives (this by default)
    assert read <= listed, f"read but not listed: {read - listed}"
    assert by_the_bot - {chat_key} <= read, f"listed but never read: {by_the_bot - {chat_key} - read}"
    assert chat_key in by_the_bot


def test_the_environment_list_reader_finds_literal_and_constant_names(tmp_path: Path) -> None:
    """The scan the test above relies on sees both ways the code names a variable."""
    (tmp_path / "module.py").write_text(
        'import os\nNAME = "FROM_CONSTANT"\n'
        'def f(env):\n    return env.get("FROM_ENV_GET"), os.environ.get(NAME), os.getenv("FROM_GETENV")\n',
        encoding="utf-8",
    )
    assert environment_reads(tmp_path) == {"FROM_ENV_GET", "FROM_CONSTANT", "FROM_GETENV"}


def test_example_config_names_every_environment_variable_and_where_dotenv_is_read() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    header = squeeze(" ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#")))
    for variable in ENVIRONMENT_VARIABLES:
        assert re.search(rf"^#\s+{variable.name}\s", text, re.MULTILINE), variable.name
    assert squeeze(DOTENV_LOOKUP.removeprefix("a .env file in ")) in header
    assert "next to it" not in header


def environment_reads(folder: Path) -> set[str]:
    """Names passed to `env.get`, `os.environ.get`, `os.environ[...]` and `os.getenv` in `folder`'s code."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            argument: ast.expr | None = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                owner = ast.unparse(node.func.value)
                if (node.func.attr == "get" and owner in ("env", "os.environ")) or (
                    node.func.attr == "getenv" and owner == "os"
                ):
                    argument = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                argument = node.slice
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
            elif isinstance(argument, ast.Name) and argument.id in constants:
                names.add(constants[argument.id])
    return names


# ------------------------------------------------------------------ --check


def test_check_says_what_it_would_run_with_without_secrets_or_side_effects(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.db"
    result = run_cli("--check", cwd=tmp_path, BOT_DATABASE=str(database))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert lines["backend"] == "responses, model gpt-5.5"
    assert lines["database"].startswith(f"{database} (not there yet")
    assert lines["secrets"] == "DISCORD_TOKEN set, OPENAI_API_KEY set, CHAT_API_KEY not set"
    assert lines["log level"] == "INFO"
    assert lines["ok"].startswith("ready to start")
    assert "secret-discord-token" not in result.stdout and "sk-secret" not in result.stdout
    assert not database.parent.exists()  # nothing created


def test_check_reports_an_older_database_and_leaves_it_unmigrated(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA user_version = 1")
    config = tmp_path / "bot.toml"
    config.write_text('[logging]\nlevel = "warning"\n', encoding="utf-8")
    result = run_cli(
        "--check", "--config", str(config), "--log-level", "debug", cwd=tmp_path, BOT_DATABASE=str(database)
    )
    assert result.returncode == 0, result.stderr
    assert f"database: {database} (schema version 1: migrated to {LATEST_VERSION} at start)" in result.stdout
    assert "log level: DEBUG" in result.stdout  # the option wins over the file
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1


def test_check_refuses_a_database_from_a_newer_bot(tmp_path: Path) -> None:
    database = tmp_path / "new.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    line = one_error_line(run_cli("--check", cwd=tmp_path, BOT_DATABASE=str(database)))
    assert str(database) in line and "newer than this bot knows" in line


def test_check_reads_a_postgresql_database_without_showing_its_password(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.new_database().replace("postgres@", "postgres:hunter2@", 1)  # trust: any password
    result = run_cli("--check", cwd=tmp_path, BOT_DATABASE=url)
    assert result.returncode == 0, result.stderr
    assert f"database: {url.replace('hunter2', '***')} (schema version 0: migrated to " in result.stdout
    assert "hunter2" not in result.stdout


def test_check_fails_like_a_start_on_a_missing_token(tmp_path: Path) -> None:
    line = one_error_line(run_cli("--check", cwd=tmp_path, DISCORD_TOKEN=""))
    assert "DISCORD_TOKEN is not set" in line


# ------------------------------------------------------------------ start-up failures


def database_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Database paths the bot cannot use, and the words its error line must hold."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder", encoding="utf-8")
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("these are my notes, not a database " * 10, encoding="utf-8")
    (tmp_path / "a-folder").mkdir()
    return {
        "folder": (tmp_path / "a-folder", "is a folder, not a database file"),
        "parent is a file": (a_file / "data" / "bot.db", f"its folder cannot be created: {a_file} is a file"),
        "unwritable folder": (Path("/proc/bot.db"), "the folder /proc is not writable"),
        "not a database": (not_sqlite, "cannot be opened (file is not a database)"),
    }


@pytest.mark.parametrize("case", ["folder", "parent is a file", "unwritable folder", "not a database"])
@pytest.mark.parametrize("check", [False, True], ids=["start", "check"])
def test_unusable_database_is_one_line_naming_the_path_and_exit_2(
    tmp_path: Path, case: str, check: bool
) -> None:
    database, problem = database_cases(tmp_path)[case]
    result = run_cli(*(["--check"] if check else []), cwd=tmp_path, BOT_DATABASE=str(database))
    line = one_error_line(result)
    assert line.startswith(f"error: {database}: {problem}"), line
    assert "BOT_DATABASE" in line  # and how to fix it


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0, reason="root writes anyway")
def test_read_only_database_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    sqlite3.connect(database).close()
    database.chmod(0o444)
    line = one_error_line(run_cli(cwd=tmp_path, BOT_DATABASE=str(database)))
    assert line.startswith(f"error: {database}: is read-only"), line


@pytest.mark.parametrize(
    ("defaults", "setting", "defined"),
    [
        ('booking_provider = "tablez"', "defaults.booking_provider", "defined: builtin, citytables"),
        ('ride_provider = "citytables"', "defaults.ride_provider", "defined: builtin, cabs"),  # wrong family
    ],
)
def test_undefined_provider_is_refused_at_start_in_one_line(
    tmp_path: Path, defaults: str, setting: str, defined: str
) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(f"{PROVIDERS}\n[defaults]\n{defaults}\n", encoding="utf-8")
    line = one_error_line(run_cli("--config", str(config), cwd=tmp_path, BOT_DATABASE=str(tmp_path / "b.db")))
    assert line.startswith(f"error: {config}: {setting} names "), line
    assert line.endswith(defined), line


def test_defined_providers_load(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(
        f'{PROVIDERS}\n[defaults]\nbooking_provider = "citytables"\nride_provider = "cabs"\n',
        encoding="utf-8",
    )
    loaded = load_config(config, required=True, env={})
    assert (loaded.defaults.booking_provider, loaded.defaults.ride_provider) == ("citytables", "cabs")


def test_log_level_must_be_a_level(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[logging]\nlevel = "LOUD"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config, required=True, env={})
    assert info.value.setting == "logging.level"
    assert AppConfig().logging.level == "INFO"


# ------------------------------------------------------------------ logging and backoff, in process


def test_voice_warnings_are_dropped_and_nothing_else() -> None:
    keep = DropVoiceWarnings()

    def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("discord.client", level, __file__, 1, message, None, None)

    assert len(VOICE_WARNINGS) == 2
    for warning in VOICE_WARNINGS:
        assert not keep.filter(record(warning))
    assert keep.filter(record("logging in using static token", logging.INFO))
    assert keep.filter(record("Application has an interaction endpoint URL set"))


def test_the_filtered_voice_warnings_are_the_installed_discord_py_ones() -> None:
    """If discord.py rewords them, the filter would silently stop working: this fails instead."""
    import discord.client

    source = Path(discord.client.__file__).read_text(encoding="utf-8")
    for warning in VOICE_WARNINGS:
        assert f"'{warning}'" in source or f'"{warning}"' in source, warning


@given(seed=st.integers(min_value=0, max_value=2**32), attempts=st.integers(min_value=1, max_value=20))
def test_backoff_doubles_up_to_its_cap_with_jitter(seed: int, attempts: int) -> None:
    import random

    backoff = Backoff(rng=random.Random(seed))
    step = RETRY_FIRST_S
    for _ in range(attempts):
        delay = backoff.next_delay_s()
        assert step / 2 <= delay <= step
        step = min(step * 2, RETRY_MAX_S)
