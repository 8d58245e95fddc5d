"""Two shard processes of the bot on one PostgreSQL database and one Redis, end to end.

Each process is a real `python -m bot` running one shard of two (see shard_processes.py); the stand-in
Discord sends each process only its shard's guilds (guild `i` is on shard `i`, DMs on shard 0). Who
answered a message is read from the database: the run id journalled with its turn, and the run the
process registered with its shard ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.shard_processes import shard_stand_ins
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

INSTRUCTIONS = "Answer as the assistant of shard zero."


async def test_two_shard_processes_each_answer_their_own_guild_dms_and_commands(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    database = postgres_server.new_database()
    async with shard_stand_ins(tmp_path, database, redis_url=redis_server.url) as rig:
        zero, one = rig.guilds
        async with (
            rig.process("shard 0", [0], process_count=2) as p0,
            rig.process("shard 1", [1], process_count=2) as p1,
        ):
            thread_0 = await rig.open_thread(zero, "hello shard zero")
            thread_1 = await rig.open_thread(one, "hello shard one")
            again_0 = await rig.answered(thread_0.id, "and again zero")
            again_1 = await rig.answered(thread_1.id, "and again one", user=rig.bob)
            dm = rig.discord.dm_channel(rig.alice)
            in_private = await rig.answered(dm.id, "hello in private")

            await rig.config_set(zero.general.id, "instructions", INSTRUCTIONS)
            after_0 = await rig.answered(thread_0.id, "with new instructions")
            after_1 = await rig.answered(thread_1.id, "with the old ones")

            # One run answered all of shard 0's messages (and the DM), another all of shard 1's ...
            [run_0] = {
                run for m in (thread_0.id, again_0, in_private, after_0) for run in rig.answering_runs(m)
            }
            [run_1] = {run for m in (thread_1.id, again_1, after_1) for run in rig.answering_runs(m)}
            assert run_0 != run_1
            # ... and they are the runs the processes registered for those shards.
            assert (rig.run_id(p0), rig.run_id(p1)) == (run_0, run_1)

        # Every message answered once, in its place.
        for channel_id, text, user in (
            (thread_0.id, "hello shard zero", rig.alice),
            (thread_0.id, "and again zero", rig.alice),
            (thread_0.id, "with new instructions", rig.alice),
            (thread_1.id, "hello shard one", rig.alice),
            (thread_1.id, "and again one", rig.bob),
            (thread_1.id, "with the old ones", rig.alice),
            (dm.id, "hello in private", rig.alice),
        ):
            assert len(rig.echoes(channel_id, text, user=user)) == 1, (channel_id, text)
        assert rig.discord.bot_messages(zero.general.id) == rig.discord.bot_messages(one.general.id) == []

        # Follow-ups kept their thread's history: one model-side conversation per thread, in order.
        conversations = dict(rig.rows("SELECT key, conversation_id FROM conversations"))
        history_0 = rig.openai.conversations[conversations[f"channel:{thread_0.id}"]].texts("user")
        history_1 = rig.openai.conversations[conversations[f"channel:{thread_1.id}"]].texts("user")
        assert history_0 == [
            "alice: hello shard zero",
            "alice: and again zero",
            "alice: with new instructions",
        ]
        assert history_1 == ["alice: hello shard one", "bob: and again one", "alice: with the old ones"]

        # The setting is shard 0's guild's, stored once and used there only.
        assert rig.rows("SELECT guild_id, name, value FROM guild_settings") == [
            (zero.guild.id, "instructions", json.dumps(INSTRUCTIONS))
        ]
        assert INSTRUCTIONS in json.dumps(rig.model_request("with new instructions").get("instructions"))
        assert INSTRUCTIONS not in json.dumps(rig.model_request("with the old ones"))
