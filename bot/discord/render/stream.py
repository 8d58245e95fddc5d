"""Turning one reply's turn events into Discord messages, through the write scheduler.

``ReplyStreamer`` keeps the reply's state (the text so far, a tool-activity line, the messages posted)
and never writes itself: each message is a *slot* whose write is a lazy job queued on the scheduler.
The job reads the slot's content when it starts, so a queued refresh always carries the newest text
and a burst of deltas costs one write. What a slot shows:

- before any text: nothing (typing, after ``typing_delay_s``), or the line of a running tool; a queued
  turn posts nothing (a placeholder would land before the earlier answers it waits for);
- while streaming: the parts of the text so far (``StreamSplitter``); sealed parts are complete and
  never change, the last part grows and carries the status line (``-# 🔧 Booking a table…``);
- at the end: the final text (answer, code runs, sources, notes) split the same way, so the parts
  already sealed need no new write; files and buttons (``ReplyButton``, e.g. "Steps") go on the last
  message.

Writes of a finished reply are FINAL (they go before everything else and ignore the edit interval),
the reply's first post is FIRST, later writes REFRESH. Posts of continuation messages wait for the
previous post so the messages stay in order. A sink failure is recorded per slot and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol, runtime_checkable

from bot.discord.render.final_text import FinalTextLimits, completed_reply, one_line, with_note
from bot.discord.render.scheduler import (
    DELETE_ROUTE,
    EDIT_ROUTE,
    POST_ROUTE,
    SKIPPED,
    TYPING_ROUTE,
    WEBHOOK_DELETE_ROUTE,
    WEBHOOK_EDIT_ROUTE,
    WEBHOOK_POST_ROUTE,
    WriteKind,
    WriteScheduler,
)
from bot.discord.render.split import MAX_MESSAGE_CHARS, WHITESPACE, SplitView, StreamSplitter
from bot.engine.events import (
    Busy,
    Cancelled,
    CodeRun,
    Completed,
    Failed,
    Flagged,
    GeneratedFile,
    Queued,
    Started,
    TerminalEvent,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnEvent,
)

log = logging.getLogger(__name__)

TYPING_DELAY_S = 0.5
"""Typing is only sent if no text is ready this long after the start (a fast answer needs none)."""
TYPING_REFRESH_S = 8.0
"""Discord shows typing for about 10 s; refresh a little before it lapses."""
MAX_WRITE_ATTEMPTS = 3
"""A slot whose writes fail this many times in a row is given up."""
RETRY_DELAY_S = 1.0
NONCE_BYTES = 10
"""A slot's nonce is this many random bytes in hex (Discord takes nonces of up to 25 characters)."""
STOPPED_NOTE = "-# ⏹️ Stopped."
"""Ends a reply someone stopped with /stop."""
SHUTDOWN_NOTE = (
    "⚠️ The bot is restarting, so this answer stops here; please send your message again in a minute."
)
"""Ends a reply the bot's shutdown cut short: not a sentence cut in half, and what to do about it."""
MAX_HEADER_NAME_CHARS = 80
"""A speaker's name in a header line is cut to this (Discord's limit on a webhook's name)."""
_MARKDOWN_OR_MENTION = re.compile(r"([\\*_~`|<>@#:\[\]()-])")


def speaker_header(name: str) -> str:
    """The line that starts a reply shown for a named assistant where no webhook can show its name:
    small grey text with the name in bold. Markdown and mention syntax in the name are escaped, so a
    name can neither format the reply nor mention anyone."""
    flat = " ".join(name.split())[:MAX_HEADER_NAME_CHARS] or "Assistant"
    escaped = _MARKDOWN_OR_MENTION.sub(r"\\\1", flat)
    return f"-# 🤖 **{escaped}**"


class WriteOutcome(Enum):
    """What became of one write, as the streamer needs to know it."""

    OK = "ok"
    GONE = "gone"
    """The message or channel is gone or closed to the bot (404/403): stop writing there."""
    REJECTED = "rejected"
    """Discord refused this content (400): do not send the same again."""
    FAILED = "failed"
    """A transient failure (5xx, network, rate limit): the next write may succeed."""


