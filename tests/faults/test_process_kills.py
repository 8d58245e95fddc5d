"""The bot killed with SIGKILL in the middle of things, then started again on the same database.

The bot runs as a real process (`python -m bot --config ...`, see process_support.py), pointed through
its environment at the stand-in Discord and OpenAI servers, which live in the test's own event loop on
127.0.0.1. After each
kill and restart, SQLite is read directly: conversation mappings, settings, usage rows and bookings
are all there exactly once, the turn that was cut off is reported in its thread, and the thread still
works. Every process is killed at teardown, whatever happened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from standins.discord import CALLBACK_UPDATE_MESSAGE, FakeChannel, StoredMessage
from standins.openai import FunctionCall, Reply
from tests.command_support import answer_buttons, answer_id_of
from tests.faults.process_support import (
    INTERRUPTED_NOTE,
    START_TIMEOUT_S,
    Rig,
    answered,
    bot_process,
    kill,
    notes_in,
    open_thread,
    stand_ins,
    stop,
    turn_statuses,
)
from tests.faults.support import WAIT_S, wait_for_content

pytestmark = pytest.mark.slow

SETTING = ("max_queued_turns_per_user", "5")
# Pizzeria Napoli is open every day from 11:30 to 23:00: "tomorrow at 8pm" is always bookable.
BOOKING = {"restaurant": "Pizzeria Napoli", "party_size": 4, "time": "tomorrow at 8pm", "notes": None}


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
