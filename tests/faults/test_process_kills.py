"""The bot killed with SIGKILL in the middle of things, then started again on the same database.

The bot runs as a real process (`python -m bot --config ...`), pointed through its environment at the
stand-in Discord and OpenAI servers, which live in the test's own event loop on 127.0.0.1. After each
kill and restart, SQLite is read directly: conversation mappings, settings, usage rows and bookings
are all there exactly once, the turn that was cut off is reported in its thread, and the thread still
works. Every process is killed at teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.command_support import answer_buttons, answer_id_of
from tests.fakes.discord_server import CALLBACK_UPDATE_MESSAGE, FakeChannel, FakeDiscord, StoredMessage
from tests.fakes.openai_server import FakeOpenAI, FunctionCall, Reply
from tests.faults.support import WAIT_S, bot_messages, threads_of, wait_for_content
from tests.harness import FAST_BUCKET, World, build_world

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # interpreter start, imports, login; discord.py then waits 2 s for guilds
EXIT_TIMEOUT_S = 10.0
INTERRUPTED_NOTE = "I was restarted while answering"
SETTING = ("max_queued_turns_per_user", "5")
# Pizzeria Napoli is open every day from 11:30 to 23:00: "tomorrow at 8pm" is always bookable.
BOOKING = {"restaurant": "Pizzeria Napoli", "party_size": 4, "time": "tomorrow at 8pm", "notes": None}
CONFIG = """\
[discord]
sync_commands = true

[openai]
max_retries = 0

[streaming]
edit_interval_s = 0.2

[engine]
confirmation_timeout_s = 600

[defaults]
backend = "{backend}"
"""


@dataclass
class Rig:
    """The stand-ins, the world on them, and where the bot's files go."""

    discord: FakeDiscord
    openai: FakeOpenAI
    world: World
    tmp_path: Path
    backend: str

    @property
    def database(self) -> Path:
        return self.tmp_path / "bot.db"

    def env(self) -> dict[str, str]:
        keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG")}
        return {
            **keep,
            "PYTHONPATH": str(REPO_ROOT),
            "DISCORD_TOKEN": self.discord.token,
            "DISCORD_API_BASE_URL": self.discord.base_url,
            "OPENAI_API_KEY": "test",
            "OPENAI_BASE_URL": self.openai.base_url,
            "BOT_DATABASE": str(self.database),
        }

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the bot's database directly (committed data only, as a restarted bot would see it)."""
        with contextlib.closing(sqlite3.connect(self.database)) as connection:
            return [tuple(row) for row in connection.execute(sql, params)]

    def durable_state(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything that must survive a crash unchanged, as sorted rows."""
        return {
            "conversations": self.rows(
                "SELECT key, backend, conversation_id, generation FROM conversations ORDER BY key"
            ),
            "settings": self.rows("SELECT guild_id, name, value FROM guild_settings ORDER BY guild_id, name"),
            "settings audit": self.rows(
                "SELECT guild_id, name, new_value FROM guild_settings_audit ORDER BY id"
            ),
            "usage": self.rows(
                "SELECT guild_id, user_id, SUM(turns), SUM(input_tokens) > 0 FROM usage_daily"
                " GROUP BY guild_id, user_id ORDER BY guild_id, user_id"
            ),
            "reservations": self.rows(
                "SELECT call_id, user_id, party_size, status FROM reservations ORDER BY id"
            ),
            "history": self.rows("SELECT conversation_key, role, payload FROM chat_messages ORDER BY id"),
        }


@contextlib.asynccontextmanager
async def stand_ins(tmp_path: Path, backend: str = "responses") -> AsyncIterator[Rig]:
    async with (
        FakeOpenAI() as openai,
        FakeDiscord(rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}) as discord,
    ):
        world = build_world(discord)
        (tmp_path / "config.toml").write_text(CONFIG.format(backend=backend), encoding="utf-8")
        yield Rig(discord, openai, world, tmp_path, backend)


@contextlib.asynccontextmanager
async def bot_process(rig: Rig) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot` against the rig, yielded once it is connected; killed on the way out."""
    number = len(rig.discord.identifies)
    log_path = rig.tmp_path / f"bot-{number}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(rig.tmp_path / "config.toml"),
            cwd=rig.tmp_path,  # no .env of the developer's is picked up
            env=rig.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            connected = asyncio.ensure_future(
                rig.discord.wait_for(
                    lambda: len(rig.discord.identifies) > number and rig.discord.connected,
                    timeout=START_TIMEOUT_S,
                )
            )
            exited = asyncio.ensure_future(process.wait())
            try:
                await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (connected, exited):
                    waiter.cancel()
            if exited.done() and not exited.cancelled():
                raise AssertionError(f"the bot exited with {process.returncode}:\n{log_path.read_text()}")
            connected.result()  # raises TimeoutError if the bot never connected
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S)
    logged = log_path.read_text(encoding="utf-8", errors="replace")
    for trouble in ("ERROR", "CRITICAL", "Traceback"):  # the level is padded and coloured: no spaces
        assert trouble not in logged, logged


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S) == -signal.SIGKILL


