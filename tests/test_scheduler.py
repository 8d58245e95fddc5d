"""The write scheduler's decision core on a fake clock: budget, buckets, fairness, priorities, learning."""

from __future__ import annotations

import functools
import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.discord.render.scheduler import (
    EDIT_ROUTE,
    POST_ROUTE,
    THREAD_ROUTE,
    TYPING_ROUTE,
    Observation,
    RouteLimit,
    SchedulerConfig,
    SchedulerCore,
    Write,
    WriteKind,
    parse_rate_limit,
)

FINAL, FIRST, REFRESH, TYPING = WriteKind.FINAL, WriteKind.FIRST, WriteKind.REFRESH, WriteKind.TYPING


@dataclass
class Started:
    at: float
    kind: WriteKind
    channel: Hashable
    route: str
    target: Hashable
    reply: Hashable
    submitted_at: float


@dataclass
class Sim:
    """A discrete-event run of the core: writes complete ``latency_s`` after they start."""

    core: SchedulerCore
    latency_s: float = 0.02
    now: float = 0.0
    starts: list[Started] = field(default_factory=list)
    _events: list[tuple[float, int, Callable[[], object]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _submitted: dict[int, float] = field(default_factory=dict)
    on_done: Callable[[Write], None] | None = None

    def at(self, when: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def submit(self, write: Write) -> Write:
        result = self.core.submit(write, self.now)
        if write.kind == FINAL:  # measure a final from its own submission, even when merged
            self._submitted[id(result.write)] = self.now
        else:
            self._submitted.setdefault(id(result.write), self.now)
        return result.write

    def run(self, until: float = 60.0) -> None:
        while True:
            for write in self.core.release(self.now):
                self.starts.append(
                    Started(
                        self.now,
                        write.kind,
                        write.channel,
                        write.route,
                        write.key,
                        write.reply,
                        self._submitted.pop(id(write), self.now),
                    )
                )
                self.at(self.now + self.latency_s, self._finisher(write))
            wake = self.core.next_wake(self.now)
            candidates = [t for t in (wake, self._events[0][0] if self._events else None) if t is not None]
            if not candidates:
                return
            nxt = min(candidates)
            if nxt > until:
                return
            assert nxt >= self.now
            self.now = nxt
            while self._events and self._events[0][0] <= self.now:
                _, _, action = heapq.heappop(self._events)
                action()

    def _finisher(self, write: Write) -> Callable[[], None]:
        def finish() -> None:
            self.core.done(write, self.now)
            if self.on_done is not None:
                self.on_done(write)

        return finish


def assert_within_budget(starts: list[Started], config: SchedulerConfig) -> None:
    """Check every window: global by start time, each channel bucket by start time."""
    _assert_sliding(sorted(s.at for s in starts), config.global_per_s, config.global_window_s, "all")
    by_bucket: dict[tuple[Hashable, str], list[float]] = defaultdict(list)
    for s in starts:
        by_bucket[(s.channel, config.bucket_of(s.route))].append(s.at)
    for (channel, bucket), times in by_bucket.items():
        size = config.route_limit(bucket)
        _assert_sliding(sorted(times), size.limit, size.window_s, f"channel {channel} {bucket}")


def _assert_sliding(times: list[float], limit: int, window_s: float, what: str) -> None:
    """Every window [t, t + window_s) starting at a write holds at most ``limit`` writes."""
    end = 0
    for i, t in enumerate(times):
        while end < len(times) and times[end] < t + window_s:
            end += 1
        assert end - i <= limit, f"{what}: {end - i} writes in the {window_s}s after {t}"


def assert_edit_interval(starts: list[Started], config: SchedulerConfig) -> None:
    by_target: dict[Hashable, list[Started]] = defaultdict(list)
    for s in starts:
        by_target[s.target].append(s)
    for writes in by_target.values():
        for before, after in itertools.pairwise(writes):
            if after.kind == REFRESH:
                assert after.at - before.at >= config.edit_interval_s - 1e-9


@dataclass
class Reply:
    """A streaming reply as the streamer drives the core: first post, coalesced refreshes, final."""

    index: int
    sim: Sim
    visible: bool = False
    posted: bool = False
    finished: bool = False
    refreshes: int = 0

    @property
    def target(self) -> tuple[int, int]:
        return (self.index, 0)

    def delta(self) -> None:
        if not self.posted:
            self.posted = True
            self.sim.submit(Write(FIRST, self.index, route=POST_ROUTE, target=self.target, reply=self.index))
        elif self.visible:
            self.sim.submit(Write(REFRESH, self.index, target=self.target, reply=self.index))

    def finish(self) -> None:
        self.finished = True
        route = EDIT_ROUTE if self.posted else POST_ROUTE
        self.sim.submit(Write(FINAL, self.index, route=route, target=self.target, reply=self.index))


def run_streaming_load(
    replies: int,
    config: SchedulerConfig,
    *,
    deltas: int = 40,
    stream_s: float = 4.0,
    start_spread_s: float = 0.0,
    latency_s: float = 0.02,
    typing_delay_s: float | None = 0.5,
) -> tuple[Sim, list[Reply]]:
    """The issue's benchmark shape: each reply in its own channel, the model streams ``deltas`` pieces."""
    sim = Sim(SchedulerCore(config), latency_s=latency_s)
    people = [Reply(i, sim) for i in range(replies)]

    def on_done(write: Write) -> None:
        if write.kind == FIRST:
            assert isinstance(write.reply, int)
            people[write.reply].visible = True
        if write.kind == FINAL:
            sim.core.end_reply(write.reply)

    sim.on_done = on_done
    for person in people:
        begin = start_spread_s * person.index / max(1, replies)
        if typing_delay_s is not None:
            typing = Write(
                TYPING,
                person.index,
                route=TYPING_ROUTE,
                target=("typing", person.index),
                reply=person.index,
                not_before=begin + typing_delay_s,
            )
            sim.at(begin, functools.partial(sim.submit, typing))
        for k in range(1, deltas + 1):
            sim.at(begin + stream_s * k / deltas, person.delta)
        sim.at(begin + stream_s + 1e-6, person.finish)
    sim.run()
    return sim, people


def test_issue_10_goals_at_100_concurrent_replies() -> None:
    config = SchedulerConfig()
    sim, _people = run_streaming_load(100, config)
    assert_within_budget(sim.starts, config)
    assert_edit_interval(sim.starts, config)
    firsts = [s for s in sim.starts if s.kind == FIRST]
    finals = [s for s in sim.starts if s.kind == FINAL]
    refreshes = Counter(s.reply for s in sim.starts if s.kind == REFRESH)
    assert len(firsts) == len(finals) == 100
    assert max(s.at for s in firsts) + sim.latency_s <= 2.4, "first text of every reply by 2.4 s"
    assert max(s.at for s in finals) + sim.latency_s <= 6.8, "every reply complete by 6.8 s"
    per_second = Counter(int(s.at) for s in sim.starts)
    assert max(per_second.values()) <= config.global_per_s
    # the budget left (45/s minus 100 first posts minus the urgent reserve, each write holding its
    # slot for its 20 ms round trip too) is spent on refresh edits, spread evenly: no reply had a
    # second refresh while another had none
    counts = [refreshes.get(i, 0) for i in range(100)]
    assert sum(counts) >= 58 and max(counts) - min(counts) <= 1, counts
    # typing never went out: every model answered before typing was due
    assert not [s for s in sim.starts if s.kind == TYPING]


def test_single_reply_gets_an_edit_a_second_and_an_immediate_final() -> None:
    config = SchedulerConfig()
    sim, _ = run_streaming_load(1, config, deltas=40, stream_s=4.0)
    refresh_times = [s.at for s in sim.starts if s.kind == REFRESH]
    assert len(refresh_times) >= 3
    assert_edit_interval(sim.starts, config)
    (final,) = [s for s in sim.starts if s.kind == FINAL]
    assert final.at - final.submitted_at < 1e-6, "the final goes at once: a slot is kept for it"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=6, allow_nan=False),  # when
            st.sampled_from(list(WriteKind)),
            st.integers(min_value=0, max_value=4),  # channel
            st.integers(min_value=0, max_value=6),  # message within the channel
            st.floats(min_value=0, max_value=0.8),  # delay before it may start
        ),
        max_size=250,
    ),
    st.integers(min_value=2, max_value=12),
    st.floats(min_value=0.0, max_value=0.4),
)
def test_never_over_budget_in_any_window(
    submissions: list[tuple[float, WriteKind, int, int, float]], global_per_s: int, latency_s: float
) -> None:
    config = SchedulerConfig(global_per_s=global_per_s, urgent_reserve=1, typing_max_per_s=2)
    sim = Sim(SchedulerCore(config), latency_s=latency_s)
    for when, kind, channel, message, delay in submissions:
        route = TYPING_ROUTE if kind == TYPING else EDIT_ROUTE
        target = (route, channel, message)

        def submit(
            kind: WriteKind = kind,
            channel: int = channel,
            target: Hashable = target,
            route: str = route,
            delay: float = delay,
        ) -> None:
            sim.submit(
                Write(kind, channel, route=route, target=target, reply=target, not_before=sim.now + delay)
            )

        sim.at(when, submit)
    sim.run(until=1000)
    assert_within_budget(sim.starts, config)
    assert_edit_interval(sim.starts, config)
    assert not sim.core.queued(), "everything submitted eventually went out"


