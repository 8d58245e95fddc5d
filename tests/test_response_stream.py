"""Reading a Responses event stream without the SDK's per-event union validation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import openai
import pytest
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
)

from bot.engine.response_stream import used_events


class Lines:
    """What `used_events` reads from an `AsyncAPIResponse`: its lines, and the request for errors."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.http_request = httpx2.Request("POST", "http://127.0.0.1/v1/responses")

    async def iter_lines(self) -> AsyncIterator[str]:
        for line in self.text.split("\n"):
            yield line


def sse(*events: dict[str, Any]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


async def read(text: str) -> list[Any]:
    return [event async for event in used_events(cast(openai.AsyncAPIResponse[Any], Lines(text)))]


def response(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "gpt-5.5",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        **extra,
    }


DELTA = {
    "type": "response.output_text.delta",
    "item_id": "msg_1",
    "output_index": 0,
    "content_index": 0,
    "delta": "Hel",
    "logprobs": [],
    "sequence_number": 3,
}


async def test_deltas_calls_and_the_end_are_typed_and_the_rest_is_skipped() -> None:
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}"}
    events = await read(
        sse(
            {"type": "response.created", "response": response("in_progress"), "sequence_number": 0},
            DELTA,
            {**DELTA, "delta": "lo", "sequence_number": 4},
            {"type": "response.output_item.done", "output_index": 1, "item": call, "sequence_number": 5},
            {"type": "response.completed", "response": response("completed"), "sequence_number": 6},
        )
    )
    assert [type(e) for e in events] == [
        ResponseTextDeltaEvent,
        ResponseTextDeltaEvent,
        ResponseOutputItemDoneEvent,
        ResponseCompletedEvent,
    ]
    assert "".join(e.delta for e in events[:2]) == "Hello"
    assert events[2].item.call_id == "call_1"
    assert events[3].response.status == "completed"
    assert events[3].response.tools == []  # the echo of the request's tools is not parsed


async def test_an_event_whose_shape_moved_on_is_still_read() -> None:
    odd = {**DELTA, "logprobs": "not a list any more", "new_field": 1}
    (event,) = await read(sse(odd))
    assert isinstance(event, ResponseTextDeltaEvent) and event.delta == "Hel"


async def test_multi_line_data_and_a_missing_last_blank_line() -> None:
    payload = json.dumps(DELTA, indent=1)  # JSON over several data: lines, as SSE allows
    text = "".join(f"data: {line}\n" for line in payload.split("\n"))
    events = await read(": a comment\n" + text + "\n" + "data: " + json.dumps(DELTA))
    assert [e.delta for e in events] == ["Hel", "Hel"]


async def test_an_error_payload_raises_like_the_sdk_stream() -> None:
    with pytest.raises(openai.APIError, match="overloaded"):
        await read('data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
