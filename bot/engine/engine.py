"""The conversation engine: one entry point, `reply`, from a user's turn to a stream of events.

It owns the rules every turn obeys, whatever the backend: one response in flight per conversation
(later turns wait in order, bounded; across processes too, by the storage's conversation locks),
per-user cooldown and queue limits, token budgets, a total timeout, cancellation, the turn journal
and usage accounting. It knows nothing of Discord.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import openai

from bot.config import EngineConfig, GuildSettings
from bot.engine.events import (
    TERMINAL_EVENTS,
    Busy,
    Cancelled,
    CancelReason,
    Completed,
    Failed,
    Flagged,
    Queued,
    RoundSpent,
    Started,
    TextDelta,
    TurnEvent,
    Usage,
)
from bot.engine.lanes import Ticket
from bot.engine.openai_errors import describe_error
from bot.engine.run_steps import StepRecorder
from bot.engine.turn import TurnContext, TurnRequest, UserTurn
from bot.errors import DatabaseUnavailableError
from bot.limits import GateFullError, budget_problem, cooldown_problem
from bot.metrics import BotMetrics
from bot.storage import HeldConversation, Storage
from bot.storage.turns import TurnStatus

if TYPE_CHECKING:
    from bot.moderation import ModerationVerdict
    from bot.process_state import ProcessState

log = logging.getLogger(__name__)

RESTARTING = "The bot is restarting; please send your message again in a minute."
"""Why a turn that arrives (or reaches the front of its line) during a shutdown is not started."""


class Backend(Protocol):
    """Answers one turn against a model API; yields events and ends with one terminal event."""

    name: str

    def answer(self, request: TurnRequest) -> AsyncIterator[TurnEvent]: ...


class TurnChecker(Protocol):
    """Moderation of a user's turn before the model sees it (`bot.moderation.Moderator`)."""

    async def check(self, turn: UserTurn, settings: GuildSettings) -> ModerationVerdict: ...


def conversation_key(channel_id: int) -> str:
    """Each Discord thread or DM channel is one conversation; channel ids are unique."""
    return f"channel:{channel_id}"


