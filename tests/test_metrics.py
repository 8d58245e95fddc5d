"""`/healthz` and `/metrics` on the real bot, against the stand-ins.

Health: 503 before the bot is ready, while a shard is disconnected and while stopping; 200 once every
shard is connected. Metrics: what one answered mention, a Discord 429 and a failed turn add up to, and
that no label could hold a guild, channel or user id.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.config import load_config
from bot.discord.app import AssistantBot
from bot.discord.health import HealthServer
from bot.errors import ConfigError
from bot.metrics import NO_FAILURE, TURN_OUTCOMES
from standins.openai import FakeOpenAI, HttpError, Reply
from tests.conftest import fake_secrets, make_config
from tests.faults.support import WAIT_S, open_thread, wait_for_content, wait_for_warning
from tests.harness import Harness, running_bot

METRICS_ON = {"port": 0}
"""Any free port on 127.0.0.1 (the default host); the bot says which in `health_server.port`."""
ALLOWED_LABELS = frozenset({"outcome", "kind", "route", "scope", "direction", "le"})
"""Every label name the bot's metrics may carry: small fixed sets, never an id."""


async def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET on the bot's health server."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def port_of(h: Harness) -> int:
    server = h.bot.health_server
    assert server is not None and server.port is not None
    return server.port


async def scrape(h: Harness) -> list[Sample]:
    status, content_type, body = await get(port_of(h), "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain") and "version=" in content_type
    return [sample for family in text_string_to_metric_families(body) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if there are none)."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_healthz_is_503_before_the_bot_is_ready(tmp_path: Path) -> None:
    bot = AssistantBot(make_config(tmp_path), fake_secrets())  # never connected
    server = HealthServer(bot, bot.metrics.registry, host="127.0.0.1", port=0, stopping=lambda: False)
    await server.start()
    try:
        assert server.port is not None
        status, _, body = await get(server.port, "/healthz")
    finally:
        await server.close()
    assert status == 503
    assert '"status": "connecting"' in body and '"ready": false' in body


async def test_healthz_is_200_when_connected_503_while_a_shard_is_down_and_while_stopping(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, metrics=METRICS_ON) as h:
        port = port_of(h)
        status, content_type, body = await get(port, "/healthz")
        assert (status, content_type.split(";")[0]) == (200, "application/json")
        assert '"status": "ok"' in body

        disconnected = asyncio.ensure_future(h.bot.wait_for("disconnect", timeout=WAIT_S))
        resumed = asyncio.ensure_future(h.bot.wait_for("resumed", timeout=WAIT_S))
        async with h.discord.gateway_outage(code=4000):
            await disconnected
            status, _, body = await get(port, "/healthz")
            assert status == 503, body
        await resumed
        assert (await get(port, "/healthz"))[0] == 200

        # The same server while the bot is stopping (the bot's own flag, read at each request).
        stopping = HealthServer(
            h.bot, h.bot.metrics.registry, host="127.0.0.1", port=0, stopping=lambda: True
        )
        await stopping.start()
        try:
            assert stopping.port is not None
            status, _, body = await get(stopping.port, "/healthz")
        finally:
            await stopping.close()
        assert status == 503 and '"status": "stopping"' in body
    with pytest.raises(aiohttp.ClientConnectionError):  # closed with the bot
        await get(port, "/healthz")


async def test_an_answered_mention_shows_in_metrics_with_no_id_in_any_label(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, metrics=METRICS_ON) as h:
        before = await scrape(h)
        assert value(before, "bot_turns_started_total") == 0
        thread = await open_thread(h, "hello")
        await h.services.engine.wait_idle()
        samples = await scrape(h)
        ids = {str(i) for i in (h.world.guild.id, h.general.id, thread.id, h.alice.id, h.discord.bot_user.id)}

    assert value(samples, "bot_turns_started_total") == 1
    assert value(samples, "bot_turns_ended_total", outcome="completed", kind=NO_FAILURE) == 1
    assert value(samples, "bot_turns_ended_total") == 1
    assert value(samples, "bot_time_to_first_token_seconds_count") == 1
    assert value(samples, "bot_time_to_final_write_seconds_count") == 1
    # One message: posted as the first write, or as the final one if the answer had ended before it went.
    assert (
        value(samples, "bot_discord_writes_total", kind="first")
        + value(samples, "bot_discord_writes_total", kind="final")
        >= 1
    )
    assert value(samples, "bot_discord_writes_total", route="thread") == 1  # the thread it opened
    assert value(samples, "bot_tokens_total", direction="input") > 0
    assert value(samples, "bot_tokens_total", direction="output") > 0
    assert value(samples, "bot_discord_rate_limited_total") == 0
    assert any(s.name == "bot_write_queue_depth" for s in samples)
    for sample in samples:
        assert set(sample.labels) <= ALLOWED_LABELS, sample
        assert not set(sample.labels.values()) & ids, sample
    outcomes = {s.labels["outcome"] for s in samples if s.name == "bot_turns_ended_total"}
    assert outcomes <= set(TURN_OUTCOMES)


