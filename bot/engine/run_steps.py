"""A turn's steps as it runs: its tool events made into `TurnStep`s, each written as its call ends.

The engine hands the recorder every event a backend yields, so function calls (run by the tool loop)
and hosted tools (reported from the model's stream) are recorded in one place, whatever the backend.
A function call's duration is measured where it runs; a hosted call has none of its own, so the time
between its started and finished events (the stream's item added and done) stands in. A hosted call
is written once the next event shows nothing more of it will come (the code interpreter's code and
logs follow its finished event).
"""

from __future__ import annotations

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


class StepRecorder:
    """One turn's steps, recorded under `turn_id` in the order its calls ended."""

    def __init__(self, store: TurnStepStore, turn_id: int) -> None:
        self._store = store
        self._turn_id = turn_id
        self._open: dict[str, _Open] = {}
        self._pending: tuple[str, TurnStep] | None = None
        """A finished hosted call (its call id and step), written when the next event comes."""
        self._next_ordinal = 0
        self.count = 0
        """Steps written so far."""

    async def observe(self, event: TurnEvent) -> None:
        """Take the turn's next event; a step that ended is written before this returns."""
        if self._pending is not None:
            call_id, step = self._pending
            self._pending = None
            if isinstance(event, CodeRun) and event.call_id == call_id:
                await self._write(_with_code(step, event))
                return
            await self._write(step)
        if isinstance(event, ToolStarted):
            opened = _Open(
                _kind(event.function_call), event.name, event.arguments, time.time(), time.monotonic()
            )
            self._open[event.call_id] = opened
        elif isinstance(event, ToolFinished):
            step = self._finished(event)
            if step.kind == "hosted":
                self._pending = (event.call_id, step)
            else:
                await self._write(step)

    async def close(self) -> None:
        """The turn ended: a hosted call still held is written, and calls that never finished are
        recorded as cancelled."""
        if self._pending is not None:
            _, step = self._pending
            self._pending = None
            await self._write(step)
        unfinished, self._open = self._open, {}
        now = time.monotonic()
        for call in unfinished.values():
            await self._write(
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

    def _finished(self, event: ToolFinished) -> TurnStep:
        opened = self._open.pop(event.call_id, None)
        duration_s = event.duration_s
        if duration_s is None and opened is not None:
            duration_s = time.monotonic() - opened.began
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

    async def _write(self, step: TurnStep) -> None:
        ordinal = self._next_ordinal
        self._next_ordinal += 1
        try:
            await self._store.add(self._turn_id, ordinal, step)
        except DatabaseUnavailableError:  # the steps are a glance: the turn goes on without this one
            log.warning("Could not record step %d of turn %d", ordinal, self._turn_id)
            return
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
