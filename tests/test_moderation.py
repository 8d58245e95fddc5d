"""Moderation of members' messages: off, flag (with a mod-log note) or block; failing open or closed.

Engine tests run the core against the stand-in OpenAI server's `/v1/moderations`; the end-to-end
tests add the real bot and the stand-in Discord.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.engine import TurnContext, UserTurn, conversation_key
from bot.engine.events import Completed, Failed, Flagged, Started, TurnEvent
from bot.moderation import describe_categories
from bot.services import Services
from standins.discord import FakeChannel, FakeDiscord, StoredMessage
from standins.openai import FakeOpenAI, HttpError, ModerationResult
from tests.command_support import run
from tests.conftest import ServicesFactory, settings
from tests.harness import FAST_BUCKET, Harness, build_world, running_bot

WAIT_S = 10.0
CHANNEL = 2002
KEY = conversation_key(CHANNEL)
# The SDK retries a 5xx twice (max_retries = 2 in tests); a tiny retry-after keeps that quick.
DOWN = HttpError(503, "moderation is down", headers={"retry-after-ms": "1"})
NOT_SENT = "Your message was not processed: the safety check flagged it for"


def context(**overrides: Any) -> TurnContext:
    return TurnContext(guild_id=42, channel_id=CHANNEL, settings=settings(**overrides))


def user_turn(text: str = "hello", images: tuple[str, ...] = ()) -> UserTurn:
    return UserTurn(text=text, author_id=7, author_name="Ada", image_urls=images, message_id=99)


async def collect(services: Services, turn: UserTurn, ctx: TurnContext) -> list[TurnEvent]:
    return [event async for event in services.engine.reply(KEY, turn, ctx)]


def moderation_inputs(fake_openai: FakeOpenAI) -> list[Any]:
    return [r.json["input"] for r in fake_openai.requests_to("/v1/moderations")]


# ------------------------------------------------------------------------------ through the engine


async def test_off_checks_nothing(make_services: ServicesFactory, fake_openai: FakeOpenAI) -> None:
    services = await make_services()
    fake_openai.moderations.push(ModerationResult(["violence"]))
    events = await collect(services, user_turn(), context())
    assert isinstance(events[-1], Completed)
    assert fake_openai.requests_to("/v1/moderations") == []


async def test_block_stops_a_flagged_turn_before_the_model_and_names_the_categories(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.moderations.push(ModerationResult(["harassment", "violence/graphic"]))
    events = await collect(services, user_turn("something nasty"), context(moderation="block"))
    assert isinstance(events[0], Started)
    final = events[-1]
    assert isinstance(final, Failed) and final.kind == "moderation"
    assert final.reason == f"{NOT_SENT} harassment and violence (graphic)."
    assert fake_openai.requests_to("/v1/responses") == []
    [request] = fake_openai.requests_to("/v1/moderations")
    assert request.json == {
        "model": "omni-moderation-latest",
        "input": [{"type": "text", "text": "something nasty"}],
    }
    # A clean message in the same conversation goes through.
    events = await collect(services, user_turn("sorry, hello"), context(moderation="block"))
    assert isinstance(events[-1], Completed) and not any(isinstance(e, Flagged) for e in events)


async def test_flag_lets_the_turn_go_on_and_says_so(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.moderations.push(ModerationResult(["hate"]))
    events = await collect(services, user_turn("borderline"), context(moderation="flag"))
    flagged = [e for e in events if isinstance(e, Flagged)]
    assert flagged == [Flagged(("hate",))]
    assert events.index(flagged[0]) < len(events) - 1
    final = events[-1]
    assert isinstance(final, Completed) and final.text == "echo: Ada: borderline"


async def test_text_and_every_image_are_checked_with_the_configured_model(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.models.append("omni-moderation-2024-09-26")
    services = await make_services(openai={"moderation_model": "omni-moderation-2024-09-26"})
    images = ("https://cdn.example/a.png", "https://cdn.example/b.png")
    fake_openai.moderations.push(ModerationResult(), ModerationResult(["sexual"]))  # only the second image
    events = await collect(services, user_turn("look", images), context(moderation="block"))
    final = events[-1]
    assert isinstance(final, Failed) and final.reason == f"{NOT_SENT} sexual."
    assert moderation_inputs(fake_openai) == [
        [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": images[0]}}],
        [{"type": "image_url", "image_url": {"url": images[1]}}],
    ]
    assert {r.json["model"] for r in fake_openai.requests_to("/v1/moderations")} == {
        "omni-moderation-2024-09-26"
    }


async def test_an_image_only_message_is_checked_too(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    await collect(services, user_turn("", ("https://cdn.example/c.png",)), context(moderation="flag"))
    assert moderation_inputs(fake_openai) == [
        [{"type": "image_url", "image_url": {"url": "https://cdn.example/c.png"}}]
    ]


async def test_an_api_failure_fails_open_by_default_and_is_logged(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    services = await make_services()
    fake_openai.moderations.push(DOWN, DOWN, DOWN)
    with caplog.at_level(logging.WARNING, logger="bot.moderation"):
        events = await collect(services, user_turn("hi"), context(moderation="block"))
    assert isinstance(events[-1], Completed)
    assert len(fake_openai.requests_to("/v1/moderations")) == 3  # retried, then given up
    [record] = [r for r in caplog.records if r.name == "bot.moderation"]
    assert record.levelno == logging.WARNING and "letting it through" in record.getMessage()


async def test_an_api_failure_fails_closed_when_asked_and_tells_the_user(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    services = await make_services()
    fake_openai.moderations.push(HttpError(400, "bad input"))
    with caplog.at_level(logging.WARNING, logger="bot.moderation"):
        events = await collect(
            services, user_turn("hi"), context(moderation="flag", moderation_fail_open=False)
        )
    final = events[-1]
    assert isinstance(final, Failed) and final.kind == "moderation"
    assert "not sent" in final.reason and "try again" in final.reason
    assert fake_openai.requests_to("/v1/responses") == []
    assert any("holding it back" in r.getMessage() for r in caplog.records)


def test_categories_are_named_for_people() -> None:
    assert describe_categories(["self-harm/intent"]) == "self-harm (intent)"
    assert describe_categories(["a", "b", "c", "d", "e", "f"]) == "a, b, c, d and 2 more"


# ------------------------------------------------------------------------------ end to end


MOD_LOG = object()
"""Stands for the #mod-log channel's id in `bot_with_mod_log`'s defaults."""


