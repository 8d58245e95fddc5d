"""Limits: the per-member cooldown and queue, daily token budgets, and the bot's model-call gate.

Conversation turns (the engine) and the commands that call a model directly (/imagine, /remember,
/search, /extract, through `MeteredCalls`) obey the same rules: the guild's per-user cooldown (shared,
so a member cannot dodge it by switching command), its daily token budgets, and one global cap on
concurrent model calls. Usage of direct calls is recorded in the same daily table the budgets read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

from bot.config import GuildSettings
from bot.errors import UserFacingError
from bot.storage.usage import UsageStore, utc_day


class GateFullError(Exception):
    """Too many turns already wait for a model call slot."""


class ModelCallGate:
    """A global cap on concurrent model calls, with a bounded waiting room."""

    def __init__(self, max_concurrent: int, max_waiting: int) -> None:
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._max_waiting = max_waiting
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._semaphore.locked():
            if self._waiting >= self._max_waiting:
                raise GateFullError
            self._waiting += 1
            try:
                await self._semaphore.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._semaphore.acquire()
        try:
            yield
        finally:
            self._semaphore.release()


class Cooldowns:
    """When each member last started a turn, per guild (the per-user cooldown)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[int, int], float] = {}

    def remaining_s(self, guild_id: int | None, user_id: int, cooldown_s: float) -> float:
        last = self._last.get((guild_id or 0, user_id))
        if last is None or cooldown_s <= 0:
            return 0.0
        return max(0.0, cooldown_s - (self._clock() - last))

    def mark(self, guild_id: int | None, user_id: int) -> None:
        self._last[(guild_id or 0, user_id)] = self._clock()


class PendingTurns:
    """How many turns each member has waiting or running, per guild (the per-user queue limit)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, int], int] = {}

    def count(self, guild_id: int | None, user_id: int) -> int:
        return self._counts.get((guild_id or 0, user_id), 0)

    def add(self, guild_id: int | None, user_id: int) -> None:
        key = (guild_id or 0, user_id)
        self._counts[key] = self._counts.get(key, 0) + 1

    def remove(self, guild_id: int | None, user_id: int) -> None:
        key = (guild_id or 0, user_id)
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)


class LimitReachedError(UserFacingError):
    """A cooldown or a daily budget stops this request; the message says until when."""


class Metered(Protocol):
    """What a direct model call reports of its cost (image, extraction results)."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


M = TypeVar("M", bound=Metered)


class MeteredCalls:
    """Direct model calls from commands, under the rules a conversation turn obeys.

    One place checks the member's cooldown and budgets, waits at the bot's global model-call gate, and
    records what the call cost in the daily table the budgets read: the commands only say what to call.
    """

    def __init__(self, usage: UsageStore, cooldowns: Cooldowns, gate: ModelCallGate) -> None:
        self._usage = usage
        self._cooldowns = cooldowns
        self._gate = gate

    @asynccontextmanager
    async def allowance(
        self, settings: GuildSettings, *, guild_id: int | None, user_id: int
    ) -> AsyncIterator[None]:
        """The member's limits, then a slot at the global gate, held for the block.

        For work that records its own usage (knowledge embeddings, counted also when they run as a tool).
        """
        await claim_allowance(self._usage, self._cooldowns, settings, guild_id=guild_id, user_id=user_id)
        try:
            async with self._gate.slot():
                yield
        except GateFullError:
            raise LimitReachedError("The bot is very busy right now; please try again in a minute.") from None

    async def call(
        self,
        settings: GuildSettings,
        work: Callable[[], Awaitable[M]],
        *,
        guild_id: int | None,
        user_id: int,
    ) -> M:
        """Check the limits, run `work` in a gate slot, and record the tokens it reports."""
        async with self.allowance(settings, guild_id=guild_id, user_id=user_id):
            result = await work()
        if result.input_tokens or result.output_tokens:
            await self._usage.record(
                guild_id=guild_id,
                user_id=user_id,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
            )
        return result


async def claim_allowance(
    usage: UsageStore,
    cooldowns: Cooldowns,
    settings: GuildSettings,
    *,
    guild_id: int | None,
    user_id: int,
) -> None:
    """Refuse (raise) when the member must wait or a budget is spent; otherwise start their cooldown."""
    problem = cooldown_problem(
        cooldowns, settings, guild_id=guild_id, user_id=user_id
    ) or await budget_problem(usage, settings, guild_id=guild_id, user_id=user_id)
    if problem is not None:
        raise LimitReachedError(problem)
    cooldowns.mark(guild_id, user_id)


def cooldown_problem(
    cooldowns: Cooldowns, settings: GuildSettings, *, guild_id: int | None, user_id: int
) -> str | None:
    """Why the member must wait before the next request, or None."""
    wait_s = cooldowns.remaining_s(guild_id, user_id, settings.user_cooldown_s)
    if wait_s > 0:
        return f"Slow down a little: you can ask again in {max(1, round(wait_s))} s."
    return None


async def budget_problem(
    usage: UsageStore, settings: GuildSettings, *, guild_id: int | None, user_id: int
) -> str | None:
    """Why today's token budget (the member's or the server's) stops a request, or None."""
    today = utc_day()
    if settings.daily_token_budget_user:
        used = await usage.user_total(guild_id, user_id, since_day=today)
        if used.total_tokens >= settings.daily_token_budget_user:
            return f"You have used your daily token budget here; {reset_time()}."
    if settings.daily_token_budget_guild:
        used = await usage.guild_total(guild_id, since_day=today)
        if used.total_tokens >= settings.daily_token_budget_guild:
            return f"This server has used its daily token budget; {reset_time()}."
    return None


def reset_time(now: dt.datetime | None = None) -> str:
    """When the daily budgets start again, as a phrase."""
    now = now or dt.datetime.now(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, int((midnight - now).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    left = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"it resets at 00:00 UTC (in {left})"