class SentMessage(Protocol):
    """A posted message, as far as the streamer cares."""

    @property
    def id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PostResult:
    message: SentMessage | None
    outcome: WriteOutcome


@dataclass(frozen=True, slots=True)
class ReplyButton:
    """A button on a finished reply's last message. Clicks are answered by a handler registered at
    start-up for its ``custom_id`` (a discord.py ``DynamicItem``), so a button works after a restart."""

    label: str
    custom_id: str
    emoji: str | None = None


class MessageSink(Protocol):
    """One reply's destination (a thread, a channel, a DM). Methods never raise for Discord errors."""

    @property
    def channel_id(self) -> int:
        """The channel the reply is written in: the bucket of its typing, and of its writes unless the
        sink is a ``RoutedSink``."""
        ...

    @property
    def max_file_bytes(self) -> int: ...

    async def post(
        self,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        nonce: str | None = None,
        buttons: Sequence[ReplyButton] = (),
    ) -> PostResult:
        """Post a message; the same ``nonce`` again within minutes returns that message, not a copy."""
        ...

    async def edit(
        self,
        message: SentMessage,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        buttons: Sequence[ReplyButton] = (),
    ) -> WriteOutcome:
        """Change a message's text (and add files); ``buttons`` are set when given, else left as they are."""
        ...

    async def typing(self) -> WriteOutcome: ...

    async def delete(self, message: SentMessage) -> WriteOutcome: ...


@dataclass(frozen=True, slots=True)
class WriteRoutes:
    """The scheduler routes of a reply's posts, edits and deletes: which of Discord's buckets they use."""

    post: str
    edit: str
    delete: str


CHANNEL_ROUTES = WriteRoutes(POST_ROUTE, EDIT_ROUTE, DELETE_ROUTE)
"""The bot's own messages: the channel's buckets."""
WEBHOOK_ROUTES = WriteRoutes(WEBHOOK_POST_ROUTE, WEBHOOK_EDIT_ROUTE, WEBHOOK_DELETE_ROUTE)
"""Messages through a webhook: the webhook's buckets, keyed by the webhook's id."""


@runtime_checkable
class RoutedSink(Protocol):
    """A sink whose writes use other buckets than its channel's (a webhook's), which may differ from
    message to message and change during a reply (a webhook refused: the rest is the bot's own). The
    streamer asks at every write; other sinks' writes use ``channel_id`` and CHANNEL_ROUTES."""

    def write_bucket(self, message: SentMessage | None) -> tuple[Hashable, WriteRoutes]:
        """The bucket key and routes of the next post (``message`` None), or of an edit or delete of
        ``message``."""
        ...


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """How a reply is shown; the edit interval and budgets belong to the scheduler's config."""

    max_message_chars: int = MAX_MESSAGE_CHARS
    typing: bool = True
    typing_delay_s: float = TYPING_DELAY_S
    typing_refresh_s: float = TYPING_REFRESH_S
    show_tool_activity: bool = True
    final_text: FinalTextLimits = field(default_factory=FinalTextLimits)
    header: str | None = None
    """A line the reply's first message starts with (``speaker_header``), counted in its 2000."""


Outcome = Literal["completed", "failed", "cancelled", "busy", "interrupted"]


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What the reply became: its messages and the text they hold."""

    outcome: Outcome
    final_text: str
    """Everything shown, before splitting: the answer, then code runs, sources and notes."""
    message_ids: tuple[int, ...]
    delivered: bool
    """Whether every part (and file) reached Discord."""
    terminal: TerminalEvent | None


@dataclass(eq=False, slots=True)
class _Slot:
    index: int
    target: tuple[Hashable, int]
    handle: SentMessage | None = None
    sent: str | None = None
    """Content of the write in flight or last succeeded."""
    confirmed: str | None = None
    """Content Discord holds."""
    files_sent: bool = False
    buttons_sent: bool = False
    queued: WriteKind | None = None
    """The kind of the write queued for this slot (not started yet), if any."""
    generation: int = 0
    """Counts submissions: only the newest job (the one the scheduler keeps) clears ``queued``."""
    in_flight: bool = False
    attempts: int = 0
    dead: bool = False
    deleted: bool = False
    nonce: str = field(default_factory=lambda: secrets.token_hex(NONCE_BYTES))
    """Sent with every post of this slot: a retried post that Discord had stored is not stored twice."""
    bucket: tuple[Hashable, str] | None = None
    """The channel key and route of the slot's last submitted write."""


