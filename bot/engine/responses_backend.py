"""The `responses` backend: one OpenAI Conversation per channel, driven by the Responses API.

OpenAI keeps the history: each turn sends only the new input with `conversation=<id>`, and the
server appends input and output items to the conversation. Instructions and tools are ours and go
with every call (they are not carried from turn to turn). Besides our function tools, a guild may
switch on OpenAI's hosted tools (code interpreter, web search): they run inside the model call, and
what they did (code, sources, files) is gathered from the stream and put on `Completed`.

Every call asks for `truncation: "auto"`, so OpenAI drops a long conversation's oldest items rather
than refusing it. Should a context-length error come all the same (a server that does not truncate),
the turn starts the channel a fresh conversation, seeded with a short summary of the old one, and
answers there, once; the answer then says that earlier messages were summarised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import openai
from openai import AsyncAPIResponse, AsyncOpenAI, omit
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFailedEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseTextDeltaEvent,
)

from bot.config import GuildSettings
from bot.engine.events import Completed, Failed, TextDelta, TurnEvent, Usage
from bot.engine.hosted_outputs import MAX_GENERATED_FILE_BYTES, HostedOutputs, fetch_files
from bot.engine.openai_errors import is_context_length_error
from bot.engine.response_stream import build_validators, used_events
from bot.engine.tool_round import RequestedCall, run_tool_round
from bot.engine.turn import TurnRequest, UserTurn
from bot.hosted_tools import enabled_hosted_tools
from bot.process_state import ModelCallGate
from bot.storage import Storage
from bot.tooling import ToolRegistry, ToolResult

log = logging.getLogger(__name__)

ROUND_SEPARATOR = "\n\n"
DANGLING_SCAN_ITEMS = 100
"""Newest conversation items searched for unanswered function calls (a broken turn's are the last)."""
SUMMARY_SCAN_ITEMS = 40
"""Newest conversation items a fresh conversation's summary is made from."""
SUMMARY_MESSAGE_CHARS = 600
"""Each message's share of the summary's input: its gist, so a small window holds the transcript."""
SUMMARY_INPUT_CHARS = 12_000
SUMMARY_MAX_OUTPUT_TOKENS = 500
SUMMARY_INSTRUCTIONS = (
    "Summarise this conversation for whoever continues it: the people, what was asked and decided, "
    "facts and numbers still needed, open questions. At most 150 words, plain text, no preamble."
)
VERBATIM_MESSAGES = 6
"""When no summary can be made, the newest messages are carried over word for word (trimmed)."""
VERBATIM_MESSAGE_CHARS = 400
SUMMARISED_NOTE = "Earlier messages in this thread were summarised to make room."
SHORTENED_NOTE = "Earlier messages in this thread were shortened to make room."
DROPPED_NOTE = "Earlier messages in this thread were dropped to make room."


def user_input_item(turn: UserTurn) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": turn.labelled_text()}]
    content.extend({"type": "input_image", "image_url": url, "detail": "auto"} for url in turn.image_urls)
    return {"type": "message", "role": "user", "content": content}


def function_output_item(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


class ResponsesBackend:
    name = "responses"

    def __init__(
        self,
        client: AsyncOpenAI,
        storage: Storage,
        tools: ToolRegistry,
        gate: ModelCallGate,
        *,
        max_tool_rounds: int,
        max_file_bytes: int = MAX_GENERATED_FILE_BYTES,
    ) -> None:
        """`max_file_bytes`: a generated file larger than this is named in the reply, not downloaded."""
        self._client = client
        self._storage = storage
        self._tools = tools
        self._gate = gate
        self._max_tool_rounds = max_tool_rounds
        self._max_file_bytes = max_file_bytes
        build_validators()  # at start-up, not in the first reply

    async def _conversation_id(self, request: TurnRequest) -> str:
        record = request.conversation
        if record.conversation_id:
            return record.conversation_id
        conversation = await self._client.conversations.create(metadata=request.metadata or omit)
        await self._storage.conversations.set_conversation_id(record.key, record.generation, conversation.id)
        return conversation.id

    async def run(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        settings = request.context.settings
        conversation_id = await self._conversation_id(request)
        notes: tuple[str, ...] = ()  # set when the turn moved to a fresh conversation (once per turn)
        hosted_tools = enabled_hosted_tools(settings.enabled_tools)
        tools = self._tools.schemas(settings.enabled_tools, "responses")
        tools.extend(tool.definition() for tool in hosted_tools)
        include = [name for tool in hosted_tools for name in tool.include]
        hosted = HostedOutputs()
        input_items: list[dict[str, Any]] = [user_input_item(request.turn)]
        # function_call_output items sent but not yet known to be in the conversation: if the call
        # carrying them fails, they are added directly, so the conversation never holds a function
        # call without its output (OpenAI would refuse every later turn).
        unsent_outputs: list[dict[str, Any]] = []
        usage = Usage()
        text = ""
        refusal = False
        try:
            for round_number in range(self._max_tool_rounds + 1):
                # A turn continuing a conversation may find it holding a function call an earlier,
                # broken turn could not answer (OpenAI down, the bot killed): answered on the first call.
                repair = round_number == 0 and request.conversation.conversation_id is not None
                while True:  # a second pass only in a fresh conversation after a context-length error
                    round_ = _Round(separate=bool(text) and not text.endswith("\n"))
                    try:
                        async with self._gate.slot():
                            async for event in self._stream_round(
                                settings,
                                conversation_id,
                                input_items,
                                tools,
                                include,
                                round_,
                                hosted,
                                repair=repair and not notes,
                            ):
                                round_.yielded = True
                                if isinstance(event, TextDelta):
                                    text += event.text
                                yield event
                    except openai.APIError as exc:
                        # Only the first round can move: later rounds answer calls of this conversation.
                        if notes or round_number or round_.yielded or not is_context_length_error(exc):
                            raise
                        fresh = await self._start_over(request, conversation_id)
                        if fresh is None:
                            raise
                        conversation_id, notes, summary_usage = fresh
                        usage = usage + summary_usage
                        continue
                    if notes and round_number == 0:  # the fresh conversation took the turn: keep it
                        await self._storage.conversations.set_conversation_id(
                            request.conversation.key, request.conversation.generation, conversation_id
                        )
                    break
                refusal = refusal or round_.refusal
                response, calls = round_.response, round_.calls
                if response is None:
                    yield Failed("connection", "The answer was cut off before it finished.", text, usage)
                    return
                usage = usage + _usage_of(response)
                if response.status != "failed":
                    unsent_outputs = []  # the round's input is now part of the conversation
                if response.status != "completed":
                    yield _unfinished(response, text, usage)
                    return
                if not calls:
                    files = await fetch_files(self._client, hosted, max_bytes=self._max_file_bytes)
                    yield Completed(
                        text=text,
                        usage=usage,
                        citations=tuple(hosted.citations),
                        files=files,
                        code_runs=tuple(hosted.code_runs),
                        refusal=refusal,
                        notes=notes,
                    )
                    return
                if round_number == self._max_tool_rounds:
                    await self._close_calls(
                        conversation_id, calls, "Too many tool rounds in one turn; stopped."
                    )
                    yield Failed(
                        "tool_rounds",
                        "The model kept calling tools without answering, so I stopped it.",
                        text,
                        usage,
                    )
                    return
                results: dict[str, ToolResult] = {}
                try:
                    async for progress in run_tool_round(calls, request, self._tools, results):
                        yield progress
                finally:
                    if len(results) < len(calls):  # cancelled or failed while the tools ran
                        await self._close_calls(conversation_id, calls, "The turn was interrupted.", results)
                input_items = [function_output_item(c.call_id, results[c.call_id].to_output()) for c in calls]
                unsent_outputs = list(input_items)
        finally:
            if unsent_outputs:
                await self._add_items(conversation_id, unsent_outputs)

    async def _stream_round(
        self,
        settings: GuildSettings,
        conversation_id: str,
        input_items: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        include: list[str],
        round_: _Round,
        hosted: HostedOutputs,
        *,
        repair: bool = False,
    ) -> AsyncIterator[TurnEvent]:
        """One `responses.create` call: text deltas and hosted tool activity out; function calls, what
        hosted tools produced (into `hosted`) and the response collected.

        With `repair`, a refused call is tried once more if the conversation held unanswered function
        calls (now answered): OpenAI refuses every turn of such a conversation with a 400.
        """

        def create() -> contextlib.AbstractAsyncContextManager[AsyncAPIResponse[Any]]:
            return self._client.responses.with_streaming_response.create(
                model=settings.model,
                conversation=conversation_id,
                instructions=settings.instructions,
                include=cast(Any, include) or omit,
                stream=True,
                truncation="auto",  # past the window, drop the oldest items instead of refusing
                # The input and tools go as they are: they are plain JSON already, and the SDK's
                # parameter transform walks every node of them against its types (about 1 ms for the
                # input and 3.5 ms for the tools, per call: most of the bot's own time in a turn).
                extra_body={"input": input_items, **({"tools": tools} if tools else {})},
            )

        async with contextlib.AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(create())
            except openai.BadRequestError as exc:
                if (
                    not repair
                    or is_context_length_error(exc)
                    or not await self._answer_dangling_calls(conversation_id)
                ):
                    raise
                response = await stack.enter_async_context(create())
            async for event in used_events(response):  # see bot.engine.response_stream: CPU
                if isinstance(event, ResponseTextDeltaEvent | ResponseRefusalDeltaEvent):
                    round_.refusal = round_.refusal or isinstance(event, ResponseRefusalDeltaEvent)
                    if round_.separate:
                        round_.separate = False
                        yield TextDelta(ROUND_SEPARATOR)
                    yield TextDelta(event.delta)
                elif isinstance(event, ResponseOutputItemAddedEvent):
                    started = hosted.started(event.item)
                    if started is not None:
                        yield started
                elif isinstance(event, ResponseOutputItemDoneEvent):
                    if isinstance(event.item, ResponseFunctionToolCall):
                        round_.calls.append(
                            RequestedCall(event.item.call_id, event.item.name, event.item.arguments)
                        )
                    else:
                        for finished in hosted.finished(event.item):
                            yield finished
                elif isinstance(
                    event, ResponseCompletedEvent | ResponseFailedEvent | ResponseIncompleteEvent
                ):
                    round_.response = event.response

    async def _start_over(
        self, request: TurnRequest, old_conversation_id: str
    ) -> tuple[str, tuple[str, ...], Usage] | None:
        """A fresh conversation for a channel whose conversation no longer fits the model's window,
        seeded with what matters of the old one: (its id, the note for the answer, the summary's usage).

        None if the old conversation holds no messages (a fresh one would not be any shorter). The
        channel keeps the old conversation until the fresh one has answered (the caller stores it).
        """
        messages: list[tuple[str, str]] | None
        try:
            messages = await self._recent_messages(old_conversation_id)
        except openai.APIError:
            log.warning("Could not read conversation %s to summarise it", old_conversation_id, exc_info=True)
            messages = None
        if messages == []:
            return None
        usage = Usage()
        seed: str | None = None
        note = DROPPED_NOTE
        if messages:
            summary, usage = await self._summarise(request.context.settings, messages)
            if summary:
                seed = f"Summary of this conversation's earlier messages (dropped to make room):\n{summary}"
                note = SUMMARISED_NOTE
            else:
                kept = "\n".join(
                    f"{role}: {_clip(text, VERBATIM_MESSAGE_CHARS)}"
                    for role, text in messages[-VERBATIM_MESSAGES:]
                )
                seed = f"The newest earlier messages of this conversation (older ones were dropped):\n{kept}"
                note = SHORTENED_NOTE
        # As the assistant's own recap, never as instructions: it carries what users wrote.
        items = [{"type": "message", "role": "assistant", "content": seed}] if seed else []
        conversation = await self._client.conversations.create(
            metadata=request.metadata or omit, items=cast(Any, items) or omit
        )
        log.info(
            "Conversation %s outgrew the context window; continuing in %s: %s",
            old_conversation_id,
            conversation.id,
            note,
        )
        return conversation.id, (note,), usage

    async def _recent_messages(self, conversation_id: str) -> list[tuple[str, str]]:
        """The newest user and assistant messages of a conversation as (role, text), oldest first
        (an earlier move's summary is an assistant message, so it is carried on too)."""
        page = await self._client.conversations.items.list(
            conversation_id, order="desc", limit=SUMMARY_SCAN_ITEMS
        )
        messages: list[tuple[str, str]] = []
        for item in page.data:
            if item.type != "message" or item.role not in ("user", "assistant"):
                continue
            texts = [getattr(part, "text", None) for part in item.content]  # images etc. have none
            text = "".join(piece for piece in texts if isinstance(piece, str))
            if text.strip():
                messages.append((item.role, text))
        messages.reverse()
        return messages

    async def _summarise(
        self, settings: GuildSettings, messages: list[tuple[str, str]]
    ) -> tuple[str | None, Usage]:
        """A short summary by one small model call; None if that call fails too."""
        lines: list[str] = []
        room = SUMMARY_INPUT_CHARS
        for role, text in reversed(messages):  # the newest first: they matter most
            line = f"{role}: {_clip(text, SUMMARY_MESSAGE_CHARS)}"
            if len(line) > room:
                break
            lines.append(line)
            room -= len(line) + 1
        transcript = "\n".join(reversed(lines))
        try:
            async with self._gate.slot():
                response = await self._client.responses.create(
                    model=settings.model,
                    instructions=SUMMARY_INSTRUCTIONS,
                    input=transcript,
                    max_output_tokens=SUMMARY_MAX_OUTPUT_TOKENS,
                    store=False,
                    truncation="auto",
                )
        except openai.APIError:
            log.warning("Could not summarise a conversation; keeping its newest messages", exc_info=True)
            return None, Usage()
        summary = response.output_text.strip() if response.status == "completed" else ""
        return summary or None, _usage_of(response)

    async def _close_calls(
        self,
        conversation_id: str,
        calls: list[RequestedCall],
        reason: str,
        results: dict[str, ToolResult] | None = None,
    ) -> None:
        """Answer every call of the round, so the conversation stays usable after a broken turn."""
        interrupted = ToolResult.failure("interrupted", reason)
        outputs = [
            function_output_item(call.call_id, (results or {}).get(call.call_id, interrupted).to_output())
            for call in calls
        ]
        await self._add_items(conversation_id, outputs)

    async def _add_items(self, conversation_id: str, items: list[dict[str, Any]]) -> bool:
        """Append items; False if OpenAI could not be reached (the next turn repairs the conversation)."""
        try:
            for start in range(0, len(items), 20):  # the API takes up to 20 items at a time
                await self._client.conversations.items.create(
                    conversation_id,
                    items=cast(Any, items[start : start + 20]),
                )
        except Exception:
            log.warning("Could not add tool outputs to conversation %s", conversation_id, exc_info=True)
            return False
        return True

    async def _answer_dangling_calls(self, conversation_id: str) -> bool:
        """Answer the conversation's function calls that have no output; True if there were any.

        A call that ran to its end gets the output the ledger kept (a booking made before a crash is
        reported as made); any other is reported as interrupted.
        """
        try:
            page = await self._client.conversations.items.list(
                conversation_id, order="desc", limit=DANGLING_SCAN_ITEMS
            )
        except openai.APIError:
            log.warning("Could not read conversation %s to repair it", conversation_id, exc_info=True)
            return False
        answered: set[str] = set()
        dangling: list[str] = []
        for item in page.data:  # newest first: an output is seen before its call
            call_id = getattr(item, "call_id", None)
            if not isinstance(call_id, str):
                continue
            if item.type == "function_call_output":
                answered.add(call_id)
            elif item.type == "function_call" and call_id not in answered:
                dangling.append(call_id)
        if not dangling:
            return False
        interrupted = ToolResult.failure(
            "interrupted", "The turn was interrupted before this call's result was delivered."
        ).to_output()
        outputs = [
            function_output_item(call_id, await self._storage.tool_calls.output(call_id) or interrupted)
            for call_id in reversed(dangling)
        ]
        log.info("Answering %d dangling function calls in conversation %s", len(outputs), conversation_id)
        return await self._add_items(conversation_id, outputs)


@dataclass
class _Round:
    """What one model call produced besides text."""

    separate: bool  # the turn already has text: put a paragraph break before this round's text
    refusal: bool = False
    yielded: bool = False  # something of this round was shown: it cannot be tried again
    response: Response | None = None
    calls: list[RequestedCall] = field(default_factory=list)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage_of(response: Response) -> Usage:
    if response.usage is None:
        return Usage()
    return Usage(response.usage.input_tokens, response.usage.output_tokens)


def _unfinished(response: Response, text: str, usage: Usage) -> TurnEvent:
    if response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        if reason == "content_filter":
            return Failed("content_filter", "The answer was stopped by the content filter.", text, usage)
        if reason == "max_output_tokens":
            return Failed("incomplete", "The answer hit the length limit and was cut short.", text, usage)
        return Failed("incomplete", "The answer was cut short.", text, usage)
    if response.status == "cancelled":
        return Failed("failed", "The model cancelled the answer.", text, usage)
    message = response.error.message if response.error else "no reason given"
    return Failed("failed", f"The model could not answer: {message}", text, usage)
