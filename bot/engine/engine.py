"""The conversation engine: one entry point, `reply`, from a user's turn to a stream of events.

It owns the rules every turn obeys, whatever the backend: one response in flight per conversation
(later turns wait in order, bounded), per-user cooldown and queue limits, token budgets, a total
timeout, cancellation, the turn journal and usage accounting. It knows nothing of Discord.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from bot.config import EngineConfig
from bot.engine.events import (
    TERMINAL_EVENTS,
    Busy,
    Cancelled,
    Completed,
    Failed,
    Queued,
    Started,
    TextDelta,
    TurnEvent,
    Usage,
)
from bot.engine.openai_errors import describe_error
from bot.engine.turn import TurnContext, TurnRequest, UserTurn
from bot.process_state import GateFullError, ProcessState, Ticket
from bot.storage import Storage, utc_day
from bot.storage.turns import TurnStatus

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs one turn against a model API; yields events and ends with one terminal event."""

    name: str

    def run(self, request: TurnRequest) -> AsyncIterator[TurnEvent]: ...


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
    ) -> None:
        self._storage = storage
        self._state = state
        self._backends = dict(backends)
        self._config = config

    async def reply(self, key: str, turn: UserTurn, context: TurnContext) -> AsyncIterator[TurnEvent]:
        """Answer `turn` in conversation `key`: events in order, ending with exactly one terminal event.

        Closing the iterator early (the consumer went away) cancels the turn.
        """
        settings = context.settings
        state = self._state
        wait_s = state.cooldowns.remaining_s(context.guild_id, turn.author_id, settings.user_cooldown_s)
        if wait_s > 0:
            yield Failed("cooldown", f"Slow down a little: you can send the next message in {wait_s:.0f} s.")
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
        events: asyncio.Queue[TurnEvent] = asyncio.Queue()
        producer: asyncio.Task[None] | None = None
        try:
            if ticket.ahead:
                yield Queued(ticket.ahead)
            await ticket.wait()
            producer = asyncio.create_task(self._run(key, turn, context, events.put_nowait))
            ticket.task = producer
            while True:
                event = await events.get()
                yield event
                if isinstance(event, TERMINAL_EVENTS):
                    return
        finally:
            if producer is not None and not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            state.lanes.leave(ticket)
            state.pending.remove(context.guild_id, turn.author_id)

    def cancel(self, key: str) -> bool:
        """Stop the reply in progress in this conversation (`/stop`); False if there is none."""
        ticket: Ticket | None = self._state.lanes.active(key)
        if ticket is None or ticket.task is None or ticket.task.done():
            return False
        ticket.task.cancel()
        return True

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
        emit(Started())
        over_budget = await self._budget_refusal(turn, context)
        if over_budget is not None:
            emit(over_budget)
            return
        backend = self._backends.get(context.settings.backend)
        if backend is None:
            emit(
                Failed("internal", f"The `{context.settings.backend}` backend is not configured on this bot.")
            )
            return
        record = await self._storage.conversations.get_or_create(
            key, backend=backend.name, guild_id=context.guild_id, channel_id=context.channel_id
        )
        turn_id = await self._storage.turns.start(
            conversation_key=key,
            guild_id=context.guild_id,
            channel_id=context.channel_id,
            user_id=turn.author_id,
            message_id=turn.message_id,
        )
        request = TurnRequest(
            conversation=record,
            turn=turn,
            context=context,
            turn_id=turn_id,
            metadata=_metadata(context),
        )
        final: TurnEvent
        text = ""
        try:
            async with asyncio.timeout(self._config.turn_timeout_s):
                final = Failed("internal", "The model stopped without an answer.", "")
                async for event in backend.run(request):
                    if isinstance(event, TERMINAL_EVENTS):
                        final = event
                        break
                    if isinstance(event, TextDelta):
                        text += event.text
                    emit(event)
        except asyncio.CancelledError:
            final = Cancelled(text)
        except TimeoutError:
            final = Failed("timeout", "The answer took too long, so I stopped it.", text)
        except GateFullError:
            final = Busy("The bot is very busy right now; please try again in a minute.")
        except Exception as exc:
            kind, reason = describe_error(exc, model=context.settings.model)
            log.log(
                logging.ERROR if kind == "internal" else logging.WARNING,
                "Turn %d in %s failed (%s)",
                turn_id,
                key,
                kind,
                exc_info=exc,
            )
            final = Failed(kind, reason, text)
        usage = final.usage if isinstance(final, Completed | Failed) else Usage()
        await asyncio.shield(
            self._storage.turns.finish(
                turn_id,
                _status_of(final),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
            )
        )
        emit(final)

    async def _budget_refusal(self, turn: UserTurn, context: TurnContext) -> Failed | None:
        """Refuse before calling the model when today's budget is spent, saying when it resets."""
        settings = context.settings
        if not settings.daily_token_budget_user and not settings.daily_token_budget_guild:
            return None
        today = utc_day()
        usage = self._storage.usage
        if settings.daily_token_budget_user:
            used = await usage.user_total(context.guild_id, turn.author_id, since_day=today)
            if used.total_tokens >= settings.daily_token_budget_user:
                return Failed("budget", f"You have used your daily token budget here; {_reset_time()}.")
        if settings.daily_token_budget_guild:
            used = await usage.guild_total(context.guild_id, since_day=today)
            if used.total_tokens >= settings.daily_token_budget_guild:
                return Failed("budget", f"This server has used its daily token budget; {_reset_time()}.")
        return None


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
        return "cancelled"
    return "failed"


def _reset_time(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, int((midnight - now).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    left = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"it resets at 00:00 UTC (in {left})"
