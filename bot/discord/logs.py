"""The process's log: discord.py's handler and format, without the noise a chat bot does not need.

Set up once at start (`python -m bot`), before the client exists, so its filters see every record.
"""

from __future__ import annotations

import logging
import re

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

_URL_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/?\s'\"]+")
"""A token in a request URL: a webhook's (``/webhooks/{id}/{token}``, also interaction followups) or an
interaction's (``/interactions/{id}/{token}/callback``)."""
_TOKEN_FIELD = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+""")
TOKEN_LOGGERS = ("discord.http", "discord.webhook.async_")
"""discord.py's loggers that write request URLs and response bodies at DEBUG."""


class RedactWebhookTokens(logging.Filter):
    """A webhook's token (in its URL, or in the body that created it) lets anyone post as it, and an
    interaction's lets anyone answer it: discord.py's DEBUG lines carry both, so they are blanked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_FIELD.sub(r"\1<token>", _URL_TOKEN.sub(r"\1<token>", message))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


REDACT_WEBHOOK_TOKENS = RedactWebhookTokens()


def setup_logging(level: LogLevel) -> None:
    """discord.py's handler on the root logger at `level`; per-request lines only at DEBUG."""
    discord.utils.setup_logging(level=logging.getLevelNamesMapping()[level])
    logging.getLogger("discord.client").addFilter(DROP_VOICE_WARNINGS)  # before the client warns
    for name in TOKEN_LOGGERS:
        logging.getLogger(name).addFilter(REDACT_WEBHOOK_TOKENS)
    logging.getLogger(MODEL_HTTP_LOGGER).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
