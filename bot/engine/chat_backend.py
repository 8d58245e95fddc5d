"""The `chat` backend: Chat Completions against any OpenAI-compatible server, history kept by us.

Ollama, vLLM, llama.cpp's server and most gateways speak Chat Completions but not Conversations, so
the bot stores each conversation's messages in SQLite, sends the newest ones that fit a token budget,
and saves a turn only once it completed.

A server with a smaller window than the budget refuses the request (`context_length_exceeded`, or
its own words for it): the round is tried once more with a much shorter history, and the answer says
that earlier messages were left out. The stored history itself is never cut.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import openai
from openai import AsyncOpenAI, omit

from bot.conversation_files import ToolFiles
from bot.engine.context_fit import CHARS_PER_TOKEN, ContextSizes, fit_request, schema_tokens
from bot.engine.events import Completed, Failed, TextDelta, TurnEvent, Usage
from bot.engine.inline_images import ImageInliner, InlinedImage
from bot.engine.openai_errors import context_window_of
from bot.engine.tool_loop import CONTENT_FILTER, CUT_OFF, LENGTH_LIMIT, RoundResult, ToolLoop, Unfinished
from bot.engine.tool_round import RequestedCall
from bot.engine.turn import TurnRequest, UserTurn
from bot.hosted_tools import offered_tools
from bot.limits import ModelCallGate
from bot.storage import HistoryMessage, Storage
from bot.tooling import ToolRegistry, ToolResult

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 800  # a rough cost per image, for trimming only
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


async def user_message(turn: UserTurn, images: ImageInliner) -> dict[str, Any]:
    """The turn as a chat message, its images inside it as `data:` URIs (see `inline_images`)."""
    if not turn.image_urls:
        return {"role": "user", "content": turn.labelled_text()}
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.labelled_text()}]
    for url in turn.image_urls:
        image = await images.inline(url)
        if isinstance(image, InlinedImage):
            parts.append({"type": "image_url", "image_url": {"url": image.data_uri}})
        else:
            parts.append({"type": "text", "text": image.note})
    return {"role": "user", "content": parts}


def stored_form(message: dict[str, Any]) -> dict[str, Any]:
    """The message as the history keeps it: an inlined image becomes a short note."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    parts = [
        {"type": "text", "text": "[An image was shown here]"}
        if part.get("type") == "image_url" and str(part["image_url"]["url"]).startswith("data:")
        else part
        for part in content
    ]
    return {**message, "content": parts}


@dataclass
class _PartialCall:
    name: str = ""
    arguments: str = ""

    def add_name(self, piece: str, known: frozenset[str]) -> None:
        """Servers send a tool's name in pieces (OpenAI) or whole in every chunk (llama.cpp's server):
        a piece that would make no known tool's name, while the piece alone does, is the whole name
        again. Unknown names are kept as sent, so the "no tool named" answer shows what came."""
        joined = self.name + piece
        if self.name and not _prefixes_a_name(joined, known) and _prefixes_a_name(piece, known):
            self.name = piece
        else:
            self.name = joined


