"""The `responses` backend: one OpenAI Conversation per channel, driven by the Responses API.

OpenAI keeps the history: each turn sends only the new input with `conversation=<id>`, and the
server appends input and output items to the conversation. Instructions and tools are ours and go
with every call (they are not carried from turn to turn). Besides our function tools, a guild may
switch on OpenAI's hosted tools (code interpreter, web search, image generation): they run inside the
model call, and what they did (code, sources, files, drawings) is gathered from the stream and put on
`Completed`. Files a person attaches are uploaded first (`bot.conversation_files`): the code
interpreter's container gets the conversation's files, and a PDF otherwise goes in as an `input_file`.

Every call asks for `truncation: "auto"`, so OpenAI drops a long conversation's oldest items rather
than refusing it. Should a context-length error come all the same (a server that does not truncate),
the turn starts the channel a fresh conversation, seeded with a short summary of the old one, and
answers there, once; the answer then says that earlier messages were summarised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
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

from bot.config import IMAGE_TOOL
from bot.conversation_files import ConversationFiles, UploadedFiles
from bot.engine.events import Completed, TextDelta, TurnEvent, Usage
from bot.engine.hosted_outputs import MAX_GENERATED_FILE_BYTES, HostedOutputs, drawing_usage, fetch_files
from bot.engine.openai_errors import is_context_length_error
from bot.engine.response_stream import build_validators, used_events
from bot.engine.tool_loop import CONTENT_FILTER, CUT_OFF, LENGTH_LIMIT, RoundResult, ToolLoop, Unfinished
from bot.engine.tool_round import RequestedCall
from bot.engine.turn import TurnRequest, UserTurn
from bot.hosted_tools import CODE_INTERPRETER, FILE_SEARCH, enabled_hosted_tools, offered_tools
from bot.limits import ModelCallGate
from bot.storage import Storage
from bot.tooling import ToolRegistry, ToolResult

log = logging.getLogger(__name__)

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
LOST_VECTOR_STORE_NOTE = (
    "This server's OpenAI vector store was deleted at OpenAI, so its files were not searched; the next"
    " /remember file: makes a new one."
)


def user_input_item(turn: UserTurn, input_file_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """The user's message: its text, its images, and the files uploaded to go in it (PDFs)."""
    content: list[dict[str, Any]] = [{"type": "input_text", "text": turn.labelled_text()}]
    content.extend({"type": "input_image", "image_url": url, "detail": "auto"} for url in turn.image_urls)
    content.extend({"type": "input_file", "file_id": file_id} for file_id in input_file_ids)
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
        files: ConversationFiles | None = None,
    ) -> None:
        """`max_file_bytes`: a generated file larger than this is named in the reply, not downloaded;
        `files`: uploads attachments and keeps the conversation's (None: attachments stay text)."""
        self._client = client
        self._files = files
        self._storage = storage
        self._tools = tools
        self._gate = gate
        self._loop = ToolLoop(tools, gate, max_tool_rounds)
        self._max_file_bytes = max_file_bytes
        build_validators()  # at start-up, not in the first reply

    async def _conversation_id(self, request: TurnRequest) -> str:
        record = request.conversation
        if record.conversation_id:
            return record.conversation_id
        conversation = await self._client.conversations.create(metadata=request.metadata or omit)
        await self._storage.conversations.set_conversation_id(record.key, record.generation, conversation.id)
        return conversation.id

    async def answer(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        settings = request.context.settings
        conversation_id = await self._conversation_id(request)
        offered = offered_tools(settings)
        hosted_tools = enabled_hosted_tools(offered)
        uploaded = UploadedFiles()
        file_ids: list[str] = []
        if self._files is not None:
            if request.turn.files:
                uploaded = await self._files.upload(request.conversation, request.turn.files)
            if CODE_INTERPRETER in hosted_tools:
                file_ids = await self._files.container_file_ids(request.conversation)
        # The image generation tool is hosted here; its function form is for the chat backend.
        tools = self._tools.schemas([name for name in offered if name != IMAGE_TOOL], "responses")
        tools.extend(
            tool.definition(file_ids=file_ids, image_model=settings.image_model) for tool in hosted_tools
        )
        include = [name for tool in hosted_tools for name in tool.include]
        if settings.knowledge_store == "openai" and "knowledge" in offered:
            tools, include = await self._knowledge_at_openai(request, tools, include)
        rounds = _ResponsesRounds(
            self._client,
            self._storage,
            self._gate,
            request,
            conversation_id,
            tools=tools,
            include=include,
            max_file_bytes=self._max_file_bytes,
            uploaded=uploaded,
        )
        try:
            async for event in self._loop.answer(rounds, request):
                yield event
        finally:
            await rounds.add_unsent_outputs()

    async def _knowledge_at_openai(
        self, request: TurnRequest, tools: list[dict[str, Any]], include: list[str]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """For a guild keeping its knowledge in an OpenAI vector store: OpenAI's file search over it
        instead of the knowledge function tool (neither before the store has its first file)."""
        local = {schema.get("name") for schema in self._tools.schemas(["knowledge"], "responses")}
        tools = [tool for tool in tools if tool.get("name") not in local]
        guild_id = request.context.guild_id
        store_id = None if guild_id is None else await self._storage.vector_stores.store_id(guild_id)
        if store_id is None:
            return tools, include
        file_search = FILE_SEARCH.definition(vector_store_ids=[store_id])
        return [*tools, file_search], [*include, *FILE_SEARCH.include]


class _ResponsesRounds:
    """One turn's `responses.create` calls in the channel's conversation (`ModelRounds`)."""

    def __init__(
        self,
        client: AsyncOpenAI,
        storage: Storage,
        gate: ModelCallGate,
        request: TurnRequest,
        conversation_id: str,
        *,
        tools: list[dict[str, Any]],
        include: list[str],
        max_file_bytes: int,
        uploaded: UploadedFiles,
    ) -> None:
        self._client = client
        self._storage = storage
        self._gate = gate
        self._request = request
        self._conversation_id = conversation_id
        self._tools = tools
        self._include = include
        self._max_file_bytes = max_file_bytes
        self._hosted = HostedOutputs()
        self._input_items: list[dict[str, Any]] = [user_input_item(request.turn, uploaded.input_file_ids)]
        self._file_notices = (*request.turn.notices, *uploaded.notices)
        # function_call_output items sent but not yet known to be in the conversation: if the call
        # carrying them fails, they are added directly, so the conversation never holds a function
        # call without its output (OpenAI would refuse every later turn).
        self._unsent_outputs: list[dict[str, Any]] = []
        self._notes: tuple[str, ...] = ()  # set when the turn moved to a fresh conversation (once per turn)
        self._refusal = False
        self._store_notes: tuple[str, ...] = ()  # the guild's vector store was gone: searched without it

    async def stream_round(self, round_number: int) -> AsyncIterator[TurnEvent | RoundResult]:
        """One `responses.create` call: text deltas and hosted tool activity out; function calls, what
        hosted tools produced and the response collected.

        A turn continuing a conversation may find it holding a function call an earlier, broken turn
        could not answer (OpenAI down, the bot killed): if the first call is refused for it, the calls
        are answered and the call is tried once more (OpenAI refuses every turn of such a
        conversation with a 400).
        """
        repair = round_number == 0 and self._request.conversation.conversation_id is not None
        repair = repair and not self._notes
        settings = self._request.context.settings
        text = ""
        calls: list[RequestedCall] = []
        response: Response | None = None
        drawn_before = len(self._hosted.drawings)

        def create() -> contextlib.AbstractAsyncContextManager[AsyncAPIResponse[Any]]:
            return self._client.responses.with_streaming_response.create(
                model=settings.model,
                conversation=self._conversation_id,
                instructions=settings.instructions,
                include=cast(Any, self._include) or omit,
                stream=True,
                truncation="auto",  # past the window, drop the oldest items instead of refusing
                # The input and tools go as they are: they are plain JSON already, and the SDK's
                # parameter transform walks every node of them against its types (about 1 ms for the
                # input and 3.5 ms for the tools, per call: most of the bot's own time in a turn).
                extra_body={"input": self._input_items, **({"tools": self._tools} if self._tools else {})},
            )

        async with contextlib.AsyncExitStack() as stack:
            try:
                stream = await stack.enter_async_context(create())
            except (openai.BadRequestError, openai.NotFoundError) as exc:
                # A deleted vector store is refused with a 404 or a 400; dangling calls with a 400.
                if not await self._without_lost_vector_store() and (
                    isinstance(exc, openai.NotFoundError)
                    or not repair
                    or is_context_length_error(exc)
                    or not await self._answer_dangling_calls()
                ):
                    raise
                stream = await stack.enter_async_context(create())
            async for event in used_events(stream):  # see bot.engine.response_stream: CPU
                if isinstance(event, ResponseTextDeltaEvent | ResponseRefusalDeltaEvent):
                    self._refusal = self._refusal or isinstance(event, ResponseRefusalDeltaEvent)
                    text += event.delta
                    yield TextDelta(event.delta)
                elif isinstance(event, ResponseOutputItemAddedEvent):
                    started = self._hosted.started(event.item)
                    if started is not None:
                        yield started
                elif isinstance(event, ResponseOutputItemDoneEvent):
                    if isinstance(event.item, ResponseFunctionToolCall):
                        calls.append(RequestedCall(event.item.call_id, event.item.name, event.item.arguments))
                    else:
                        for finished in self._hosted.finished(event.item):
                            yield finished
                elif isinstance(
                    event, ResponseCompletedEvent | ResponseFailedEvent | ResponseIncompleteEvent
                ):
                    response = event.response
        if self._notes and round_number == 0:  # the fresh conversation took the turn: keep it
            record = self._request.conversation
            await self._storage.conversations.set_conversation_id(
                record.key, record.generation, self._conversation_id
            )
        if response is None:
            yield RoundResult(text, calls, drawing_usage(None, self._hosted.drawings[drawn_before:]), CUT_OFF)
            return
        if response.status != "failed":
            self._unsent_outputs = []  # the round's input is now part of the conversation
        # Drawings are counted with their call, so a turn that fails later still pays for them.
        drawn = drawing_usage(response, self._hosted.drawings[drawn_before:])
        yield RoundResult(text, calls, _usage_of(response) + drawn, _unfinished(response))

    async def recover_from_context_error(self, error: openai.APIError, round_number: int) -> Usage | None:
        """Only the first call can move (later ones answer calls of this conversation), once per turn:
        the turn goes on in a fresh conversation; the summary's tokens are the cost."""
        if self._notes or round_number:
            return None
        fresh = await self._start_over()
        if fresh is None:
            return None
        self._conversation_id, self._notes, summary_usage = fresh
        return summary_usage

    def add_outputs(self, round_: RoundResult, results: Mapping[str, ToolResult]) -> None:
        self._input_items = [
            function_output_item(c.call_id, results[c.call_id].to_output()) for c in round_.calls
        ]
        self._unsent_outputs = list(self._input_items)

    async def complete(self, text: str, usage: Usage, last: RoundResult) -> Completed:
        """With what hosted tools produced over the turn: sources, code runs and the files, downloaded."""
        files = await fetch_files(self._client, self._hosted, max_bytes=self._max_file_bytes)
        return Completed(
            text=text,
            usage=usage,
            citations=tuple(self._hosted.citations),
            files=files,
            code_runs=tuple(self._hosted.code_runs),
            refusal=self._refusal,
            notes=(*self._file_notices, *self._notes, *self._store_notes, *self._hosted.drawing_notes()),
        )

    async def _without_lost_vector_store(self) -> bool:
        """After a 400 or 404: if a vector store file_search names is gone at OpenAI (deleted in its
        dashboard), the turn goes on without file search and the answer says so, and the store is marked
        lost so later turns do not search it (nor pay for this again); False if none is gone."""
        searched = [tool for tool in self._tools if tool.get("type") == "file_search"]
        if not searched or self._store_notes:
            return False
        for store_id in searched[0].get("vector_store_ids", ()):
            try:
                await self._client.vector_stores.retrieve(store_id)
            except openai.NotFoundError:
                log.warning("Vector store %s is gone at OpenAI; answering without file search", store_id)
                self._tools = [tool for tool in self._tools if tool.get("type") != "file_search"]
                self._include = [name for name in self._include if name not in FILE_SEARCH.include]
                self._store_notes = (LOST_VECTOR_STORE_NOTE,)
                guild_id = self._request.context.guild_id
                if guild_id is not None:
                    await self._storage.vector_stores.mark_lost(guild_id, store_id)
                return True
        return False

    async def add_unsent_outputs(self) -> None:
        """After the turn: outputs sent with a call that failed are added to the conversation directly."""
        if self._unsent_outputs:
            await self._add_items(self._unsent_outputs)

    async def _start_over(self) -> tuple[str, tuple[str, ...], Usage] | None:
        """A fresh conversation for a channel whose conversation no longer fits the model's window,
        seeded with what matters of the old one: (its id, the note for the answer, the summary's usage).

        None if the old conversation holds no messages (a fresh one would not be any shorter). The
        channel keeps the old conversation until the fresh one has answered (`stream_round` stores it).
        """
        old_conversation_id = self._conversation_id
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
            summary, usage = await self._summarise(messages)
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
            metadata=self._request.metadata or omit, items=cast(Any, items) or omit
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

    async def _summarise(self, messages: list[tuple[str, str]]) -> tuple[str | None, Usage]:
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
                    model=self._request.context.settings.model,
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

    async def close_calls(
        self, calls: list[RequestedCall], reason: str, results: Mapping[str, ToolResult]
    ) -> None:
        """Answer every call of the round, so the conversation stays usable after a broken turn."""
        interrupted = ToolResult.failure("interrupted", reason)
        outputs = [
            function_output_item(call.call_id, results.get(call.call_id, interrupted).to_output())
            for call in calls
        ]
        await self._add_items(outputs)

    async def _add_items(self, items: list[dict[str, Any]]) -> bool:
        """Append items; False if OpenAI could not be reached (the next turn repairs the conversation)."""
        try:
            for start in range(0, len(items), 20):  # the API takes up to 20 items at a time
                await self._client.conversations.items.create(
                    self._conversation_id,
                    items=cast(Any, items[start : start + 20]),
                )
        except Exception:
            log.warning("Could not add tool outputs to conversation %s", self._conversation_id, exc_info=True)
            return False
        return True

    async def _answer_dangling_calls(self) -> bool:
        """Answer the conversation's function calls that have no output; True if there were any.

        A call that ran to its end gets the output the ledger kept (a booking made before a crash is
        reported as made); any other is reported as interrupted.
        """
        conversation_id = self._conversation_id
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
        return await self._add_items(outputs)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage_of(response: Response) -> Usage:
    if response.usage is None:
        return Usage()
    return Usage(response.usage.input_tokens, response.usage.output_tokens)


def _unfinished(response: Response) -> Unfinished | None:
    if response.status == "completed":
        return None
    if response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        if reason == "content_filter":
            return CONTENT_FILTER
        if reason == "max_output_tokens":
            return LENGTH_LIMIT
        return Unfinished("incomplete", "The answer was cut short.")
    if response.status == "cancelled":
        return Unfinished("failed", "The model cancelled the answer.")
    message = response.error.message if response.error else "no reason given"
    return Unfinished("failed", f"The model could not answer: {message}")