def _core(**kwargs: object) -> SchedulerCore:
    return SchedulerCore(SchedulerConfig(**kwargs))  # type: ignore[arg-type]


def test_finals_jump_the_queue() -> None:
    core = _core(global_per_s=3, urgent_reserve=0)
    for i in range(5):
        core.submit(Write(REFRESH, i, target=("m", i), reply=i), 0.0)
    for i in range(5, 8):
        core.submit(Write(FIRST, i, target=("m", i), reply=i), 0.0)
    final = core.submit(Write(FINAL, 9, target=("m", 9), reply=9), 0.0).write
    released = core.release(0.0)
    assert released[0] is final
    assert [w.kind for w in released] == [FINAL, FIRST, FIRST]
    assert core.next_wake(0.0) is None  # the second is full, until the responses say when it ends
    for write in released:
        core.done(write, 0.0)
    assert core.next_wake(0.0) == 1.0


def test_first_posts_go_before_refreshes_of_visible_replies() -> None:
    core = _core(global_per_s=2, urgent_reserve=0)
    core.submit(Write(REFRESH, 1, target="a", reply=1), 0.0)
    core.submit(Write(FIRST, 2, target="b", reply=2), 0.5)
    core.submit(Write(FIRST, 3, target="c", reply=3), 0.6)
    assert [w.target for w in core.release(0.6)] == ["b", "c"]


