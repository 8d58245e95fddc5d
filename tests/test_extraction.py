"""/extract: structured output through the SDK's parse helpers, then the command and the message menu."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from openai.lib._pydantic import to_strict_json_schema

from bot.config import Backend
from bot.errors import UserFacingError
from bot.extraction import (
    EXTRACTION_KINDS,
    BookingRequest,
    CalendarEvent,
    Contact,
    Extracted,
    ExtractionKind,
    NothingFound,
    Refused,
    TaskList,
    display_fields,
    extract,
)
from bot.services import Services
from standins.discord import INTERACTION_COMMAND, FakeDiscord, InteractionRecord, StoredMessage
from standins.openai import FakeOpenAI, HttpError, Reply
from tests.conftest import ServicesFactory
from tests.harness import Harness, running_bot

MODEL = "gpt-5.5"
TODAY = dt.date(2026, 11, 16)
EXTENSIONS = ("cogs.extract",)

SAMPLES: dict[ExtractionKind, tuple[str, dict[str, Any]]] = {
    "event": (
        "Alice and Bob are going to a science fair on Friday.",
        {
            "found": True,
            "name": "Science fair",
            "date": "2026-11-20",
            "start_time": None,
            "end_time": None,
            "location": None,
            "participants": ["Alice", "Bob"],
        },
    ),
    "contact": (
        "Reach Dana Scully (FBI) at dana@fbi.gov or 555-0100.",
        {
            "found": True,
            "name": "Dana Scully",
            "organization": "FBI",
            "role": None,
            "email": "dana@fbi.gov",
            "phone": "555-0100",
            "address": None,
        },
    ),
    "tasks": (
        "Todo: Sam buys milk by Friday; the report is already sent.",
        {
            "found": True,
            "title": None,
            "tasks": [
                {"description": "Buy milk", "assignee": "Sam", "due_date": "2026-11-20", "done": False},
                {"description": "Send the report", "assignee": None, "due_date": None, "done": True},
            ],
        },
    ),
    "booking": (
        "Could you book Chez Panisse for 4 on Saturday at 19:30, name Lee, no nuts please?",
        {
            "found": True,
            "venue": "Chez Panisse",
            "date": "2026-11-21",
            "time": "19:30",
            "party_size": 4,
            "name": "Lee",
            "contact": None,
            "notes": "No nuts",
        },
    ),
}
MODELS = {"event": CalendarEvent, "contact": Contact, "tasks": TaskList, "booking": BookingRequest}
NOTHING = {
    "found": False,
    "name": "",
    "date": None,
    "start_time": None,
    "end_time": None,
    "location": None,
    "participants": [],
}


def client_for(services: Services, backend: Backend) -> Any:
    return services.openai if backend == "responses" else services.chat_client


def queue(fake: FakeOpenAI, backend: Backend, *replies: Reply | HttpError) -> None:
    (fake.responses if backend == "responses" else fake.chat).push(*replies)


# --------------------------------------------------------------------------------------------- core


@pytest.mark.parametrize("backend", ["responses", "chat"])
@pytest.mark.parametrize("kind", EXTRACTION_KINDS)
async def test_each_kind_is_extracted_with_its_pydantic_schema(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, kind: ExtractionKind, backend: Backend
) -> None:
    services = await make_services()
    text, answer = SAMPLES[kind]
    queue(fake_openai, backend, Reply(json.dumps(answer), usage=(50, 20)))
    outcome = await extract(
        client_for(services, backend), backend=backend, model=MODEL, kind=kind, text=text, today=TODAY
    )
    assert isinstance(outcome, Extracted) and outcome.kind == kind
    assert isinstance(outcome.data, MODELS[kind])
    assert outcome.data.model_dump(mode="json") == answer
    assert (outcome.input_tokens, outcome.output_tokens) == (50, 20)
    assert json.loads(outcome.as_json()) == {k: v for k, v in answer.items() if k != "found"}

    schema = to_strict_json_schema(MODELS[kind])
    if backend == "responses":
        request = fake_openai.requests_to("/v1/responses")[0].json
        sent = request["text"]["format"]
        assert request["input"] == text and "2026-11-16" in request["instructions"]
    else:
        request = fake_openai.requests_to("/v1/chat/completions")[0].json
        sent = request["response_format"]["json_schema"]
        assert request["messages"][1] == {"role": "user", "content": text}
    assert sent["strict"] is True and sent["schema"] == schema  # the model is the one source of it


@pytest.mark.parametrize("backend", ["responses", "chat"])
async def test_a_refusal_is_reported_as_such(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, backend: Backend
) -> None:
    services = await make_services()
    queue(fake_openai, backend, Reply(refusal="I can't help with that request."))
    outcome = await extract(
        client_for(services, backend), backend=backend, model=MODEL, kind="contact", text="someone's details"
    )
    assert isinstance(outcome, Refused) and outcome.reason == "I can't help with that request."


@pytest.mark.parametrize("backend", ["responses", "chat"])
async def test_garbage_input_is_nothing_found_not_an_invented_record(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, backend: Backend
) -> None:
    services = await make_services()
    queue(fake_openai, backend, Reply(json.dumps(NOTHING)))
    outcome = await extract(
        client_for(services, backend), backend=backend, model=MODEL, kind="event", text="asdf qwerty zxcv"
    )
    assert isinstance(outcome, NothingFound) and outcome.kind == "event"
    # found=true with every field empty is treated the same way
    queue(fake_openai, backend, Reply(json.dumps({**NOTHING, "found": True})))
    outcome = await extract(
        client_for(services, backend), backend=backend, model=MODEL, kind="event", text="?!"
    )
    assert isinstance(outcome, NothingFound)


@pytest.mark.parametrize("backend", ["responses", "chat"])
async def test_an_answer_that_breaks_the_schema_or_an_api_error_is_a_clear_error(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, backend: Backend
) -> None:
    services = await make_services(openai={"max_retries": 0})
    client = client_for(services, backend)
    queue(fake_openai, backend, Reply("Sure! The event is on Friday."))
    with pytest.raises(UserFacingError, match="did not fit the calendar event format"):
        await extract(client, backend=backend, model=MODEL, kind="event", text="Party on Friday")
    queue(fake_openai, backend, Reply(json.dumps({**SAMPLES["event"][1], "date": "next friday"})))
    with pytest.raises(UserFacingError, match="did not fit"):
        await extract(client, backend=backend, model=MODEL, kind="event", text="Party next Friday")
    queue(fake_openai, backend, HttpError(429, "Rate limit", code="rate_limit_exceeded"))
    with pytest.raises(UserFacingError, match="rate-limiting"):
        await extract(client, backend=backend, model=MODEL, kind="event", text="Party on Friday")
    with pytest.raises(UserFacingError, match="no text"):
        await extract(client, backend=backend, model=MODEL, kind="event", text="   ")


def test_display_fields_are_readable_and_skip_empty_ones() -> None:
    tasks = TaskList.model_validate(SAMPLES["tasks"][1])
    assert display_fields(tasks) == [("Tasks", "☐ Buy milk (Sam, due 2026-11-20)\n☑ Send the report")]
    event = CalendarEvent.model_validate(SAMPLES["event"][1])
    assert display_fields(event) == [
        ("Name", "Science fair"),
        ("Date", "2026-11-20"),
        ("Participants", "Alice, Bob"),
    ]
    booking = BookingRequest.model_validate(SAMPLES["booking"][1])
    assert ("Party size", "4") in display_fields(booking)


# ------------------------------------------------------------------------------ /extract on Discord


async def run_extract(h: Harness, kind: str, text: str) -> InteractionRecord:
    record = await h.discord.slash_command(
        "extract", {"kind": kind, "text": text}, user=h.alice, channel_id=h.general.id
    )
    await h.discord.wait_for(lambda: bool(record.followup_ids))
    return record


def last_answer(h: Harness, record: InteractionRecord) -> StoredMessage:
    return h.discord.message(record.followup_ids[-1])


async def test_extract_command_answers_with_an_embed_and_the_json(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:
        text, answer = SAMPLES["event"]
        acknowledged_first: list[bool] = []

        def reply(body: dict[str, Any]) -> Reply:
            acknowledged_first.append(all(r.acknowledged for r in h.discord.interactions.values()))
            return Reply(json.dumps(answer), usage=(30, 10))

        fake_openai.responses.push(reply)
        record = await run_extract(h, "event", text)
        assert acknowledged_first == [True] and record.response_type == 5
        message = last_answer(h, record)
        assert not message.ephemeral and message.allowed_mentions == {"parse": []}
        embed = message.data["embeds"][0]
        assert embed["title"] == "Calendar event"
        assert {"name": "Participants", "value": "Alice, Bob", "inline": True} in embed["fields"]
        assert message.content.startswith("```json\n") and message.content.endswith("\n```")
        assert json.loads(message.content[len("```json\n") : -len("\n```")])["name"] == "Science fair"
        usage = await h.services.storage.usage.user_total(
            h.general.guild_id, h.alice.id, since_day="2000-01-01"
        )
        assert (usage.input_tokens, usage.output_tokens) == (30, 10)


async def test_extract_refusal_and_nothing_found_are_said_plainly_and_privately(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:
        fake_openai.responses.push(Reply(refusal="I can't share personal data."))
        refused = last_answer(h, await run_extract(h, "contact", "Dana's number please"))
        assert refused.ephemeral
        assert refused.content == "The model declined to extract a contact: I can't share personal data."

        fake_openai.responses.push(Reply(json.dumps(NOTHING)))
        record = await run_extract(h, "event", "lorem ipsum dolor")
        nothing = last_answer(h, record)
        assert nothing.ephemeral and "found no calendar event" in nothing.content
        assert h.discord.message(record.original_message_id or 0).deleted


async def message_command(
    server: FakeDiscord, name: str, target: StoredMessage, *, user: Any, channel_id: int
) -> InteractionRecord:
    """A user picks an app from a message's menu (the stand-in has no helper for it yet)."""
    command = server.global_commands[name]
    assert command["type"] == 3  # a message command
    data = {
        "id": command["id"],
        "name": name,
        "type": 3,
        "target_id": str(target.id),
        "resolved": {"messages": {str(target.id): server.message_payload(target)}},
    }
    return await server._dispatch_interaction(
        INTERACTION_COMMAND, data, server._user(user), server.channels[channel_id]
    )


