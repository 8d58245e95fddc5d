"""`python -m bot [--config PATH]`: start the bot.

Start-up problems a person can fix (no token, a broken config file, a database from a newer
version, the message-content intent not enabled) end with one clear line and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import discord
from dotenv import find_dotenv, load_dotenv

from bot.config import DEFAULT_CONFIG_PATH, load_config, load_secrets
from bot.errors import ConfigError, SchemaTooNewError

EXIT_USAGE = 2
log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Run the Discord assistant bot.")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"path to the TOML configuration (default: {DEFAULT_CONFIG_PATH}, optional)",
    )
    args = parser.parse_args(argv)
    load_dotenv(find_dotenv(usecwd=True))  # the .env of the folder the bot is started in
    try:
        config = load_config(args.config or DEFAULT_CONFIG_PATH, required=args.config is not None)
        secrets = load_secrets(config)
    except ConfigError as exc:
        return _fail(str(exc))

    discord.utils.setup_logging()
    if args.config is None and not DEFAULT_CONFIG_PATH.exists():
        log.info("No %s found: using the defaults (see config.example.toml).", DEFAULT_CONFIG_PATH)

    from bot.app import run  # imported late: argument and config errors should not wait for discord.py

    try:
        asyncio.run(run(config, secrets))
    except SchemaTooNewError as exc:
        return _fail(str(exc))
    except discord.PrivilegedIntentsRequired:
        return _fail(
            "Discord refused the Message Content intent. Enable it for this bot in the Developer Portal "
            "(Bot -> Privileged Gateway Intents -> MESSAGE CONTENT INTENT), then start again."
        )
    except discord.LoginFailure:
        return _fail("Discord rejected DISCORD_TOKEN; copy the bot token again from the Developer Portal.")
    except KeyboardInterrupt:
        pass
    return 0


def _fail(message: str) -> int:
    """One line for the person starting the bot; no traceback for problems they can fix."""
    sys.stderr.write(f"error: {message}\n")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