def test_final_goes_at_once_despite_the_edit_interval() -> None:
    core = _core()
    refresh = core.submit(Write(REFRESH, 1, target="m", reply=1), 0.0).write
    assert core.release(0.0) == [refresh]
    core.done(refresh, 0.05)
    core.submit(Write(REFRESH, 1, target="m", reply=1), 0.1)
    assert core.release(0.1) == [], "a refresh waits for the interval"
    final = core.submit(Write(FINAL, 1, target="m", reply=1), 0.2).write
    assert core.release(0.2) == [final]
    assert not core.queued(), "the final replaced the queued refresh"


def test_final_waits_for_the_write_in_flight_on_the_same_message() -> None:
    core = _core()
    refresh = core.submit(Write(REFRESH, 1, target="m", reply=1), 0.0).write
    assert core.release(0.0) == [refresh]
    final = core.submit(Write(FINAL, 1, target="m", reply=1), 0.01).write
    assert core.release(0.01) == [], "edits of one message never overtake each other"
    assert core.next_wake(0.01) is None  # only the response can free it
    core.done(refresh, 0.03)
    assert core.release(0.03) == [final]


def test_refreshes_are_coalesced_per_message_and_keep_their_place() -> None:
    core = _core()
    jobs = []
    for n in range(10):

        async def job(n: int = n) -> int:
            return n

        jobs.append(job)
        core.submit(Write(REFRESH, 1, job=job, target="m", reply=1), 0.1 * n)
    (queued,) = core.queued()
    assert queued.job is jobs[-1], "the newest content replaces the queued one"
    assert queued.enqueued_at == 0.0, "and keeps the place of the first"


