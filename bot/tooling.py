"""Function calling: how a tool is declared, offered to the model, confirmed, and run exactly once.

A tool is a pydantic arguments model (the single source of its JSON schema, in strict mode), a
description written for the model, and an async handler. `tools/` declares the tools; the engine asks
the registry for schemas and hands it every call. Whatever the model sends, the registry answers with
a `ToolResult` the model can read: unknown names, broken JSON, invalid arguments, a declined
confirmation and handler failures all become structured errors, never exceptions. Handlers and
previews raise `ToolError` for what the user should hear about; the registry turns it into the
result, so no tool can forget to.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

import pydantic
from openai.lib._pydantic import to_strict_json_schema

from bot.config import GuildSettings
from bot.storage.tool_calls import ToolCallLedger

log = logging.getLogger(__name__)

MAX_ERROR_DETAILS = 5
Args = TypeVar("Args", bound=pydantic.BaseModel)


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who is calling: identity comes from Discord, never from the model's arguments."""

    user_id: int
    user_name: str
    guild_id: int | None
    channel_id: int
    conversation_key: str
    call_id: str
    settings: GuildSettings

    @property
    def tz(self) -> ZoneInfo:
        """The guild's time zone: the caller's times are read and shown in it."""
        return ZoneInfo(self.settings.timezone)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the model reads back (compact JSON) and a one-line summary shown in Discord."""

    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    summary: str = ""

    @classmethod
    def success(cls, data: dict[str, Any], summary: str = "") -> ToolResult:
        return cls(ok=True, data=data, summary=summary)

    @classmethod
    def failure(cls, code: str, message: str, summary: str = "") -> ToolResult:
        return cls(ok=False, error_code=code, error_message=message, summary=summary or message)

    def to_output(self) -> str:
        payload: dict[str, Any] = (
            {"ok": True, **self.data}
            if self.ok
            else {"ok": False, "error": {"code": self.error_code, "message": self.error_message}}
        )
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def from_output(cls, output: str) -> ToolResult:
        """Rebuild a stored result (the ledger keeps outputs as the model saw them)."""
        try:
            payload = json.loads(output)
        except json.JSONDecodeError:
            return cls.failure("internal", "stored tool output is unreadable")
        if payload.get("ok"):
            payload.pop("ok")
            return cls.success(payload, summary="(already done)")
        error = payload.get("error") or {}
        return cls.failure(str(error.get("code")), str(error.get("message")), summary="(already done)")


class ToolError(Exception):
    """A call that cannot be done, for a reason the model can relay or fix (`code` is stable).

    Raised anywhere under a handler or a preview; the registry makes it the call's result.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_result(self) -> ToolResult:
        return ToolResult.failure(self.code, self.message)


class ConfirmationOutcome(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class ConfirmationRequest:
    """What the user is asked to approve: a title and the facts (restaurant, party, time...)."""

    tool_name: str
    call_id: str
    user_id: int
    title: str
    fields: tuple[tuple[str, str], ...]


class Confirmer(Protocol):
    """Asks the calling user (e.g. Discord buttons) and reports the answer, honouring `timeout_s`."""

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome: ...


Handler = Callable[[Args, ToolContext], Awaitable[ToolResult]]
Preview = Callable[[Args, ToolContext], Awaitable[ConfirmationRequest]]


@dataclass(frozen=True)
class Tool(Generic[Args]):
    """One function the model can call.

    `side_effect` tools (booking, ordering) are confirmed by the user first when the guild asks for
    it; `preview` checks the request and builds what the user sees (or raises `ToolError`, so an
    impossible booking is never put to the user).
    """

    name: str
    family: str
    description: str
    arguments: type[Args]
    handler: Handler[Args]
    activity: str
    side_effect: bool = False
    preview: Preview[Args] | None = None

    def responses_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": to_strict_json_schema(self.arguments),
            "strict": True,
        }

    def chat_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": to_strict_json_schema(self.arguments),
                "strict": True,
            },
        }


SchemaStyle = Literal["responses", "chat"]


