"""One Discord write budget for every process of the bot, kept in Redis, with a safe fallback.

Discord's global limit (about 50 requests a second) counts every process of a bot token together, so
K processes each keeping under 45 a second could send 45*K. With ``BOT_REDIS_URL`` they draw from one
budget instead: a Lua script, atomic in Redis, keeps a sliding-window log (a sorted set) of slots per
bot token, on Redis' own clock (``TIME``: the processes' clocks never meet). A slot is held from its
grant (just before the write starts) until ``window`` after the write's response, as Discord counts
it; a slot whose response never came (its process died) is freed ``IN_FLIGHT_BOUND_S`` after its
grant. A request may be granted part of a batch; when none, the answer says when a slot frees.

Fairness: a process that was refused slots marks itself waiting for two windows. While another
process waits, a process already holding its equal share of the window (cap / waiting processes,
rounded up) is refused: max-min fairness. A process alone may use the whole cap (below).

Without Redis each of the K processes (``[discord] process_count``) keeps to ``process_share``: 1/K of
the budget, locally. Every process that draws from Redis beats there (a sorted set
``<key>:processes``, process id -> Redis ``TIME``): each acquire beats, and a timer beats every
``BEAT_INTERVAL_S`` while the process is idle. A process is alive while its last beat is younger than
``BEATS_TO_LIVE`` intervals, and the script lowers the shared cap by the share of each configured
process not alive: ``cap = limit - max(0, K - alive) * (limit // K)``. So while one of the K is silent
(cut off from Redis alone, still starting, on probation, or dead) the others leave its 1/K unused,
whatever it is doing; when all K beat, the cap is the whole limit. K is the caller's own
``process_count``: the one setting that also fixes its own fallback share, so the share it reserves
for a silent process is the share that process would send; a largest-K-seen kept in Redis would need
an expiry of its own and is no safer while the processes disagree on K (a mistake in the deployment).
A process that stops cleanly takes its beat out at ``close()``: it sends nothing more, and the others
hold back its share as for any silent process until it is back (or K is lowered): with K configured
they cannot tell a stop from a cut. A dead process's beat expires; its share stays reserved, as
without Redis.

When Redis is lost mid-run (refused, timed out, reset), the process falls back to its 1/K, logs one
warning, and no write is lost: writes only wait. The switch itself needs care: the others may still
count it alive and draw the whole limit, and the slots it held in Redis free there as they free in
its own window, so reusing them unseen could overrun. So it starts nothing new (``SWITCHING``) until
its last beat has expired in Redis (``BEATS_TO_LIVE * BEAT_INTERVAL_S`` after the last call that may
have beaten returned, answered or failed) and one window more: by then every other process keeps to
``limit - (limit // K)`` with everything granted before that out of every window its writes fall in,
so the sum stays within the limit throughout, whether it lost Redis alone or with the others. With
the defaults the pause is 2.5 s.

Redis is probed again every ``PROBE_INTERVAL_S``. When it answers, the process records the slots its
own window holds into Redis (replacing any it left there) and logs one info, but keeps to its 1/K for
a probation of one probe interval and one window before it draws from Redis again: the other processes
that fell back find Redis within one probe interval and record their slots too, and until then Redis
does not see what they send, so drawing the whole remainder from Redis could overrun them. During the
probation its own writes are recorded in Redis without asking, so processes already back see them,
and it does not beat: the others keep its share reserved (it may use that share unasked) until it
draws from Redis again, and its first acquire then beats and is counted in the same atomic step.
The beat is the only way back to the whole limit: a process heard from again gets its share back
only once everything it sends is asked of Redis.

Limit: a beat is recorded when Redis runs the call, and the silence counts from when the call
returned or timed out; a request held in the network past its timeout and delivered later would beat
late, and the others would count that process alive for up to one beat TTL more (not handled: it
needs the beat to carry a deadline on Redis' clock).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import AppConfig, Secrets
from bot.discord.render.scheduler.core import GLOBAL_WINDOW_S
from bot.metrics import BotMetrics

log = logging.getLogger(__name__)

IN_FLIGHT_BOUND_S = 10.0
"""A granted slot whose response was never reported (its process died) is freed after this long."""
PROBE_INTERVAL_S = 2.0
"""How often a process that lost Redis asks again whether it is back."""
REDIS_TIMEOUT_S = 0.5
"""Longest wait for one Redis command or connection: past it Redis counts as lost."""
CLOCK_MARGIN_S = 0.002
"""Added to each slot's hold: Redis' clock is the host's wall clock, the loop's a monotonic one, and
the wall clock may be slewed by a little; a slot freed early by that would let a window hold one more."""
WAITING_WINDOWS = 2
BEAT_INTERVAL_S = 0.5
"""How often an idle process that draws from Redis says it is alive there (its acquires say so too)."""
BEATS_TO_LIVE = 3
"""A process counts as alive while its last beat is younger than this many beat intervals."""
"""A refused process counts as waiting (for fairness) for this many windows after its last refusal."""

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""What losing Redis looks like: refused, reset, timed out (the budget's own script errors are bugs)."""