class ReplyStreamer:
    """Shows one turn as it streams; see the module docstring.

    Use ``await ReplyStreamer(sink, scheduler).render(events)``, or drive it with ``start()``,
    ``feed(event)`` for each event and ``await wait()``.
    """

    def __init__(
        self,
        sink: MessageSink,
        scheduler: WriteScheduler,
        *,
        config: StreamConfig | None = None,
        reply_key: Hashable | None = None,
        buttons_for: Callable[[Completed | Failed | Cancelled], Sequence[ReplyButton]] | None = None,
    ) -> None:
        """``buttons_for``: the buttons a completed, failed or cancelled reply carries on its last
        message."""
        self._sink = sink
        self._buttons_for = buttons_for
        self._buttons: tuple[ReplyButton, ...] = ()
        self._scheduler = scheduler
        self._config = config or StreamConfig()
        self._key: Hashable = reply_key if reply_key is not None else object()
        self._channel = sink.channel_id
        """The reply's channel: its typing's bucket, and its writes' unless the sink routes them."""
        self._routed = sink if isinstance(sink, RoutedSink) else None
        self._splitter = StreamSplitter(self._config.max_message_chars)
        self._chunks: list[str] = []
        self._has_text = False
        self._version = 0
        self._live_cache: tuple[int, list[str]] = (-1, [])
        self._tools: dict[str, str] = {}
        self._status: str | None = None
        self._status_until_text = False
        self._slots: list[_Slot] = []
        self._text_shown = False
        self._final_parts: tuple[str, ...] | None = None
        self._final_text = ""
        self._files: tuple[GeneratedFile, ...] = ()
        self._terminal: TerminalEvent | None = None
        self._outcome: Outcome | None = None
        self._dead = False
        self._started = False
        self._settled = asyncio.Event()
        self._result: StreamResult | None = None

    # -- driving -----------------------------------------------------------------------------------

    async def render(self, events: AsyncIterable[TurnEvent]) -> StreamResult:
        """Consume the turn's events and return once the final writes are done."""
        self.start()
        try:
            async for event in events:
                self.feed(event)
                if self._final_parts is not None:
                    break
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            log.exception("The turn's event stream failed; showing what arrived")
            self._finish(self._streamed_text(), "⚠️ Something went wrong while answering.", "failed", None)
        if self._final_parts is None:
            self._finish(self._streamed_text(), "⚠️ The answer was cut off.", "interrupted", None)
        return await self.wait()

    def start(self) -> None:
        """Begin showing the reply (typing, after a short delay)."""
        if self._started:
            return
        self._started = True
        if self._config.typing:
            self._submit_typing(self._config.typing_delay_s)

    def feed(self, event: TurnEvent) -> None:
        """Take one event; cheap for deltas (the text is rendered when a write starts)."""
        if self._final_parts is not None:
            return
        self.start()
        if isinstance(event, TextDelta):
            self._on_text(event.text)
        elif isinstance(event, Completed):
            self._on_completed(event)
        elif isinstance(event, Failed):
            text = self._kept_text(event.partial_text)
            if self._buttons_for is not None:
                self._buttons = tuple(self._buttons_for(event))
            self._finish(text, f"⚠️ {one_line(event.reason)}", "failed", event)
        elif isinstance(event, Cancelled):
            text = self._kept_text(event.partial_text)
            if self._buttons_for is not None:  # also after a shutdown: the records outlive the process
                self._buttons = tuple(self._buttons_for(event))
            if event.reason == "shutdown":
                self._finish(text, SHUTDOWN_NOTE, "interrupted", event)
            else:
                self._finish(text, STOPPED_NOTE, "cancelled", event)
        elif isinstance(event, Busy):
            self._finish("", f"⏳ {one_line(event.reason)}", "busy", event)
        elif isinstance(event, ToolStarted):
            self._tools[event.call_id] = one_line(event.label)
            self._set_status(self._tool_line(), until_text=False)
        elif isinstance(event, ToolFinished):
            self._tools.pop(event.call_id, None)
            if self._tools:
                self._set_status(self._tool_line(), until_text=False)
            elif event.summary:
                mark = "✅" if event.ok else "⚠️"
                self._set_status(f"-# {mark} {one_line(event.summary)}", until_text=True)
            else:
                self._set_status(None, until_text=False)
        elif isinstance(event, CodeRun):
            self._set_status("-# 🐍 Ran code", until_text=True)
        elif isinstance(event, Queued | Started):
            # Nothing to post: a queued turn's placeholder would take its place in the channel before
            # the earlier answers it waits for. Typing covers the wait.
            pass
        elif isinstance(event, Flagged):
            pass  # for moderators (the chat cog tells them), not for the reply

    async def wait(self) -> StreamResult:
        """Wait until the reply's final writes are done (after a terminal event was fed)."""
        await self._settled.wait()
        assert self._result is not None
        return self._result

    def abort(self) -> None:
        """Stop writing: drop this reply's queued writes (one already started still finishes)."""
        self._dead = True
        for slot in self._slots:
            self._scheduler.cancel(slot.target)
        self._scheduler.cancel((self._key, "typing"))
        self._scheduler.end_reply(self._key)

    @property
    def message_ids(self) -> tuple[int, ...]:
        return tuple(s.handle.id for s in self._slots if s.handle is not None and not s.deleted)

    # -- events ------------------------------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        if not text:
            return
        self._chunks.append(text)
        self._version += 1
        if text.isspace():
            return  # trailing whitespace shows nothing new; the next word will
        self._has_text = True
        if self._status_until_text:
            self._status = None
            self._status_until_text = False
        if self._slots:
            live = self._slots[-1]
            if live.queued is not None or (live.in_flight and live.handle is None):
                return  # the queued write (or the post's end) will read the new text
        self._pump()

    def _set_status(self, line: str | None, *, until_text: bool) -> None:
        if not self._config.show_tool_activity:
            return
        self._status = line
        self._status_until_text = until_text
        self._version += 1
        self._pump()

    def _tool_line(self) -> str:
        labels = list(self._tools.values())
        more = f" (+{len(labels) - 1} more)" if len(labels) > 1 else ""
        return f"-# 🔧 {labels[-1]}{more}"

    def _on_completed(self, event: Completed) -> None:
        reply = completed_reply(event, self._config.final_text, max_file_bytes=self._sink.max_file_bytes)
        self._files = reply.files
        if self._buttons_for is not None:
            self._buttons = tuple(self._buttons_for(event))
        self._finish(reply.text, reply.appendix, "completed", event)

    def _finish(self, text: str, note: str, outcome: Outcome, event: TerminalEvent | None) -> None:
        """Build the final text and submit its writes: the path from the model's last byte."""
        final_text = self._with_header(with_note(text, note))
        self._terminal = event
        self._outcome = outcome
        self._final_text = final_text
        self._final_parts = self._splitter.update(final_text).parts
        self._status = None
        self._version += 1
        self._scheduler.cancel((self._key, "typing"))
        self._pump()

    # -- rendering ---------------------------------------------------------------------------------

    def _kept_text(self, partial: str) -> str:
        """The text to keep after a failure: what was shown, or the engine's if it goes further."""
        streamed = self._streamed_text()
        return partial if partial.startswith(streamed) else streamed

    def _with_header(self, text: str) -> str:
        """``text`` under the header line, if the reply has one. The text's leading blank lines go (the
        splitter would drop them at the start), so the result only grows as the text does."""
        header = self._config.header
        if not header:
            return text
        content = text.lstrip(WHITESPACE)
        if not content:
            return header
        newline = text.rfind("\n", 0, len(text) - len(content))
        return f"{header}\n{text[newline + 1 :]}"

    def _streamed_text(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    def _contents(self) -> Sequence[str]:
        """What each slot should hold now."""
        if self._final_parts is not None:
            return self._final_parts
        version, cached = self._live_cache
        if version == self._version:
            return cached
        shown: list[str] = []
        if self._has_text:
            view: SplitView = self._splitter.update(self._with_header(self._streamed_text()))
            shown = list(view.parts[: view.sealed + 1])
        status = self._status
        if status:
            if not shown:
                shown = [self._with_header(status)]
            elif len(shown[-1]) + 1 + len(status) <= self._config.max_message_chars:
                shown[-1] = shown[-1] + "\n" + status
        self._live_cache = (self._version, shown)
        return shown

    # -- writing -----------------------------------------------------------------------------------

    def _slot(self, index: int) -> _Slot:
        while len(self._slots) <= index:
            self._slots.append(_Slot(len(self._slots), (self._key, len(self._slots))))
        return self._slots[index]

    def _pump(self) -> None:
        """Queue a write for every slot whose content moved on (posts in order)."""
        if self._dead:
            self._check_settled()
            return
        contents = self._contents()
        final = self._final_parts is not None
        for index, content in enumerate(contents):
            slot = self._slot(index)
            if slot.dead:
                continue
            if slot.handle is None:
                if slot.in_flight:
                    break  # its post's end pumps again; later slots wait for it
                before = self._slots[index - 1] if index > 0 else None
                if before is not None and before.handle is None and not before.dead:
                    break  # post in order
            last = final and index == len(contents) - 1
            files_due = last and bool(self._files) and not slot.files_sent
            buttons_due = last and bool(self._buttons) and not slot.buttons_sent
            if content == slot.sent and not files_due and not buttons_due:
                continue
            if final:
                kind = WriteKind.FINAL
            elif index == 0 and not self._text_shown:
                kind = WriteKind.FIRST
            else:
                kind = WriteKind.REFRESH
            if slot.queued is not None and slot.queued <= kind:
                continue
            self._submit(slot, kind, delay_s=RETRY_DELAY_S * slot.attempts)
        if final:
            for slot in self._slots[len(contents) :]:
                if slot.handle is not None and not slot.deleted and not slot.dead and slot.queued is None:
                    self._submit(slot, WriteKind.FINAL, delay_s=0.0)
        self._check_settled()

    def _submit(self, slot: _Slot, kind: WriteKind, *, delay_s: float) -> None:
        channel, routes = self._write_bucket(slot)
        route = routes.post if slot.handle is None else routes.edit
        if self._final_parts is not None and slot.index >= len(self._final_parts):
            route = routes.delete
        if slot.queued is not None and slot.bucket != (channel, route):
            self._scheduler.cancel(slot.target)  # its bucket changed meanwhile: queued anew in the new one
        slot.bucket = (channel, route)
        slot.queued = kind
        slot.generation += 1
        generation = slot.generation
        self._scheduler.submit(
            kind,
            channel,
            lambda: self._write(slot, generation),
            route=route,
            target=slot.target,
            reply=self._key,
            delay_s=delay_s,
        )

    def _write_bucket(self, slot: _Slot) -> tuple[Hashable, WriteRoutes]:
        """Where the slot's next write is paced: asked of a routing sink each time, since a webhook's
        reply can go on as the bot's own messages (another bucket) after the webhook was refused."""
        if self._routed is None:
            return self._channel, CHANNEL_ROUTES
        return self._routed.write_bucket(slot.handle)

    async def _write(self, slot: _Slot, generation: int) -> object:
        """The job of a slot's write: send what the slot should hold now (or nothing)."""
        if generation == slot.generation:
            slot.queued = None  # else a newer write is queued behind this one (a final, say)
        contents = self._contents()
        if self._dead or slot.dead:
            self._pump()
            return SKIPPED
        if slot.index >= len(contents):
            return await self._delete(slot)
        content = contents[slot.index]
        final = self._final_parts is not None
        last = final and slot.index == len(contents) - 1
        files = self._files if last and not slot.files_sent else ()
        buttons = self._buttons if last and not slot.buttons_sent else ()
        if content == slot.sent and not files and not buttons:
            self._pump()
            return SKIPPED
        previous, slot.sent, slot.in_flight = slot.sent, content, True
        with_text = self._has_text
        try:
            if slot.handle is None:
                posted = await self._sink.post(content, files, nonce=slot.nonce, buttons=buttons)
                outcome = posted.outcome
                if posted.message is not None:
                    slot.handle = posted.message
                elif outcome is WriteOutcome.OK:
                    outcome = WriteOutcome.FAILED  # a sink bug: no handle to edit later
            else:
                outcome = await self._sink.edit(slot.handle, content, files, buttons=buttons)
        except Exception:
            log.exception("A message sink raised; treating the write as failed")
            outcome = WriteOutcome.FAILED
        finally:
            slot.in_flight = False
        self._record(slot, content, bool(files), previous, outcome, with_text=with_text)
        if outcome is WriteOutcome.OK and buttons:
            slot.buttons_sent = True
        self._pump()
        return outcome

    async def _delete(self, slot: _Slot) -> object:
        if slot.handle is None or slot.deleted:
            return SKIPPED
        slot.in_flight = True
        try:
            outcome = await self._sink.delete(slot.handle)
        except Exception:
            log.exception("A message sink raised on delete")
            outcome = WriteOutcome.FAILED
        finally:
            slot.in_flight = False
        if outcome in (WriteOutcome.OK, WriteOutcome.GONE):
            slot.deleted = True
        else:
            slot.dead = True  # leave it; not worth more requests
        self._pump()
        return outcome

    def _record(
        self,
        slot: _Slot,
        content: str,
        with_files: bool,
        previous: str | None,
        outcome: WriteOutcome,
        *,
        with_text: bool,
    ) -> None:
        if outcome is WriteOutcome.OK:
            slot.confirmed = content
            slot.attempts = 0
            slot.files_sent = slot.files_sent or with_files
            if slot.index == 0 and with_text:
                self._text_shown = True
            return
        if outcome is WriteOutcome.GONE:
            slot.dead = True
            if slot.handle is None:
                self._dead = True  # the channel itself refuses posts: nothing more can be shown
            return
        if outcome is WriteOutcome.REJECTED:
            slot.attempts = MAX_WRITE_ATTEMPTS  # keep `sent`: do not send the same content again
            if slot.handle is None:
                slot.dead = True
                self._dead = self._dead or slot.index == 0
            return
        slot.sent = previous
        slot.attempts += 1
        if slot.attempts >= MAX_WRITE_ATTEMPTS:
            slot.dead = True
            if slot.handle is None:
                self._dead = True

    # -- typing ------------------------------------------------------------------------------------

    def _typing_needed(self) -> bool:
        if self._dead or self._final_parts is not None or self._text_shown:
            return False
        if not self._slots:
            return True
        first = self._slots[0]
        return first.handle is None and first.queued is None and not first.in_flight

    def _submit_typing(self, delay_s: float) -> None:
        self._scheduler.submit(
            WriteKind.TYPING,
            self._channel,
            self._typing,
            route=TYPING_ROUTE,
            target=(self._key, "typing"),
            reply=self._key,
            delay_s=delay_s,
        )

    async def _typing(self) -> object:
        if not self._typing_needed():
            return SKIPPED
        started = self._scheduler.now()
        try:
            outcome = await self._sink.typing()
        except Exception:
            log.exception("A message sink raised on typing")
            outcome = WriteOutcome.FAILED
        if outcome is WriteOutcome.OK and self._typing_needed():
            elapsed = self._scheduler.now() - started
            self._submit_typing(max(0.0, self._config.typing_refresh_s - elapsed))
        return outcome

    # -- settling ----------------------------------------------------------------------------------

    def _check_settled(self) -> None:
        if self._settled.is_set() or self._final_parts is None:
            return
        parts = self._final_parts
        busy = any(s.queued is not None or s.in_flight for s in self._slots)
        if busy:
            return
        if not self._dead:
            for index, content in enumerate(parts):
                slot = self._slot(index)
                if slot.dead:
                    continue
                if slot.confirmed != content and slot.sent != content:
                    return  # a write is still due (e.g. a post waiting for the previous one)
            if any(s.handle is not None and not s.deleted and not s.dead for s in self._slots[len(parts) :]):
                return
        delivered = not self._dead and all(
            i < len(self._slots) and self._slots[i].confirmed == content for i, content in enumerate(parts)
        )
        if self._files:
            delivered = (
                delivered and len(self._slots) >= len(parts) and self._slots[len(parts) - 1].files_sent
            )
        assert self._outcome is not None
        self._result = StreamResult(
            self._outcome, self._final_text, self.message_ids, delivered, self._terminal
        )
        self._scheduler.end_reply(self._key)
        self._settled.set()
