"""OpenAI (and compatible servers') errors as one short sentence a Discord user understands."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import httpx2
import openai

from bot.engine.events import FailureKind

MAX_DETAIL_CHARS = 200

_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
"""OpenAI's error code (vLLM and gateways reuse it) and llama.cpp's error type for an overflow."""
_CONTEXT_MESSAGE = re.compile(
    r"maximum context length is \d+"  # OpenAI's Chat Completions, vLLM, LiteLLM
    # OpenAI's Responses ("exceeds the context window"), llama.cpp ("exceeds the available context
    # size"), llama-cpp-python ("Requested tokens (N) exceed context window of M")
    r"|exceeds? (?:the )?(?:available |model's )?context (?:window|size|length)"
    r"|context (?:window|size|length) (?:has been |was |is )?exceeded"  # LM Studio, others
    r"|context_length_exceeded",
    re.IGNORECASE,
)
_CONTEXT_WINDOW = re.compile(
    r"maximum context length is (\d+)|context window of (\d+)(?: tokens)?\b", re.IGNORECASE
)


def describe_error(exc: BaseException, *, model: str) -> tuple[FailureKind, str]:
    """Map an exception from a model call to (kind, reason); unknown errors get a generic line."""
    if is_context_length_error(exc):  # the backends recover from it once; this is what is left
        return "bad_request", (
            "The message is too long for the model's context window, even with earlier messages "
            "left out; please send a shorter one."
        )
    if isinstance(exc, openai.RateLimitError):
        if _code(exc) == "insufficient_quota":
            return "quota", "The bot's OpenAI quota is used up; the bot's owner needs to check the billing."
        return "rate_limited", "The model is rate-limiting the bot right now; please try again in a minute."
    if isinstance(exc, openai.AuthenticationError):
        return "auth", "The bot's API key was rejected; the bot's owner needs to fix it."
    if isinstance(exc, openai.PermissionDeniedError):
        return "auth", "The bot's API key may not use this model or feature."
    if isinstance(exc, openai.NotFoundError):
        if _code(exc) == "model_not_found" or "model" in _message(exc).lower():
            return "model_not_found", f"The model `{model}` is not available; an admin can pick another."
        return "bad_request", f"The model server did not find what was asked: {_message(exc)}"
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError | openai.ConflictError):
        return "bad_request", f"The model server refused the request: {_message(exc)}"
    if isinstance(exc, openai.APITimeoutError) and _refused(exc):
        return "connection", "The connection to the model broke off; please try again."
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout", "The model took too long to answer; please try again."
    if isinstance(exc, openai.InternalServerError):
        return "server", "The model server had a problem; please try again shortly."
    if isinstance(exc, openai.APIStatusError):
        return "server", f"The model server answered with an error ({exc.status_code})."
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | ConnectionError):
        return "connection", "The connection to the model broke off; please try again."
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return "server", "The model server sent something unreadable; please try again."
    if isinstance(exc, openai.APIError):  # an error event in the middle of a stream
        return "failed", f"The model could not answer: {_message(exc)}"
    return "internal", "Something went wrong on the bot's side; the error was logged."


def is_context_length_error(exc: BaseException) -> bool:
    """Whether the model refused the request because its input outgrew the context window.

    OpenAI answers 400 with code `context_length_exceeded`; OpenAI-compatible servers say it their own
    way (vLLM: "maximum context length is N tokens", llama.cpp: type `exceed_context_size_error`,
    sometimes as an error event after a 200), so the code, the type and the message are all read.
    """
    if not isinstance(exc, openai.APIError) or isinstance(exc, openai.APIConnectionError):
        return False
    error = _error_body(exc)
    for field in ("code", "type"):
        if error.get(field) in _CONTEXT_CODES:
            return True
    if getattr(exc, "code", None) in _CONTEXT_CODES:
        return True
    message = error.get("message")
    text = message if isinstance(message, str) else exc.message
    return bool(_CONTEXT_MESSAGE.search(text))


def context_window_of(exc: BaseException) -> int | None:
    """The window (in tokens) a context-length error names, when it names one."""
    if not isinstance(exc, openai.APIError):
        return None
    error = _error_body(exc)
    n_ctx = error.get("n_ctx")  # llama.cpp
    if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
        return n_ctx
    message = error.get("message")
    match = _CONTEXT_WINDOW.search(message if isinstance(message, str) else exc.message)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def _error_body(exc: openai.APIError) -> dict[str, object]:
    """The error object of an API error (the SDK keeps the inner `error` of a status error's body)."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error
    return {}


def _refused(exc: BaseException) -> bool:
    """Whether the server could not be reached at all: the SDK's aiohttp transport (`bot.services`)
    reports a refused or unreachable server as a connect timeout; the cause says which it was."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__
    return False


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    return getattr(exc, "code", None)


def _message(exc: openai.APIError) -> str:
    body = exc.body
    message = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message")
    text = str(message or exc.message)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"
