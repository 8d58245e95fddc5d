"""Chat Completions: OpenAI's rules for messages and tool calls, context windows, answers streamed as
chunks (with usage when asked) or whole, and failures the way the API reports them."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from .output import cite
from .script import Drop, HttpError, Reply, WebSearchCall
from .sse import SseWriter
from .state import OpenAIState
from .tokens import (
    DELTA_CHARS,
    Json,
    count_tokens,
    estimate_context_tokens,
    split_every,
    split_n,
    split_words,
)
from .wire import BadRequest, Call, fail, json_response


def check_chat_messages(messages: list[Any]) -> None:
    """OpenAI's rules for tool messages: each answers a preceding tool call, and every call is answered."""
    pending: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ):
            raise BadRequest(f"Invalid value for 'messages[{index}].role'.", param=f"messages.[{index}].role")
        if message["role"] == "tool":
            if message.get("tool_call_id") not in pending:
                raise BadRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            raise BadRequest(unanswered_tool_calls(pending), param=f"messages.[{index}].role")
        if message["role"] == "assistant":
            pending = [str(tc.get("id")) for tc in message.get("tool_calls") or [] if isinstance(tc, dict)]
    if pending:
        raise BadRequest(unanswered_tool_calls(pending), param="messages")


def unanswered_tool_calls(pending: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}"
    )


LLAMA_DIALECTS = ("llama.cpp", "llama-cpp-python")
"""The `chat_dialect`s with llama.cpp's quirks (see `OpenAIState.chat_dialect`)."""


class ChatApi(OpenAIState):
    """/v1/chat/completions."""

    async def _chat_completion(self, call: Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("Missing required parameter: 'messages'.", param="messages")
        check_chat_messages(messages)
        llama = self.chat_dialect in LLAMA_DIALECTS
        if llama and any(
            isinstance(m, dict) and m.get("role") == "assistant" and m.get("content", "") is None
            for m in messages
        ):
            return web.json_response(  # what llama-cpp-python's server answers (a validation error)
                {"error": {"message": "content: Input should be a valid string", "type": "server_error"}},
                status=500,
            )
        window = self.context_windows.get(model)
        if window is not None:
            used = estimate_context_tokens(messages, tools=body.get("tools"))
            if used > window and self.chat_dialect == "llama-cpp-python" and body.get("stream"):
                # llama-cpp-python measures the prompt after its 200 has gone out, then ends the
                # stream without a chunk (the reason is only in its own log).
                empty = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
                await empty.prepare(call.request)
                await empty.write_eof()
                return empty
            if used > window:
                raise BadRequest(
                    f"This model's maximum context length is {window} tokens. However, your messages "
                    f"resulted in {used} tokens. Please reduce the length of the messages.",
                    param="messages",
                    code="context_length_exceeded",
                )
        step = await self.chat.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await fail(call.request, step)
        if not isinstance(step, Reply):
            raise TypeError(f"a chat step must be Reply, HttpError or Drop, not {step!r}")
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.malformed and not body.get("stream"):
            return web.Response(body=b'{"id": "chatcmpl-', content_type="application/json")

        text: str | None = step.text
        annotations: list[Json] = []
        for tool in step.hosted:
            if isinstance(tool, WebSearchCall):
                for citation in tool.citations:
                    link = f"([{urlparse(citation.url).hostname or citation.title}]({citation.url}))"
                    text, start, end = cite(text or "", citation.anchor, link)
                    annotations.append(
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": citation.url,
                                "title": citation.title,
                                "start_index": start,
                                "end_index": end,
                            },
                        }
                    )
        if not text and (step.calls or step.refusal is not None):
            text = None
        tool_calls: list[Json] = [
            {
                "id": fc.call_id or f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {"name": fc.name, "arguments": fc.arguments_json()},
            }
            for fc in step.calls
        ]
        if step.status == "incomplete":
            finish_reason = "length" if step.incomplete_reason == "max_output_tokens" else "content_filter"
        else:
            finish_reason = "tool_calls" if tool_calls else "stop"
        if step.usage is not None:
            prompt_tokens, completion_tokens = step.usage
        else:
            prompt_tokens = max(1, count_tokens(json.dumps(messages)))
            spoken = (
                (text or "") + (step.refusal or "") + "".join(t["function"]["arguments"] for t in tool_calls)
            )
            completion_tokens = max(1, count_tokens(spoken))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion_id = f"chatcmpl-{secrets.token_hex(14)}"
        created = int(time.time())
        failed = step.status in ("failed", "cancelled")
        error_body = {
            "error": {
                "message": step.error_message,
                "type": "server_error",
                "param": None,
                "code": step.error_code,
            }
        }

        if not body.get("stream"):
            if failed:
                return web.json_response(error_body, status=500)
            message: Json = {
                "role": "assistant",
                "content": text,
                "refusal": step.refusal,
                "annotations": annotations,
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            return json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": None,
                }
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if llama:
            include_usage = False
        repeat_names = llama

        def chunk(delta: Json, finish: str | None = None) -> Json:
            data: Json = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                data["usage"] = None
            return data

        def chunks() -> Iterator[Json]:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            pieces = split_words(text or "") if step.deltas is None else split_n(text or "", step.deltas)
            for piece in pieces:
                yield chunk({"content": piece})
            if annotations:
                yield chunk({"annotations": annotations})
            for piece in split_words(step.refusal or ""):
                yield chunk({"refusal": piece})
            for index, tool_call in enumerate(tool_calls):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": tool_call["id"],
                                "type": "function",
                                "function": {"name": tool_call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in split_every(tool_call["function"]["arguments"], DELTA_CHARS):
                    function: Json = {"arguments": piece}
                    repeated: Json = {"index": index, "function": function}
                    if repeat_names:
                        function["name"] = tool_call["function"]["name"]
                        repeated.update(id=tool_call["id"], type="function")
                    yield chunk({"tool_calls": [repeated]})
            if failed:
                yield error_body
                return
            if step.no_finish:
                return
            yield chunk({}, finish_reason)
            if include_usage:
                yield {**chunk({}), "choices": [], "usage": usage}

        writer = SseWriter(call.request, step, named_events=False)
        await writer.open()
        for data in chunks():
            if not await writer.send(None, data):
                return writer.response
        if not failed and not await writer.send_raw(b"data: [DONE]\n\n"):
            return writer.response
        await writer.close()
        return writer.response
