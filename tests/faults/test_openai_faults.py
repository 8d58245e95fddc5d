"""OpenAI failing in every way it does, end to end: the real bot, the stand-in Discord and OpenAI.

For each fault, on both backends, and both on a turn's first model call and on the call after a tool
ran: the user sees one clear warning sentence in the thread, the next message is answered, the chat
backend keeps no history of the failed turn, and the OpenAI conversation holds no function call
without its output (OpenAI would refuse every later turn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.engine import conversation_key
from standins.openai import Drop, FakeOpenAI, FunctionCall, HttpError, Reply, Script, Step
from tests.faults.support import (
    WARNING,
    assert_clear_sentence,
    open_thread,
    refused_port,
    wait_for_content,
    wait_for_warning,
    warning_line,
)
from tests.harness import Harness, running_bot

MAX_RETRIES = 1  # the SDK retries once: a fault must outlast two attempts to reach the user
FIND = FunctionCall(
    "find_restaurants", {"cuisine": "italian", "area": None, "party_size": None, "time": None}
)


@dataclass(frozen=True)
class Fault:
    """What the stand-in does with the failing model call, and what the user should read."""

    steps: tuple[Step, ...] = ()
    fragments: tuple[str, ...] = ()
    openai: dict[str, Any] = field(default_factory=dict)
    refused: bool = False


FAULTS: dict[str, Fault] = {
    "429 with retry-after": Fault(
        (HttpError(429, "Slow down", headers={"retry-after": "0.05"}),) * (MAX_RETRIES + 1),
        ("rate-limiting",),
    ),
    "500/503 burst": Fault(
        (HttpError(500, "boom"), HttpError(503, "overloaded", headers={"retry-after-ms": "10"})),
        ("model server had a problem",),
    ),
    "connection refused": Fault(refused=True, fragments=("connection to the model",)),
    "timeout": Fault(
        (Reply("too late", delay_s=1.5),) * (MAX_RETRIES + 1),
        ("took too long",),
        openai={"request_timeout_s": 0.4},
    ),
    "stream cut mid-way": Fault(
        (Reply("one two three four five six seven eight nine ten", cut_after=6),),
        ("cut off", "broke off"),
    ),
    "malformed JSON": Fault((Reply("one two three four five", malformed=True),), ("unreadable",)),
    "response.failed": Fault((Reply("half an answer", status="failed"),), ("could not answer",)),
    "incomplete": Fault((Reply("half an answer", status="incomplete"),), ("cut short",)),
}


def script_of(openai: FakeOpenAI, backend: str) -> Script:
    return openai.responses if backend == "responses" else openai.chat


def point_at(h: Harness, url: str) -> Callable[[], None]:
    """Send the bot's model calls to `url` (both backends share the client); returns the undo."""
    client = h.services.openai
    original = client.base_url
    client.base_url = url
    return lambda: setattr(client, "base_url", original)


@pytest.mark.parametrize("after_tool", [False, True], ids=["first call", "after a tool ran"])
@pytest.mark.parametrize("backend", ["responses", "chat"])
@pytest.mark.parametrize("name", list(FAULTS))
async def test_openai_fault_is_one_clear_warning_and_the_conversation_recovers(
    tmp_path: Path, fake_openai: FakeOpenAI, name: str, backend: str, after_tool: bool
) -> None:
    fault = FAULTS[name]
    async with running_bot(
        tmp_path,
        fake_openai,
        defaults={"backend": backend},
        openai={"max_retries": MAX_RETRIES, **fault.openai},
    ) as h:
        thread = await open_thread(h, "hello")
        script = script_of(fake_openai, backend)
        with refused_port() as port:
            undo: list[Callable[[], None]] = []

            def refuse() -> None:
                undo.append(point_at(h, f"http://127.0.0.1:{port}/v1"))

            if after_tool:

                def tool_round(body: dict[str, Any]) -> Reply:
                    if fault.refused:
                        refuse()  # the model's next call (and anything after it) meets a closed port
                    return Reply(calls=[FIND])

                script.push(tool_round)
            elif fault.refused:
                refuse()
            script.push(*fault.steps)
            shown = len(h.discord.bot_messages(thread.id))
            await h.discord.user_message(thread.id, h.alice, "this one fails")
            warning = await wait_for_warning(h, thread.id, after=shown)
            await h.bot.services.engine.wait_idle()
            for restore in undo:
                restore()

        line = warning_line(warning.content)
        assert_clear_sentence(line)
        assert any(fragment in line for fragment in fault.fragments), line
        assert len(h.discord.bot_messages(thread.id)) == shown + 1  # one reply, nothing doubled
        assert len(script) == 0, "every scripted fault step was used"

        await h.discord.user_message(thread.id, h.alice, "and now?")
        await wait_for_content(h.discord, thread.id, "echo: alice: and now?")
        assert WARNING not in h.discord.bot_messages(thread.id)[-1].content

        key = conversation_key(thread.id)
        if backend == "chat":
            history = await h.services.storage.history.recent(key, 1, token_budget=100_000)
            users = [m.payload["content"] for m in history if m.payload["role"] == "user"]
            assert users == ["alice: hello", "alice: and now?"]  # the failed turn left no trace
        else:
            record = await h.services.storage.conversations.get(key)
            assert record is not None and record.conversation_id is not None
            items = fake_openai.conversations[record.conversation_id].items
            calls = {i["call_id"] for i in items if i["type"] == "function_call"}
            outputs = {i["call_id"] for i in items if i["type"] == "function_call_output"}
            assert calls == outputs
            assert bool(calls) == after_tool
        assert await h.services.storage.turns.take_interrupted() == []  # every turn was closed


async def test_a_short_429_or_5xx_burst_is_retried_and_the_user_sees_only_the_answer(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, openai={"max_retries": 2}) as h:
        fake_openai.responses.push(
            HttpError(429, "Slow down", headers={"retry-after": "0.05"}),
            HttpError(503, "overloaded", headers={"retry-after-ms": "10"}),
        )
        thread = await open_thread(h, "hello")
        assert [m.content for m in h.discord.bot_messages(thread.id)] == ["echo: alice: hello"]
        statuses = [r.status for r in fake_openai.requests_to("/v1/responses")]
        assert statuses == [429, 503, 200]


async def test_a_dropped_connection_is_retried_transparently(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, openai={"max_retries": 1}) as h:
        fake_openai.fail_next("/v1/responses", Drop())
        thread = await open_thread(h, "hello")
        assert [m.content for m in h.discord.bot_messages(thread.id)] == ["echo: alice: hello"]
