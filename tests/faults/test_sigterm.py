"""SIGTERM (docker stop, systemctl stop, Kubernetes) stops the bot as gracefully as Ctrl-C.

The bot runs as a real process against the stand-ins (process_support.py). On SIGTERM it takes no new
messages or commands, lets the replies in progress finish within `discord.shutdown_grace_s`, ends
those that cannot with a note (their turns journalled 'interrupted', so the next start does not report
them as lost), closes Discord, OpenAI and the database, and exits with status 0.

The first test runs in the quick suite (`-m "not slow"`): one process, a grace of 2 s, about 6 s in all,
and it covers what breaks first (exit status, the note, the journal, the database closed). The others
take longer (the default 8 s grace, a restart) and are marked slow.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from bot.discord.render.stream import SHUTDOWN_NOTE
from bot.engine.engine import RESTARTING
from standins.discord import FakeChannel
from standins.openai import Reply
from tests.faults.process_support import (
    EXIT_TIMEOUT_S,
    Rig,
    answered,
    bot_process,
    notes_in,
    open_thread,
    stand_ins,
    terminate,
    turn_statuses,
)
from tests.faults.support import WAIT_S, wait_for_content

WORDS = [f"word{i}" for i in range(100)]
SLOW_REPLY = Reply(" ".join(WORDS), deltas=len(WORDS), delta_delay_s=0.5, pace="deltas")
"""50 s of streaming: far longer than any grace here, and than the supervisor's 10 s."""
SHORT_REPLY = Reply(" ".join(WORDS[:10]), deltas=10, delta_delay_s=0.2, pace="deltas")
"""2 s of streaming: well within the default grace (8 s)."""


def wal_file(rig: Rig) -> Path:
    """SQLite's write-ahead log: there while the bot has the database open, removed by a clean close."""
    return rig.database.with_name(rig.database.name + "-wal")


async def ask_in_thread(rig: Rig, reply: Reply) -> tuple[FakeChannel, int]:
    """A thread with one answered turn, then a second question whose answer has begun to stream."""
    thread = await open_thread(rig, "hello")
    await wait_for_content(rig.discord, thread.id, "echo: alice: hello")
    script = rig.openai.responses if rig.backend == "responses" else rig.openai.chat
    script.push(reply)
    asked = await rig.discord.user_message(thread.id, rig.world.alice, "tell me a story")
    await rig.discord.wait_for_message(
        lambda m: m.content.startswith("word0"), channel_id=thread.id, timeout=WAIT_S
    )
    return thread, int(asked["id"])


async def exit_status(process: asyncio.subprocess.Process) -> int:
    return await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S)


async def test_sigterm_ends_a_reply_slower_than_the_grace_with_a_note_and_exits_0(tmp_path: Path) -> None:
    async with stand_ins(tmp_path, discord_settings="shutdown_grace_s = 2") as rig:
        async with bot_process(rig) as process:
            thread, asked = await ask_in_thread(rig, SLOW_REPLY)
            assert wal_file(rig).exists()  # the bot has the database open
            process.send_signal(signal.SIGTERM)
            assert await exit_status(process) == 0
        assert not wal_file(rig).exists()  # closed cleanly (checked before this test opens it itself)

        last = rig.discord.bot_messages(thread.id)[-1]
        assert last.content.endswith("\n\n" + SHUTDOWN_NOTE), last.content
        shown = last.content.removesuffix("\n\n" + SHUTDOWN_NOTE)
        assert shown.startswith("word0") and " ".join(WORDS).startswith(shown)  # whole words, then the note
        assert shown != " ".join(WORDS)
        assert [status for status, _ in turn_statuses(rig)] == ["completed", "interrupted"]
        assert turn_statuses(rig)[-1] == ("interrupted", asked)


@pytest.mark.slow
async def test_sigterm_lets_a_short_reply_finish_then_exits_0(tmp_path: Path) -> None:
    async with stand_ins(tmp_path) as rig:  # the default grace, 8 s
        async with bot_process(rig) as process:
            thread, asked = await ask_in_thread(rig, SHORT_REPLY)
            await terminate(process)
        assert not wal_file(rig).exists()
        last = rig.discord.bot_messages(thread.id)[-1]
        assert last.content == " ".join(WORDS[:10])  # all of it, no note
        assert turn_statuses(rig)[-1] == ("completed", asked)
        [(turns,)] = rig.rows("SELECT SUM(turns) FROM usage_daily")
        assert turns == 2  # the finished turn was counted before the database closed


@pytest.mark.slow
async def test_after_sigterm_no_message_or_command_is_taken(tmp_path: Path) -> None:
    async with stand_ins(tmp_path, discord_settings="shutdown_grace_s = 6") as rig:
        async with bot_process(rig) as process:
            thread, _ = await ask_in_thread(rig, SLOW_REPLY)
            model_calls = len(rig.openai.requests)
            process.send_signal(signal.SIGTERM)
            assert rig.log is not None
            await rig.log.wait_for("Stopping:")  # the bot has the signal: what comes now comes after it
            # During the grace the bot is still connected (the slow reply keeps it there) but takes
            # nothing new: a command is refused with a word, which also shows the bot read it...
            command = await rig.discord.slash_command(
                "help", user=rig.world.bob, channel_id=rig.world.general.id
            )
            await rig.discord.wait_for(lambda: command.acknowledged, timeout=WAIT_S)
            # ... and a mention in a channel, or a message in the thread, get no answer at all.
            await rig.discord.user_message(
                rig.world.general.id,
                rig.world.bob,
                f"<@{rig.discord.bot_user.id}> are you there?",
                mentions_bot=True,
            )
            await rig.discord.user_message(thread.id, rig.world.bob, "hello?")
            messages_in_thread = len(rig.discord.bot_messages(thread.id))
            assert await exit_status(process) == 0
        response = command.response
        assert response is not None and response.ephemeral
        assert RESTARTING in str(response.data)
        assert rig.discord.threads_in(rig.world.general.id) == [thread]  # no thread for the mention
        assert rig.discord.bot_messages(rig.world.general.id) == []
        assert len(rig.discord.bot_messages(thread.id)) == messages_in_thread  # the note was an edit
        assert len(rig.openai.requests) == model_calls  # nothing new reached the model
        assert [status for status, _ in turn_statuses(rig)] == ["completed", "interrupted"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["responses", "chat"])
async def test_the_next_start_does_not_report_turns_sigterm_interrupted(tmp_path: Path, backend: str) -> None:
    async with stand_ins(tmp_path, backend, discord_settings="shutdown_grace_s = 2") as rig:
        async with bot_process(rig) as process:
            thread, asked = await ask_in_thread(rig, SLOW_REPLY)
            await terminate(process)
        assert turn_statuses(rig)[-1] == ("interrupted", asked)
        assert rig.rows("SELECT id FROM turns WHERE status = 'running'") == []  # nothing to report

        async with bot_process(rig) as process:
            await answered(rig, thread, "are you back?")  # the conversation goes on after the cut turn
            await terminate(process)
        assert notes_in(rig, thread) == []  # no "I was restarted while answering"
        assert [status for status, _ in turn_statuses(rig)] == ["completed", "interrupted", "completed"]