def _prefixes_a_name(text: str, known: frozenset[str]) -> bool:
    return any(name.startswith(text) for name in known)


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
        images: ImageInliner,
        context_tokens: int | None = None,
        tool_files: ToolFiles | None = None,
    ) -> None:
        """`tool_files`: where function tools leave files for the reply (a drawing)."""
        self._tool_files = tool_files if tool_files is not None else ToolFiles()
        self._client = client
        self._images = images
        self._contexts = ContextSizes(client, context_tokens)
        self._storage = storage
        self._tools = tools
        self._loop = ToolLoop(tools, gate, max_tool_rounds)
        self._history_token_budget = history_token_budget

    async def answer(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        settings = request.context.settings
        record = request.conversation
        system = {"role": "system", "content": settings.instructions}
        user = await user_message(request.turn, self._images)
        # The instructions, the tool schemas and the new turn go with every request, and the answer
        # needs room: the history gets what is left (see `context_fit`).
        window = await self._contexts.window(settings.model)
        fit = fit_request(
            window=window,
            history_budget=self._history_token_budget,
            fixed_tokens=estimate_tokens(system) + estimate_tokens(user),
            tools=self._tools.schemas(offered_tools(settings), "chat"),
        )
        if window is not None:
            self._contexts.note_left_out(settings.model, window, fit.left_out)
        history = await self._storage.history.recent(
            record.key, record.generation, token_budget=fit.history_budget
        )
        rounds = _ChatRounds(
            self._client,
            self._storage,
            request,
            system,
            history,
            fit.tools,
            user,
            self._contexts,
            tool_files=self._tool_files,
        )
        # A turn that fails after drawing leaves no files behind (`complete` takes a finished turn's):
        # taken with its terminal event (the engine reads no further) or as an error ends it.
        try:
            async for event in self._loop.answer(rounds, request):
                if isinstance(event, Failed):
                    self._tool_files.take(record.key)
                yield event
        finally:
            self._tool_files.take(record.key)


class _ChatRounds:
    """One turn's completions (`ModelRounds`): the stored history, then this turn's messages."""

    def __init__(
        self,
        client: AsyncOpenAI,
        storage: Storage,
        request: TurnRequest,
        system: dict[str, Any],
        history: list[HistoryMessage],
        tools: list[dict[str, Any]],
        user: dict[str, Any],
        contexts: ContextSizes,
        *,
        tool_files: ToolFiles,
    ) -> None:
        self._contexts = contexts
        self._tool_files = tool_files
        """Where this turn's function tools leave files for the reply."""
        self._client = client
        self._storage = storage
        self._request = request
        self._system = system
        self._history = history
        self._tools = tools
        self._tool_names = frozenset(t["function"]["name"] for t in tools if "function" in t)
        self._new_messages = [user]
        self._calls: dict[int, _PartialCall] = {}  # the current completion's, by index
        self._retried = False  # after a context-length error (once per turn)
        self._shortened = False  # the history was cut then

    async def stream_round(self, round_number: int) -> AsyncIterator[TurnEvent | RoundResult]:
        """One streamed completion: text deltas out; tool calls, finish reason and usage collected."""
        messages = [self._system, *(_sendable(h.payload) for h in self._history), *self._new_messages]
        calls = self._calls = {}
        text = ""
        finish_reason: str | None = None
        usage: Usage | None = None
        stream = await self._client.chat.completions.create(
            model=self._request.context.settings.model,
            messages=cast(Any, messages),
            tools=cast(Any, self._tools) or omit,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = 0
        async with stream:
            async for chunk in stream:
                chunks += 1
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text += delta.content
                        yield TextDelta(delta.content)
                    for piece in delta.tool_calls or []:
                        partial = calls.setdefault(piece.index, _PartialCall())
                        if piece.function is not None:
                            partial.add_name(piece.function.name or "", self._tool_names)
                            partial.arguments += piece.function.arguments or ""
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
        if chunks == 0:
            # llama-cpp-python checks the prompt's length only once its 200 has gone out, and then
            # closes the stream without a chunk: read as the context-length error it is, so the turn
            # is retried once with less history (the tool loop's recovery), as after a real one.
            log.warning(
                "The model server (%s, model %s) closed a stream without sending anything: on"
                " llama-cpp-python's server the prompt outgrew its context window (set [chat_backend]"
                " context_tokens to the server's n_ctx so requests are fitted before they are sent)",
                self._client.base_url,
                self._request.context.settings.model,
            )
            raise EmptyStreamError(stream.response.request)
        # Our own call ids: servers differ (some reuse "call_0" in every turn), and the ledger that
        # keeps a call from running twice needs ids unique across the whole database.
        requested = [
            RequestedCall(f"call_{self._request.turn_id}_{round_number}_{index}", c.name, c.arguments)
            for index, c in sorted(calls.items())
        ]
        if finish_reason is None:
            log.warning(
                "The model server (%s, model %s) ended a stream without a finish reason: it stopped"
                " answering mid-way (on a local server, its log says why: often the context size)",
                self._client.base_url,
                self._request.context.settings.model,
            )
        yield RoundResult(
            text,
            requested,
            usage or _estimate_usage(messages, self._tools, text),
            _unfinished(finish_reason),
        )

    async def recover_from_context_error(self, error: openai.APIError, round_number: int) -> Usage | None:
        """Once per turn, and only before any tool call came: the same round with a shorter history
        (and, when the server named its window, only the tools that fit it; the window is kept for
        the next turns)."""
        model = self._request.context.settings.model
        window = context_window_of(error)
        if window is not None:
            self._contexts.learn(model, window)
        if self._retried or self._calls:
            return None
        record = self._request.conversation
        fixed = estimate_tokens(self._system) + sum(estimate_tokens(m) for m in self._new_messages)
        tools = self._tools
        if window is not None:
            fit = fit_request(window=window, history_budget=0, fixed_tokens=fixed, tools=tools)
            tools = fit.tools
            self._contexts.note_left_out(model, window, fit.left_out)
        shorter = await self._storage.history.recent(
            record.key,
            record.generation,
            token_budget=_retry_budget(self._history, window, fixed + schema_tokens(tools)),
        )
        if len(shorter) >= len(self._history) and len(tools) == len(self._tools):
            return None  # nothing left to leave out: the new turn alone is too long
        log.info(
            "Context window exceeded in %s; retrying with %d of %d history messages and %d of %d tools",
            record.key,
            len(shorter),
            len(self._history),
            len(tools),
            len(self._tools),
        )
        self._shortened = len(shorter) < len(self._history)
        self._history = shorter
        self._tools = tools
        self._retried = True
        return Usage()

    def add_outputs(self, round_: RoundResult, results: Mapping[str, ToolResult]) -> None:
        self._new_messages.append(
            {
                "role": "assistant",
                # "" rather than None: llama.cpp's server refuses a null content (HTTP 500).
                "content": round_.text,
                "tool_calls": [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in round_.calls
                ],
            }
        )
        self._new_messages.extend(
            {"role": "tool", "tool_call_id": call.call_id, "content": results[call.call_id].to_output()}
            for call in round_.calls
        )

    async def close_calls(
        self, calls: list[RequestedCall], reason: str, results: Mapping[str, ToolResult]
    ) -> None:
        """Nothing to close: only a completed turn's messages are stored."""

    async def complete(self, text: str, usage: Usage, last: RoundResult) -> Completed:
        """The turn's messages join the stored history in one transaction."""
        self._new_messages.append({"role": "assistant", "content": last.text})
        record = self._request.conversation
        await self._storage.history.append_turn(
            record.key,
            record.generation,
            self._request.turn_id,
            [
                HistoryMessage(stored, estimate_tokens(stored))
                for stored in map(stored_form, self._new_messages)
            ],
        )
        made = self._tool_files.take(record.key)
        shortened = (HISTORY_LEFT_OUT_NOTE,) if self._shortened else ()
        notes = (*self._request.turn.notices, *shortened, *made.notes)
        return Completed(text=text, usage=usage, files=made.files, notes=notes)


class EmptyStreamError(openai.APIError):
    """A streamed completion that ended before its first chunk: on llama-cpp-python's server, a
    prompt over its context window (it says so only in its own log)."""

    def __init__(self, request: httpx2.Request) -> None:
        message = "The model server closed the stream without sending anything (context window exceeded?)"
        super().__init__(message, request, body={"code": "context_length_exceeded", "message": message})


STREAM_ENDED_EARLY = Unfinished(
    CUT_OFF.kind,
    "The model server stopped before finishing; its log says why (often: context size too small).",
)


def _unfinished(finish_reason: str | None) -> Unfinished | None:
    if finish_reason is None:
        return STREAM_ENDED_EARLY
    if finish_reason == "length":
        return LENGTH_LIMIT
    if finish_reason == "content_filter":
        return CONTENT_FILTER
    return None


def _sendable(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored message as every server takes it: turns stored before the bot sent "" kept a null
    content beside their tool calls, which llama.cpp's server refuses."""
    if "content" in payload and payload["content"] is None:
        return {**payload, "content": ""}
    return payload


def _retry_budget(history: list[HistoryMessage], window: int | None, fixed_tokens: int) -> int:
    """The history budget for the retry: a share of the history that did not fit, and, when the server
    named its window, at most half of what that window leaves after the instructions, tools and new
    turn (our estimate is not the server's tokenizer)."""
    shorter = sum(message.token_estimate for message in history) // RETRY_HISTORY_SHARE
    if window is not None:
        shorter = min(shorter, window // 2 - fixed_tokens)
    return max(0, shorter)


def _estimate_usage(messages: list[dict[str, Any]], tools: list[dict[str, Any]], answer: str) -> Usage:
    """For servers that do not report usage: an estimate of the whole prompt (every message sent and
    the tool schemas) keeps budgets meaningful."""
    return Usage(
        sum(estimate_tokens(m) for m in messages) + schema_tokens(tools),
        MESSAGE_OVERHEAD_TOKENS + len(answer) // CHARS_PER_TOKEN,
    )
