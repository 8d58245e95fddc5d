"""OpenAI (and compatible servers') errors as one short sentence a Discord user understands."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx2
import openai

from bot.engine.events import FailureKind

MAX_DETAIL_CHARS = 200


def describe_error(exc: BaseException, *, model: str) -> tuple[FailureKind, str]:
    """Map an exception from a model call to (kind, reason); unknown errors get a generic line."""
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
