"""The Responses API: create (on a conversation, after a previous response, or alone; streamed or not),
retrieve, delete, cancel; a response's final state is stored and its items appended to the
conversation, as OpenAI does."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import Iterator

from aiohttp import web

from .context_window import ContextWindows
from .file_search import FakeVectorStore
from .items import check_tool_pairs, input_items
from .output import ResponseRun, function_call_events, hosted_events, message_events, render_reply
from .records import StoredFile
from .script import Drop, HttpError, Reply
from .sse import SseWriter
from .tokens import Json, count_tokens, new_id
from .wire import BadRequest, Call, fail, json_response


class ResponsesApi(ContextWindows):
    """/v1/responses and /v1/responses/{id} (retrieve, delete, cancel)."""

    async def _create_response(self, call: Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body)
        conversation_ref = body.get("conversation")
        conversation_id = (
            conversation_ref.get("id") if isinstance(conversation_ref, dict) else conversation_ref
        )
        previous_id = body.get("previous_response_id")
        if conversation_id and previous_id:
            raise BadRequest(
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                param="conversation",
                code="mutually_exclusive_parameters",
            )
        prior: list[Json] = []
        if conversation_id:
            prior = list(self._conversation(conversation_id).items)
        elif previous_id:
            if previous_id not in self._contexts:
                raise BadRequest(
                    f"Previous response with id '{previous_id}' not found.",
                    param="previous_response_id",
                    status=404,
                )
            prior = list(self._contexts[previous_id])
        new_items = input_items(body.get("input"))
        check_tool_pairs(prior + new_items)
        uploads = self._container_uploads(body)
        searched = self._searched_vector_stores(body)
        self._check_input_files(new_items)
        visible_prior = self._fit_context_window(model, body, conversation_id, prior, new_items)

        if conversation_id:
            self.inflight_per_conversation[conversation_id] += 1
            self.max_inflight_per_conversation = max(
                self.max_inflight_per_conversation, self.inflight_per_conversation[conversation_id]
            )
        try:
            step = await self.responses.next_step(body)
            if isinstance(step, HttpError | Drop):
                return await fail(call.request, step)
            if not isinstance(step, Reply):
                raise TypeError(f"a Responses step must be Reply, HttpError or Drop, not {step!r}")
            if step.delay_s:
                await asyncio.sleep(step.delay_s)
            run = ResponseRun(
                id=new_id("resp"),
                body=body,
                created_at=int(time.time()),
                conversation_id=conversation_id,
                prior=prior,
                new_items=new_items,
                visible_prior=visible_prior,
                reply=step,
                rendered=render_reply(
                    step, body, self.containers, uploads, searched=searched, files=self.files
                ),
            )
            if step.malformed and not body.get("stream"):
                return web.Response(body=b'{"id": "resp_', content_type="application/json")
            if body.get("stream"):
                return await self._stream_response(call.request, run)
            response = self._finish(run)
            return json_response(response)
        finally:
            if conversation_id:
                self.inflight_per_conversation[conversation_id] -= 1

    def _container_uploads(self, body: Json) -> list[StoredFile]:
        """The uploaded files a code interpreter tool gives its container (`container.file_ids`); an
        unknown id is OpenAI's 400."""
        uploads: list[StoredFile] = []
        tools = body.get("tools") or []
        for index, tool in enumerate(tools if isinstance(tools, list) else []):
            if not isinstance(tool, dict) or tool.get("type") != "code_interpreter":
                continue
            container = tool.get("container")
            if container is None:
                raise BadRequest(
                    f"Missing required parameter: 'tools[{index}].container'.",
                    param=f"tools[{index}].container",
                    code="missing_required_parameter",
                )
            if not isinstance(container, dict):
                continue  # an explicit container id
            file_ids = container.get("file_ids") or []
            for position, file_id in enumerate(file_ids if isinstance(file_ids, list) else [file_ids]):
                stored = self.files.get(file_id) if isinstance(file_id, str) else None
                if stored is None:
                    raise BadRequest(
                        f"File with id '{file_id}' not found.",
                        param=f"tools[{index}].container.file_ids[{position}]",
                        code="invalid_value",
                    )
                uploads.append(stored)
        return uploads

    def _searched_vector_stores(self, body: Json) -> list[FakeVectorStore]:
        """The vector stores a file_search tool names; an unknown id is OpenAI's 400."""
        stores: list[FakeVectorStore] = []
        tools = body.get("tools") or []
        for index, tool in enumerate(tools if isinstance(tools, list) else []):
            if not isinstance(tool, dict) or tool.get("type") != "file_search":
                continue
            store_ids = tool.get("vector_store_ids")
            if not isinstance(store_ids, list) or not store_ids:
                raise BadRequest(
                    f"Missing required parameter: 'tools[{index}].vector_store_ids'.",
                    param=f"tools[{index}].vector_store_ids",
                    code="missing_required_parameter",
                )
            for store_id in store_ids:
                store = self.vector_stores.get(store_id) if isinstance(store_id, str) else None
                if store is None:
                    raise BadRequest(
                        f"Vector store with id '{store_id}' not found.",
                        param=f"tools[{index}].vector_store_ids",
                        code="invalid_value",
                    )
                stores.append(store)
        return stores

    def _check_input_files(self, items: list[Json]) -> None:
        """An `input_file` part must name an uploaded file (or carry its data)."""
        for item in items:
            for part in item.get("content") or [] if item.get("type") == "message" else []:
                if not isinstance(part, dict) or part.get("type") != "input_file":
                    continue
                file_id = part.get("file_id")
                if file_id is None and (part.get("file_data") or part.get("file_url")):
                    continue
                if not isinstance(file_id, str) or file_id not in self.files:
                    raise BadRequest(
                        f"File with id '{file_id}' not found.", param="input", code="invalid_value"
                    )

    def _response_json(self, run: ResponseRun, status: str, output: list[Json]) -> Json:
        """The Response object in its current state (in_progress snapshots have no output or usage)."""
        body, reply = run.body, run.reply
        text_config = body.get("text") or {}
        usage: Json | None = None
        tool_usage: Json | None = None
        if status in ("completed", "incomplete"):
            tool_usage = run.rendered.tool_usage()
            if reply.usage is not None:
                input_tokens, output_tokens = reply.usage
            else:
                input_tokens = max(
                    1,
                    count_tokens(json.dumps([*run.visible_prior, *run.new_items, body.get("instructions")])),
                )
                output_tokens = run.rendered.output_tokens()
            usage = {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
        error = {"code": reply.error_code, "message": reply.error_message} if status == "failed" else None
        incomplete = {"reason": reply.incomplete_reason} if status == "incomplete" else None
        return {
            "id": run.id,
            "object": "response",
            "created_at": run.created_at,
            "status": status,
            "background": bool(body.get("background", False)),
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "conversation": {"id": run.conversation_id} if run.conversation_id else None,
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": text_config.get("format") or {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            **({"tool_usage": tool_usage} if tool_usage is not None else {}),
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
            "prompt_cache_key": body.get("prompt_cache_key"),
            "safety_identifier": body.get("safety_identifier"),
        }

    def _finish(self, run: ResponseRun, status: str | None = None) -> Json:
        """Final state: store it and, unless it failed, append input + output to the conversation."""
        status = status or run.reply.status
        output = run.rendered.output(status) if status != "cancelled" else []
        response = self._response_json(run, status, output)
        if status in ("completed", "incomplete"):
            self._contexts[run.id] = [*run.prior, *copy.deepcopy(run.new_items), *copy.deepcopy(output)]
            if run.conversation_id and run.conversation_id in self.conversations:
                self.conversations[run.conversation_id].items.extend(
                    [*copy.deepcopy(run.new_items), *copy.deepcopy(output)]
                )
        if run.body.get("store", True):
            self.stored_responses[run.id] = copy.deepcopy(response)
        return response

    def _response_events(self, run: ResponseRun) -> Iterator[Json]:
        """The real SSE event sequence (without sequence numbers); the terminal event finishes the run."""
        rendered, status = run.rendered, run.reply.status
        snapshot = self._response_json(run, "in_progress", [])
        yield {"type": "response.created", "response": snapshot}
        yield {"type": "response.in_progress", "response": snapshot}
        index = 0
        for hosted in rendered.hosted:
            yield from hosted_events(index, hosted)
            index += 1
        message = rendered.message_item("completed" if status != "incomplete" else "incomplete")
        if message is not None:
            yield from message_events(index, rendered, message)
            index += 1
        for fc in rendered.calls:
            yield from function_call_events(index, fc)
            index += 1
        response = self._finish(run)
        terminal = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            status, "response.failed"
        )
        yield {"type": terminal, "response": response}

    async def _stream_response(self, request: web.Request, run: ResponseRun) -> web.StreamResponse:
        writer = SseWriter(request, run.reply, named_events=True)
        await writer.open()
        self._running[run.id] = run
        if run.body.get("store", True):
            self.stored_responses[run.id] = self._response_json(run, "in_progress", [])
        try:
            sequence = itertools.count()
            events = self._response_events(run)
            while True:
                if run.cancelled.is_set():
                    response = self._finish(run, "cancelled")
                    event: Json = {
                        "type": "response.failed",
                        "response": response,
                        "sequence_number": next(sequence),
                    }
                    if await writer.send("response.failed", event):
                        await writer.close()
                    return writer.response
                try:
                    event = next(events)
                except StopIteration:
                    break
                event["sequence_number"] = next(sequence)
                if not await writer.send(str(event["type"]), event):
                    return writer.response
            await writer.close()
            return writer.response
        finally:
            self._running.pop(run.id, None)

    async def _get_response(self, call: Call) -> web.StreamResponse:
        response = self.stored_responses.get(call.params["rid"])
        if response is None:
            raise BadRequest(f"Response with id '{call.params['rid']}' not found.", status=404)
        return json_response(response)

    async def _delete_response(self, call: Call) -> web.StreamResponse:
        if self.stored_responses.pop(call.params["rid"], None) is None:
            raise BadRequest(f"Response with id '{call.params['rid']}' not found.", status=404)
        return json_response({"id": call.params["rid"], "object": "response", "deleted": True})

    async def _cancel_response(self, call: Call) -> web.StreamResponse:
        """Cancel a response still streaming; it ends with status `cancelled` (in a response.failed event)."""
        response_id = call.params["rid"]
        run = self._running.get(response_id)
        if run is None:
            stored = self.stored_responses.get(response_id)
            if stored is None:
                raise BadRequest(f"Response with id '{response_id}' not found.", status=404)
            raise BadRequest(f"Cannot cancel a response with status '{stored['status']}'.")
        run.cancelled.set()
        return json_response(self._response_json(run, "cancelled", []))
