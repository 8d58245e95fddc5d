"""Cost control as members meet it on Discord: budgets, cooldown, queue limits, the model-call cap."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from standins.discord import FakeChannel, FakeUser
from standins.openai import FakeOpenAI, Reply
from tests.command_support import WAIT_S, run
from tests.harness import Harness, running_bot


async def config_set(h: Harness, setting: str, value: str) -> None:
    answer = await run(h, "config set", {"setting": setting, "value": value}, user=h.world.admin)
    assert "is now" in answer.text, answer.text


async def wait_for_bot_text(h: Harness, channel_id: int, fragment: str) -> str:
    """Until one of the bot's messages in the channel contains `fragment`; that message's text."""
    await h.discord.wait_for(
        lambda: any(fragment in m.content for m in h.discord.bot_messages(channel_id)), timeout=WAIT_S
    )
    return next(m.content for m in h.discord.bot_messages(channel_id) if fragment in m.content)


async def open_thread(h: Harness, user: FakeUser, text: str) -> FakeChannel:
    """`user` mentions the bot in #general; the thread it opens for the conversation."""
    before = len(h.discord.threads_in(h.general.id))
    await h.discord.user_message(h.general.id, user, f"{h.bot_mention} {text}", mentions_bot=True)
    await h.discord.wait_for(lambda: len(h.discord.threads_in(h.general.id)) > before, timeout=WAIT_S)
    return h.discord.threads_in(h.general.id)[before]


async def test_a_spent_budget_refuses_before_calling_the_model_and_says_when_it_resets(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(Reply("expensive", usage=(900, 200)))
    async with running_bot(tmp_path, fake_openai) as h:
        await config_set(h, "daily_token_budget_user", "1000")
        thread = await open_thread(h, h.alice, "first")
        await wait_for_bot_text(h, thread.id, "expensive")
        await h.services.engine.wait_idle()
        await h.discord.user_message(thread.id, h.alice, "second")
        refusal = await wait_for_bot_text(h, thread.id, "budget")
        assert refusal.startswith("⚠️ You have used your daily token budget here; it resets at 00:00 UTC (in ")
        assert len(fake_openai.requests_to("/v1/responses")) == 1  # refused before any API call

        await h.discord.user_message(thread.id, h.world.bob, "my turn")  # bob has his own budget
        await wait_for_bot_text(h, thread.id, "echo: bob: my turn")
        await h.services.engine.wait_idle()
        await config_set(h, "daily_token_budget_guild", "1000")
        await h.discord.user_message(thread.id, h.world.bob, "again")
        server = await wait_for_bot_text(h, thread.id, "This server")
        assert "This server has used its daily token budget; it resets at 00:00 UTC" in server
        assert len(fake_openai.requests_to("/v1/responses")) == 2


async def test_cooldown_applies_per_member(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await config_set(h, "user_cooldown_s", "1m")
        thread = await open_thread(h, h.alice, "hi")
        await wait_for_bot_text(h, thread.id, "echo: alice: hi")
        await h.discord.user_message(thread.id, h.alice, "quick follow-up")
        slow_down = await wait_for_bot_text(h, thread.id, "Slow down")
        assert slow_down.startswith("⚠️ Slow down a little") and " 60 s" in slow_down
        await h.discord.user_message(thread.id, h.world.bob, "me")
        await wait_for_bot_text(h, thread.id, "echo: bob: me")
        assert len(fake_openai.requests_to("/v1/responses")) == 2


async def test_a_member_cannot_queue_more_turns_than_the_server_allows(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    release = asyncio.Event()

    async def held(body: dict[str, Any]) -> Reply:
        await release.wait()
        return Reply("done")

    fake_openai.responses.default = held
    async with running_bot(tmp_path, fake_openai) as h:
        await config_set(h, "max_queued_turns_per_user", "1")
        thread = await open_thread(h, h.alice, "long question")
        await fake_openai.wait_for_requests("/v1/responses", 1)
        await h.discord.user_message(thread.id, h.alice, "and another")
        busy = await wait_for_bot_text(h, thread.id, "waiting")
        assert busy == "⏳ You already have messages waiting for an answer; please wait for them first."
        release.set()
        await wait_for_bot_text(h, thread.id, "done")
        assert len(fake_openai.requests_to("/v1/responses")) == 1


async def test_model_calls_are_capped_and_the_wait_is_bounded(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """One call at a time, one waiting: of two more conversations, one waits and one is told to retry."""
    release = asyncio.Event()
    active: list[int] = []
    most_active = 0

    async def held(body: dict[str, Any]) -> Reply:
        nonlocal most_active
        active.append(1)
        most_active = max(most_active, len(active))
        await release.wait()
        active.pop()
        return Reply("answered")

    fake_openai.responses.default = held
    engine = {"max_concurrent_model_calls": 1, "max_waiting_model_calls": 1}
    async with running_bot(tmp_path, fake_openai, engine=engine) as h:
        first = await open_thread(h, h.alice, "one")
        await fake_openai.wait_for_requests("/v1/responses", 1)
        others = [await open_thread(h, h.world.bob, "two"), await open_thread(h, h.world.admin, "three")]

        def told_busy() -> list[FakeChannel]:
            return [t for t in others if any("very busy" in m.content for m in h.discord.bot_messages(t.id))]

        await h.discord.wait_for(lambda: len(told_busy()) == 1, timeout=WAIT_S)
        busy = told_busy()[0]
        assert h.discord.bot_messages(busy.id)[-1].content == (
            "⏳ The bot is very busy right now; please try again in a minute."
        )
        assert len(fake_openai.requests_to("/v1/responses")) == 1
        release.set()
        waited = next(t for t in others if t is not busy)
        await wait_for_bot_text(h, first.id, "answered")
        await wait_for_bot_text(h, waited.id, "answered")
        assert most_active == 1
        assert len(fake_openai.requests_to("/v1/responses")) == 2
