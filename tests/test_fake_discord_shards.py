"""The stand-in Discord shards as Discord does: IDENTIFY's ``shard`` checked, each session told only of
its guilds (``(guild_id >> 22) % count``) and sent only their events, DMs on shard 0, and
``GET /gateway/bot`` recommending a count.

Driven by raw websockets, so each assertion is about the frames Discord would send, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from standins.discord import FakeChannel, FakeDiscord, FakeGuild, FakeUser
from standins.discord.gateway import parse_shard, shard_of

FRAME_TIMEOUT_S = 5.0
INTENTS = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15)  # guilds, guild and DM messages, message content
Json = dict[str, Any]


@dataclass
class ShardWorld:
    server: FakeDiscord
    on_shard_0: FakeGuild
    on_shard_1: FakeGuild
    general_0: FakeChannel
    general_1: FakeChannel
    alice: FakeUser


@pytest.fixture
async def world() -> AsyncIterator[ShardWorld]:
    async with FakeDiscord() as server:
        on_shard_0 = server.add_guild("Shard Zero", on_shard=(0, 2))
        on_shard_1 = server.add_guild("Shard One", on_shard=(1, 2))
        alice = server.add_user("alice", guilds=[on_shard_0.id, on_shard_1.id])
        yield ShardWorld(
            server=server,
            on_shard_0=on_shard_0,
            on_shard_1=on_shard_1,
            general_0=server.add_text_channel(on_shard_0.id, "general"),
            general_1=server.add_text_channel(on_shard_1.id, "general"),
            alice=alice,
        )


class RawGateway:
    """One websocket speaking the gateway protocol by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next_frame(self) -> Json:
        frame: Json = await asyncio.wait_for(self.ws.receive_json(), FRAME_TIMEOUT_S)
        return frame

    async def next_dispatch(self) -> Json:
        """The next dispatch (op 0), skipping nothing else: the stand-in sends no other ops unasked."""
        frame = await self.next_frame()
        assert frame["op"] == 0, frame
        return frame

    async def identify(self, server: FakeDiscord, shard: object = None) -> None:
        data: Json = {"token": server.token, "intents": INTENTS, "properties": {}}
        if shard is not None:
            data["shard"] = shard
        await self.ws.send_json({"op": 2, "d": data})

    async def close_code(self) -> int | None:
        message = await asyncio.wait_for(self.ws.receive(), FRAME_TIMEOUT_S)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
        return self.ws.close_code


@contextlib.asynccontextmanager
async def gateway(server: FakeDiscord) -> AsyncIterator[RawGateway]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{server.gateway_url}?v=10&encoding=json") as ws,
    ):
        raw = RawGateway(ws)
        hello = await raw.next_frame()
        assert hello["op"] == 10
        yield raw


async def identified(raw: RawGateway, server: FakeDiscord, shard: object) -> list[Json]:
    """IDENTIFY as ``shard``; READY then one GUILD_CREATE per guild READY names."""
    await raw.identify(server, shard)
    ready = await raw.next_dispatch()
    assert ready["t"] == "READY"
    frames = [ready]
    for _ in ready["d"]["guilds"]:
        frames.append(await raw.next_dispatch())
    return frames


def guild_ids(frames: list[Json]) -> list[int]:
    return [int(f["d"]["id"]) for f in frames if f["t"] == "GUILD_CREATE"]


async def test_guilds_are_on_the_shard_discord_computes() -> None:
    async with FakeDiscord() as server:
        for shard_id in range(3):
            guild = server.add_guild(on_shard=(shard_id, 3))
            assert (guild.id >> 22) % 3 == shard_id
    assert shard_of(None, 4) == 0