def test_refresh_at_most_once_per_interval_per_message() -> None:
    config = SchedulerConfig(edit_interval_s=1.0)
    sim = Sim(SchedulerCore(config), latency_s=0.01)
    for k in range(100):
        sim.at(0.05 * k, lambda: sim.submit(Write(REFRESH, 1, target="m", reply=1)))
    sim.run()
    times = [s.at for s in sim.starts]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert len(times) >= 4


def test_edit_interval_is_configurable() -> None:
    config = SchedulerConfig(edit_interval_s=2.5, route_limits={EDIT_ROUTE: RouteLimit(100, 5.0)})
    sim = Sim(SchedulerCore(config), latency_s=0.01)
    for k in range(100):
        sim.at(0.05 * k, lambda: sim.submit(Write(REFRESH, 1, target="m", reply=1)))
    sim.run()
    times = [s.at for s in sim.starts]
    assert all(b - a >= 2.5 for a, b in itertools.pairwise(times))


def test_refresh_order_is_fewest_refreshes_first_then_oldest() -> None:
    core = _core(global_per_s=1, urgent_reserve=0)

    def refresh(reply: str, now: float) -> Write:
        return core.submit(Write(REFRESH, reply, target=reply, reply=reply), now).write

    def serve(now: float) -> Write:
        (write,) = core.release(now)
        core.done(write, now)
        return write

    a = refresh("a", 0.0)
    assert serve(0.0) is a  # a: 1 refresh
    b = refresh("b", 0.5)  # b joins at the fewest among refreshing replies: 1
    a = refresh("a", 0.6)
    assert serve(1.0) is b, "equal counts: the longest waiting goes first"
    c = refresh("c", 1.5)  # c joins at 1 (a has 1, b has 2)
    b = refresh("b", 1.6)
    assert serve(2.0) is a, "a (1 refresh, waiting since 0.6) before c (1, since 1.5) and b (2)"
    assert serve(3.0) is c
    assert serve(4.0) is b


def test_no_reply_starves_under_heavy_load() -> None:
    config = SchedulerConfig(global_per_s=10, urgent_reserve=0)
    sim = Sim(SchedulerCore(config), latency_s=0.05)
    for reply in range(60):
        for k in range(200):  # keep asking every 50 ms for 10 s
            refresh = Write(REFRESH, reply, target=("m", reply), reply=reply)
            sim.at(0.05 * k, functools.partial(sim.submit, refresh))
    sim.run(until=10.0)
    counts = Counter(s.reply for s in sim.starts)
    assert len(counts) == 60
    assert max(counts.values()) - min(counts.values()) <= 1
    assert_within_budget(sim.starts, config)
    # no reply waits much longer than everyone else's turn: 60 replies at 10/s is a turn every ~6 s
    by_reply: dict[Hashable, list[float]] = defaultdict(list)
    for s in sim.starts:
        by_reply[s.reply].append(s.at)
    for times in by_reply.values():
        assert all(b - a <= 6.5 for a, b in itertools.pairwise(times))


def test_typing_is_dropped_when_the_first_text_is_on_its_way() -> None:
    core = _core()
    typing = Write(TYPING, 1, route=TYPING_ROUTE, target=("typing", 1), reply=1, not_before=0.5)
    core.submit(typing, 0.0)
    result = core.submit(Write(FIRST, 1, target=("m", 1), reply=1), 0.2)
    assert result.dropped == (typing,)
    assert [w.kind for w in core.queued()] == [FIRST]
    again = core.submit(Write(TYPING, 1, route=TYPING_ROUTE, target=("typing", 1), reply=1), 0.3)
    assert again.dropped == (again.write,), "no typing while the reply's text is queued or in flight"