class ConversationEngine:
    def __init__(
        self,
        *,
        storage: Storage,
        state: ProcessState,
        backends: Mapping[str, Backend],
        config: EngineConfig,
        moderator: TurnChecker | None = None,
        metrics: BotMetrics | None = None,
    ) -> None:
        """`moderator` checks turns in guilds that turned moderation on; None skips the check.
        `metrics` counts turns, their first-token time and tokens (None: a private, unserved one)."""
        self._storage = storage
        self._state = state
        self._backends = dict(backends)
        self._config = config
        self._moderator = moderator
        self._metrics = metrics if metrics is not None else BotMetrics()
        self._closing = False
        self._grace_over = asyncio.Event()
        self._stopping = asyncio.Event()
        """Set with `_closing`: a turn waiting for another process's conversation lock stops waiting."""
        self._running: set[asyncio.Task[None]] = set()
        self._cut_by_shutdown: set[asyncio.Task[None]] = set()

    async def reply(self, key: str, turn: UserTurn, context: TurnContext) -> AsyncGenerator[TurnEvent, None]:
        """Answer `turn` in conversation `key`: events in order, ending with exactly one terminal event.

        Closing the iterator early (the consumer went away) cancels the turn.
        """
        if self._closing:
            yield Busy(RESTARTING)
            return
        settings = context.settings
        state = self._state
        waiting = cooldown_problem(
            state.cooldowns, settings, guild_id=context.guild_id, user_id=turn.author_id
        )
        if waiting is not None:
            yield Failed("cooldown", waiting)
            return
        if state.pending.count(context.guild_id, turn.author_id) >= settings.max_queued_turns_per_user:
            yield Busy("You already have messages waiting for an answer; please wait for them first.")
            return
        ticket = state.lanes.enter(key, max_waiting=self._config.max_queued_turns)
        if ticket is None:
            yield Busy("This conversation has too many messages waiting; please try again in a moment.")
            return
        state.cooldowns.mark(context.guild_id, turn.author_id)
        state.pending.add(context.guild_id, turn.author_id)
        events: asyncio.Queue[TurnEvent | _ProducerEnded] = asyncio.Queue()
        producer: asyncio.Task[None] | None = None
        held: HeldConversation | None = None
        ended = False
        try:
            if ticket.ahead:
                yield Queued(ticket.ahead)
            await ticket.wait()
            if self._closing:  # it waited behind a turn that ended during a shutdown: not started
                yield Busy(RESTARTING)
                return
            # This process's lane is ours; the conversation may still be another process's.
            try:
                held = await self._storage.conversation_locks.try_hold(key)
                if held is None:
                    if not ticket.ahead:
                        yield Queued(1)
                    held = await self._wait_for_other_process(key)
            except DatabaseUnavailableError as exc:
                yield Failed("connection", str(exc))
                return
            if held is None:  # a shutdown came while it waited
                yield Busy(RESTARTING)
                return
            producer = asyncio.create_task(self._run(key, turn, context, events.put_nowait))
            producer.add_done_callback(lambda _: events.put_nowait(_ProducerEnded()))
            self._running.add(producer)
            producer.add_done_callback(self._running.discard)
            ticket.task = producer
            text = ""
            while True:
                event = await events.get()
                if isinstance(event, _ProducerEnded):  # stopped before it said how the turn ended
                    yield Cancelled(text, reason=self._cancel_reason(producer))
                    return
                if isinstance(event, TextDelta):
                    text += event.text
                ended = isinstance(event, TERMINAL_EVENTS)
                yield event
                if ended:
                    return
        finally:
            try:
                if producer is not None and not producer.done() and not ended:
                    producer.cancel()
                    await asyncio.gather(producer, return_exceptions=True)
                if held is not None:
                    await held.release()
            finally:
                state.lanes.leave(ticket)
                state.pending.remove(context.guild_id, turn.author_id)
            if producer is not None and not producer.done():
                await asyncio.gather(producer, return_exceptions=True)  # the journal's last write

    async def _wait_for_other_process(self, key: str) -> HeldConversation | None:
        """The conversation's lock once the process answering there lets go; None on a shutdown."""
        holding = asyncio.ensure_future(self._storage.conversation_locks.hold(key))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({holding, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not holding.done():
                holding.cancel()
                await asyncio.gather(holding, return_exceptions=True)
        if holding.cancelled():
            return None
        if self._stopping.is_set():
            if holding.exception() is None:
                await holding.result().release()
            return None
        return holding.result()

    def cancel(self, key: str) -> bool:
        """Stop the reply in progress in this conversation (`/stop`); False if there is none."""
        ticket: Ticket | None = self._state.lanes.active(key)
        if ticket is None or ticket.task is None or ticket.task.done():
            return False
        ticket.task.cancel()
        return True

    async def wait_idle(self) -> None:
        """Until every turn has ended, its consumer let go and its journal entry is written.

        The consumer lets go before the journal's last write (the reply's end need not wait for it),
        so the turns' own tasks are waited for too: a shutdown closes the database right after.
        """
        await self._state.lanes.wait_idle()
        while self._running:
            await asyncio.wait(list(self._running))

    async def shut_down(self, *, grace_s: float, wrap_up_s: float) -> int:
        """Refuse new turns, give those in progress `grace_s` to finish, then cut the rest short.

        A turn cut short ends with `Cancelled(reason="shutdown")` and is journalled 'interrupted' (so
        the next start does not report it as lost); its consumer then has up to `wrap_up_s` to show
        that ending and let go. Turns waiting in line are not started. Returns how many were cut.
        """
        self._closing = True
        self._stopping.set()
        if await self._idle_within(grace_s, unless=self._grace_over):
            return 0
        cut = [task for task in self._running if not task.done()]
        for task in cut:
            self._cut_by_shutdown.add(task)
            task.cancel()
        if cut:
            log.warning("Shutting down: %d turn(s) still running after the grace were cut short", len(cut))
        if not await self._idle_within(wrap_up_s):
            log.warning("Shutting down: replies still writing after %.1f s are left unfinished", wrap_up_s)
        return len(cut)

    def end_grace(self) -> None:
        """Cut a shutdown's grace short (a second stop signal): turns still running stop now."""
        self._grace_over.set()

    async def _idle_within(self, timeout_s: float, *, unless: asyncio.Event | None = None) -> bool:
        """Whether every turn ended within `timeout_s` (giving up early once `unless` is set)."""
        idle = asyncio.ensure_future(self.wait_idle())
        waiters = {idle} if unless is None else {idle, asyncio.ensure_future(unless.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return idle.done() and not idle.cancelled()

    def _cancel_reason(self, task: asyncio.Task[None] | None) -> CancelReason:
        return "shutdown" if task in self._cut_by_shutdown else "stopped"

    def is_busy(self, key: str) -> bool:
        return self._state.lanes.active(key) is not None

    async def reset(self, key: str) -> bool:
        """Start a fresh conversation here (`/reset`); the old one is forgotten."""
        return await self._storage.conversations.reset(key)

    async def _run(
        self,
        key: str,
        turn: UserTurn,
        context: TurnContext,
        emit: _Emit,
    ) -> None:
        """The turn itself, in its own task so `/stop` can cancel it without touching the consumer."""
        started_at = time.monotonic()
        emit(Started())
        self._metrics.turns_started.inc()
        try:
            admitted = await self._admit(turn, context, emit)
            if not isinstance(admitted, Failed):
                request = await self._open_turn(key, turn, context, admitted)
        except DatabaseUnavailableError as exc:
            admitted = Failed("connection", str(exc))
        except asyncio.CancelledError:
            self._count_ending(Cancelled(reason=self._cancel_reason(asyncio.current_task())))
            raise
        except Exception:
            self._metrics.turn_failed("internal", 0, 0)
            raise
        if isinstance(admitted, Failed):
            self._count_ending(admitted)
            emit(admitted)
            return
        steps = StepRecorder(self._storage.turn_steps, request.turn_id)
        final = await self._answer(admitted, request, emit, started_at, steps)
        # From here the turn's ending always happens (shown, counted, journalled), even if a /stop or a
        # shutdown lands meanwhile: the answer had already ended; the task ends cancelled after it.
        cancelled: asyncio.CancelledError | None = None
        try:
            await steps.close()  # before the answer ends: its Steps button finds them all (bounded)
        except asyncio.CancelledError as exc:
            cancelled = exc
        if isinstance(final, Completed | Failed | Cancelled):
            final = replace(final, turn_id=request.turn_id, steps=steps.count)
        self._count_ending(final)
        usage = final.usage if isinstance(final, Completed | Failed | Cancelled) else Usage()
        emit(final)  # first: the reply's last writes need not wait for the journal's transaction
        journal = asyncio.ensure_future(self._journal_end(request.turn_id, final, usage))
        while not journal.done():
            try:
                await asyncio.shield(journal)
            except asyncio.CancelledError as exc:  # bounded by the database's own reconnection
                cancelled = exc
        if cancelled is not None:
            raise cancelled

    async def _journal_end(self, turn_id: int, final: TurnEvent, usage: Usage) -> None:
        try:
            await self._storage.turns.finish(
                turn_id,
                _status_of(final),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
            )
        except DatabaseUnavailableError:
            # The reply was shown; its journal entry stays 'running' until a later start reports it.
            log.warning("Turn %d ended but the database was unreachable to journal it", turn_id)

    async def _admit(self, turn: UserTurn, context: TurnContext, emit: _Emit) -> Backend | Failed:
        """The backend that may answer the turn, or why nothing goes to a model: the budget, moderation
        (a flagged turn goes on, and says so) and the guild's choice of backend."""
        over_budget = await budget_problem(
            self._storage.usage, context.settings, guild_id=context.guild_id, user_id=turn.author_id
        )
        if over_budget is not None:
            return Failed("budget", over_budget)
        if self._moderator is not None and context.settings.moderation != "off":
            verdict = await self._moderator.check(turn, context.settings)
            if verdict.action == "block":
                return Failed("moderation", verdict.reason)  # nothing was sent to the model
            if verdict.action == "flag":
                emit(Flagged(verdict.categories))
        backend = self._backends.get(context.settings.backend)
        if backend is None:
            return Failed(
                "internal", f"The `{context.settings.backend}` backend is not configured on this bot."
            )
        return backend

    async def _open_turn(
        self, key: str, turn: UserTurn, context: TurnContext, backend: Backend
    ) -> TurnRequest:
        """The conversation's record and the turn's journal entry ('running' until it ends)."""
        record = await self._storage.conversations.get_or_create(
            key, backend=backend.name, guild_id=context.guild_id, channel_id=context.channel_id
        )
        turn_id = await self._storage.turns.start(
            conversation_key=key,
            guild_id=context.guild_id,
            channel_id=context.channel_id,
            user_id=turn.author_id,
            message_id=turn.message_id,
            run_id=self._state.run_id,
        )
        return TurnRequest(
            conversation=record,
            turn=turn,
            context=context,
            turn_id=turn_id,
            metadata=_metadata(context),
        )

    def _count_ending(self, final: TurnEvent) -> None:
        """A turn's terminal event in the metrics: its outcome and the tokens it used."""
        metrics = self._metrics
        if isinstance(final, Completed):
            metrics.turn_completed(final.usage.input_tokens, final.usage.output_tokens)
        elif isinstance(final, Failed):
            metrics.turn_failed(final.kind, final.usage.input_tokens, final.usage.output_tokens)
        elif isinstance(final, Busy):
            metrics.turn_ended_otherwise("busy")
        elif isinstance(final, Cancelled):
            metrics.turn_ended_otherwise("interrupted" if final.reason == "shutdown" else "cancelled")

    async def _answer(
        self, backend: Backend, request: TurnRequest, emit: _Emit, started_at: float, steps: StepRecorder
    ) -> TurnEvent:
        """The backend's events until its terminal one, which is returned: also the one a timeout, a
        cancellation, a full model-call gate or an error ends the turn with. The first text's delay
        from `started_at` (monotonic) goes to the time-to-first-token histogram; the tools' steps are
        recorded as they end (`steps`)."""
        final: TurnEvent
        text = ""
        spent = Usage()  # the model calls that ended: what a turn that breaks or stops still cost
        first_token = True
        try:
            async with asyncio.timeout(self._config.turn_timeout_s):
                final = Failed("internal", "The model stopped without an answer.", "")
                async for event in backend.answer(request):
                    if isinstance(event, TERMINAL_EVENTS):
                        final = event
                        break
                    if isinstance(event, RoundSpent):
                        spent = spent + event.usage
                        continue
                    if isinstance(event, TextDelta):
                        if first_token and event.text:
                            first_token = False
                            self._metrics.time_to_first_token_s.observe(time.monotonic() - started_at)
                        text += event.text
                    emit(event)
                    steps.observe(event)
        except asyncio.CancelledError:
            final = Cancelled(text, reason=self._cancel_reason(asyncio.current_task()), usage=spent)
        except TimeoutError:
            final = Failed("timeout", "The answer took too long, so I stopped it.", text, spent)
        except GateFullError:
            final = Busy("The bot is very busy right now; please try again in a minute.")
        except DatabaseUnavailableError as exc:  # the backend's history or a tool's records
            final = Failed("connection", str(exc), text, spent)
        except Exception as exc:
            kind, reason = describe_error(exc, model=request.context.settings.model)
            if isinstance(exc, openai.APIError) and kind != "internal":
                # The model server's answer, understood: what it said is enough (no traceback).
                log.warning(
                    "Turn %d in %s failed (%s): %s", request.turn_id, request.conversation.key, kind, exc
                )
            else:
                log.log(
                    logging.ERROR if kind == "internal" else logging.WARNING,
                    "Turn %d in %s failed (%s)",
                    request.turn_id,
                    request.conversation.key,
                    kind,
                    exc_info=exc,
                )
            final = Failed(kind, reason, text, spent)
        return final


class _ProducerEnded:
    """Put in the event queue when the turn's task ends, so a turn cancelled early still ends."""


class _Emit(Protocol):
    def __call__(self, event: TurnEvent, /) -> None: ...


def _metadata(context: TurnContext) -> dict[str, str]:
    metadata = {"channel_id": str(context.channel_id)}
    if context.guild_id is not None:
        metadata["guild_id"] = str(context.guild_id)
    return metadata


def _status_of(event: TurnEvent) -> TurnStatus:
    if isinstance(event, Completed):
        return "completed"
    if isinstance(event, Cancelled):
        return "interrupted" if event.reason == "shutdown" else "cancelled"
    return "failed"