_ACQUIRE = """
-- Times are microseconds of Redis' clock.
-- KEYS: the slot log (zset member -> when it frees), the waiting processes (hash pid -> until when),
-- the beats (zset pid -> its last beat)
-- ARGV: pid, want, limit, window, in-flight bound, first slot number, force (1: grant all, no beat:
-- the process is on probation), backlog (writes this process has queued in all: it waits while it
-- gets fewer), the beats' time to live, the process count K of the deployment
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local log, waiting = KEYS[1], KEYS[2]
local pid, want, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local window, bound, first, force = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local backlog, ttl, count = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
redis.call('ZREMRANGEBYSCORE', log, '-inf', now)
local beats = KEYS[3]
if force ~= '1' then redis.call('ZADD', beats, now, pid) end
redis.call('ZREMRANGEBYSCORE', beats, '-inf', now - ttl - 1)
local silent = math.max(0, count - redis.call('ZCARD', beats))
local cap = math.max(0, limit - silent * math.max(1, math.floor(limit / count)))
local prefix = pid .. '|'
local held = redis.call('ZRANGE', log, 0, -1)
local mine = 0
for _, member in ipairs(held) do
  if string.sub(member, 1, #prefix) == prefix then mine = mine + 1 end
end
local others = 0
local marks = redis.call('HGETALL', waiting)
for i = 1, #marks, 2 do
  if tonumber(marks[i + 1]) <= now then redis.call('HDEL', waiting, marks[i])
  elseif marks[i] ~= pid then others = others + 1 end
end
local room = cap - #held
if others > 0 then room = math.min(room, math.ceil(cap / (others + 1)) - mine) end
local granted = math.max(0, math.min(want, room))
if force == '1' then granted = want end
for i = 0, granted - 1 do redis.call('ZADD', log, now + bound, prefix .. (first + i)) end
local retry = -1
if granted < backlog then
  redis.call('HSET', waiting, pid, now + {waiting_windows} * window)
else
  redis.call('HDEL', waiting, pid)
end
if granted < want then
  local earliest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  retry = window
  if earliest[2] then retry = math.min(window, tonumber(earliest[2]) - now) end
  retry = math.max(retry, 1000)
end
redis.call('PEXPIRE', log, math.ceil((bound + window) / 1000))
redis.call('PEXPIRE', waiting, math.ceil({waiting_windows} * window / 1000))
redis.call('PEXPIRE', beats, math.ceil(ttl / 1000))
return {granted, retry}
""".replace("{waiting_windows}", str(WAITING_WINDOWS))

_BEAT = """
-- KEYS: the beats; ARGV: pid, the beats' time to live (microseconds)
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000))
return 0
"""

_DONE = """
-- KEYS: the slot log; ARGV: window (microseconds), then the slots whose writes got their response now
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return 0
"""

