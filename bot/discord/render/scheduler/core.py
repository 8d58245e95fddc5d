"""The write scheduler's decisions: pure and synchronous, every method takes ``now``.

No asyncio here: tested on a fake clock, and readable on its own. The rules are listed in the
package's docstring (``bot/discord/render/scheduler/__init__.py``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

log = logging.getLogger(__name__)

GLOBAL_PER_S = 45
"""Writes started per rolling second, whole bot (Discord's global limit is about 50)."""
GLOBAL_WINDOW_S = 1.0
EDIT_INTERVAL_S = 1.0
"""Least time between two refresh edits of one message."""
URGENT_RESERVE = 5
"""Global starts per window that refreshes and typing leave to final writes and first posts."""
TYPING_MAX_PER_S = 10
"""Typing starts only while fewer writes than this started in the last window."""
CHANNEL_LIMIT = 5
CHANNEL_WINDOW_S = 5.0
"""Discord's documented per-channel limits: 5 message creates and 5 edits per 5 s."""
FINAL_RESERVE = 1
"""Slots of each channel bucket that only final writes may use, so a finished answer goes at once."""
ADAPTIVE_RESERVE_SHARE = 0.5
"""Share of the FINAL/FIRST starts in the current window also kept free for more of them: finals come
in waves (replies started together finish together); 0 gives refreshes the most, 1 finals the fastest."""
MIN_WAKE_S = 0.001
"""Shortest sleep of the driver, against busy-looping on float edges."""
REPLY_FORGET_S = 120.0
"""A reply nobody ended is forgotten after this long without writes."""
SWEEP_EVERY_WRITES = 256
"""How often (in finished writes) idle buckets, timestamps and replies are swept."""

POST_ROUTE = "post"
EDIT_ROUTE = "edit"
TYPING_ROUTE = "typing"
THREAD_ROUTE = "thread"
DELETE_ROUTE = "delete"
WEBHOOK_POST_ROUTE = "webhook_post"
WEBHOOK_EDIT_ROUTE = "webhook_edit"
WEBHOOK_DELETE_ROUTE = "webhook_delete"
"""A reply's writes through a channel's webhook: keyed by the webhook's id, in the webhook's buckets."""
WEBHOOK_LIMIT = 5
WEBHOOK_WINDOW_S = 2.0
"""Discord's bucket of each webhook route: 5 requests per 2 seconds per webhook, shared by every thread
of its channel. (Webhooks may also post 30 messages a minute in one channel or thread; a thread has one
reply at a time, so that is left to Discord's 429, which discord.py waits out.)"""
FINAL_ROUTES = frozenset(
    {POST_ROUTE, EDIT_ROUTE, DELETE_ROUTE, WEBHOOK_POST_ROUTE, WEBHOOK_EDIT_ROUTE, WEBHOOK_DELETE_ROUTE}
)
"""The routes of a reply's own messages, the only ones a FINAL write uses."""


class WriteKind(IntEnum):
    """What a write is for; lower values go first."""

    FINAL = 0
    FIRST = 1
    REFRESH = 2
    TYPING = 3


class _Skipped:
    """Returned by a job that decided not to send anything; its budget is given back."""

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Final = _Skipped()

Job = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A bucket's size: ``limit`` writes per ``window_s`` seconds."""

    limit: int
    window_s: float


def _default_route_limits() -> dict[str, RouteLimit]:
    return {
        POST_ROUTE: RouteLimit(CHANNEL_LIMIT, CHANNEL_WINDOW_S),
        EDIT_ROUTE: RouteLimit(CHANNEL_LIMIT, CHANNEL_WINDOW_S),
        WEBHOOK_POST_ROUTE: RouteLimit(WEBHOOK_LIMIT, WEBHOOK_WINDOW_S),
        WEBHOOK_EDIT_ROUTE: RouteLimit(WEBHOOK_LIMIT, WEBHOOK_WINDOW_S),
        WEBHOOK_DELETE_ROUTE: RouteLimit(WEBHOOK_LIMIT, WEBHOOK_WINDOW_S),
    }


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Every knob of the scheduler; the defaults follow Discord's documented limits."""

    global_per_s: int = GLOBAL_PER_S
    global_window_s: float = GLOBAL_WINDOW_S
    edit_interval_s: float = EDIT_INTERVAL_S
    urgent_reserve: int = URGENT_RESERVE
    typing_max_per_s: int = TYPING_MAX_PER_S
    route_limits: Mapping[str, RouteLimit] = field(default_factory=_default_route_limits)
    """Per-channel bucket size by bucket name (a route's name unless ``shared_buckets`` says else)."""
    default_route_limit: RouteLimit = RouteLimit(CHANNEL_LIMIT, CHANNEL_WINDOW_S)
    adaptive_reserve: float = ADAPTIVE_RESERVE_SHARE
    """Also keep for FINAL/FIRST this share of the slots they took in the window (see the docstring)."""
    pace_refreshes: bool = True
    """Space REFRESH and TYPING starts evenly over the window (see the module docstring)."""
    shared_buckets: Mapping[str, str] = field(default_factory=dict)
    """Routes counted in another route's bucket, e.g. ``{"edit": "post"}`` for one bucket per channel."""
    final_reserve: int = FINAL_RESERVE

    def __post_init__(self) -> None:
        if self.global_per_s < 1 or not 0 <= self.urgent_reserve < self.global_per_s:
            raise ValueError("need global_per_s >= 1 and 0 <= urgent_reserve < global_per_s")
        if self.edit_interval_s < 0 or self.global_window_s <= 0:
            raise ValueError("intervals must be positive")

    def bucket_of(self, route: str) -> str:
        return self.shared_buckets.get(route, route)

    def route_limit(self, route: str) -> RouteLimit:
        return self.route_limits.get(self.bucket_of(route), self.default_route_limit)


@dataclass(eq=False, slots=True)
class Write:
    """One outgoing request: what it is for, where it goes, and the job that sends it.

    ``target`` names the message (any hashable; ``None`` for a one-off write), ``reply`` the reply it
    belongs to (for fairness and for dropping typing). The core never looks at ``job``.
    """

    kind: WriteKind
    channel: Hashable
    job: Job | None = None
    route: str = EDIT_ROUTE
    target: Hashable | None = None
    reply: Hashable | None = None
    not_before: float = 0.0
    enqueued_at: float = 0.0
    seq: int = 0
    started_at: float | None = None
    _previous_start: float | None = None

    @property
    def key(self) -> Hashable:
        return self.target if self.target is not None else self


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Where a submitted write ended up: ``write`` is the queued one holding its job."""

    write: Write
    wake: bool
    """Whether something new may be released (a new entry, a more urgent kind or an earlier start)."""
    dropped: tuple[Write, ...] = ()
    """Queued writes this submission made pointless (typing of a reply whose text is on its way)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one Discord response said about rate limits."""

    status: int
    channel: Hashable | None = None
    route: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after_s: float | None = None
    retry_after_s: float | None = None
    is_global: bool = False


@dataclass(slots=True)
class SchedulerStats:
    """Counters for logs and the benchmark."""

    started: Counter[WriteKind] = field(default_factory=Counter)
    refunded: int = 0
    rate_limited: int = 0
    global_rate_limited: int = 0


@dataclass(slots=True)
class _Bucket:
    limit: int
    window_s: float
    expiries: deque[float] = field(default_factory=deque)
    """When each finished write stops counting (response time + window), in order."""
    in_flight: int = 0
    blocked_until: float = 0.0
    hint_left: int = 0
    hint_until: float = 0.0

    def expire(self, now: float) -> None:
        while self.expiries and self.expiries[0] <= now:
            self.expiries.popleft()

    def allowed(self, kind: WriteKind, reserve: int) -> int:
        return self.limit - (0 if kind == WriteKind.FINAL else reserve)

    def has_room(self, kind: WriteKind, reserve: int, now: float) -> bool:
        if now < self.blocked_until:
            return False
        if now < self.hint_until and self.hint_left <= 0:
            return False
        return len(self.expiries) + self.in_flight < self.allowed(kind, reserve)

    def free_at(self, kind: WriteKind, reserve: int, now: float) -> float | None:
        """Earliest time a write of ``kind`` fits, or ``None`` if only a response can free a slot."""
        at = self.blocked_until
        if now < self.hint_until and self.hint_left <= 0:
            at = max(at, self.hint_until)
        free_slots = self.allowed(kind, reserve) - self.in_flight
        if free_slots <= 0:
            return None
        must_expire = len(self.expiries) - free_slots + 1
        if must_expire > 0:
            at = max(at, self.expiries[must_expire - 1])
        return at

    def idle(self, now: float) -> bool:
        return not self.expiries and not self.in_flight and now >= max(self.blocked_until, self.hint_until)


@dataclass(slots=True)
class _Reply:
    refreshes: int = 0
    last_active: float = 0.0
    writes: int = 0
    """Queued and in-flight writes of the reply."""
    urgent: int = 0
    """Queued and in-flight FIRST/FINAL writes: the reply's text is on its way, typing is pointless."""
    joined: bool = False
    """Whether its refresh count was set to the fewest among the others (on its first refresh)."""
    ended: bool = False
    """``end_reply`` was called while writes were still queued: forget it when they are done."""


class SchedulerCore:
    """The pure decision core; see the module docstring. Single-threaded, no I/O, no clock."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.stats = SchedulerStats()
        self._seq = itertools.count()
        self._queued: dict[Hashable, Write] = {}
        self._lanes: dict[WriteKind, dict[Hashable, Write]] = {kind: {} for kind in WriteKind}
        """The queued writes of each kind, in the order they became that kind: with a thousand writes
        queued, releasing and waking look at the few that can go next, not at the whole queue."""
        self._queued_typing: dict[Hashable, dict[Hashable, Write]] = {}
        """The queued TYPING writes of each reply (by key), so dropping them needs no scan of the queue."""
        self._in_flight: set[Hashable] = set()
        self._last_start: dict[Hashable, float] = {}
        self._global_in_flight = 0
        self._global_expiries: deque[tuple[float, bool]] = deque()
        """When each finished write leaves the global window (response + window), in order, and
        whether it was urgent (FINAL/FIRST); writes in flight count as well (``_global_in_flight``)."""
        self._urgent_in_window = 0
        """Urgent writes among those in flight or in the window."""
        self._global_blocked_until = 0.0
        self._global_per_s = self.config.global_per_s
        """The global cap in force: the config's, or a share of it set by ``set_global_cap``."""
        self._urgent_reserve = self.config.urgent_reserve
        self._paced_at = 0.0
        """When the next REFRESH or TYPING may start (pacing)."""
        self._buckets: dict[tuple[Hashable, str], _Bucket] = {}
        self._replies: dict[Hashable, _Reply] = {}
        self._done_count = itertools.count()

    # -- queue -------------------------------------------------------------------------------------

    def submit(self, write: Write, now: float) -> SubmitResult:
        """Queue ``write``, merging it into a queued write for the same target."""
        key = write.key
        existing = self._queued.get(key)
        if existing is not None:
            if existing.channel != write.channel or existing.route != write.route:
                raise ValueError(f"target {key!r} moved between channels or routes")
            existing.job = write.job
            wake = False
            if write.kind < existing.kind:
                if existing.kind > WriteKind.FIRST >= write.kind:
                    self._reply(existing.reply).urgent += 1
                self._unindex_typing(existing)
                del self._lanes[existing.kind][key]
                existing.kind = write.kind
                self._lanes[existing.kind][key] = existing
                wake = True
            if write.not_before < existing.not_before:
                existing.not_before = write.not_before
                wake = True
            merged_away = (
                self._drop_typing(existing.reply) if wake and existing.kind <= WriteKind.FIRST else ()
            )
            return SubmitResult(existing, wake, merged_away)

        known = self._replies.get(write.reply) if write.reply is not None else None
        if write.kind == WriteKind.TYPING and known is not None and known.urgent:
            return SubmitResult(write, False, (write,))
        reply = self._reply(write.reply)
        reply.last_active = now
        if write.kind == WriteKind.REFRESH and not reply.joined:
            reply.refreshes = self._fair_start()
            reply.joined = True
        write.enqueued_at = now
        write.seq = next(self._seq)
        self._queued[key] = write
        self._lanes[write.kind][key] = write
        if write.kind == WriteKind.TYPING:
            self._queued_typing.setdefault(write.reply, {})[key] = write
        reply.writes += 1
        dropped: tuple[Write, ...] = ()
        if write.kind <= WriteKind.FIRST:
            reply.urgent += 1
            dropped = self._drop_typing(write.reply)
        return SubmitResult(write, True, dropped)

    def cancel(self, target: Hashable) -> Write | None:
        """Take a queued (not started) write off the queue; returns it, if there was one."""
        write = self._queued.pop(target, None)
        if write is not None:
            del self._lanes[write.kind][target]
            self._unindex_typing(write)
            self._forget(write)
        return write

    def queued(self) -> list[Write]:
        return list(self._queued.values())

    @property
    def queued_count(self) -> int:
        return len(self._queued)

    def end_reply(self, reply: Hashable) -> None:
        """The reply is finished: forget its refresh count (its queued writes, if any, still run)."""
        state = self._replies.get(reply)
        if state is not None and state.writes <= 0:
            del self._replies[reply]
        elif state is not None:
            state.joined = False
            state.refreshes = 0
            state.ended = True

    # -- the global cap ----------------------------------------------------------------------------

    def set_global_cap(self, per_s: int) -> None:
        """Start at most ``per_s`` writes per window from now on (0 stops starts until raised).

        For a process that has only its share of the bot's budget (``shared_budget``); the urgent
        reserve shrinks in proportion, so refreshes still leave finals their part of the share.
        """
        if per_s < 0:
            raise ValueError("the global cap cannot be negative")
        base = self.config.global_per_s
        self._global_per_s = per_s
        self._urgent_reserve = min(self.config.urgent_reserve * per_s // base, max(per_s - 1, 0))

    @property
    def global_cap(self) -> int:
        return self._global_per_s

    def in_window(self, now: float) -> int:
        """Writes in flight or still counted in the global window."""
        self._expire(now)
        return self._global_used()

    def window_expiries(self, now: float) -> list[float]:
        """When each finished write still in the global window leaves it, in order."""
        self._expire(now)
        return [expiry for expiry, _ in self._global_expiries]

    def releasable(self, now: float) -> int:
        """At least as many writes as ``release(now)`` would start (a bound, not the exact count).

        What a process asks the shared budget for before releasing: asking more only costs a give-back.
        """
        self._expire(now)
        if not self._queued or now < self._global_blocked_until:
            return 0
        count = 0
        used = self._global_used()
        for kind in WriteKind:
            cap = self._global_cap(kind)
            if kind >= WriteKind.REFRESH:
                # paced: one REFRESH or TYPING start moves ``_paced_at`` past now
                if now < self._paced_at:
                    break
                cap = min(cap, used + count + 1) if self.config.pace_refreshes else cap
            for write in self._lanes[kind].values():
                if used + count >= cap:
                    break
                if self._eligible(write, now):
                    count += 1
        return count

    # -- releasing ---------------------------------------------------------------------------------

    def release(self, now: float, max_writes: int | None = None) -> list[Write]:
        """The writes that may start at ``now``, marked started; each must later get ``done``.

        ``max_writes`` bounds how many start (the slots a shared budget granted).
        """
        self._expire(now)
        if not self._queued or now < self._global_blocked_until:
            return []
        limit = len(self._queued) if max_writes is None else max_writes
        released: list[Write] = []
        for kind in WriteKind:  # in priority order; later kinds have smaller caps
            if self._global_used() >= self._global_cap(kind) or len(released) >= limit:
                break
            if kind >= WriteKind.REFRESH and now < self._paced_at:
                break  # only REFRESH and TYPING are left, and they are paced
            lane = self._lanes[kind]
            if kind == WriteKind.REFRESH:
                self._release_refreshes(now, released, limit)
                continue
            for write in tuple(lane.values()):  # FINAL, FIRST and TYPING: first come, first served
                if self._global_used() >= self._global_cap(kind) or len(released) >= limit:
                    break
                if kind == WriteKind.TYPING and now < self._paced_at:
                    break
                if self._eligible(write, now):
                    self._start(write, now)
                    released.append(write)
        return released

    def _release_refreshes(self, now: float, released: list[Write], limit: int) -> None:
        """Start refreshes fairly: fewest refreshes of the reply so far first, then the longest waiting."""
        heap = [
            self._rank(write)
            for write in self._lanes[WriteKind.REFRESH].values()
            if self._eligible(write, now)
        ]
        heapq.heapify(heap)
        while heap:
            entry = heapq.heappop(heap)
            write = entry[-1]
            if entry != (ranked := self._rank(write)):
                heapq.heappush(heap, ranked)  # its reply got a refresh meanwhile: back in line
                continue
            if (
                self._global_used() >= self._global_cap(write.kind)
                or now < self._paced_at
                or len(released) >= limit
            ):
                break
            if not self._bucket(write).has_room(write.kind, self._final_reserve(write), now):
                continue
            self._start(write, now)
            released.append(write)

    def done(self, write: Write, now: float, *, sent: bool = True) -> None:
        """A released write finished (``sent=False``: it sent nothing, so its budget is given back)."""
        self._in_flight.discard(write.key)
        bucket = self._bucket(write)
        bucket.in_flight = max(0, bucket.in_flight - 1)
        urgent = write.kind <= WriteKind.FIRST
        self._global_in_flight = max(0, self._global_in_flight - 1)
        if sent:
            bucket.expire(now)
            bucket.expiries.append(now + bucket.window_s)
            self._global_expiries.append((now + self.config.global_window_s, urgent))
        else:
            self.stats.refunded += 1
            self.stats.started[write.kind] -= 1
            self._urgent_in_window -= urgent
            if now < bucket.hint_until:
                bucket.hint_left += 1
            if write.kind >= WriteKind.REFRESH:
                self._paced_at = min(self._paced_at, now)
            if write._previous_start is None:
                self._last_start.pop(write.key, None)
            else:
                self._last_start[write.key] = write._previous_start
        self._forget(write)
        if write.target is None:
            self._last_start.pop(write.key, None)
        if next(self._done_count) % SWEEP_EVERY_WRITES == SWEEP_EVERY_WRITES - 1:
            self._sweep(now)

    def next_wake(self, now: float) -> float | None:
        """The earliest time a queued write could start; ``None`` if only a ``done`` or a submit can."""
        self._expire(now)
        best: float | None = None
        global_free: dict[WriteKind, float | None] = {}  # per kind, not per write: it scans the window
        # No write can start before the global budget lets the most urgent kind start: once one can
        # start then, the rest of the queue (a thousand finals waiting for the budget) need not be seen.
        urgent_free = self._global_free_at(WriteKind.FINAL, now)
        if urgent_free is None:
            return None  # every write needs a global slot, and only a response can free one
        for kind in WriteKind:
            kind_free = global_free[kind] = self._global_free_at(kind, now)
            if kind_free is None:
                break  # later kinds have smaller caps: none of them can go either
            floor = max(now, self._global_blocked_until, kind_free)
            if kind >= WriteKind.REFRESH:
                floor = max(floor, self._paced_at)
            if best is not None and best <= floor:
                break
            for write in self._lanes[kind].values():
                at = self._ready_at(write, now, global_free)
                if at is not None and (best is None or at < best):
                    best = at
                    if best <= floor:
                        break
        return best

    # -- learning ----------------------------------------------------------------------------------

    def observe(self, seen: Observation, now: float) -> None:
        """Learn from a response: pause on a 429, follow the headers' limit and remaining count."""
        if seen.status == 429:
            self.stats.rate_limited += 1
            wait_s = seen.retry_after_s if seen.retry_after_s is not None else seen.reset_after_s
            if seen.is_global:
                self.stats.global_rate_limited += 1
                self._global_blocked_until = max(self._global_blocked_until, now + (wait_s or 1.0))
            elif seen.channel is not None and seen.route is not None:
                bucket = self._bucket_for(seen.channel, seen.route)
                pause = wait_s if wait_s is not None else bucket.window_s
                bucket.blocked_until = max(bucket.blocked_until, now + pause)
            log.warning("Discord answered 429 (global=%s, retry after %s s)", seen.is_global, wait_s)
            return
        if seen.channel is None or seen.route is None:
            return
        bucket = self._bucket_for(seen.channel, seen.route)
        if seen.limit is not None and seen.limit > 0:
            bucket.limit = seen.limit
        if seen.remaining is not None and seen.reset_after_s is not None:
            # other writes of this bucket still in flight may not be counted in Discord's answer yet
            others = max(0, bucket.in_flight - 1)
            bucket.hint_left = seen.remaining - others
            bucket.hint_until = now + seen.reset_after_s

    # -- internals ---------------------------------------------------------------------------------

    def _reply(self, reply: Hashable | None) -> _Reply:
        if reply is None:
            return _Reply()  # a throwaway: one-off writes have no reply to be fair to
        state = self._replies.get(reply)
        if state is None:
            state = self._replies[reply] = _Reply()
        return state

    def _fair_start(self) -> int:
        """A reply starting to refresh joins at the fewest refreshes among the replies refreshing.

        Joining at zero would let a newcomer take every turn until it caught up with replies that have
        streamed for a while; joining at the fewest puts it in line with the least served.
        """
        return min((r.refreshes for r in self._replies.values() if r.joined), default=0)

    def _drop_typing(self, reply: Hashable | None) -> tuple[Write, ...]:
        if reply is None:
            return ()
        dropped = tuple(self._queued_typing.pop(reply, {}).values())
        for write in dropped:
            del self._queued[write.key]
            del self._lanes[WriteKind.TYPING][write.key]
            self._forget(write)
        return dropped

    def _unindex_typing(self, write: Write) -> None:
        if write.kind != WriteKind.TYPING:
            return
        queued = self._queued_typing.get(write.reply)
        if queued is not None:
            queued.pop(write.key, None)
            if not queued:
                del self._queued_typing[write.reply]

    def _forget(self, write: Write) -> None:
        """One queued or in-flight write of the reply is gone."""
        if write.reply is None:
            return
        state = self._replies.get(write.reply)
        if state is None:
            return
        state.writes -= 1
        if write.kind <= WriteKind.FIRST:
            state.urgent -= 1
        if state.writes <= 0 and (state.ended or not state.joined):
            del self._replies[write.reply]

    def _rank(self, write: Write) -> tuple[int, int, float, int, Write]:
        fairness = (
            self._replies[write.reply].refreshes
            if write.kind == WriteKind.REFRESH and (write.reply in self._replies)
            else 0
        )
        return (int(write.kind), fairness, write.enqueued_at, write.seq, write)

    def _global_cap(self, kind: WriteKind, urgent: int | None = None) -> int:
        """How many starts the window may hold for ``kind`` to start (given ``urgent`` ones in it)."""
        config = self.config
        if kind <= WriteKind.FIRST:
            return self._global_per_s
        cap = self._global_per_s - self._urgent_reserve
        if config.adaptive_reserve:
            cap -= math.ceil(config.adaptive_reserve * (self._urgent_in_window if urgent is None else urgent))
        if kind == WriteKind.TYPING:
            cap = min(cap, config.typing_max_per_s)
        return max(cap, 0)

    def _global_used(self) -> int:
        return self._global_in_flight + len(self._global_expiries)

    def _global_free_at(self, kind: WriteKind, now: float) -> float | None:
        """When the window will let ``kind`` start, if nothing else starts meanwhile; ``None`` if only
        responses to the writes in flight can make room."""
        total, urgent = self._global_used(), self._urgent_in_window
        if total < self._global_cap(kind, urgent):
            return now
        for expiry, was_urgent in self._global_expiries:
            total -= 1
            urgent -= was_urgent
            if total < self._global_cap(kind, urgent):
                return expiry
        return None

    def _eligible(self, write: Write, now: float) -> bool:
        if now < write.not_before or write.key in self._in_flight:
            return False
        if write.kind >= WriteKind.REFRESH and now < self._paced_at:
            return False
        if write.kind == WriteKind.REFRESH:
            last = self._last_start.get(write.key)
            if last is not None and now < last + self.config.edit_interval_s:
                return False
        bucket = self._bucket(write)
        bucket.expire(now)
        return bucket.has_room(write.kind, self._final_reserve(write), now)

    def _ready_at(self, write: Write, now: float, global_free: dict[WriteKind, float | None]) -> float | None:
        if write.key in self._in_flight:
            return None
        at = max(write.not_before, self._global_blocked_until)
        if write.kind >= WriteKind.REFRESH:
            at = max(at, self._paced_at)
        if write.kind == WriteKind.REFRESH:
            last = self._last_start.get(write.key)
            if last is not None:
                at = max(at, last + self.config.edit_interval_s)
        bucket = self._bucket(write)
        bucket.expire(now)
        bucket_at = bucket.free_at(write.kind, self._final_reserve(write), now)
        if bucket_at is None:
            return None
        at = max(at, bucket_at)
        if write.kind not in global_free:
            global_free[write.kind] = self._global_free_at(write.kind, now)
        free = global_free[write.kind]
        return None if free is None else max(at, free)

    def _start(self, write: Write, now: float) -> None:
        del self._queued[write.key]
        del self._lanes[write.kind][write.key]
        self._unindex_typing(write)
        self._in_flight.add(write.key)
        write.started_at = now
        write._previous_start = self._last_start.get(write.key)
        self._last_start[write.key] = now
        self._global_in_flight += 1
        self._urgent_in_window += write.kind <= WriteKind.FIRST
        bucket = self._bucket(write)
        bucket.in_flight += 1
        if now < bucket.hint_until:
            bucket.hint_left -= 1
        if write.kind == WriteKind.REFRESH and write.reply in self._replies:
            self._replies[write.reply].refreshes += 1
        if write.kind >= WriteKind.REFRESH and self.config.pace_refreshes:
            base_cap = self._global_per_s - self._urgent_reserve
            self._paced_at = now + self.config.global_window_s / max(1, base_cap)
        self.stats.started[write.kind] += 1

    def _expire(self, now: float) -> None:
        expiries = self._global_expiries
        while expiries and expiries[0][0] <= now:  # the same value next_wake reports
            self._urgent_in_window -= expiries.popleft()[1]

    def _final_reserve(self, write: Write) -> int:
        """Slots kept for finals in the write's bucket: only where a final can go (a reply's messages);
        kept in the thread-opening bucket, where nothing is FINAL, they would only slow threads down."""
        return self.config.final_reserve if write.route in FINAL_ROUTES else 0

    def _bucket(self, write: Write) -> _Bucket:
        return self._bucket_for(write.channel, write.route)

    def _bucket_for(self, channel: Hashable, route: str) -> _Bucket:
        key = (channel, self.config.bucket_of(route))
        bucket = self._buckets.get(key)
        if bucket is None:
            size = self.config.route_limit(route)
            bucket = self._buckets[key] = _Bucket(size.limit, size.window_s)
        return bucket

    def _sweep(self, now: float) -> None:
        """Forget idle buckets and old per-message timestamps (a long-running bot sees many)."""
        busy = {(w.channel, self.config.bucket_of(w.route)) for w in self._queued.values()}
        for key, bucket in list(self._buckets.items()):
            bucket.expire(now)
            if key not in busy and bucket.idle(now):
                del self._buckets[key]
        horizon = now - self.config.edit_interval_s
        for target, started in list(self._last_start.items()):
            if started < horizon and target not in self._queued and target not in self._in_flight:
                del self._last_start[target]
        for reply, state in list(self._replies.items()):
            if state.writes <= 0 and now - state.last_active > REPLY_FORGET_S:
                del self._replies[reply]


# -- the asyncio driver ------------------------------------------------------------------------------
