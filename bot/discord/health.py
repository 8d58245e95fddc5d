"""`/healthz` and `/metrics` over HTTP, for a supervisor's probes and a Prometheus scraper.

Started by the bot when `[metrics] port` (or `BOT_METRICS_PORT`) is set, closed with it. It lives on
the Discord side because health means "every shard of this process is connected"; what `/metrics`
shows is defined in the core (`bot.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


def shards_connected(client: discord.Client) -> tuple[int, int]:
    """(connected, total) gateway connections of this process: one unless the client is sharded."""
    if isinstance(client, discord.AutoShardedClient):
        shards = list(client.shards.values())
        return sum(not shard.is_closed() for shard in shards), len(shards)
    ws = client.ws
    return (1 if ws is not None and ws.open else 0), 1


def is_healthy(client: discord.Client, *, stopping: bool) -> bool:
    """Ready (every guild received) with every shard connected, and not stopping."""
    if stopping or client.is_closed() or not client.is_ready():
        return False
    connected, total = shards_connected(client)
    return total > 0 and connected == total


class HealthServer:
    """An aiohttp server with `/healthz` (200 when healthy, else 503, with a small JSON body) and
    `/metrics` (the registry in Prometheus' text format)."""

    def __init__(
        self,
        client: discord.Client,
        registry: CollectorRegistry,
        *,
        host: str,
        port: int,
        stopping: Callable[[], bool],
    ) -> None:
        self._client = client
        self._registry = registry
        self._host = host
        self._requested_port = port
        self._stopping = stopping
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The port listened on once started (the one chosen when 0 was asked for)."""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("Serving /healthz and /metrics on %s:%s", self._host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        stopping = self._stopping()
        connected, total = shards_connected(self._client)
        healthy = is_healthy(self._client, stopping=stopping)
        body = {
            "status": "ok" if healthy else ("stopping" if stopping else "connecting"),
            "ready": self._client.is_ready(),
            "shards_connected": connected,
            "shards": total,
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