@pytest.mark.parametrize(("discord_scope", "scope"), [("user", "route"), ("global", "global")])
async def test_a_discord_429_is_counted_by_scope(
    tmp_path: Path, fake_openai: FakeOpenAI, discord_scope: str, scope: str
) -> None:
    async with running_bot(tmp_path, fake_openai, metrics=METRICS_ON) as h:
        thread = await open_thread(h, "hello")
        h.discord.fail_next("message_create", 429, 1, retry_after=0.1, scope=discord_scope)
        await h.discord.user_message(thread.id, h.alice, "again")
        await wait_for_content(h.discord, thread.id, "echo: alice: again")
        await h.services.engine.wait_idle()
        samples = await scrape(h)
        injected = [hit for hit in h.discord.rate_limit_hits_of(scope=discord_scope) if hit.injected]
    assert len(injected) == 1  # the 429 really met a write
    assert value(samples, "bot_discord_rate_limited_total", scope=scope) == 1
    assert value(samples, "bot_discord_rate_limited_total") == 1
    assert value(samples, "bot_turns_ended_total", outcome="completed") == 2


async def test_a_turn_the_model_api_fails_is_counted_as_failed_by_kind(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, metrics=METRICS_ON, openai={"max_retries": 0}) as h:
        thread = await open_thread(h, "hello")
        fake_openai.responses.push(HttpError(401, "Incorrect API key provided"))
        await h.discord.user_message(thread.id, h.alice, "are you there?")
        await wait_for_warning(h, thread.id, after=1)
        await h.services.engine.wait_idle()
        samples = await scrape(h)
    assert value(samples, "bot_turns_started_total") == 2
    assert value(samples, "bot_turns_ended_total", outcome="completed") == 1
    assert value(samples, "bot_turns_ended_total", outcome="failed", kind="auth") == 1
    assert value(samples, "bot_turns_ended_total", outcome="failed") == 1
    assert value(samples, "bot_time_to_first_token_seconds_count") == 1  # the failed turn had no text


async def test_metrics_are_counted_per_bot_not_in_a_global_registry(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Two bots in one process each count their own turns (and neither in prometheus' default one)."""
    from prometheus_client import REGISTRY

    async with running_bot(tmp_path, fake_openai, metrics=METRICS_ON) as h:
        other = AssistantBot(make_config(tmp_path / "other"), fake_secrets())
        fake_openai.responses.push(Reply("streamed answer", deltas=3))
        await open_thread(h, "hi", reply="streamed answer")
        await h.services.engine.wait_idle()
        assert value(await scrape(h), "bot_turns_started_total") == 1
    assert other.metrics.registry.get_sample_value("bot_turns_started_total") == 0
    assert REGISTRY.get_sample_value("bot_turns_started_total") is None


def test_bot_metrics_port_overrides_the_file_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[metrics]\nport = 9100\nhost = "0.0.0.0"\n', encoding="utf-8")
    assert load_config(path, required=True, env={}).metrics.port == 9100
    overridden = load_config(path, required=True, env={"BOT_METRICS_PORT": "9200"}).metrics
    assert (overridden.port, overridden.host) == (9200, "0.0.0.0")
    assert load_config(tmp_path / "absent.toml", required=False, env={}).metrics.port is None
    for bad in ("nine", "70000", "-1"):
        with pytest.raises(ConfigError) as caught:
            load_config(path, required=True, env={"BOT_METRICS_PORT": bad})
        assert caught.value.setting == "BOT_METRICS_PORT" and bad in str(caught.value)


async def test_a_metrics_port_already_taken_stops_the_start_with_one_line(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: Any = taken.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConfigError) as caught:
            async with running_bot(tmp_path, fake_openai, metrics={"port": port}, allow_errors=True):
                pass
    finally:
        taken.close()
        await taken.wait_closed()
    assert caught.value.setting == "port" and str(port) in str(caught.value)
