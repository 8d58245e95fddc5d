"""Confirmation on Discord, end to end: the real bot and chat extension, the stand-in Discord and OpenAI.

A mention asks for a booking, the model calls `book_restaurant`, an embed with Confirm / Cancel
appears in the thread, and the stand-in clicks as the users would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.discord.confirmation import (
    ANSWER_ID,
    DiscordConfirmer,
    answer_id,
    confirmation_embed,
    direct_writes,
    question_view,
)
from bot.discord.render.scheduler import EDIT_ROUTE
from bot.tooling import ConfirmationOutcome, ConfirmationRequest, OpenQuestions
from standins.discord import (
    CALLBACK_MESSAGE,
    CALLBACK_UPDATE_MESSAGE,
    FakeChannel,
    InteractionRecord,
    StoredMessage,
)
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.command_support import answer_buttons, answer_id_of
from tests.harness import Harness, running_bot

WAIT_S = 10.0
# Open every day from 11:30 to 23:00, so "tomorrow at 8pm" is bookable whatever the real date.
BOOKING = {"restaurant": "Pizzeria Napoli", "party_size": 4, "time": "tomorrow at 8pm", "notes": None}


@contextlib.asynccontextmanager
async def assistant(
    tmp_path: Path, fake_openai: FakeOpenAI, *, engine: dict[str, Any] | None = None
) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, fake_openai, engine=engine or {}) as h:
        yield h


async def ask_for_a_booking(h: Harness) -> tuple[FakeChannel, StoredMessage]:
    """Alice mentions the bot; the model books; returns the thread and the confirmation message."""
    h.openai.responses.push(
        Reply(calls=[FunctionCall("book_restaurant", BOOKING)]),
        lambda body: Reply(f"Result: {_last_output(body)}"),
    )
    await h.discord.user_message(
        h.general.id,
        h.alice,
        f"{h.bot_mention} book a table for 4 at Pizzeria Napoli tomorrow at 8pm",
        mentions_bot=True,
    )
    prompt = await h.discord.wait_for_message(lambda m: bool(m.components), timeout=WAIT_S)
    return h.discord.channels[prompt.channel_id], prompt


def _last_output(body: dict[str, Any]) -> str:
    outputs = [i for i in body["input"] if isinstance(i, dict) and i.get("type") == "function_call_output"]
    return outputs[-1]["output"] if outputs else "none"


def embed(message: StoredMessage) -> dict[str, Any]:
    [only] = message.data["embeds"]
    assert isinstance(only, dict)
    return only


async def final_text(h: Harness, thread: FakeChannel) -> str:
    def answered() -> bool:
        return any(m.content.startswith("Result:") for m in h.discord.messages_in(thread.id))

    await h.discord.wait_for(answered, timeout=WAIT_S)
    return next(m.content for m in h.discord.messages_in(thread.id) if m.content.startswith("Result:"))


async def alices_reservations(h: Harness) -> list[Any]:
    return await h.services.storage.bookings.reservations_for(h.alice.id, h.world.guild.id, since=0)


async def test_confirm_books_once_even_when_double_clicked(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with assistant(tmp_path, fake_openai) as h:
        thread, prompt = await ask_for_a_booking(h)
        shown = embed(prompt)
        assert shown["title"] == "Book a table at Pizzeria Napoli?"
        assert f"<@{h.alice.id}>" in shown["description"]
        fields = {f["name"]: f["value"] for f in shown["fields"]}
        assert fields["Restaurant"] == "Pizzeria Napoli · Harbour" and fields["Party"] == "4 people"
        assert fields["When"].endswith("20:00 (UTC)")
        assert answer_buttons(prompt) == {"confirm": False, "cancel": False}
        assert h.discord.calls_of("message_create")  # posted without pinging anyone
        assert all(
            c.json.get("allowed_mentions", {}).get("parse") == []
            for c in h.discord.calls_of("message_create")
            if c.channel_id == thread.id and c.json and c.json.get("embeds")
        )

        # Bob may not answer for Alice; he is told so privately and nothing changes.
        bobs = await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.world.bob)
        refusal = await h.discord.wait_for_response(bobs, timeout=WAIT_S)
        assert refusal.type == CALLBACK_MESSAGE and refusal.ephemeral
        assert f"Only <@{h.alice.id}> can answer" in refusal.data["content"]
        assert answer_buttons(h.discord.message(prompt.id)) == {"confirm": False, "cancel": False}

        first, second = await asyncio.gather(
            h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice),
            h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice),
        )
        text = await final_text(h, thread)
        assert '"booked":true' in text
        [row] = await alices_reservations(h)
        assert (row.restaurant_name, row.party_size, row.status) == ("Pizzeria Napoli", 4, "confirmed")

        await h.discord.wait_for(lambda: first.acknowledged, timeout=WAIT_S)
        updates = [r for r in (first, second) if r.response_type == CALLBACK_UPDATE_MESSAGE]
        assert len(updates) == 1  # one click decided; the other was too late
        late = second if updates[0] is first else first
        # If the late click arrived before the view stopped, it is told so privately; after, discord.py
        # drops it (the view no longer listens). Either way it decided nothing.
        late_answer = late.response
        assert late_answer is None or (
            late_answer.type == CALLBACK_MESSAGE
            and late_answer.ephemeral
            and late_answer.data["content"] == "This was already answered."
        )

        closed = h.discord.message(prompt.id)
        assert embed(closed)["title"] == "Confirmed: Book a table at Pizzeria Napoli?"
        assert answer_buttons(closed) == {"confirm": True, "cancel": True}
        with pytest.raises(ValueError, match="disabled"):
            await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice)


async def test_cancel_books_nothing_and_the_model_hears_it(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with assistant(tmp_path, fake_openai) as h:
        thread, prompt = await ask_for_a_booking(h)
        click = await h.discord.click_button(prompt.id, answer_id_of(prompt, "cancel"), user=h.alice)
        assert '"code":"declined"' in await final_text(h, thread)
        assert click.response_type == CALLBACK_UPDATE_MESSAGE
        closed = h.discord.message(prompt.id)
        assert embed(closed)["title"].startswith("Cancelled:")
        assert answer_buttons(closed) == {"confirm": True, "cancel": True}
        assert await alices_reservations(h) == []


async def test_no_answer_in_time_counts_as_declined(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with assistant(tmp_path, fake_openai, engine={"confirmation_timeout_s": 0.3}) as h:
        scheduled: list[tuple[str, object]] = []
        perform = h.bot.writes.perform

        async def recorded(*args: Any, **kwargs: Any) -> object:
            scheduled.append((kwargs["route"], kwargs.get("target")))
            return await perform(*args, **kwargs)

        h.bot.writes.perform = recorded  # type: ignore[method-assign]
        thread, prompt = await ask_for_a_booking(h)
        assert '"code":"timed_out"' in await final_text(h, thread)
        closed = h.discord.message(prompt.id)
        assert embed(closed)["title"].startswith("Expired:")
        assert "nothing was done" in embed(closed)["description"]
        assert (EDIT_ROUTE, ("question", prompt.id)) in scheduled  # closed within the write budget
        assert answer_buttons(closed) == {"confirm": True, "cancel": True}
        assert await alices_reservations(h) == []


async def test_a_stopped_turn_closes_its_question(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=()) as h:
        channel = h.bot.get_channel(h.general.id)
        assert isinstance(channel, discord.TextChannel)
        confirmer = DiscordConfirmer(direct_writes(channel), h.bot.questions)
        request = ConfirmationRequest(
            "order_ride", "call_1", h.alice.id, "Order a ride to Airport?", (("Pickup", "Home"),)
        )
        asking = asyncio.create_task(confirmer.confirm(request, timeout_s=60))
        prompt = await h.discord.wait_for_message(lambda m: bool(m.components), channel_id=h.general.id)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        closed = h.discord.message(prompt.id)
        assert embed(closed)["title"] == "Stopped: Order a ride to Airport?"
        assert answer_buttons(closed) == {"confirm": True, "cancel": True}


async def test_the_confirmer_returns_the_first_answer(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=()) as h:
        channel = h.bot.get_channel(h.general.id)
        assert isinstance(channel, discord.TextChannel)
        confirmer = DiscordConfirmer(direct_writes(channel), h.bot.questions)
        request = ConfirmationRequest(
            "book_restaurant", "call_2", h.alice.id, "Book?", (("Notes", "x" * 2000),)
        )
        asking = asyncio.create_task(confirmer.confirm(request, timeout_s=60))
        prompt = await h.discord.wait_for_message(lambda m: bool(m.components), channel_id=h.general.id)
        assert len(embed(prompt)["fields"][0]["value"]) == 1024  # cut to Discord's field limit
        records: list[InteractionRecord] = [
            await h.discord.click_button(prompt.id, answer_id_of(prompt, "cancel"), user=h.alice)
        ]
        assert await asyncio.wait_for(asking, WAIT_S) is ConfirmationOutcome.DECLINED
        await h.discord.wait_for(lambda: records[0].acknowledged, timeout=WAIT_S)


async def test_a_question_from_before_a_restart_is_closed_when_clicked(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Buttons left on screen by an earlier run: the asker's click closes the question, nothing runs."""
    async with running_bot(tmp_path, fake_openai, extensions=()) as h:
        channel = h.bot.get_channel(h.general.id)
        assert isinstance(channel, discord.TextChannel)
        earlier_run = OpenQuestions()  # the process that asked is gone, and its questions with it
        question = earlier_run.ask(
            ConfirmationRequest(
                "order_ride", "call_3", h.alice.id, "Order a ride to Airport?", (("Pickup", "Home"),)
            )
        )
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        await direct_writes(channel).post(
            confirmation_embed(question.request, expires_at=expires_at), question_view(question)
        )
        prompt = await h.discord.wait_for_message(lambda m: bool(m.components), channel_id=h.general.id)

        bobs = await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.world.bob)
        refusal = await h.discord.wait_for_response(bobs, timeout=WAIT_S)
        assert refusal.ephemeral and f"Only <@{h.alice.id}> can answer" in refusal.data["content"]
        assert answer_buttons(h.discord.message(prompt.id)) == {"confirm": False, "cancel": False}

        click = await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice)
        await h.discord.wait_for(lambda: click.acknowledged, timeout=WAIT_S)
        assert click.response_type == CALLBACK_UPDATE_MESSAGE
        closed = h.discord.message(prompt.id)
        assert embed(closed)["title"] == "Expired: Order a ride to Airport?"
        assert "nothing was done" in embed(closed)["description"]
        assert {f["name"]: f["value"] for f in embed(closed)["fields"]} == {"Pickup": "Home"}
        assert answer_buttons(closed) == {"confirm": True, "cancel": True}
        assert len(h.bot.questions) == 0


def test_answer_ids_fit_discord_and_parse_back() -> None:
    token = OpenQuestions().ask(ConfirmationRequest("t", "c", 2**64 - 1, "T", ())).token
    for answer in ("confirm", "cancel"):
        custom_id = answer_id(answer, 2**64 - 1, token)  # the largest snowflake
        assert len(custom_id) <= 100
        match = ANSWER_ID.fullmatch(custom_id)
        assert match is not None and (match["answer"], int(match["user"]), match["token"]) == (
            answer,
            2**64 - 1,
            token,
        )
