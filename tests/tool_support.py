"""Helpers for the booking and ride tool tests: a settable clock, a scripted confirmer, the core with
the built-in tools on it, and a way to read what the model was sent back on either backend."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

from bot.config import AppConfig, GuildSettings
from bot.engine import TurnContext, UserTurn, conversation_key
from bot.engine.events import TurnEvent
from bot.services import Services
from bot.storage import Storage
from bot.tooling import ConfirmationOutcome, ConfirmationRequest, ToolContext, ToolRegistry, ToolResult
from standins.openai import FakeOpenAI
from tests.conftest import ServicesFactory, settings
from tools import register_builtin_tools

GUILD = 42
CHANNEL = 1001
KEY = conversation_key(CHANNEL)
ALICE = 7
BOB = 8
# Monday 4 May 2026, 10:00 UTC: the demo restaurants are open for lunch and dinner most days.
MONDAY_10_UTC = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


class Clock:
    """A settable "now" for the tools (aware UTC)."""

    def __init__(self, now: dt.datetime = MONDAY_10_UTC) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class ScriptedConfirmer:
    """Answers confirmations from a script, recording what it was asked; `on_ask` runs first."""

    def __init__(self, *outcomes: ConfirmationOutcome, on_ask: Callable[[], None] | None = None) -> None:
        self.outcomes = list(outcomes)
        self.asked: list[ConfirmationRequest] = []
        self.on_ask = on_ask

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
        self.asked.append(request)
        if self.on_ask is not None:
            self.on_ask()
        return self.outcomes.pop(0)


async def services_with_tools(
    make_services: ServicesFactory, clock: Clock, **sections: dict[str, Any]
) -> Services:
    services = await make_services(**sections)
    register_builtin_tools(
        services.tools, storage=services.storage, config=services.config, secrets_env={}, clock=clock
    )
    return services


def turn_context(
    confirmer: ScriptedConfirmer | None = None,
    *,
    backend: str = "responses",
    families: tuple[str, ...] = ("restaurants", "rides"),
    guild_id: int | None = GUILD,
    **overrides: Any,
) -> TurnContext:
    guild_settings = settings(backend=backend, enabled_tools=families, **overrides)
    return TurnContext(guild_id=guild_id, channel_id=CHANNEL, settings=guild_settings, confirmer=confirmer)


async def run_turn(
    services: Services, text: str, context: TurnContext, *, author: int = ALICE, name: str = "Ada"
) -> list[TurnEvent]:
    user_turn = UserTurn(text=text, author_id=author, author_name=name)
    return [event async for event in services.engine.reply(KEY, user_turn, context)]


def sent_outputs(fake_openai: FakeOpenAI, backend: str, request_index: int) -> list[dict[str, Any]]:
    """The tool results the model received in request `request_index`, in call order."""
    if backend == "responses":
        body = fake_openai.requests_to("/v1/responses")[request_index].json
        return [
            json.loads(item["output"])
            for item in body["input"]
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        ]
    messages = fake_openai.requests_to("/v1/chat/completions")[request_index].json["messages"]
    trailing: list[dict[str, Any]] = []
    for message in reversed(messages):  # the tool messages after the last assistant message
        if message["role"] != "tool":
            break
        trailing.insert(0, json.loads(message["content"]))
    return trailing


def model_requests(fake_openai: FakeOpenAI, backend: str) -> int:
    path = "/v1/responses" if backend == "responses" else "/v1/chat/completions"
    return len(fake_openai.requests_to(path))


def push(fake_openai: FakeOpenAI, backend: str, *steps: Any) -> None:
    (fake_openai.responses if backend == "responses" else fake_openai.chat).push(*steps)


async def call_tool(
    registry: ToolRegistry,
    name: str,
    arguments: dict[str, Any] | str,
    *,
    user: int = ALICE,
    guild_settings: GuildSettings | None = None,
    confirmer: ScriptedConfirmer | None = None,
    call_id: str | None = None,
    guild_id: int | None = GUILD,
) -> ToolResult:
    """One call through the registry (validation, confirmation, ledger), outside any turn."""
    context = ToolContext(
        user_id=user,
        user_name=f"user{user}",
        guild_id=guild_id,
        channel_id=CHANNEL,
        conversation_key=KEY,
        call_id=call_id or f"call_test_{uuid.uuid4().hex}",
        settings=guild_settings or settings(enabled_tools=("restaurants", "rides")),
    )
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return await registry.call(name, raw, context, confirmer)


def builtin_registry(storage: Storage, clock: Clock) -> ToolRegistry:
    """The built-in tools on their own (no engine), with the default config and a settable clock."""
    registry = ToolRegistry(storage.tool_calls)
    register_builtin_tools(registry, storage=storage, config=AppConfig(), secrets_env={}, clock=clock)
    return registry
