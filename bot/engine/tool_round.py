"""Running one round of the model's tool calls; shared by both backends.

Read-only calls run concurrently; calls with side effects run one after another (each may ask the
user to confirm), after the read-only ones. Results keep the model's call order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.engine.events import ToolFinished, ToolStarted, TurnEvent
from bot.engine.turn import TurnRequest
from bot.tooling import ToolContext, ToolRegistry, ToolResult


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

    def finished(call: RequestedCall, result: ToolResult) -> ToolFinished:
        results[call.call_id] = result
        return ToolFinished(call.call_id, call.name, result.ok, result.summary)

    async def call_tool(call: RequestedCall) -> ToolResult:
        return await registry.call(call.name, call.arguments, context_for(call), request.context.confirmer)

    def has_side_effect(call: RequestedCall) -> bool:
        tool = registry.get(call.name)
        return tool is not None and tool.side_effect

    read_only = [call for call in calls if not has_side_effect(call)]
    acting = [call for call in calls if has_side_effect(call)]

    for call in read_only:
        yield ToolStarted(call.call_id, call.name, registry.activity(call.name))
    if read_only:
        for call, result in zip(
            read_only, await asyncio.gather(*(call_tool(call) for call in read_only)), strict=True
        ):
            yield finished(call, result)
    for call in acting:
        yield ToolStarted(call.call_id, call.name, registry.activity(call.name))
        yield finished(call, await call_tool(call))
