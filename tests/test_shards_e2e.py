"""Sharding end to end: the real bot (discord.py's AutoShardedBot) against the sharded stand-in Discord.

A process answers exactly the guilds of the shards it runs (as Discord maps them, ``(guild_id >> 22)
% count``) and, if it runs shard 0, the DMs; without a shard count it runs all Discord recommends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.discord.app import AssistantBot
from standins.discord import FakeChannel, FakeDiscord, FakeGuild, StoredMessage
from standins.openai import FakeOpenAI
from tests.harness import FAST_BUCKET, World, running_bot

WAIT_S = 10.0


@dataclass
class TwoShards:
    server: FakeDiscord
    world: World  # its guild is on shard 0
    guild_1: FakeGuild
    general_1: FakeChannel


@pytest.fixture
async def two_shards() -> AsyncIterator[TwoShards]:
    """Two guilds, one on each shard of 2; alice and bob are in both."""
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        server.max_concurrency = 16  # every shard identifies at once, as a large bot's do
        guild_0 = server.add_guild("Shard Zero", on_shard=(0, 2))
        guild_1 = server.add_guild("Shard One", on_shard=(1, 2))
        both = [guild_0.id, guild_1.id]
        world = World(
            guild=guild_0,
            general=server.add_text_channel(guild_0.id, "general"),
            alice=server.add_user("alice", guilds=both),
            bob=server.add_user("bob", guilds=both),
            admin=server.add_user("root", guilds=both),
        )
        yield TwoShards(server, world, guild_1, server.add_text_channel(guild_1.id, "general"))


async def mention_and_wait_for_answer(
    server: FakeDiscord, world: World, channel: FakeChannel, text: str
) -> None:
    """Alice mentions the bot in ``channel``; the echo answer arrives in the thread the bot opens."""
    await server.user_message(channel.id, world.alice, text, mentions_bot=True)
    await server.wait_for(lambda: len(server.threads_in(channel.id)) == 1, timeout=WAIT_S)
    thread = server.threads_in(channel.id)[0]
    await wait_for_text(server, thread.id, f"echo: alice: {text}")


async def wait_for_text(server: FakeDiscord, channel_id: int, text: str) -> list[StoredMessage]:
    def done() -> bool:
        return "\n".join(m.content for m in server.bot_messages(channel_id)) == text

    await server.wait_for(done, timeout=WAIT_S)
    return server.bot_messages(channel_id)


def identified_shards(server: FakeDiscord) -> list[list[int]]:
    return [identify["shard"] for identify in server.identifies]


async def test_a_process_running_both_shards_answers_in_each_guild_and_in_dms(
    tmp_path: Path, fake_openai: FakeOpenAI, two_shards: TwoShards
) -> None:
    server, world = two_shards.server, two_shards.world
    settings: dict[str, Any] = {"shard_count": 2, "shard_ids": [0, 1]}
    async with running_bot_on(tmp_path, fake_openai, two_shards, settings) as bot:
        assert sorted(identified_shards(server)) == [[0, 2], [1, 2]]
        assert server.connected_shards == {(0, 2), (1, 2)}
        assert {g.id for g in bot.guilds} == {world.guild.id, two_shards.guild_1.id}
        await mention_and_wait_for_answer(server, world, world.general, "hello shard zero")
        await mention_and_wait_for_answer(server, world, two_shards.general_1, "hello shard one")
        await server.dm_message(world.alice, "hello in private")
        await wait_for_text(server, server.dm_channel(world.alice).id, "echo: alice: hello in private")
    by_shard = {r.data["content"]: r.shard for r in server.dispatched if r.event == "MESSAGE_CREATE"}
    assert by_shard[f"{server.bot_user.mention} hello shard zero"] == (0, 2)
    assert by_shard[f"{server.bot_user.mention} hello shard one"] == (1, 2)
    assert by_shard["hello in private"] == (0, 2)


async def test_a_process_running_shard_1_neither_sees_nor_answers_shard_0(
    tmp_path: Path, fake_openai: FakeOpenAI, two_shards: TwoShards
) -> None:
    server, world = two_shards.server, two_shards.world
    settings: dict[str, Any] = {"shard_count": 2, "shard_ids": [1]}
    async with running_bot_on(tmp_path, fake_openai, two_shards, settings) as bot:
        assert identified_shards(server) == [[1, 2]]
        assert [g.id for g in bot.guilds] == [two_shards.guild_1.id]
        await server.user_message(world.general.id, world.alice, "on shard zero", mentions_bot=True)
        await server.dm_message(world.alice, "a DM, shard zero's too")
        await mention_and_wait_for_answer(server, world, two_shards.general_1, "on shard one")
        # Shard 0 is not connected, so its guild's message and the DM were never dispatched: nothing
        # can answer them later either.
        created = [r.data["content"] for r in server.dispatched if r.event == "MESSAGE_CREATE"]
        assert f"{server.bot_user.mention} on shard zero" not in created
        assert "a DM, shard zero's too" not in created
        assert server.threads_in(world.general.id) == []
        assert server.bot_messages(world.general.id) == []
        assert server.bot_messages(server.dm_channel(world.alice).id) == []
        assert len(fake_openai.requests_to("/v1/responses")) == 1


async def test_without_a_shard_count_the_bot_runs_every_shard_discord_recommends(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        server.max_concurrency = 16  # every shard identifies at once, as a large bot's do
        server.recommended_shards = 3
        guild = server.add_guild("Shard Two", on_shard=(2, 3))
        world = World(
            guild=guild,
            general=server.add_text_channel(guild.id, "general"),
            alice=server.add_user("alice", guilds=[guild.id]),
            bob=server.add_user("bob", guilds=[guild.id]),
            admin=server.add_user("root", guilds=[guild.id]),
        )
        shards = TwoShards(server, world, guild, world.general)
        async with running_bot_on(tmp_path, fake_openai, shards, {}) as bot:
            assert bot.shard_count == 3
            assert sorted(identified_shards(server)) == [[0, 3], [1, 3], [2, 3]]
            assert server.connected_shards == {(0, 3), (1, 3), (2, 3)}
            await mention_and_wait_for_answer(server, world, world.general, "hello shard two")


async def test_health_is_ready_only_while_every_shard_of_the_process_is_connected(
    tmp_path: Path, fake_openai: FakeOpenAI, two_shards: TwoShards
) -> None:
    server = two_shards.server
    settings: dict[str, Any] = {"shard_count": 2, "shard_ids": [0, 1]}
    async with running_bot_on(tmp_path, fake_openai, two_shards, settings, metrics={"port": 0}) as bot:
        assert bot.health_server is not None and bot.health_server.port is not None
        port = bot.health_server.port
        assert await healthz(port) == (
            200,
            {"status": "ok", "ready": True, "shards_connected": 2, "shards": 2},
        )
        disconnected = asyncio.ensure_future(
            bot.wait_for("shard_disconnect", check=lambda shard: shard == 1, timeout=WAIT_S)
        )
        resumed = asyncio.ensure_future(
            bot.wait_for("shard_resumed", check=lambda shard: shard == 1, timeout=WAIT_S)
        )
        async with server.gateway_outage(shard_id=1):
            await server.wait_for(lambda: server.connected_shards == {(0, 2)}, timeout=WAIT_S)
            await disconnected
            status, body = await healthz(port)
            assert (status, body["status"], body["shards_connected"], body["shards"]) == (
                503,
                "connecting",
                1,
                2,
            )
        await resumed
        assert (await healthz(port))[0] == 200


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status, await response.json()


@contextlib.asynccontextmanager
async def running_bot_on(
    tmp_path: Path,
    fake_openai: FakeOpenAI,
    shards: TwoShards,
    settings: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
) -> AsyncIterator[AssistantBot]:
    """The real bot, its `[discord]` section overridden by ``settings``, on ``shards``' server
    (``metrics``: its `[metrics]` section)."""
    async with running_bot(
        tmp_path,
        fake_openai,
        discord=shards.server,
        world=shards.world,
        discord_settings=settings,
        metrics=metrics or {},
    ) as h:
        yield h.bot