def test_typing_is_lowest_priority_and_only_when_nearly_idle() -> None:
    core = _core(global_per_s=20, urgent_reserve=5, typing_max_per_s=3, pace_refreshes=False)
    for i in range(3):
        core.submit(Write(TYPING, i, route=TYPING_ROUTE, target=("typing", i), reply=("t", i)), 0.0)
    for i in range(3):
        core.submit(Write(REFRESH, 10 + i, target=("m", i), reply=i), 0.0)
    released = core.release(0.0)
    assert [w.kind for w in released] == [REFRESH, REFRESH, REFRESH]
    assert len(core.queued()) == 3, "typing waits: 3 writes already went out this second"
    for write in released:
        core.done(write, 0.0)
    assert core.next_wake(0.0) == 1.0


def test_global_429_pauses_every_write() -> None:
    core = _core()
    core.observe(Observation(429, retry_after_s=2.0, is_global=True), 1.0)
    core.submit(Write(FINAL, 1, target="m", reply=1), 1.0)
    assert core.release(1.5) == []
    assert core.next_wake(1.5) == 3.0
    assert len(core.release(3.0)) == 1
    assert core.stats.global_rate_limited == 1


def test_channel_429_pauses_only_that_channel() -> None:
    core = _core()
    core.observe(Observation(429, channel=1, route=EDIT_ROUTE, retry_after_s=0.7), 0.0)
    core.submit(Write(FINAL, 1, target="a", reply=1), 0.0)
    other = core.submit(Write(FINAL, 2, target="b", reply=2), 0.0).write
    assert core.release(0.1) == [other]
    assert core.next_wake(0.1) == 0.7


def test_headers_with_nothing_remaining_block_until_reset() -> None:
    core = _core()
    core.observe(Observation(200, channel=1, route=EDIT_ROUTE, limit=5, remaining=0, reset_after_s=2.0), 0.0)
    core.submit(Write(FINAL, 1, target="a", reply=1), 0.0)
    assert core.release(1.0) == []
    assert core.next_wake(1.0) == 2.0
    assert len(core.release(2.0)) == 1


def test_learned_limit_narrows_the_bucket() -> None:
    core = _core()
    core.observe(Observation(200, channel=1, route=EDIT_ROUTE, limit=2, remaining=1, reset_after_s=0.5), 0.0)
    writes = [core.submit(Write(FINAL, 1, target=("m", i)), 0.0).write for i in range(3)]
    assert len(core.release(0.0)) == 1, "Discord said one is left"
    for w in writes[:1]:
        core.done(w, 0.1)
    assert len(core.release(0.6)) == 1, "after the reset the learned limit of 2 applies (one still counts)"
    assert core.release(0.6) == []


def test_shared_buckets_count_posts_and_edits_together() -> None:
    core = _core(shared_buckets={EDIT_ROUTE: POST_ROUTE}, final_reserve=0)
    for i in range(3):
        core.submit(Write(FINAL, 1, route=POST_ROUTE, target=("p", i)), 0.0)
        core.submit(Write(FINAL, 1, route=EDIT_ROUTE, target=("e", i)), 0.0)
    assert len(core.release(0.0)) == 5


def test_channel_bucket_counts_from_the_response_so_latency_cannot_overfill() -> None:
    core = _core(route_limits={EDIT_ROUTE: RouteLimit(2, 5.0)}, final_reserve=0)
    a = core.submit(Write(FINAL, 1, target="a"), 0.0).write
    b = core.submit(Write(FINAL, 1, target="b"), 0.0).write
    assert core.release(0.0) == [a, b]
    core.done(a, 0.3)  # a slow response
    core.done(b, 0.01)
    c = core.submit(Write(FINAL, 1, target="c"), 1.0).write
    assert core.release(5.01) == [], "a still counts until 5 s after its response"
    assert core.release(5.3) == [c]


