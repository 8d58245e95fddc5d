"""Reading a Responses API event stream cheaply: only the events the backend uses, each as its own type.

The SDK's `AsyncStream` validates every event against the union of all Responses event types, trying
the members in turn: about 0.1 ms per text delta, and 1-3 ms for each event that carries the whole
response (created, in progress, completed), since those echo every tool schema the request sent.
With many replies streaming at once that was most of the bot's CPU. Here each event is read as JSON,
the ones the backend ignores are skipped unparsed, and the others are validated as their own type
(a few microseconds), falling back to the SDK's lenient construction if OpenAI's shape moved on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import openai
import pydantic
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)

USED_EVENTS: dict[str, type[pydantic.BaseModel]] = {
    "response.output_text.delta": ResponseTextDeltaEvent,
    "response.refusal.delta": ResponseRefusalDeltaEvent,
    "response.output_item.added": ResponseOutputItemAddedEvent,
    "response.output_item.done": ResponseOutputItemDoneEvent,
    "response.completed": ResponseCompletedEvent,
    "response.failed": ResponseFailedEvent,
    "response.incomplete": ResponseIncompleteEvent,
}
"""The events the responses backend reads; every other event type is skipped without parsing."""
_WITH_RESPONSE = frozenset({"response.completed", "response.failed", "response.incomplete"})


def build_validators() -> None:
    """Build the used events' validators now: the SDK defers them to first use, and the completed
    event's takes ~90 ms, which would otherwise fall on the first answer's last write."""
    for model in USED_EVENTS.values():
        model.model_rebuild()  # once: a no-op when already built


async def used_events(
    response: openai.AsyncAPIResponse[Any],
) -> AsyncIterator[ResponseStreamEvent]:
    """The used events of a streamed `responses.create` (`with_streaming_response`), in order."""
    data: list[str] = []
    async for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif not line and data:  # a blank line ends an event
            event = _typed(response, "\n".join(data))
            data = []
            if event is not None:
                yield event
    if data:
        event = _typed(response, "\n".join(data))
        if event is not None:
            yield event


def _typed(response: openai.AsyncAPIResponse[Any], payload: str) -> ResponseStreamEvent | None:
    if payload.startswith("[DONE]"):
        return None
    raw = json.loads(payload)
    if not isinstance(raw, dict):
        return None
    if raw.get("error") and "type" not in raw:  # an error payload, as the SDK's stream raises it
        error = raw["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise openai.APIError(
            message if isinstance(message, str) and message else "An error occurred during streaming",
            response.http_request,
            body=error,
        )
    kind = raw.get("type")
    model = USED_EVENTS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None
    if kind in _WITH_RESPONSE and isinstance(raw.get("response"), dict):
        raw["response"] = {**raw["response"], "tools": []}  # the request's own tools, echoed: unused
    try:
        event = model.model_validate(raw)
    except pydantic.ValidationError:
        event = model.construct(**raw)  # the SDK's own lenient construction, as its stream would
    return cast(ResponseStreamEvent, event)
