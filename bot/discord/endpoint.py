"""Where discord.py talks to: Discord itself, or a Discord-compatible server named by DISCORD_API_BASE_URL.

discord.py keeps both addresses in class attributes: the REST base in ``discord.http.Route.BASE`` and
the gateway in ``DiscordWebSocket.DEFAULT_GATEWAY`` (the sharded client asks ``GET /gateway/bot`` only
when no shard count is set). So pointing the bot elsewhere takes two steps, both no-ops when no base
URL is configured:

1. ``use_rest_base(base_url)`` before ``login()`` (login already calls ``GET /users/@me``);
2. ``await use_gateway_of(client.http, base_url)`` in ``setup_hook`` (after login, before the websocket
   connects), which asks that server for its gateway the way a sharded client would.

The attributes are process-wide: one base URL per process. Tests that start a stand-in per test call
these again with each server's URL and ``restore_discord_urls()`` afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import INTERNAL_API_VERSION, HTTPClient, Route

__all__ = [
    "DISCORD_API_BASE_URL_ENV",
    "GatewayAdvice",
    "api_base_url_from_env",
    "gateway_advice",
    "restore_discord_urls",
    "use_gateway_of",
    "use_rest_base",
]

_log = logging.getLogger(__name__)

DISCORD_API_BASE_URL_ENV = "DISCORD_API_BASE_URL"

# discord.py's own values, captured at import so they can be put back.
_DISCORD_REST_BASE: str = Route.BASE
_DISCORD_GATEWAY: yarl.URL = DiscordWebSocket.DEFAULT_GATEWAY


def api_base_url_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The configured base URL (``http://127.0.0.1:8080``), without a trailing slash; None when unset."""
    env = os.environ if env is None else env
    return env.get(DISCORD_API_BASE_URL_ENV, "").strip().rstrip("/") or None


def use_rest_base(base_url: str | None) -> None:
    """Send every REST call (bot and interaction webhooks alike) to ``<base_url>/api/v10``.

    None leaves discord.py on Discord's own API.
    """
    if not base_url:
        return
    Route.BASE = f"{base_url.rstrip('/')}/api/v{INTERNAL_API_VERSION}"
    _log.info("Discord REST API at %s", Route.BASE)


@dataclass(frozen=True)
class GatewayAdvice:
    """What ``GET /gateway/bot`` says about sharding: how many shards, how many may identify at once."""

    recommended_shards: int
    max_concurrency: int


async def gateway_advice(http: HTTPClient) -> GatewayAdvice:
    """Ask ``GET /gateway/bot`` (after login). Raises ``discord.GatewayNotFound`` if it does not answer."""
    shards, _url, limits = await http.get_bot_gateway()
    return GatewayAdvice(shards, int(limits.get("max_concurrency", 1)))


async def use_gateway_of(http: HTTPClient, base_url: str | None) -> GatewayAdvice | None:
    """Connect the websocket to the gateway the configured server names in ``GET /gateway/bot``, and
    return the rest of that answer (None when it did not ask).

    Call it after login (the request needs the token) and before ``connect()``, i.e. in ``setup_hook``.
    None leaves discord.py on Discord's own gateway. Raises ``discord.GatewayNotFound`` if the server
    does not answer.
    """
    if not base_url:
        return None
    shards, url, limits = await http.get_bot_gateway()
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    _log.info("Discord gateway at %s", url)
    return GatewayAdvice(shards, int(limits.get("max_concurrency", 1)))


def restore_discord_urls() -> None:
    """Put discord.py back on Discord's own REST API and gateway (for tests, after a stand-in stops)."""
    Route.BASE = _DISCORD_REST_BASE
    DiscordWebSocket.DEFAULT_GATEWAY = _DISCORD_GATEWAY