def test_refreshes_are_paced_evenly_over_the_window() -> None:
    core = _core(global_per_s=45, urgent_reserve=5, adaptive_reserve=0.0)
    for i in range(10):
        core.submit(Write(REFRESH, i, target=i, reply=i), 0.0)
    assert len(core.release(0.0)) == 1
    assert core.next_wake(0.0) == 1.0 / 40
    assert len(core.release(1.0 / 40)) == 1


def test_finals_taking_the_window_make_refreshes_yield() -> None:
    core = _core(global_per_s=20, urgent_reserve=2, adaptive_reserve=1.0, pace_refreshes=False)
    for i in range(8):
        core.submit(Write(FINAL, i, target=("f", i)), 0.0)
    assert len(core.release(0.0)) == 8
    for i in range(20):
        core.submit(Write(REFRESH, 100 + i, target=("r", i), reply=i), 0.0)
    # 8 finals in the window: refreshes leave 2 + 8 slots free for the next wave of finals
    assert len(core.release(0.0)) == 20 - 2 - 8 - 8


def test_global_slot_counts_from_the_response_so_a_late_request_cannot_overfill() -> None:
    core = _core(global_per_s=2, urgent_reserve=0)
    a, b = (core.submit(Write(FINAL, i, target=i), 0.0).write for i in range(2))
    assert core.release(0.0) == [a, b]
    core.submit(Write(FINAL, 2, target=2), 0.0)
    core.done(b, 0.01)
    core.done(a, 0.4)  # sent late by a busy event loop: Discord may have counted it at 0.4
    assert core.release(1.0) == []  # started a second ago, but not counted a second ago
    assert core.next_wake(1.0) == 1.01
    assert len(core.release(1.01)) == 1
    core.submit(Write(FINAL, 3, target=3), 1.01)
    assert core.next_wake(1.01) == 1.4


def test_a_skipped_write_gives_its_budget_back() -> None:
    core = _core(global_per_s=1, urgent_reserve=0)
    first = core.submit(Write(REFRESH, 1, target="a", reply=1), 0.0).write
    core.submit(Write(REFRESH, 2, target="b", reply=2), 0.0)
    assert core.release(0.0) == [first]
    assert core.release(0.1) == []
    core.done(first, 0.1, sent=False)
    assert len(core.release(0.1)) == 1
    assert core.stats.refunded == 1


