"""The thin asyncio driver of ``SchedulerCore``: runs released writes as tasks, sleeps until the next."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Hashable

from bot.discord.render.scheduler.core import (
    MIN_WAKE_S,
    SKIPPED,
    Job,
    Observation,
    SchedulerConfig,
    SchedulerCore,
    SchedulerStats,
    Write,
    WriteKind,
)
from bot.discord.render.scheduler.shared_budget import Holdings, SharedBudget
from bot.metrics import BotMetrics

log = logging.getLogger(__name__)

_KIND_LABELS = {kind: kind.name.lower() for kind in WriteKind}


def _consume_exception(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class WriteScheduler:
    """Runs released writes as concurrent tasks and sleeps until the next may start.

    Time is the running loop's ``time()`` (a virtual-time loop makes tests instant). Construct it
    anywhere; it starts on the first submit, or with ``start()`` inside a running loop.
    """

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        *,
        metrics: BotMetrics | None = None,
        shared_budget: SharedBudget | None = None,
    ) -> None:
        """`metrics` counts the writes Discord took and its 429s, and reads the queue's depth;
        `shared_budget` (Redis) is the global budget of every process of the bot, asked before each
        release (see `shared_budget`)."""
        self.core = SchedulerCore(config)
        self._metrics = metrics
        self._budget = shared_budget
        self._running: dict[Write, str | None] = {}
        """Writes started and not done, with their slot in the shared budget (if any)."""
        if shared_budget is not None:
            shared_budget.attach(self._holdings)
        if metrics is not None:
            metrics.measure_write_queue(lambda: len(self.core.queued()))
        self._futures: dict[Write, asyncio.Future[object]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def config(self) -> SchedulerConfig:
        return self.core.config

    @property
    def stats(self) -> SchedulerStats:
        return self.core.stats

    def now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def start(self) -> None:
        """Start the driver on the running loop (idempotent)."""
        if self._runner is not None and not self._runner.done():
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._runner = self._loop.create_task(self._drive(), name="discord-write-scheduler")

    async def close(self) -> None:
        """Stop: queued writes are cancelled, running ones are cancelled and awaited."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        for write in self.core.queued():
            self.core.cancel(write.key)
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def submit(
        self,
        kind: WriteKind,
        channel: Hashable,
        job: Job,
        *,
        route: str,
        target: Hashable | None = None,
        reply: Hashable | None = None,
        delay_s: float = 0.0,
    ) -> asyncio.Future[object]:
        """Queue a write; the future gets the result of the job run that carries it.

        A write merged into a queued one for the same target shares that one's future (the latest job
        runs). The future is cancelled if the write is dropped or cancelled before it starts.
        """
        self.start()
        assert self._loop is not None and self._wake is not None
        now = self._loop.time()
        write = Write(kind, channel, job, route, target, reply, not_before=now + delay_s)
        result = self.core.submit(write, now)
        for dropped in result.dropped:
            future = self._futures.pop(dropped, None)
            if future is not None:
                future.cancel()
        if result.write in result.dropped:
            cancelled: asyncio.Future[object] = self._loop.create_future()
            cancelled.cancel()
            return cancelled
        future = self._futures.get(result.write)
        if future is None:
            future = self._futures[result.write] = self._loop.create_future()
        if result.wake:
            self._wake.set()
        return future

    async def perform(
        self,
        kind: WriteKind,
        channel: Hashable,
        job: Job,
        *,
        route: str,
        target: Hashable | None = None,
        reply: Hashable | None = None,
    ) -> object:
        """Submit and wait for the result (e.g. the cog's thread creation or an error note)."""
        return await self.submit(kind, channel, job, route=route, target=target, reply=reply)

    def cancel(self, target: Hashable) -> bool:
        """Drop the queued write for ``target`` (a started one runs to its end)."""
        write = self.core.cancel(target)
        if write is None:
            return False
        future = self._futures.pop(write, None)
        if future is not None:
            future.cancel()
        return True

    def end_reply(self, reply: Hashable) -> None:
        """The reply is finished; its fairness state can go (see ``SchedulerCore.end_reply``)."""
        self.core.end_reply(reply)

    def observe(self, seen: Observation) -> None:
        """Feed a response's rate-limit information (see ``rate_limit_trace_config``)."""
        loop = self._loop or asyncio.get_running_loop()
        self.core.observe(seen, loop.time())
        if seen.status == 429 and self._metrics is not None:
            self._metrics.discord_rate_limited_once("global" if seen.is_global else "route")
        if self._wake is not None:
            self._wake.set()

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        while True:
            wake.clear()
            now = loop.time()
            if self._budget is None:
                for write in self.core.release(now):
                    self._launch(write, now, None)
                at = self.core.next_wake(now)
            else:
                at = await self._release_shared(now)
            timer = loop.call_at(max(at, now + MIN_WAKE_S), wake.set) if at is not None else None
            await wake.wait()
            if timer is not None:
                timer.cancel()

    async def _release_shared(self, now: float) -> float | None:
        """Release what both the core and the shared budget allow; the next time to look again."""
        budget = self._budget
        assert budget is not None and self._loop is not None
        self.core.set_global_cap(budget.local_cap(now))
        want = self.core.releasable(now)
        grant = await budget.acquire(want, now, backlog=self.core.queued_count)
        now = self._loop.time()
        self.core.set_global_cap(budget.local_cap(now))  # the answer may have switched the mode
        released = self.core.release(now, len(grant.slots) if grant.limited else None)
        slots = list(grant.slots)
        for write in released:
            self._launch(write, now, slots.pop(0) if slots else None)
        await budget.give_back(slots, now)
        at = self.core.next_wake(now)
        if grant.retry_after_s is not None and at is not None:
            at = max(at, now + grant.retry_after_s)  # Redis said when a slot frees: no busy loop
        change = budget.next_change(now)
        if change is not None:
            at = change if at is None else min(at, change)
        return at

    def _holdings(self) -> Holdings:
        """This process's window, for the shared budget's switches (in-flight writes get a slot)."""
        assert self._budget is not None
        for write, slot in self._running.items():
            if slot is None:
                self._running[write] = self._budget.new_slot()
        running = [slot for slot in self._running.values() if slot is not None]
        now = self.now()
        return Holdings(running, [expiry - now for expiry in self.core.window_expiries(now)])

    def _launch(self, write: Write, now: float, slot: str | None) -> None:
        future = self._futures.pop(write, None)
        if future is None or future.cancelled():
            self.core.done(write, now, sent=False)
            if slot is not None:
                self._give_back_later(slot, now)
            return
        self._running[write] = slot
        assert self._loop is not None
        task = self._loop.create_task(self._execute(write, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, write: Write, future: asyncio.Future[object]) -> None:
        assert self._loop is not None and self._wake is not None and write.job is not None
        try:
            result = await write.job()
        except asyncio.CancelledError:
            self._finish(write, sent=True)
            future.cancel()
            raise
        except Exception as exc:
            log.exception("A Discord write (%s to %r) failed", write.kind.name, write.channel)
            self._finish(write, sent=True)
            self._wake.set()
            if not future.done():
                future.add_done_callback(_consume_exception)
                future.set_exception(exc)
            return
        sent = result is not SKIPPED
        self._finish(write, sent=sent)
        if sent and self._metrics is not None:
            self._metrics.discord_write(_KIND_LABELS[write.kind], write.route)
        self._wake.set()
        if not future.done():
            future.set_result(result)

    def _finish(self, write: Write, *, sent: bool) -> None:
        """The core learns at once; the shared budget's slot is updated (or freed) in the background,
        so a Redis round trip never delays the write's result."""
        assert self._loop is not None
        now = self._loop.time()
        self.core.done(write, now, sent=sent)
        slot = self._running.pop(write, None)
        if slot is None or self._budget is None:
            return
        if sent:
            self._background(self._budget.done([slot], now))
        else:
            self._give_back_later(slot, now)

    def _give_back_later(self, slot: str, now: float) -> None:
        assert self._budget is not None
        self._background(self._budget.give_back([slot], now))

    def _background(self, work: Coroutine[object, object, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