@contextlib.asynccontextmanager
async def bot_with_mod_log(
    tmp_path: Path, fake_openai: FakeOpenAI, **defaults: Any
) -> AsyncIterator[tuple[Harness, FakeChannel]]:
    """The usual world plus a #mod-log channel (there before the bot connects) and these defaults."""
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        mod_log = server.add_text_channel(world.guild.id, "mod-log")
        values = {key: (mod_log.id if value is MOD_LOG else value) for key, value in defaults.items()}
        async with running_bot(tmp_path, fake_openai, discord=server, world=world, defaults=values) as h:
            yield h, mod_log


async def answer_in_thread(h: Harness, text: str) -> tuple[dict[str, Any], StoredMessage]:
    """Alice mentions the bot; the user's message and the bot's (finished) answer in the new thread."""
    sent = await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True)
    await h.discord.wait_for(
        lambda: any(c.parent_id == h.general.id for c in h.discord.channels.values()), timeout=WAIT_S
    )
    thread = next(c for c in h.discord.channels.values() if c.parent_id == h.general.id)
    await h.discord.wait_for(lambda: bool(h.discord.bot_messages(thread.id)), timeout=WAIT_S)
    await h.services.engine.wait_idle()
    return sent, h.discord.bot_messages(thread.id)[-1]


