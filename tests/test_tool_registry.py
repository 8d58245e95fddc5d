"""The registry owns a tool's failure path: a `ToolError` from a handler or a preview is the call's result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.storage import Storage
from bot.tooling import (
    ConfirmationOutcome,
    ConfirmationRequest,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
)
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines
from tests.conftest import settings
from tests.tool_support import ScriptedConfirmer, call_tool


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def refuse(args: NoArgs, context: ToolContext) -> ToolResult:
    raise ToolError("closed", f"Closed all day ({context.tz.key}).")


async def crash(args: NoArgs, context: ToolContext) -> ToolResult:
    raise RuntimeError("a bug")


async def ask(args: NoArgs, context: ToolContext) -> ConfirmationRequest:
    return ConfirmationRequest("act", context.call_id, context.user_id, "Do it?", ())


async def refuse_to_ask(args: NoArgs, context: ToolContext) -> ConfirmationRequest:
    raise ToolError("full", "No table left.")


def registry_with(storage: Storage, *tools: Tool[NoArgs]) -> ToolRegistry:
    registry = ToolRegistry(storage.tool_calls)
    for tool in tools:
        registry.add(tool)
    return registry


def tool(name: str, handler: Any, **extra: Any) -> Tool[NoArgs]:
    return Tool(
        name=name,
        family="restaurants",
        description=name,
        arguments=NoArgs,
        handler=handler,
        activity=name,
        **extra,
    )


PARIS = settings(enabled_tools=("restaurants",), timezone="Europe/Paris")


async def test_a_tool_error_from_a_handler_is_the_result_and_is_recorded_once(storage: Storage) -> None:
    registry = registry_with(storage, tool("refuse", refuse))
    first = await call_tool(registry, "refuse", {}, guild_settings=PARIS, call_id="call_refuse")
    assert (first.ok, first.error_code, first.error_message) == (
        False,
        "closed",
        "Closed all day (Europe/Paris).",
    )
    again = await call_tool(registry, "refuse", {}, guild_settings=PARIS, call_id="call_refuse")
    assert (again.error_code, again.error_message) == ("closed", "Closed all day (Europe/Paris).")


async def test_any_other_exception_is_still_an_internal_failure(storage: Storage) -> None:
    registry = registry_with(storage, tool("crash", crash))
    result = await call_tool(registry, "crash", {}, guild_settings=PARIS)
    assert result.error_code == "internal"


async def test_a_tool_error_from_a_preview_is_the_result_and_nobody_is_asked(storage: Storage) -> None:
    registry = registry_with(storage, tool("act", refuse, side_effect=True, preview=refuse_to_ask))
    confirmer = ScriptedConfirmer(ConfirmationOutcome.APPROVED)
    result = await call_tool(registry, "act", {}, guild_settings=PARIS, confirmer=confirmer)
    assert (result.error_code, result.error_message) == ("full", "No table left.")
    assert confirmer.asked == []


async def test_a_confirmed_handler_may_raise_a_tool_error_too(storage: Storage) -> None:
    registry = registry_with(storage, tool("act", refuse, side_effect=True, preview=ask))
    confirmer = ScriptedConfirmer(ConfirmationOutcome.APPROVED)
    result = await call_tool(registry, "act", {}, guild_settings=PARIS, confirmer=confirmer)
    assert result.error_code == "closed" and len(confirmer.asked) == 1