async def stop(process: asyncio.subprocess.Process) -> None:
    """Ctrl-C: the bot finishes what it was doing (turns closed, usage counted), then exits 0."""
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), EXIT_TIMEOUT_S) == 0


async def open_thread(rig: Rig, text: str) -> FakeChannel:
    """Alice mentions the bot in #general; the thread it opens, once the answer is complete."""
    general = rig.world.general
    before = len(threads_of(rig.discord, general))
    mention = f"<@{rig.discord.bot_user.id}> {text}"
    await rig.discord.user_message(general.id, rig.world.alice, mention, mentions_bot=True)
    await rig.discord.wait_for(lambda: len(threads_of(rig.discord, general)) > before, timeout=WAIT_S)
    return threads_of(rig.discord, general)[before]


async def set_setting(rig: Rig) -> None:
    """An admin changes a setting with /config set; waits for the bot's confirmation."""
    name, value = SETTING
    record = await rig.discord.slash_command(
        "config set", {"setting": name, "value": value}, user=rig.world.admin, channel_id=rig.world.general.id
    )
    await rig.discord.wait_for(lambda: bool(record.followup_ids), timeout=WAIT_S)
    assert rig.discord.message(record.followup_ids[0]).content.startswith("✅")


async def wait_for_note(rig: Rig, thread: FakeChannel) -> StoredMessage:
    return await rig.discord.wait_for_message(
        lambda m: INTERRUPTED_NOTE in m.content, channel_id=thread.id, timeout=START_TIMEOUT_S
    )


def notes_in(rig: Rig, thread: FakeChannel) -> list[StoredMessage]:
    return [m for m in bot_messages(rig.discord, thread.id) if INTERRUPTED_NOTE in m.content]


async def answered(rig: Rig, thread: FakeChannel, text: str) -> None:
    """Alice writes in the thread and gets the echo: the conversation works."""
    await rig.discord.user_message(thread.id, rig.world.alice, text)
    await wait_for_content(rig.discord, thread.id, f"echo: alice: {text}")


def turn_statuses(rig: Rig) -> list[tuple[str, int | None]]:
    return rig.rows("SELECT status, message_id FROM turns ORDER BY id")


@pytest.mark.parametrize("backend", ["responses", "chat"])
async def test_killed_mid_reply_loses_nothing_and_reports_the_cut_answer(
    tmp_path: Path, backend: str
) -> None:
    async with stand_ins(tmp_path, backend) as rig:
        async with bot_process(rig) as process:
            await set_setting(rig)
            thread = await open_thread(rig, "hello")
            await wait_for_content(rig.discord, thread.id, "echo: alice: hello")
            script = rig.openai.responses if backend == "responses" else rig.openai.chat
            script.push(Reply(" ".join(f"word{i}" for i in range(60)), deltas=60, delta_delay_s=0.2))
            asked = await rig.discord.user_message(thread.id, rig.world.alice, "tell me a long story")
            await rig.discord.wait_for_message(
                lambda m: m.content.startswith("word0"), channel_id=thread.id, timeout=WAIT_S
            )
            await kill(process)
        before = rig.durable_state()
        assert [status for status, _ in turn_statuses(rig)] == ["completed", "running"]
        assert turn_statuses(rig)[-1] == ("running", int(asked["id"]))
        assert before["settings"] == [(rig.world.guild.id, SETTING[0], SETTING[1])]
        assert len(before["conversations"]) == 1 and before["usage"] == [
            (rig.world.guild.id, rig.world.alice.id, 1, 1)
        ]

        async with bot_process(rig) as process:
            note = await wait_for_note(rig, thread)
            assert note.content.startswith("⚠️") and str(asked["id"]) in note.content
            assert rig.durable_state() == before  # the restart itself changed nothing
            assert turn_statuses(rig)[-1] == ("interrupted", int(asked["id"]))
            await answered(rig, thread, "are you back?")
            await stop(process)
        after = rig.durable_state()
        assert notes_in(rig, thread) == [note]  # reported once
        assert [status for status, _ in turn_statuses(rig)] == ["completed", "interrupted", "completed"]

        assert after["conversations"] == before["conversations"]  # same mapping, same model-side id
        assert after["settings"] == before["settings"] and after["settings audit"] == before["settings audit"]
        assert after["usage"] == [(rig.world.guild.id, rig.world.alice.id, 2, 1)]  # one more turn, no double
        if backend == "chat":
            users = [json.loads(p)["content"] for _, role, p in after["history"] if role == "user"]
            assert users == ["alice: hello", "alice: are you back?"]  # the cut turn left no history
        else:
            [conversation_id] = [row[2] for row in after["conversations"]]
            texts = rig.openai.conversations[conversation_id].texts("user")
            assert texts[-1] == "alice: are you back?"


