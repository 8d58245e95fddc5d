"""Running one round of the model's tool calls; shared by both backends.

Read-only calls run concurrently; calls with side effects run one after another (each may ask the
user to confirm), after the read-only ones. Results keep the model's call order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.engine.events import ToolFinished, ToolStarted, TurnEvent
from bot.engine.turn import TurnRequest
from bot.tooling import (
    ConfirmationOutcome,
    ConfirmationRequest,
    Confirmer,
    ToolContext,
    ToolRegistry,
    ToolResult,
)


@dataclass(frozen=True, slots=True)
class RequestedCall:
    """A function call as the model sent it (arguments still raw JSON)."""

    call_id: str
    name: str
    arguments: str


async def run_tool_round(
    calls: list[RequestedCall],
    request: TurnRequest,
    registry: ToolRegistry,
    results: dict[str, ToolResult],
) -> AsyncIterator[TurnEvent]:
    """Run `calls`, yielding progress events; `results` (by call id) fills as each call finishes.

    Filled as it goes, so a turn interrupted half-way still knows which calls really ran.
    """

    def context_for(call: RequestedCall) -> ToolContext:
        return ToolContext(
            user_id=request.turn.author_id,
            user_name=request.turn.author_name,
            guild_id=request.context.guild_id,
            channel_id=request.context.channel_id,
            conversation_key=request.conversation.key,
            call_id=call.call_id,
            settings=request.context.settings,
        )

    def finished(call: RequestedCall, timed: tuple[ToolResult, float]) -> ToolFinished:
        result, duration_s = timed
        results[call.call_id] = result
        return ToolFinished(
            call.call_id,
            call.name,
            result.ok,
            result.summary,
            detail=result_in_brief(result),
            error_code=result.error_code,
            duration_s=duration_s,
            function_call=True,
        )

    async def call_tool(call: RequestedCall) -> tuple[ToolResult, float]:
        """The call's result and how long it ran (each its own: read-only calls run together); a side
        effect's run starts once the person answered, so their wait is not counted as the tool's."""
        began = time.monotonic()
        confirmer = request.context.confirmer
        timed = None if confirmer is None else _TimedConfirmer(confirmer)
        result = await registry.call(call.name, call.arguments, context_for(call), timed)
        if timed is not None and timed.answered_at is not None:
            began = timed.answered_at
        return result, time.monotonic() - began

    def has_side_effect(call: RequestedCall) -> bool:
        tool = registry.get(call.name)
        return tool is not None and tool.side_effect

    read_only = [call for call in calls if not has_side_effect(call)]
    acting = [call for call in calls if has_side_effect(call)]

    for call in read_only:
        yield ToolStarted(
            call.call_id, call.name, registry.activity(call.name), call.arguments, function_call=True
        )
    if read_only:
        for call, timed in zip(
            read_only, await asyncio.gather(*(call_tool(call) for call in read_only)), strict=True
        ):
            yield finished(call, timed)
    for call in acting:
        yield ToolStarted(
            call.call_id, call.name, registry.activity(call.name), call.arguments, function_call=True
        )
        yield finished(call, await call_tool(call))


class _TimedConfirmer:
    """A call's confirmer that notes when the person answered (monotonic)."""

    def __init__(self, confirmer: Confirmer) -> None:
        self._confirmer = confirmer
        self.answered_at: float | None = None

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
        outcome = await self._confirmer.confirm(request, timeout_s=timeout_s)
        self.answered_at = time.monotonic()
        return outcome


def result_in_brief(result: ToolResult) -> str:
    """A call's result as a person glancing at the turn's steps reads it: the error's message, or the
    summary with the data the model read."""
    if not result.ok:
        return result.error_message or result.error_code or "failed"
    data = json.dumps(result.data, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"{result.summary}: {data}" if result.summary else data
