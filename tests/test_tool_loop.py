"""The tool-round loop both backends share, driven by a scripted backend: its contract on its own.

The backends themselves run against the stand-in OpenAI server in test_engine.py and
test_context_window.py; here nothing goes over the network, so each rule of the loop (text across
rounds, usage, the bound on rounds, recovery, closing calls) is checked where it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import httpx2
import openai
import pytest
from pydantic import BaseModel

from bot.engine.events import Completed, Failed, TextDelta, ToolFinished, TurnEvent, Usage
from bot.engine.tool_loop import (
    CUT_OFF,
    INTERRUPTED_OUTPUT,
    ROUND_LIMIT_OUTPUT,
    TOO_MANY_ROUNDS,
    RoundResult,
    ToolLoop,
)
from bot.engine.tool_round import RequestedCall
from bot.engine.turn import TurnContext, TurnRequest, UserTurn
from bot.limits import ModelCallGate
from bot.storage import Storage
from bot.storage.conversations import ConversationRecord
from bot.tooling import Tool, ToolContext, ToolRegistry, ToolResult
from tests.conftest import settings

CONTEXT_ERROR = openai.APIError(
    "This model's maximum context length is 100 tokens.",
    httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions"),
    body={"code": "context_length_exceeded"},
)
Attempt = list[TurnEvent | RoundResult | Exception]
"""What one model call of the scripted backend yields, in order (an exception is raised there)."""


class NoArgs(BaseModel):
    pass


@dataclass
class ScriptedRounds:
    """A backend whose model calls are scripted; it records what the loop asked of it."""

    attempts: list[Attempt]
    recovery_cost: Usage | None = None
    recovered: int = 0
    outputs: list[dict[str, str]] = field(default_factory=list)
    closed: list[tuple[list[str], str, dict[str, bool]]] = field(default_factory=list)
    completed_with: RoundResult | None = None

    async def stream_round(self, round_number: int) -> AsyncIterator[TurnEvent | RoundResult]:
        for item in self.attempts.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item

    async def recover_from_context_error(self, error: openai.APIError, round_number: int) -> Usage | None:
        self.recovered += 1
        return self.recovery_cost

    def add_outputs(self, round_: RoundResult, results: Mapping[str, ToolResult]) -> None:
        self.outputs.append({call.call_id: results[call.call_id].to_output() for call in round_.calls})

    async def close_calls(
        self, calls: list[RequestedCall], reason: str, results: Mapping[str, ToolResult]
    ) -> None:
        ok = {call_id: result.ok for call_id, result in results.items()}
        self.closed.append(([call.call_id for call in calls], reason, ok))

    async def complete(self, text: str, usage: Usage, last: RoundResult) -> Completed:
        self.completed_with = last
        return Completed(text=text, usage=usage)


@dataclass
class Tools:
    registry: ToolRegistry
    acting: asyncio.Event
    """Set when `act` has started."""


@pytest.fixture
def tools(storage: Storage) -> Tools:
    """`look` (read-only) answers at once; `act` (a side effect, unconfirmed) never finishes."""
    acting = asyncio.Event()

    async def look(args: NoArgs, context: ToolContext) -> ToolResult:
        return ToolResult.success({"seen": context.call_id})

    async def act(args: NoArgs, context: ToolContext) -> ToolResult:
        acting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    registry = ToolRegistry(storage.tool_calls)
    registry.add(Tool("look", "knowledge", "Look.", NoArgs, look, "Looking"))
    registry.add(Tool("act", "restaurants", "Act.", NoArgs, act, "Acting", side_effect=True))
    return Tools(registry, acting)


def request() -> TurnRequest:
    guild_settings = settings(enabled_tools=("knowledge", "restaurants"), confirm_side_effects=False)
    return TurnRequest(
        conversation=ConversationRecord("channel:1", "scripted", None, 1, 42, 1, 0.0, 0.0),
        turn=UserTurn("hi", 7, "Ada"),
        context=TurnContext(guild_id=42, channel_id=1, settings=guild_settings),
        turn_id=1,
    )


def call(call_id: str, name: str = "look") -> RequestedCall:
    return RequestedCall(call_id, name, "{}")


def tool_loop(tools: Tools, max_tool_rounds: int = 4) -> ToolLoop:
    return ToolLoop(tools.registry, ModelCallGate(max_concurrent=1, max_waiting=0), max_tool_rounds)


async def answer(tools: Tools, rounds: ScriptedRounds, *, max_tool_rounds: int = 4) -> list[TurnEvent]:
    return [event async for event in tool_loop(tools, max_tool_rounds).answer(rounds, request())]


def texts(events: list[TurnEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, TextDelta)]


async def test_later_rounds_start_a_new_paragraph_unless_the_line_ended(tools: Tools) -> None:
    rounds = ScriptedRounds(
        [
            [TextDelta("Let me look."), RoundResult("Let me look.", [call("c1")], Usage(10, 1))],
            [TextDelta("Found it.\n"), RoundResult("Found it.\n", [call("c2")], Usage(20, 2))],
            [TextDelta("Done."), RoundResult("Done.", [], Usage(30, 3))],
        ]
    )
    events = await answer(tools, rounds)
    assert texts(events) == ["Let me look.", "\n\n", "Found it.\n", "Done."]
    final = events[-1]
    assert final == Completed(text="Let me look.\n\nFound it.\nDone.", usage=Usage(60, 6))
    assert rounds.outputs == [{"c1": '{"ok":true,"seen":"c1"}'}, {"c2": '{"ok":true,"seen":"c2"}'}]
    assert rounds.completed_with is not None and rounds.completed_with.text == "Done."
    assert rounds.closed == []


async def test_an_unfinished_round_fails_with_the_text_and_usage_so_far(tools: Tools) -> None:
    rounds = ScriptedRounds(
        [
            [TextDelta("a"), RoundResult("a", [call("c1")], Usage(1, 1))],
            [TextDelta("part"), RoundResult("part", [], Usage(2, 2), CUT_OFF)],
        ]
    )
    final = (await answer(tools, rounds))[-1]
    assert final == Failed("connection", CUT_OFF.reason, "a\n\npart", Usage(3, 3))
    assert rounds.completed_with is None


async def test_a_recovered_model_call_is_made_again_and_the_recovery_counted(tools: Tools) -> None:
    rounds = ScriptedRounds(
        [[CONTEXT_ERROR], [TextDelta("fits"), RoundResult("fits", [], Usage(10, 2))]],
        recovery_cost=Usage(5, 1),
    )
    final = (await answer(tools, rounds))[-1]
    assert final == Completed(text="fits", usage=Usage(15, 3))
    assert rounds.recovered == 1


async def test_a_context_error_is_not_recovered_once_something_was_shown(tools: Tools) -> None:
    rounds = ScriptedRounds([[TextDelta("half"), CONTEXT_ERROR]], recovery_cost=Usage())
    with pytest.raises(openai.APIError):
        await answer(tools, rounds)
    assert rounds.recovered == 0


async def test_a_refused_recovery_lets_the_error_stand(tools: Tools) -> None:
    rounds = ScriptedRounds([[CONTEXT_ERROR]], recovery_cost=None)
    with pytest.raises(openai.APIError):
        await answer(tools, rounds)
    assert rounds.recovered == 1


async def test_the_round_limit_closes_the_last_calls_unrun(tools: Tools) -> None:
    rounds = ScriptedRounds(
        [
            [RoundResult("", [call("c1")], Usage(1, 0))],
            [RoundResult("", [call("c2"), call("c3")], Usage(1, 0))],
        ]
    )
    events = await answer(tools, rounds, max_tool_rounds=1)
    assert events[-1] == Failed("tool_rounds", TOO_MANY_ROUNDS, "", Usage(2, 0))
    assert [e.call_id for e in events if isinstance(e, ToolFinished)] == ["c1"]
    assert rounds.closed == [(["c2", "c3"], ROUND_LIMIT_OUTPUT, {})]


async def test_an_interrupted_round_closes_its_calls_with_the_results_so_far(tools: Tools) -> None:
    rounds = ScriptedRounds([[RoundResult("", [call("c1"), call("c2", "act")], Usage())]])
    events: list[TurnEvent] = []

    async def consume() -> None:
        async for event in tool_loop(tools).answer(rounds, request()):
            events.append(event)

    task = asyncio.create_task(consume())
    await tools.acting.wait()  # `look` has answered; `act` never will
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.call_id for e in events if isinstance(e, ToolFinished)] == ["c1"]
    assert rounds.closed == [(["c1", "c2"], INTERRUPTED_OUTPUT, {"c1": True})]
    assert rounds.outputs == []
