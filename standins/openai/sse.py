"""Server-sent events as OpenAI streams them (named events for Responses, bare ``data:`` lines and
``[DONE]`` for Chat Completions), with a Reply's pacing, cut-off and malformed-line faults."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from .script import Reply
from .tokens import Json
from .wire import dumps

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class SseWriter:
    """Writes SSE frames, applying a Reply's pacing, cut-off and malformed-line faults."""

    def __init__(self, request: web.Request, reply: Reply, *, named_events: bool) -> None:
        self.request = request
        self.reply = reply
        self.named_events = named_events
        self.response = web.StreamResponse(status=200, headers=SSE_HEADERS)
        self.sent = 0

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, event: str | None, data: Json) -> bool:
        """Send one event; False once the stream is over (cut on purpose or the client went away)."""
        if self.reply.delta_delay_s and self._paced(event, data):
            await asyncio.sleep(self.reply.delta_delay_s)
        frame = (
            f"event: {event}\ndata: {dumps(data)}\n\n" if self.named_events else f"data: {dumps(data)}\n\n"
        )
        if not await self.send_raw(frame.encode()):
            return False
        self.sent += 1
        if self.reply.malformed and self.sent == 2:
            garbage = b'data: {"delta": \n\n'  # invalid JSON where a whole event should be
            if self.named_events:
                garbage = b"event: response.output_text.delta\n" + garbage
            if not await self.send_raw(garbage):
                return False
        if self.reply.cut_after is not None and self.sent >= self.reply.cut_after:
            if self.request.transport is not None:
                self.request.transport.abort()
            return False
        return True

    def _paced(self, event: str | None, data: Json) -> bool:
        """Whether the delay goes before this event: every one but the first, or text deltas only."""
        if self.reply.pace == "events":
            return self.sent > 0
        if event is not None:
            return event.endswith((".output_text.delta", ".refusal.delta"))
        return any((choice.get("delta") or {}).get("content") for choice in data.get("choices") or [])

    async def send_raw(self, frame: bytes) -> bool:
        try:
            await self.response.write(frame)
        except (ConnectionResetError, RuntimeError):
            return False
        return True

    async def close(self) -> None:
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await self.response.write_eof()