async def test_each_shard_is_told_only_of_its_own_guilds(world: ShardWorld) -> None:
    server = world.server
    async with gateway(server) as zero, gateway(server) as one:
        ready_0 = await identified(zero, server, [0, 2])
        ready_1 = await identified(one, server, [1, 2])
        assert ready_0[0]["d"]["shard"] == [0, 2] and ready_1[0]["d"]["shard"] == [1, 2]
        assert [int(g["id"]) for g in ready_0[0]["d"]["guilds"]] == [world.on_shard_0.id]
        assert guild_ids(ready_0) == [world.on_shard_0.id]
        assert [int(g["id"]) for g in ready_1[0]["d"]["guilds"]] == [world.on_shard_1.id]
        assert guild_ids(ready_1) == [world.on_shard_1.id]
        await server.wait_for(lambda: server.connected_shards == {(0, 2), (1, 2)})
        assert server.connected


async def test_unsharded_session_keeps_every_guild_and_no_shard_in_ready(world: ShardWorld) -> None:
    server = world.server
    async with gateway(server) as raw:
        frames = await identified(raw, server, None)
        assert "shard" not in frames[0]["d"]
        assert sorted(guild_ids(frames)) == sorted([world.on_shard_0.id, world.on_shard_1.id])


async def test_messages_go_only_to_their_guilds_shard_and_dms_to_shard_0(world: ShardWorld) -> None:
    server = world.server
    async with gateway(server) as zero, gateway(server) as one:
        await identified(zero, server, [0, 2])
        await identified(one, server, [1, 2])
        on_1 = await server.user_message(world.general_1.id, world.alice, "for shard one", mentions_bot=True)
        on_0 = await server.user_message(world.general_0.id, world.alice, "for shard zero", mentions_bot=True)
        dm = await server.dm_message(world.alice, "a private question")
        # Frames on one socket arrive in order: shard 0's next ones are its guild's message, then the
        # DM, so shard 1's message (sent first) never reached it.
        assert [(f["t"], f["d"]["id"]) for f in (await zero.next_dispatch(), await zero.next_dispatch())] == [
            ("MESSAGE_CREATE", on_0["id"]),
            ("MESSAGE_CREATE", dm["id"]),
        ]
        first_on_1 = await one.next_dispatch()
        assert (first_on_1["t"], first_on_1["d"]["id"]) == ("MESSAGE_CREATE", on_1["id"])
        created = [(r.shard, r.data["id"]) for r in server.dispatched if r.event == "MESSAGE_CREATE"]
        assert created == [((1, 2), on_1["id"]), ((0, 2), on_0["id"]), ((0, 2), dm["id"])]


async def test_interactions_go_to_their_guilds_shard(world: ShardWorld) -> None:
    server = world.server
    async with aiohttp.ClientSession() as http:
        response = await http.put(
            f"{server.base_url}/api/v10/applications/{server.application_id}/commands",
            json=[{"name": "ping", "description": "Ping", "type": 1}],
            headers={"Authorization": f"Bot {server.token}"},
        )
        assert response.status == 200
    async with gateway(server) as zero, gateway(server) as one:
        await identified(zero, server, [0, 2])
        await identified(one, server, [1, 2])
        on_1 = await server.slash_command("ping", user=world.alice, channel_id=world.general_1.id)
        on_0 = await server.slash_command("ping", user=world.alice, channel_id=world.general_0.id)
        on_zero = await zero.next_dispatch()
        assert (on_zero["t"], on_zero["d"]["id"]) == ("INTERACTION_CREATE", str(on_0.id))
        on_one = await one.next_dispatch()
        assert (on_one["t"], on_one["d"]["id"]) == ("INTERACTION_CREATE", str(on_1.id))