def test_parse_rate_limit_headers() -> None:
    seen = parse_rate_limit(
        "PATCH",
        "/api/v10/channels/123/messages/456",
        200,
        {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset-After": "4.2"},
    )
    assert seen == Observation(200, 123, EDIT_ROUTE, 5, 3, 4.2, None, False)
    post = parse_rate_limit("POST", "/api/v10/channels/123/messages", 200, {"X-RateLimit-Remaining": "1"})
    assert post is not None and post.route == POST_ROUTE
    typing = parse_rate_limit("POST", "/api/v10/channels/9/typing", 204, {"x-ratelimit-remaining": "4"})
    assert typing is not None and typing.route == TYPING_ROUTE
    glob = parse_rate_limit(
        "GET", "/api/v10/users/@me", 429, {"Retry-After": "2", "X-RateLimit-Global": "true"}
    )
    assert glob is not None and glob.is_global and glob.retry_after_s == 2.0
    assert parse_rate_limit("GET", "/api/v10/users/@me", 200, {"X-RateLimit-Remaining": "3"}) is None


def test_threads_open_at_the_full_channel_rate_no_slot_kept_for_finals() -> None:
    core = _core()
    opens = [
        core.submit(Write(FIRST, 1, route=THREAD_ROUTE, target=("thread", i)), 0.0).write for i in range(6)
    ]
    assert core.release(0.0) == opens[:5]  # a final never opens a thread: all five slots are used


def test_release_starts_no_more_than_the_writes_granted() -> None:
    core = _core(global_per_s=10, urgent_reserve=0, pace_refreshes=False)
    for i in range(4):
        core.submit(Write(FINAL, i, target=("f", i)), 0.0)
    for i in range(4):
        core.submit(Write(REFRESH, 10 + i, target=("r", i), reply=i), 0.0)
    assert core.releasable(0.0) >= 8
    first = core.release(0.0, max_writes=3)
    assert [w.kind for w in first] == [FINAL, FINAL, FINAL]  # the grant goes to the most urgent first
    second = core.release(0.0, max_writes=3)
    assert [w.kind for w in second] == [FINAL, REFRESH, REFRESH]
    assert core.release(0.0, max_writes=0) == []
    assert len(core.release(0.0)) == 2


def test_releasable_bounds_what_release_starts() -> None:
    core = _core(global_per_s=5, urgent_reserve=1)
    for i in range(8):
        core.submit(Write(FIRST, i, target=("p", i)), 0.0)
    for i in range(8):
        core.submit(Write(REFRESH, 10 + i, target=("r", i), reply=i), 0.0)
    bound = core.releasable(0.0)
    assert bound == 5  # the window's room, not the queue's length
    assert len(core.release(0.0)) <= bound
    assert core.releasable(0.0) == 0  # the window is full


def test_a_lower_global_cap_holds_from_the_next_release_and_scales_the_urgent_reserve() -> None:
    core = _core(global_per_s=45, urgent_reserve=5, adaptive_reserve=0.0, pace_refreshes=False)
    core.set_global_cap(22)  # one of two processes without a shared budget
    assert core.global_cap == 22
    for i in range(30):
        core.submit(Write(REFRESH, i, target=("r", i), reply=i), 0.0)
    refreshes = core.release(0.0)
    assert len(refreshes) == 22 - 5 * 22 // 45  # the reserve shrinks with the cap: 2 of 22
    for i in range(5):
        core.submit(Write(FINAL, 100 + i, target=("f", i)), 0.0)
    assert len(core.release(0.0)) == 2  # finals take the reserve, and no more
    for write in refreshes:
        core.done(write, 0.1)
    assert core.in_window(0.5) == 22
    assert core.window_expiries(0.5) == [1.1] * 20
    # the refreshes' slots freed: the last 3 finals, then the 10 refreshes still queued (room for 15)
    assert [w.kind for w in core.release(1.1)] == [FINAL] * 3 + [REFRESH] * 10


def test_a_global_cap_of_zero_starts_nothing_until_raised() -> None:
    core = _core(global_per_s=10, urgent_reserve=0)
    core.submit(Write(FINAL, 1, target="a"), 0.0)
    core.set_global_cap(0)
    assert core.releasable(0.0) == 0
    assert core.release(0.0) == []
    assert core.next_wake(0.0) is None  # only the cap's owner can change this: it wakes the driver
    core.set_global_cap(1)
    assert len(core.release(0.0)) == 1


def test_budget_holds_in_every_window_while_the_cap_changes() -> None:
    config = SchedulerConfig(global_per_s=20, urgent_reserve=2)
    core = SchedulerCore(config)
    sim = Sim(core, latency_s=0.05)
    for i in range(300):
        kind = (FINAL, FIRST, REFRESH)[i % 3]
        sim.submit(Write(kind, i % 40, target=("m", i), reply=i % 40, route=POST_ROUTE))
    caps = [20, 7, 13, 20, 4]
    for step, cap in enumerate(caps):
        sim.at(step * 0.7, functools.partial(core.set_global_cap, cap))
    sim.run(until=1000)
    assert not core.queued()
    for step, cap in enumerate(caps):
        # starts after a cap change stay under it from the first window fully after the change
        begin = step * 0.7 + 1.2
        end = (step + 1) * 0.7 if step + 1 < len(caps) else 1000.0
        times = sorted(s.at for s in sim.starts if begin <= s.at < end)
        _assert_sliding(times, cap, config.global_window_s, f"cap {cap}")
    _assert_sliding(sorted(s.at for s in sim.starts), 20, config.global_window_s, "all")
