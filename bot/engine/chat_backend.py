"""The `chat` backend: Chat Completions against any OpenAI-compatible server, history kept by us.

Ollama, vLLM, llama.cpp's server and most gateways speak Chat Completions but not Conversations, so
the bot stores each conversation's messages in SQLite, sends the newest ones that fit a token budget,
and saves a turn only once it completed.

A server with a smaller window than the budget refuses the request (`context_length_exceeded`, or
its own words for it): the round is tried once more with a much shorter history, and the answer says
that earlier messages were left out. The stored history itself is never cut.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import openai
from openai import AsyncOpenAI, omit

from bot.config import GuildSettings
from bot.engine.events import Completed, Failed, TextDelta, TurnEvent, Usage
from bot.engine.openai_errors import context_window_of, is_context_length_error
from bot.engine.tool_round import RequestedCall, run_tool_round
from bot.engine.turn import TurnRequest, UserTurn
from bot.process_state import ModelCallGate
from bot.storage import HistoryMessage, Storage
from bot.tooling import ToolRegistry, ToolResult

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 800  # a rough cost per image, for trimming only
ROUND_SEPARATOR = "\n\n"
RETRY_HISTORY_SHARE = 4
"""After a context-length error, the history sent is cut to this fraction of it (the new turn is kept)."""
HISTORY_LEFT_OUT_NOTE = "Earlier messages in this thread were left out to fit the model's context window."


def estimate_tokens(payload: dict[str, Any]) -> int:
    """A cheap, server-independent estimate (no tokenizer for arbitrary local models)."""
    content = payload.get("content")
    chars = 0
    images = 0
    if isinstance(content, str):
        chars += len(content)
    elif isinstance(content, list):
        for part in content:
            if part.get("type") == "text":
                chars += len(part.get("text", ""))
            else:
                images += 1
    for call in payload.get("tool_calls") or []:
        chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return MESSAGE_OVERHEAD_TOKENS + chars // CHARS_PER_TOKEN + images * IMAGE_TOKENS


def user_message(turn: UserTurn) -> dict[str, Any]:
    if not turn.image_urls:
        return {"role": "user", "content": turn.labelled_text()}
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.labelled_text()}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in turn.image_urls)
    return {"role": "user", "content": parts}


@dataclass
class _PartialCall:
    name: str = ""
    arguments: str = ""


@dataclass
class _Round:
    separate: bool
    finish_reason: str | None = None
    text: str = ""
    usage: Usage | None = None
    calls: dict[int, _PartialCall] = field(default_factory=dict)


class ChatBackend:
    name = "chat"

    def __init__(
        self,
        client: AsyncOpenAI,
        storage: Storage,
        tools: ToolRegistry,
        gate: ModelCallGate,
        *,
        max_tool_rounds: int,
        history_token_budget: int,
    ) -> None:
        self._client = client
        self._storage = storage
        self._tools = tools
        self._gate = gate
        self._max_tool_rounds = max_tool_rounds
        self._history_token_budget = history_token_budget

    async def run(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        settings = request.context.settings
        record = request.conversation
        system = {"role": "system", "content": settings.instructions}
        budget = max(0, self._history_token_budget - estimate_tokens(system))
        history = await self._storage.history.recent(record.key, record.generation, token_budget=budget)
        new_messages = [user_message(request.turn)]
        tools = self._tools.schemas(settings.enabled_tools, "chat")
        usage = Usage()
        text = ""
        shortened = False  # the history was cut after a context-length error (once per turn)
        for round_number in range(self._max_tool_rounds + 1):
            while True:  # a second pass only after a context-length error, once per turn
                messages = [system, *(h.payload for h in history), *new_messages]
                round_ = _Round(separate=bool(text) and not text.endswith("\n"))
                try:
                    async with self._gate.slot():
                        async for delta in self._stream_round(settings, messages, tools, round_):
                            text += delta.text
                            yield delta
                    break
                except openai.APIError as exc:
                    if shortened or round_.text or round_.calls or not is_context_length_error(exc):
                        raise
                    fixed = estimate_tokens(system) + _tools_tokens(tools)
                    fixed += sum(estimate_tokens(m) for m in new_messages)
                    shorter = await self._storage.history.recent(
                        record.key,
                        record.generation,
                        token_budget=_retry_budget(history, context_window_of(exc), fixed),
                    )
                    if len(shorter) >= len(history):
                        raise  # nothing left to leave out: the new turn alone is too long
                    log.info(
                        "Context window exceeded in %s; retrying with %d of %d history messages",
                        record.key,
                        len(shorter),
                        len(history),
                    )
                    history = shorter
                    shortened = True
            usage = usage + (round_.usage or _estimate_usage(messages, round_.text))
            if round_.finish_reason is None:
                yield Failed("connection", "The answer was cut off before it finished.", text, usage)
                return
            if round_.finish_reason == "length":
                yield Failed("incomplete", "The answer hit the length limit and was cut short.", text, usage)
                return
            if round_.finish_reason == "content_filter":
                yield Failed("content_filter", "The answer was stopped by the content filter.", text, usage)
                return
            # Our own call ids: servers differ (some reuse "call_0" in every turn), and the ledger that
            # keeps a call from running twice needs ids unique across the whole database.
            calls = [
                RequestedCall(f"call_{request.turn_id}_{round_number}_{index}", c.name, c.arguments)
                for index, c in sorted(round_.calls.items())
            ]
            if not calls:
                new_messages.append({"role": "assistant", "content": round_.text})
                await self._storage.history.append_turn(
                    record.key,
                    record.generation,
                    request.turn_id,
                    [HistoryMessage(m, estimate_tokens(m)) for m in new_messages],
                )
                notes = (HISTORY_LEFT_OUT_NOTE,) if shortened else ()
                yield Completed(text=text, usage=usage, notes=notes)
                return
            if round_number == self._max_tool_rounds:
                yield Failed(
                    "tool_rounds",
                    "The model kept calling tools without answering, so I stopped it.",
                    text,
                    usage,
                )
                return
            new_messages.append(
                {
                    "role": "assistant",
                    "content": round_.text or None,
                    "tool_calls": [
                        {
                            "id": call.call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                        for call in calls
                    ],
                }
            )
            results: dict[str, ToolResult] = {}
            async for progress in run_tool_round(calls, request, self._tools, results):
                yield progress
            new_messages.extend(
                {"role": "tool", "tool_call_id": call.call_id, "content": results[call.call_id].to_output()}
                for call in calls
            )

    async def _stream_round(
        self,
        settings: GuildSettings,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        round_: _Round,
    ) -> AsyncIterator[TextDelta]:
        """One streamed completion: text deltas out; tool calls, finish reason and usage collected."""
        stream = await self._client.chat.completions.create(
            model=settings.model,
            messages=cast(Any, messages),
            tools=cast(Any, tools) or omit,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    round_.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        if round_.separate:
                            round_.separate = False
                            yield TextDelta(ROUND_SEPARATOR)
                        round_.text += delta.content
                        yield TextDelta(delta.content)
                    for piece in delta.tool_calls or []:
                        partial = round_.calls.setdefault(piece.index, _PartialCall())
                        if piece.function is not None:
                            partial.name += piece.function.name or ""
                            partial.arguments += piece.function.arguments or ""
                    if choice.finish_reason is not None:
                        round_.finish_reason = choice.finish_reason


def _tools_tokens(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps(tools, separators=(",", ":"))) // CHARS_PER_TOKEN if tools else 0


def _retry_budget(history: list[HistoryMessage], window: int | None, fixed_tokens: int) -> int:
    """The history budget for the retry: a share of the history that did not fit, and, when the server
    named its window, at most half of what that window leaves after the instructions, tools and new
    turn (our estimate is not the server's tokenizer)."""
    shorter = sum(message.token_estimate for message in history) // RETRY_HISTORY_SHARE
    if window is not None:
        shorter = min(shorter, window // 2 - fixed_tokens)
    return max(0, shorter)


def _estimate_usage(messages: list[dict[str, Any]], answer: str) -> Usage:
    """For servers that do not report usage: an estimate keeps budgets meaningful."""
    return Usage(
        sum(estimate_tokens(m) for m in messages),
        MESSAGE_OVERHEAD_TOKENS + len(answer) // CHARS_PER_TOKEN,
    )
