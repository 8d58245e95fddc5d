"""The process's log: discord.py's handler and format, without the noise a chat bot does not need.

Set up once at start (`python -m bot`), before the client exists, so its filters see every record.
"""

from __future__ import annotations

import logging

import discord

from bot.config import LogLevel

VOICE_WARNINGS = frozenset(
    {
        "PyNaCl is not installed, voice will NOT be supported",
        "davey is not installed, voice will NOT be supported",
    }
)
"""What discord.py's client warns at every start when the voice libraries are missing."""
MODEL_HTTP_LOGGER = "httpx2"
"""The OpenAI SDK's HTTP library: it logs every request at INFO ("HTTP Request: POST ...")."""


class DropVoiceWarnings(logging.Filter):
    """This bot has no voice features: discord.py's warnings about the missing voice libraries are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and record.getMessage() in VOICE_WARNINGS)


DROP_VOICE_WARNINGS = DropVoiceWarnings()


def setup_logging(level: LogLevel) -> None:
    """discord.py's handler on the root logger at `level`; per-request lines only at DEBUG."""
    discord.utils.setup_logging(level=logging.getLevelNamesMapping()[level])
    logging.getLogger("discord.client").addFilter(DROP_VOICE_WARNINGS)  # before the client warns
    logging.getLogger(MODEL_HTTP_LOGGER).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