class ToolRegistry:
    """Every tool the bot has; filters by a guild's enabled families and runs calls safely."""

    def __init__(self, ledger: ToolCallLedger, *, confirmation_timeout_s: float = 120.0) -> None:
        self._ledger = ledger
        self._confirmation_timeout_s = confirmation_timeout_s
        self._tools: dict[str, Tool[Any]] = {}
        self._schemas: dict[tuple[str, SchemaStyle], dict[str, Any]] = {}
        """Each tool's schema per style, built once: pydantic takes milliseconds per tool and every
        model call sends them all."""

    def add(self, tool: Tool[Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool[Any] | None:
        return self._tools.get(name)

    def enabled(self, families: Iterable[str]) -> list[Tool[Any]]:
        wanted = set(families)
        return [tool for tool in self._tools.values() if tool.family in wanted]

    def schemas(self, families: Iterable[str], style: SchemaStyle) -> list[dict[str, Any]]:
        """The enabled tools' schemas: a new list (callers may extend it) of shared, unchanging dicts."""
        return [self._schema(tool, style) for tool in self.enabled(families)]

    def _schema(self, tool: Tool[Any], style: SchemaStyle) -> dict[str, Any]:
        schema = self._schemas.get((tool.name, style))
        if schema is None:
            schema = tool.responses_schema() if style == "responses" else tool.chat_schema()
            self._schemas[(tool.name, style)] = schema
        return schema

    def activity(self, name: str) -> str:
        tool = self._tools.get(name)
        return tool.activity if tool else f"Calling {name}"

    async def call(
        self,
        name: str,
        raw_arguments: str,
        context: ToolContext,
        confirmer: Confirmer | None,
    ) -> ToolResult:
        """Validate, confirm if needed, and run a call once; always returns a result for the model."""
        tool = self._tools.get(name)
        if tool is None or tool.family not in context.settings.enabled_tools:
            available = ", ".join(t.name for t in self.enabled(context.settings.enabled_tools)) or "none"
            return ToolResult.failure(
                "unknown_tool", f"There is no tool named {name!r}. Available: {available}."
            )
        arguments = parse_arguments(tool.arguments, raw_arguments)
        if isinstance(arguments, ToolResult):
            return arguments

        claim = await self._ledger.claim(
            context.call_id,
            conversation_key=context.conversation_key,
            name=name,
            take_over_abandoned=not tool.side_effect,  # only a read runs again after a stopped process
        )
        if claim.state == "done":
            assert claim.output is not None
            return ToolResult.from_output(claim.output)
        if claim.state == "running":
            return ToolResult.failure("in_progress", "This exact call is already being handled.")
        if claim.state == "abandoned":
            return ToolResult.failure(
                "result_unknown",
                "The bot stopped while this exact action was running, so whether it happened is unknown;"
                " it is not run again. List the user's reservations or rides to see.",
            )
        try:
            result = await self._confirm_and_run(tool, arguments, context, confirmer)
        except ToolError as exc:  # the user's problem, told to the model; not the tool's failure
            result = exc.to_result()
        except asyncio.CancelledError:
            await asyncio.shield(self._ledger.release(context.call_id))
            raise
        except Exception:
            log.exception("Tool %s failed on call %s", name, context.call_id)
            result = ToolResult.failure("internal", "The tool failed unexpectedly; nothing was changed.")
        await self._ledger.complete(context.call_id, result.to_output())
        return result

    async def _confirm_and_run(
        self,
        tool: Tool[Any],
        arguments: pydantic.BaseModel,
        context: ToolContext,
        confirmer: Confirmer | None,
    ) -> ToolResult:
        if tool.side_effect and context.settings.confirm_side_effects:
            if tool.preview is None:
                raise TypeError(f"side-effecting tool {tool.name!r} has no preview to confirm")
            preview = await tool.preview(arguments, context)
            if confirmer is None:
                return ToolResult.failure(
                    "confirmation_unavailable",
                    "The user cannot be asked to confirm here, so nothing was done.",
                )
            outcome = await confirmer.confirm(preview, timeout_s=self._confirmation_timeout_s)
            if outcome is ConfirmationOutcome.DECLINED:
                return ToolResult.failure("declined", "The user declined; nothing was done.", "Declined")
            if outcome is ConfirmationOutcome.TIMED_OUT:
                return ToolResult.failure(
                    "timed_out",
                    "The user did not confirm in time; nothing was done.",
                    "Not confirmed in time",
                )
        return await tool.handler(arguments, context)


def parse_arguments(model: type[Args], raw: str) -> Args | ToolResult:
    """The model's JSON arguments as `model`, or an error result it can correct."""
    try:
        data = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        return ToolResult.failure("invalid_arguments", f"Arguments are not valid JSON ({exc.msg}).")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        return ToolResult.failure("invalid_arguments", describe_validation_error(exc))


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """One readable sentence per problem, e.g. "party_size: must be at most 20"."""
    problems: Sequence[str] = [
        f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors()[:MAX_ERROR_DETAILS]
    ]
    more = exc.error_count() - len(problems)
    return "Invalid arguments: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "") + "."


@dataclass(eq=False)
class OpenQuestion:
    """A confirmation this process is waiting on; `outcome` is set once, by the first answer."""

    token: str
    request: ConfirmationRequest
    outcome: ConfirmationOutcome | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, outcome: ConfirmationOutcome) -> bool:
        """Record `outcome` unless something was recorded first; True if this call decided."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.decided.set()
        return True


class OpenQuestions:
    """The confirmations waiting for an answer, by a random token that the question's buttons carry.

    The token is random rather than a counter so that a button left on screen by an earlier run of the
    bot can never answer a question asked by this one.
    """

    def __init__(self) -> None:
        self._open: dict[str, OpenQuestion] = {}

    def ask(self, request: ConfirmationRequest) -> OpenQuestion:
        question = OpenQuestion(secrets.token_hex(16), request)
        self._open[question.token] = question
        return question

    def get(self, token: str) -> OpenQuestion | None:
        return self._open.get(token)

    def close(self, question: OpenQuestion) -> None:
        self._open.pop(question.token, None)

    def __len__(self) -> int:
        return len(self._open)