async def test_a_guild_without_its_shard_connected_gets_no_events(world: ShardWorld) -> None:
    server = world.server
    async with gateway(server) as one:
        await identified(one, server, [1, 2])
        await server.user_message(world.general_0.id, world.alice, "nobody hears this", mentions_bot=True)
        heard = await server.user_message(world.general_1.id, world.alice, "shard one hears this")
        frame = await one.next_dispatch()
        assert frame["d"]["id"] == heard["id"]
        assert [r.shard for r in server.dispatched if r.event == "MESSAGE_CREATE"] == [(1, 2)]


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], [0, 1, 2], "0,1"])
async def test_invalid_shard_closes_with_4010(world: ShardWorld, shard: object) -> None:
    server = world.server
    async with gateway(server) as raw:
        data: Json = {"token": server.token, "intents": INTENTS, "properties": {}, "shard": shard}
        await raw.ws.send_json({"op": 2, "d": data})
        assert await raw.close_code() == 4010
    assert [(c.code, c.by_server) for c in server.gateway_closes] == [(4010, True)]
    assert not server.connected


async def test_too_many_guilds_for_one_session_closes_with_4011(world: ShardWorld) -> None:
    server = world.server
    server.max_guilds_per_shard = 1
    async with gateway(server) as raw:
        await raw.identify(server)
        assert await raw.close_code() == 4011
    async with gateway(server) as zero:  # split in two, each shard holds one guild: accepted
        assert guild_ids(await identified(zero, server, [0, 2])) == [world.on_shard_0.id]


async def test_a_new_identify_for_a_shard_replaces_only_that_shards_session(world: ShardWorld) -> None:
    server = world.server
    async with gateway(server) as zero, gateway(server) as one:
        await identified(zero, server, [0, 2])
        await identified(one, server, [1, 2])
        async with gateway(server) as zero_again:
            await identified(zero_again, server, [0, 2])
            sent = await server.user_message(world.general_0.id, world.alice, "hi", mentions_bot=True)
            frame = await zero_again.next_dispatch()
            assert frame["d"]["id"] == sent["id"]
            assert [r.shard for r in server.dispatched if r.event == "MESSAGE_CREATE"] == [(0, 2)]
            closing = asyncio.create_task(one.close_code())  # reading, as a client does, to see the code
            await server.disconnect_gateway(shard_id=1)
            assert await closing == 4000
        assert (1, 2) not in server.connected_shards


async def test_with_concurrent_sessions_both_copies_of_a_shard_get_its_events(world: ShardWorld) -> None:
    server = world.server
    server.concurrent_sessions = True  # two processes running shard 0, as a misconfigured bot does
    async with gateway(server) as zero, gateway(server) as zero_again:
        await identified(zero, server, [0, 2])
        await identified(zero_again, server, [0, 2])
        sent = await server.user_message(world.general_0.id, world.alice, "hi", mentions_bot=True)
        assert (await zero.next_dispatch())["d"]["id"] == sent["id"]
        assert (await zero_again.next_dispatch())["d"]["id"] == sent["id"]
        assert [r.shard for r in server.dispatched if r.event == "MESSAGE_CREATE"] == [(0, 2), (0, 2)]
    after = await server.user_message(world.general_0.id, world.alice, "nobody is left")
    assert [r.data["id"] for r in server.dispatched if r.live and r.data.get("id") == after["id"]] == []


async def test_gateway_bot_recommends_the_settable_shard_count(world: ShardWorld) -> None:
    server = world.server
    url = f"{server.base_url}/api/v10/gateway/bot"
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession() as http:
        assert (await (await http.get(url, headers=headers)).json())["shards"] == 1
        server.recommended_shards = 4
        body = await (await http.get(url, headers=headers)).json()
    assert body["shards"] == 4
    assert body["url"] == server.gateway_url
    assert body["session_start_limit"]["max_concurrency"] >= 1


@given(st.integers(min_value=-3, max_value=40), st.integers(min_value=-3, max_value=40))
def test_parse_shard_accepts_exactly_the_ids_within_the_count(shard_id: int, count: int) -> None:
    accepted = parse_shard([shard_id, count])
    assert (accepted is not None) == (count >= 1 and 0 <= shard_id < count)
    if accepted is not None:
        assert accepted == (shard_id, count)