async def test_extract_data_menu_asks_the_kind_privately_then_posts_the_result(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:
        server = h.discord
        text, answer = SAMPLES["booking"]
        posted = await server.user_message(h.general.id, h.world.bob, text)
        target = server.message(int(posted["id"]))

        menu = await message_command(server, "Extract data", target, user=h.alice, channel_id=h.general.id)
        await server.wait_for(lambda: menu.acknowledged)
        picker = server.message(menu.original_message_id or 0)
        assert picker.ephemeral and fake_openai.requests_to("/v1/responses") == []

        fake_openai.responses.push(Reply(json.dumps(answer)))
        chosen = await server.choose(picker.id, "extract-kind", ["booking"], user=h.alice)
        await server.wait_for(lambda: bool(chosen.followup_ids))
        result = server.message(chosen.followup_ids[-1])
        assert chosen.ack_latency_s is not None and not result.ephemeral
        embed = result.data["embeds"][0]
        assert embed["title"] == "Booking request"
        assert f"/channels/{h.general.guild_id}/{h.general.id}/{target.id})" in embed["description"]
        assert json.loads(result.content[len("```json\n") : -len("\n```")])["party_size"] == 4
        assert fake_openai.requests_to("/v1/responses")[0].json["input"] == text
        await server.wait_for(lambda: picker.deleted)


async def test_extract_data_menu_on_a_message_without_text_is_refused(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:
        posted = await h.discord.user_message(
            h.general.id, h.world.bob, "", embeds=[{"title": "just an embed"}]
        )
        menu = await message_command(
            h.discord,
            "Extract data",
            h.discord.message(int(posted["id"])),
            user=h.alice,
            channel_id=h.general.id,
        )
        await h.discord.wait_for(lambda: menu.acknowledged)
        reply = h.discord.message(menu.original_message_id or 0)
        assert menu.ephemeral and reply.content == "That message has no text to extract from."
