"""`python -m bot [--config PATH] [--log-level LEVEL] [--check]`: start the bot, or check its set-up.

Start-up problems a person can fix (no token, a broken config file, a database from a newer
version, an unusable database path, the message-content intent not enabled) end with one clear line
and exit code 2. `--help` lists every environment variable read; `--check` validates the config, the
environment and the database and says what the bot would run with, without connecting anywhere.
SIGTERM (docker stop, systemctl stop, Kubernetes) and Ctrl-C stop the bot gracefully, with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from dotenv import find_dotenv, load_dotenv

from bot.config import (
    CONFIG_NAMED_VARIABLES,
    DEFAULT_CONFIG_PATH,
    DOTENV_LOOKUP,
    ENVIRONMENT_VARIABLES,
    LOG_LEVELS,
    AppConfig,
    LogLevel,
    Secrets,
    load_config,
    load_secrets,
    with_shards,
)
from bot.errors import ConfigError, DatabaseUnusableError, DiscordRefusedError, SchemaTooNewError
from bot.features import Features
from bot.storage.database import DatabaseStatus, inspect_database

EXIT_USAGE = 2
log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    load_dotenv(find_dotenv(usecwd=True))  # the .env of the folder the bot is started in, or a parent's
    config_path: Path = args.config or DEFAULT_CONFIG_PATH
    try:
        config = load_config(config_path, required=args.config is not None)
        config = with_shards(
            config,
            shard_count=args.shard_count,
            shard_ids=args.shard_ids,
            source="command line",
            names=("--shard-count", "--shard-ids"),
        )
        secrets = load_secrets(config)
        # Before any connection: a database the bot cannot use is one line here, not a traceback after
        # the Discord login. Nothing is created or migrated yet.
        database = asyncio.run(inspect_database(config.storage.database))
    except (ConfigError, DatabaseUnusableError, SchemaTooNewError) as exc:
        return _fail(str(exc))
    log_level: LogLevel = args.log_level or config.logging.level
    if args.check:
        found = config_path.exists()
        sys.stdout.write(check_report(config, secrets, database, log_level, config_path if found else None))
        return 0

    from bot.discord.logs import setup_logging  # discord.py loads only to run: not for --help/--check

    setup_logging(log_level)
    if args.config is None and not DEFAULT_CONFIG_PATH.exists():
        log.info("No %s found: using the defaults (see config.example.toml).", DEFAULT_CONFIG_PATH)

    # Until `run_until_stopped` puts the graceful handler in place, nothing is in progress:
    # SIGTERM just ends, with 0.
    signal.signal(signal.SIGTERM, _stop_before_start)
    from bot.discord.app import run_until_stopped

    try:
        asyncio.run(run_until_stopped(config, secrets))
    except (ConfigError, DatabaseUnusableError, SchemaTooNewError, DiscordRefusedError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass  # where the loop takes no signal handlers (Windows), Ctrl-C still ends the bot gracefully
    return 0


def _stop_before_start(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def argument_parser() -> argparse.ArgumentParser:
    """The options, and an epilog naming every environment variable the bot reads and where."""
    variables = "\n".join(f"  {variable.name:<22}{variable.meaning}" for variable in ENVIRONMENT_VARIABLES)
    epilog = (
        f"environment variables:\n{variables}\n  and {CONFIG_NAMED_VARIABLES}\n\n"
        f".env: {DOTENV_LOOKUP};\nthe environment's own values win over the file's\n\n"
        f"configuration: {DEFAULT_CONFIG_PATH} in the current folder unless --config names another file;\n"
        "every setting is optional (config.example.toml shows them all, with their defaults)"
    )
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Run the Discord assistant bot.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"path to the TOML configuration (default: {DEFAULT_CONFIG_PATH}, optional)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="overrides [logging] level (default: INFO)",
    )
    parser.add_argument(
        "--shard-count",
        metavar="N",
        default=None,
        help="how many shards the bot runs on in all; overrides BOT_SHARD_COUNT and [discord] shard_count"
        " (default: the count Discord recommends)",
    )
    parser.add_argument(
        "--shard-ids",
        metavar="IDS",
        default=None,
        help="the shards this process connects, e.g. 0,1 (needs a shard count); overrides BOT_SHARD_IDS"
        " and [discord] shard_ids (default: every shard)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, the environment and the database, say what the bot would run"
        " with, and exit (0: ready, 2: not) without connecting to Discord or OpenAI",
    )
    return parser


def check_report(
    config: AppConfig, secrets: Secrets, database: DatabaseStatus, log_level: str, config_file: Path | None
) -> str:
    """What `--check` prints: what the bot would run with, and which secrets are set (never their values)."""
    settings = config.defaults
    backend = f"{settings.backend}, model {settings.model}"
    if settings.backend == "chat" and config.chat_backend.base_url:
        backend += f" at {config.chat_backend.base_url}"
    keys = {
        "DISCORD_TOKEN": True,  # required: load_secrets refused its absence
        "OPENAI_API_KEY": secrets.openai_api_key is not None,
        config.chat_backend.api_key_env: secrets.chat_api_key is not None,
    }
    if config.images.api_key_env:
        keys[config.images.api_key_env] = secrets.images_api_key is not None
    for provider in config.providers.values():
        if provider.api_key_env:
            keys[provider.api_key_env] = bool(os.environ.get(provider.api_key_env, "").strip())
    providers = ", ".join(f"{name} ({p.serves})" for name, p in sorted(config.providers.items())) or "none"
    secrets_set = ", ".join(f"{name} {'set' if is_set else 'not set'}" for name, is_set in keys.items())
    lines = [
        f"config: {config_file if config_file is not None else 'the defaults (no config file)'}",
        f"backend: {backend}",
        f"database: {database.describe()}",
        f"discord: {secrets.discord_api_base_url or 'discord.com'}",
        f"openai: {os.environ.get('OPENAI_BASE_URL') or 'api.openai.com'}"
        + ("" if secrets.openai_api_key is not None else " (not used: no OPENAI_API_KEY)"),
        f"providers: {providers}",
        *feature_lines(config, secrets),
        f"secrets: {secrets_set}",
        f"log level: {log_level}",
        "ok: ready to start (nothing was connected to, created or migrated)",
    ]
    return "\n".join(lines) + "\n"


def feature_lines(config: AppConfig, secrets: Secrets) -> list[str]:
    """Which optional features are on, and which server serves each, or why each is off."""
    features = Features.of(config, secrets)
    lines = [feature.check_line() for feature in features.bot_wide()]
    lines.append(features.extraction(config.defaults).check_line())
    ignored = features.ignored_settings(config.defaults)
    if ignored:
        lines.append(f"not applied: {' '.join(ignored)}")
    return lines


def _fail(message: str) -> int:
    """One line for the person starting the bot; no traceback for problems they can fix."""
    sys.stderr.write(f"error: {message}\n")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
