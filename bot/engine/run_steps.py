"""A turn's steps as it runs: its tool events made into `TurnStep`s, each kept as its call ends.

The engine hands the recorder every event a backend yields, so function calls (run by the tool loop)
and hosted tools (reported from the model's stream) are recorded in one place, whatever the backend.
A function call's duration is measured where it runs; a hosted call has none of its own, so the time
between its started and finished events (the stream's item added and done) stands in. A hosted call
is kept once the next event shows nothing more of it will come (the code interpreter's code and
logs follow its finished event).

Steps are written by the turn's own writer task, in order, so the reply never waits for the database
(during an outage each write can wait for the reconnection); the turn's end waits for the writer a
short while (`CLOSE_WITHIN_S`), then gives up on what is left. A step that cannot be written is
logged and left out: the steps are a glance, and the turn goes on without them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from bot.engine.events import CodeRun, ToolFinished, ToolStarted, TurnEvent
from bot.errors import DatabaseUnavailableError
from bot.storage.turn_steps import StepKind, StepOutcome, TurnStep, TurnStepStore

log = logging.getLogger(__name__)

DECLINED_CODES = frozenset({"declined", "timed_out"})
"""A side effect the person did not confirm (said no, or did not answer in time): nothing was done."""
CANCELLED_RESULT = "The turn stopped before this call finished."
NO_OUTPUT = "(no output)"
CLOSE_WITHIN_S = 2.0
"""How long the turn's end waits for its steps still being written: the reply's last post waits too."""


@dataclass(frozen=True, slots=True)
class _Open:
    """A call that started and has not finished yet."""

    kind: StepKind
    name: str
    arguments: str
    started_at: float
    """Wall clock (unix seconds), as stored."""
    began: float
    """Monotonic, for the duration."""


class _Done:
    """Put after the turn's last step: the writer stops once it has written everything before it."""


class StepRecorder:
    """One turn's steps, recorded under `turn_id` in the order its calls started (see `TurnStepStore`).

    `observe` only queues; `close` at the turn's end waits for the writes up to `close_within_s`.
    """

    def __init__(self, store: TurnStepStore, turn_id: int, *, close_within_s: float = CLOSE_WITHIN_S) -> None:
        self._store = store
        self._turn_id = turn_id
        self._close_within_s = close_within_s
        self._open: dict[str, _Open] = {}
        self._pending: tuple[str, TurnStep] | None = None
        """A finished hosted call (its call id and step), kept when the next event comes."""
        self._queue: asyncio.Queue[tuple[int, TurnStep] | _Done] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._queued = 0
        self._failed = 0
        self.count = 0
        """Steps written so far: the rows a Steps button will find."""

    def observe(self, event: TurnEvent) -> None:
        """Take the turn's next event; a step that ended is queued for writing."""
        wall, clock = time.time(), time.monotonic()  # before anything else: when this event came
        if self._pending is not None:
            call_id, step = self._pending
            self._pending = None
            if isinstance(event, CodeRun) and event.call_id == call_id:
                self._keep(_with_code(step, event))
                return
            self._keep(step)
        if isinstance(event, ToolStarted):
            self._open[event.call_id] = _Open(
                _kind(event.function_call), event.name, event.arguments, wall, clock
            )
        elif isinstance(event, ToolFinished):
            step = self._finished(event, clock)
            if step.kind == "hosted":
                self._pending = (event.call_id, step)
            else:
                self._keep(step)

    async def close(self) -> None:
        """The turn ended: a hosted call still held is kept, calls that never finished are recorded as
        cancelled, and the writer gets up to `close_within_s` to write what is queued.

        It returns at once, without suspending, when every step was written already. Cancelling the
        caller does not cut the wait short (it is bounded): the steps are written, then the
        cancellation is raised.
        """
        if self._pending is not None:
            _, step = self._pending
            self._pending = None
            self._keep(step)
        unfinished, self._open = self._open, {}
        now = time.monotonic()
        for call in unfinished.values():
            self._keep(
                TurnStep(
                    kind=call.kind,
                    name=call.name,
                    arguments=call.arguments,
                    outcome="cancelled",
                    result=CANCELLED_RESULT,
                    started_at=call.started_at,
                    duration_s=now - call.began,
                )
            )
        writer = self._writer
        if writer is None:
            return
        if self.count + self._failed == self._queued:
            writer.cancel()  # idle, waiting for a step that will not come
            return
        self._queue.put_nowait(_Done())
        cancelled: asyncio.CancelledError | None = None
        waiting = asyncio.ensure_future(asyncio.wait({writer}, timeout=self._close_within_s))
        while not waiting.done():
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError as exc:  # /stop or a shutdown: the wait is bounded anyway
                cancelled = exc
        if not writer.done():
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            unwritten = self._queued - self.count - self._failed
            log.warning(
                "%d step(s) of turn %d were not kept: the database did not take them within %.1f s",
                unwritten,
                self._turn_id,
                self._close_within_s,
            )
        if cancelled is not None:
            raise cancelled

    def _finished(self, event: ToolFinished, now: float) -> TurnStep:
        opened = self._open.pop(event.call_id, None)
        duration_s = event.duration_s
        if duration_s is None and opened is not None:
            duration_s = now - opened.began
        # Without a started event, it began its duration ago.
        started_at = opened.started_at if opened is not None else time.time() - (duration_s or 0.0)
        return TurnStep(
            kind=_kind(event.function_call),
            name=event.name,
            arguments=event.arguments or (opened.arguments if opened is not None else ""),
            outcome=_outcome(event),
            result=event.detail or event.summary or NO_OUTPUT,
            started_at=started_at,
            duration_s=duration_s,
        )

    def _keep(self, step: TurnStep) -> None:
        """Queue `step` as the turn's next one (its ordinal is its place in the queue)."""
        self._queue.put_nowait((self._queued, step))
        self._queued += 1
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_in_order(), name=f"turn {self._turn_id} steps")

    async def _write_in_order(self) -> None:
        while not isinstance(item := await self._queue.get(), _Done):
            ordinal, step = item
            try:
                await self._store.add(self._turn_id, ordinal, step)
            except DatabaseUnavailableError:
                self._failed += 1
                log.warning(
                    "Could not record step %d of turn %d: the database is unreachable", ordinal, self._turn_id
                )
            except Exception:  # the steps are a glance: a step the database refused is left out
                self._failed += 1
                log.exception("Could not record step %d of turn %d", ordinal, self._turn_id)
            else:
                self.count += 1


def _kind(function_call: bool) -> StepKind:
    return "function" if function_call else "hosted"


def _outcome(event: ToolFinished) -> StepOutcome:
    if event.ok:
        return "ok"
    return "declined" if event.error_code in DECLINED_CODES else "error"


def _with_code(step: TurnStep, run: CodeRun) -> TurnStep:
    """A code interpreter's step with the code it ran and what it printed."""
    logs = run.logs.strip()
    if step.outcome != "ok":
        result = f"{step.result}: {logs}" if logs else step.result
    else:
        result = logs or NO_OUTPUT
    return replace(step, arguments=run.code or step.arguments, result=result)