async def test_block_answers_with_the_categories_and_sends_nothing_to_the_model(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderations.push(ModerationResult(["harassment", "violence"]))
    async with running_bot(tmp_path, fake_openai, defaults={"moderation": "block"}) as h:
        _, reply = await answer_in_thread(h, "you are all idiots")
        assert reply.content == f"⚠️ {NOT_SENT} harassment and violence."
        assert fake_openai.requests_to("/v1/responses") == []


async def test_flag_answers_and_posts_a_note_to_the_mod_log(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.moderations.push(ModerationResult(["harassment"]))
    async with bot_with_mod_log(tmp_path, fake_openai, moderation="flag", mod_log_channel=MOD_LOG) as (
        h,
        mod_log,
    ):
        sent, reply = await answer_in_thread(h, "rude but answerable")
        assert reply.content == "echo: alice: rude but answerable"
        await h.discord.wait_for(lambda: bool(h.discord.bot_messages(mod_log.id)), timeout=WAIT_S)
        [note] = h.discord.bot_messages(mod_log.id)
        assert "harassment" in note.content and f"<@{h.alice.id}>" in note.content
        assert f"/channels/{h.world.guild.id}/{h.general.id}/{sent['id']}" in note.content  # the jump link
        assert note.data["mentions"] == []  # names alice without pinging her
        create = next(c for c in h.discord.calls_of("message_create") if c.channel_id == mod_log.id)
        assert create.allowed_mentions is not None and create.allowed_mentions.get("parse") == []


async def test_a_flag_in_a_dm_on_a_servers_assistant_goes_to_that_servers_mod_log(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """A DM pick runs as its server's turn: the server's moderation checks it, its moderators hear."""
    async with bot_with_mod_log(tmp_path, fake_openai) as (h, mod_log):
        admin, guild_id = h.world.admin, h.world.guild.id
        for name, value in (("moderation", "flag"), ("mod_log_channel", str(mod_log.id))):
            await h.services.settings.set(guild_id, name, value, user_id=admin.id)
        tutor = {"name": "Tutor", "model": "gpt-5.5"}
        await run(h, "assistant create", tutor, user=admin, channel_id=h.general.id)
        dm = h.discord.dm_channel(h.alice)
        await run(h, "assistant use", {"name": f"{guild_id}:Tutor"}, user=h.alice, channel_id=dm.id)
        fake_openai.moderations.push(ModerationResult(["harassment"]))
        await h.discord.dm_message(h.alice, "rude but answerable")
        await h.discord.wait_for(lambda: bool(h.discord.bot_messages(mod_log.id)), timeout=WAIT_S)
        [note] = h.discord.bot_messages(mod_log.id)
        assert "harassment" in note.content and "a direct message" in note.content
        assert len(fake_openai.requests_to("/v1/moderations")) == 1


async def test_flag_without_a_mod_log_channel_posts_nothing_more(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderations.push(ModerationResult(["harassment"]))
    async with bot_with_mod_log(tmp_path, fake_openai, moderation="flag") as (h, mod_log):
        _, reply = await answer_in_thread(h, "rude but answerable")
        assert reply.content == "echo: alice: rude but answerable"
        assert len(fake_openai.requests_to("/v1/moderations")) == 1
        assert h.discord.bot_messages(mod_log.id) == []
        assert len(h.discord.calls_of("message_create")) == 1  # the answer, nothing else


async def test_a_mod_log_channel_of_another_server_gets_nothing(
    tmp_path: Path, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.moderations.push(ModerationResult(["harassment"]))
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        elsewhere = server.add_text_channel(server.add_guild("Another Server").id, "their-mod-log")
        defaults = {"moderation": "flag", "mod_log_channel": elsewhere.id}
        async with running_bot(tmp_path, fake_openai, discord=server, world=world, defaults=defaults) as h:
            with caplog.at_level(logging.WARNING, logger="cogs.chat"):
                _, reply = await answer_in_thread(h, "rude but answerable")
            assert reply.content == "echo: alice: rude but answerable"
            assert h.discord.bot_messages(elsewhere.id) == []
            assert any("not a text channel of that server" in r.getMessage() for r in caplog.records)


async def test_fail_closed_tells_the_user_and_fail_open_answers(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.moderations.push(DOWN, DOWN, DOWN)
    defaults = {"moderation": "block", "moderation_fail_open": False}
    async with running_bot(tmp_path, fake_openai, defaults=defaults) as h:
        _, reply = await answer_in_thread(h, "hello?")
        assert reply.content.startswith("⚠️ Your message was not sent to the assistant")
        assert "try again" in reply.content
        assert fake_openai.requests_to("/v1/responses") == []
    fake_openai.moderations.push(DOWN, DOWN, DOWN)
    async with running_bot(tmp_path / "open", fake_openai, defaults={"moderation": "block"}) as h:
        _, reply = await answer_in_thread(h, "hello?")
        assert reply.content == "echo: alice: hello?"