_RECORD = """
-- KEYS: the slot log; ARGV: pid, in-flight bound, count of in-flight slots, their members,
-- then the microseconds until each finished write of this process leaves the window
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local log, pid, bound, running = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local prefix = pid .. '|'
for _, member in ipairs(redis.call('ZRANGE', log, 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then redis.call('ZREM', log, member) end
end
for i = 1, running do redis.call('ZADD', log, now + bound, ARGV[3 + i]) end
for i = 4 + running, #ARGV do
  redis.call('ZADD', log, now + tonumber(ARGV[i]), prefix .. 'r' .. (i - 3 - running))
end
redis.call('PEXPIRE', log, math.ceil(bound / 1000) + 1000)
return 0
"""


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def process_share(per_s: int, process_count: int) -> int:
    """This process's part of the budget when the processes cannot share one: 1/K, at least 1."""
    return max(1, per_s // max(1, process_count))


def budget_key(token: str) -> str:
    """The Redis key of a bot token's budget: a hash, never the token (the braces keep both of the
    budget's keys on one Redis Cluster slot)."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:16]
    return f"discord:budget:{{{digest}}}"


def redis_client(url: str) -> aioredis.Redis:
    """A client that fails fast (no retries, short timeouts): a lost Redis means the fallback at once."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def shared_write_budget(config: AppConfig, secrets: Secrets, metrics: BotMetrics) -> SharedBudget | None:
    """The budget shared through ``[redis] url`` (None without one: the process keeps to its share).

    The client connects lazily: a Redis down at start is the fallback, not a failed start.
    """
    url = config.redis.url
    if url is None:
        metrics.discord_budget_mode(shared=False)
        return None
    return SharedBudget(
        redis_client(url),
        key=budget_key(secrets.discord_token.get_secret_value()),
        per_s=config.streaming.global_writes_per_s,
        window_s=GLOBAL_WINDOW_S,
        process_count=config.discord.processes,
        metrics=metrics,
    )


class BudgetMode(Enum):
    SHARED = "shared"
    SWITCHING = "switching"
    """Just lost Redis: nothing new starts until its beat there has expired and one window more."""
    FALLBACK = "fallback"
    PROBATION = "probation"
    """Redis is back: still 1/K locally (writes recorded in Redis) until the others are back too."""


@dataclass(frozen=True, slots=True)
class Holdings:
    """What this process's window holds: slots of writes in flight, and when finished ones leave it."""

    running: Sequence[str]
    finished_remaining_s: Sequence[float]


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to ``acquire``.

    ``limited``: at most ``len(slots)`` writes may start now, each tied to one slot (Redis granted
    them, or recorded them during the probation); otherwise only the local cap applies (no Redis).
    """

    slots: tuple[str, ...]
    limited: bool
    retry_after_s: float | None = None
    """When not all that was asked for was granted: how long until a slot frees."""


class SharedBudget:
    """The shared budget as the write scheduler's driver sees it; see the module docstring.

    Times are the driver's loop clock; only durations cross to Redis, whose own clock keeps the log.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str,
        per_s: int,
        window_s: float,
        process_count: int,
        probe_interval_s: float = PROBE_INTERVAL_S,
        beat_interval_s: float = BEAT_INTERVAL_S,
        metrics: BotMetrics | None = None,
    ) -> None:
        self._client = client
        self._keys = [key, f"{key}:waiting", f"{key}:processes"]
        self.per_s = per_s
        self.window_s = window_s
        self.process_count = process_count
        self.fallback_cap = process_share(per_s, process_count)
        self.probe_interval_s = probe_interval_s
        self.beat_interval_s = beat_interval_s
        self.beat_ttl_s = BEATS_TO_LIVE * beat_interval_s
        self._metrics = metrics
        self.process_id = uuid.uuid4().hex[:12]
        self._numbers = itertools.count()
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._done: Any = client.register_script(_DONE)
        self._record: Any = client.register_script(_RECORD)
        self._beat: Any = client.register_script(_BEAT)
        self.mode = BudgetMode.SHARED
        self._mode_until = 0.0
        """End of SWITCHING or PROBATION; the next probe in FALLBACK."""
        self._beaten_at = -math.inf
        """When an answer last said this process's beat was in Redis."""
        self._beat_bound = -math.inf
        """The latest time a beat of this process may have reached Redis (answered or failed since)."""
        self._beater: asyncio.Task[None] | None = None
        self._epoch = 0
        """Counts the switches: a failure of a call begun before the last one says nothing new."""
        self._holdings: Callable[[], Holdings] = lambda: Holdings((), ())
        self._report_mode()

    def attach(self, holdings: Callable[[], Holdings]) -> None:
        """How the budget reads this process's window (the driver's writes), for the switches."""
        self._holdings = holdings

    def new_slot(self) -> str:
        return f"{self.process_id}|{next(self._numbers)}"

    @property
    def shared(self) -> bool:
        return self.mode is BudgetMode.SHARED

    def local_cap(self, now: float) -> int:
        """The cap the scheduler's core keeps to now (Redis gates it further while shared)."""
        self._advance(now)
        if self.mode is BudgetMode.SHARED:
            return self.per_s
        if self.mode is BudgetMode.SWITCHING:
            return 0
        return self.fallback_cap

    def next_change(self, now: float) -> float | None:
        """When the mode may change by itself (end of a switch or probation, next probe)."""
        self._advance(now)
        return None if self.mode is BudgetMode.SHARED else self._mode_until

    async def acquire(self, want: int, now: float, *, backlog: int = 0) -> Grant:
        """Slots for up to ``want`` writes starting now (``want`` may be 0: then it only probes).

        ``backlog``: the writes queued in all; while it gets fewer the process counts as waiting.
        """
        self._advance(now)
        self._keep_beating()
        if self.mode is BudgetMode.FALLBACK and now >= self._mode_until:
            await self._probe(now)
        if want <= 0 or self.mode in (BudgetMode.SWITCHING, BudgetMode.FALLBACK):
            return Grant((), limited=False)
        first = next(self._numbers)
        for _ in range(want - 1):
            next(self._numbers)
        force = self.mode is BudgetMode.PROBATION
        epoch = self._epoch
        try:
            granted, retry_us = await self._acquire(
                keys=self._keys,
                args=[
                    self.process_id,
                    want,
                    self.per_s,
                    _micros(self.window_s + CLOCK_MARGIN_S),
                    _micros(IN_FLIGHT_BOUND_S),
                    first,
                    "1" if force else "0",
                    max(backlog, want),
                    _micros(self.beat_ttl_s),
                    self.process_count,
                ],
            )
        except REDIS_FAILURES as exc:
            if not force:
                self._beat_ended(answered=False)
            self._lost(self._clock(), exc, epoch)
            return Grant((), limited=False)
        if not force:
            self._beat_ended(answered=True)
        slots = tuple(f"{self.process_id}|{first + i}" for i in range(int(granted)))
        retry = int(retry_us) / 1_000_000 if int(retry_us) >= 0 else None
        return Grant(slots, limited=True, retry_after_s=retry)

    async def give_back(self, slots: Sequence[str], now: float) -> None:
        """Slots granted but not used: free at once."""
        if not slots or self.mode in (BudgetMode.SWITCHING, BudgetMode.FALLBACK):
            return
        epoch = self._epoch
        try:
            await self._client.zrem(self._keys[0], *slots)
        except REDIS_FAILURES as exc:
            self._lost(now, exc, epoch)

    async def done(self, slots: Sequence[str], now: float) -> None:
        """The writes of ``slots`` got their response: each frees one window from now."""
        if not slots or self.mode in (BudgetMode.SWITCHING, BudgetMode.FALLBACK):
            return
        epoch = self._epoch
        try:
            await self._done(keys=self._keys[:1], args=[_micros(self.window_s + CLOCK_MARGIN_S), *slots])
        except REDIS_FAILURES as exc:
            self._lost(now, exc, epoch)

    async def close(self) -> None:
        """Stop beating and take this process's beat out of Redis (see the module docstring)."""
        if self._beater is not None:
            self._beater.cancel()
            await asyncio.gather(self._beater, return_exceptions=True)
            self._beater = None
        if self.mode is BudgetMode.SHARED:
            try:
                await self._client.zrem(self._keys[2], self.process_id)
            except REDIS_FAILURES as exc:
                log.debug("Could not take this process's beat out of Redis: %s", exc)
        await self._client.aclose()

    # -- the heartbeat -----------------------------------------------------------------------------

    @property
    def silence_s(self) -> float:
        """How long a process that lost Redis starts nothing new: until its last beat has expired in
        Redis (so the others hold back its share) and one window more (so their grants from before
        that have left every window its fallback writes fall in)."""
        return self.beat_ttl_s + self.window_s + CLOCK_MARGIN_S

    def _keep_beating(self) -> None:
        """Start the beat timer on the running loop, once."""
        if self._beater is None or self._beater.done():
            self._beater = asyncio.get_running_loop().create_task(
                self._beat_while_idle(), name="discord-budget-heartbeat"
            )

    async def _beat_while_idle(self) -> None:
        """Every beat interval, beat unless an acquire did within the last half of it."""
        while True:
            await asyncio.sleep(self.beat_interval_s)  # a timer: the next beat is due then
            now = self._clock()
            self._advance(now)
            if self.mode is not BudgetMode.SHARED or now - self._beaten_at < self.beat_interval_s / 2:
                continue
            epoch = self._epoch
            try:
                await self._beat(keys=self._keys[2:], args=[self.process_id, _micros(self.beat_ttl_s)])
            except REDIS_FAILURES as exc:
                self._beat_ended(answered=False)
                self._lost(self._clock(), exc, epoch)
                continue
            self._beat_ended(answered=True)

    def _beat_ended(self, *, answered: bool) -> None:
        """A call that beats returned: its beat (if any) reached Redis before now, so a silence
        counts from now at the latest."""
        now = self._clock()
        if answered:
            self._beaten_at = now
        self._beat_bound = max(self._beat_bound, now)
        if self.mode is BudgetMode.SWITCHING:
            self._mode_until = max(self._mode_until, now + self.silence_s)

    @staticmethod
    def _clock() -> float:
        """The driver's clock (its loop's), read when an answer comes: Redis answers take time."""
        return asyncio.get_running_loop().time()

    # -- switching ---------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if self.mode is BudgetMode.SWITCHING and now >= self._mode_until:
            self.mode = BudgetMode.FALLBACK
            self._mode_until = now  # probe at once: the outage may have been a blip
        elif self.mode is BudgetMode.PROBATION and now >= self._mode_until:
            self.mode = BudgetMode.SHARED
            self._report_mode()
            log.debug("Process %s draws from the shared Discord budget again", self.process_id)

    def _lost(self, now: float, exc: BaseException, epoch: int) -> None:
        if self._metrics is not None:
            self._metrics.redis_failed()
        if epoch != self._epoch or self.mode in (BudgetMode.SWITCHING, BudgetMode.FALLBACK):
            return
        self._epoch += 1
        self.mode = BudgetMode.SWITCHING
        self._mode_until = max(now, self._beat_bound) + self.silence_s
        self._report_mode()
        log.warning(
            "Redis is unreachable (%s): process %s keeps to 1/%d of the Discord budget (%d writes a"
            " window) until it is back",
            type(exc).__name__,
            self.process_id,
            self.process_count,
            self.fallback_cap,
        )

    async def _probe(self, now: float) -> None:
        """Redis back? Record this process's window there and start the probation."""
        # Connections opened before the loss are dead (a restarted Redis reset them): start afresh.
        await self._client.connection_pool.disconnect()
        holdings = self._holdings()
        try:
            await self._record(
                keys=self._keys[:1],
                args=[
                    self.process_id,
                    _micros(IN_FLIGHT_BOUND_S),
                    len(holdings.running),
                    *holdings.running,
                    *(max(1, _micros(left + CLOCK_MARGIN_S)) for left in holdings.finished_remaining_s),
                ],
            )
        except REDIS_FAILURES as exc:
            if self._metrics is not None:
                self._metrics.redis_failed()
            log.debug("Redis still unreachable: %s", exc)
            self._mode_until = now + self.probe_interval_s
            return
        self.mode = BudgetMode.PROBATION
        self._epoch += 1
        self._mode_until = now + self.probe_interval_s + self.window_s
        log.info(
            "Redis is back: process %s recorded its %d writes in the window there and keeps to its"
            " share for %.1f s more",
            self.process_id,
            len(holdings.running) + len(holdings.finished_remaining_s),
            self.probe_interval_s + self.window_s,
        )

    def _report_mode(self) -> None:
        if self._metrics is not None:
            self._metrics.discord_budget_mode(self.mode is BudgetMode.SHARED)