async def ask_for_a_booking(rig: Rig) -> tuple[FakeChannel, StoredMessage]:
    """Alice asks for a table; the model calls book_restaurant; returns the thread and the question."""
    rig.openai.responses.push(Reply(calls=[FunctionCall("book_restaurant", BOOKING)]))
    thread = await open_thread(rig, "book a table for 4 at Pizzeria Napoli tomorrow at 8pm")
    prompt = await rig.discord.wait_for_message(
        lambda m: bool(m.components), channel_id=thread.id, timeout=WAIT_S
    )
    return thread, prompt


async def confirm(rig: Rig, prompt: StoredMessage) -> None:
    """Alice presses Confirm once; the bot takes it, even if the click's gateway event reaches it before
    the answer to its own POST (its buttons carry the question's token, not the message id)."""
    click = await rig.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=rig.world.alice)
    await rig.discord.wait_for(lambda: click.acknowledged, timeout=WAIT_S)
    assert click.response_type == CALLBACK_UPDATE_MESSAGE


def booking_call_id(rig: Rig) -> str:
    [(call_id,)] = rig.rows("SELECT call_id FROM tool_calls WHERE name = 'book_restaurant'")
    return str(call_id)


async def test_killed_while_a_booking_waits_for_its_click_books_nothing_even_if_clicked_later(
    tmp_path: Path,
) -> None:
    async with stand_ins(tmp_path) as rig:
        async with bot_process(rig) as process:
            await set_setting(rig)
            thread, prompt = await ask_for_a_booking(rig)
            await kill(process)
        before = rig.durable_state()
        assert before["reservations"] == []

        async with bot_process(rig) as process:
            await wait_for_note(rig, thread)
            # The question is still on screen; a click now reaches a bot that no longer asks it, which
            # closes it for everyone to see instead of leaving the click unanswered.
            late = await rig.discord.click_button(
                prompt.id, answer_id_of(prompt, "confirm"), user=rig.world.alice
            )
            await rig.discord.wait_for(lambda: late.acknowledged, timeout=WAIT_S)
            await answered(rig, thread, "did it work?")
            await stop(process)
        after = rig.durable_state()
        assert late.response_type == CALLBACK_UPDATE_MESSAGE
        closed = rig.discord.message(prompt.id)
        [shown] = closed.data["embeds"]
        assert shown["title"].startswith("Expired: ") and "nothing was done" in shown["description"]
        assert answer_buttons(closed) == {"confirm": True, "cancel": True}

        assert after["reservations"] == [] and after["settings"] == before["settings"]
        assert after["conversations"] == before["conversations"]
        record = rig.openai.conversations[after["conversations"][0][2]]
        [output] = [i for i in record.of_type("function_call_output") if i["call_id"] == booking_call_id(rig)]
        assert json.loads(output["output"])["error"]["code"] == "interrupted"  # the model is told


async def test_killed_right_after_the_confirm_click_keeps_the_booking_once(tmp_path: Path) -> None:
    async with stand_ins(tmp_path) as rig:
        async with bot_process(rig) as process:
            thread, prompt = await ask_for_a_booking(rig)
            # The model's answer to the booking's result never comes: the bot is killed waiting for it.
            rig.openai.responses.push(Reply("Booked!", delay_s=60))
            calls = len(rig.openai.requests_to("/v1/responses"))
            await confirm(rig, prompt)
            await rig.openai.wait_for_requests("/v1/responses", calls + 1, timeout=WAIT_S)
            await kill(process)
        before = rig.durable_state()
        [(call_id, user_id, party, status)] = before["reservations"]
        assert (user_id, party, status) == (rig.world.alice.id, 4, "confirmed")

        async with bot_process(rig) as process:
            await wait_for_note(rig, thread)
            await answered(rig, thread, "so is it booked?")
            await stop(process)
        after = rig.durable_state()

        assert after["reservations"] == before["reservations"]  # the booking made before the kill, once
        record = rig.openai.conversations[after["conversations"][0][2]]
        [output] = [i for i in record.of_type("function_call_output") if i["call_id"] == call_id]
        assert json.loads(output["output"])["booked"] is True  # the model learns the booking was made
