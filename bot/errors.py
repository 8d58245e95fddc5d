"""The bot's own error types, each carrying a sentence fit to show a person.

Errors are raised deep and handled once, near the user: the CLI turns `ConfigError`,
`DatabaseUnusableError` and `SchemaTooNewError` into one line and exit code 2; cogs turn
`UserFacingError` into an ephemeral message.
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


class DatabaseUnusableError(BotError):
    """The database path cannot be opened or written: names the path, what is wrong, and the fix."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path}: {problem}; set [storage] database or BOT_DATABASE to a file the bot can write"
        )


class UserFacingError(BotError):
    """Something the user asked for cannot be done; the message says why, in one sentence."""


class DiscordRefusedError(BotError):
    """Discord refused the bot at login for a reason its owner fixes in the Developer Portal."""


class DatabaseUnavailableError(UserFacingError):
    """The database connection was lost (or cannot be made again) while the bot was running.

    The statement that met the loss fails with this (a transaction it was in is rolled back by the
    server, never half-applied); the next use reconnects.
    """

    def __init__(
        self, message: str = "I cannot reach my database right now; please try again in a minute."
    ) -> None:
        super().__init__(message)
