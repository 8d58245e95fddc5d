"""The bot's own error types, each carrying a sentence fit to show a person.

Errors are raised deep and handled once, near the user: the CLI turns `ConfigError` into one line and
exit code 2; cogs turn `UserFacingError` into an ephemeral message.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """The configuration or environment is unusable: names the file and the setting."""

    def __init__(self, source: str, setting: str, problem: str) -> None:
        self.source = source
        self.setting = setting
        self.problem = problem
        super().__init__(f"{source}: {setting} {problem}")


class SchemaTooNewError(BotError):
    """The database was written by a newer version of the bot; refusing to touch it."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"{path}: database schema version {found} is newer than this bot knows ({known}); "
            "upgrade the bot or point BOT_DATABASE at another file"
        )


class UserFacingError(BotError):
    """Something the user asked for cannot be done; the message says why, in one sentence."""
