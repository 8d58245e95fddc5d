"""Learning from discord.py's HTTP traffic: Discord's rate-limit headers as scheduler observations.

The only part of the scheduler that knows Discord's header names and URL shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.discord.render.scheduler.core import (
    DELETE_ROUTE,
    EDIT_ROUTE,
    POST_ROUTE,
    THREAD_ROUTE,
    TYPING_ROUTE,
    WEBHOOK_DELETE_ROUTE,
    WEBHOOK_EDIT_ROUTE,
    WEBHOOK_POST_ROUTE,
    Observation,
)

if TYPE_CHECKING:
    import aiohttp

    from bot.discord.render.scheduler.driver import WriteScheduler

_CHANNEL_PATH = re.compile(r"/channels/(\d+)/(typing|threads|messages(?:/\d+)?(?:/threads)?)/?$")
_WEBHOOK_PATH = re.compile(r"/webhooks/(\d+)/[^/]+(/messages/[^/]+)?/?$")
"""A webhook's token routes: its buckets are the webhook's own (major parameter: its id)."""


def parse_rate_limit(method: str, path: str, status: int, headers: Mapping[str, str]) -> Observation | None:
    """Read one Discord response's rate-limit headers into an ``Observation`` (``None``: nothing to learn).

    The route is named the way the bot's writes are: ``post`` and ``edit`` for messages in a channel,
    ``delete``, ``typing``, ``thread``; a webhook's are ``webhook_post``, ``webhook_edit`` and
    ``webhook_delete``, keyed by its id.
    """
    lower = {k.lower(): v for k, v in headers.items() if k.lower().startswith(("x-ratelimit", "retry-after"))}
    channel: int | None = None
    route: str | None = None
    match = _CHANNEL_PATH.search(path)
    if match is not None:
        channel = int(match.group(1))
        tail = match.group(2)
        if tail == "typing":
            route = TYPING_ROUTE
        elif tail.endswith("threads"):
            route = THREAD_ROUTE
        elif method.upper() == "DELETE":
            route = DELETE_ROUTE
        elif method.upper() == "POST" and tail == "messages":
            route = POST_ROUTE
        elif method.upper() == "PATCH" and tail != "messages":
            route = EDIT_ROUTE
    webhook = _WEBHOOK_PATH.search(path) if match is None else None
    if webhook is not None:
        # Keyed by the webhook's id, as a webhook sink names its writes' channel.
        channel = int(webhook.group(1))
        verb = method.upper()
        if webhook.group(2) is None:
            route = WEBHOOK_POST_ROUTE if verb == "POST" else None
        else:
            route = {"PATCH": WEBHOOK_EDIT_ROUTE, "DELETE": WEBHOOK_DELETE_ROUTE}.get(verb)
    is_global = lower.get("x-ratelimit-global", "").lower() == "true" or (
        lower.get("x-ratelimit-scope", "").lower() == "global"
    )
    if status != 429 and route is None:
        return None
    if status != 429 and "x-ratelimit-remaining" not in lower:
        return None
    return Observation(
        status=status,
        channel=channel,
        route=route,
        limit=_int(lower.get("x-ratelimit-limit")),
        remaining=_int(lower.get("x-ratelimit-remaining")),
        reset_after_s=_float(lower.get("x-ratelimit-reset-after")),
        retry_after_s=_float(lower.get("retry-after")),
        is_global=is_global,
    )


def rate_limit_trace_config(scheduler: WriteScheduler) -> aiohttp.TraceConfig:
    """An aiohttp trace that tells ``scheduler`` what each Discord response said about rate limits.

    Pass it as ``discord.Client(..., http_trace=rate_limit_trace_config(scheduler))``. It reads headers
    only (never the body, which discord.py still has to read).
    """
    import aiohttp

    async def on_request_end(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        response = params.response
        seen = parse_rate_limit(params.method, params.url.path, response.status, response.headers)
        if seen is not None:
            scheduler.observe(seen)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
