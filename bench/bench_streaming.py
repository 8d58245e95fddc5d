"""Streaming at scale (issue 10) and streaming under load (issue 7), through the real bot.

    .venv/bin/python -m bench.bench_streaming [--scenario threads-100 ...] [--runs 3]

The stand-in Discord enforces Discord's per-channel buckets (5 creates and 5 edits per 5 s) and a
global limit of 50 requests in any rolling second; the stand-in model streams each answer as 40
deltas over 4 s (issue 7's load test: 100 deltas over 10 s).

Scenarios:
- ``threads-N``: N people, each in a thread the bot already owns (a warm-up turn per thread first,
  as after the earlier mention that opened it), all send one message at the same moment;
- ``shared-2x50``: 100 people mention the bot at once, 50 in each of two channels. With the default
  ``mention_opens_thread`` each mention opens a thread (a channel's replies cannot stream side by side:
  a channel is one conversation, answered in turn); the 50 thread creations in one channel share that
  channel's bucket, which bounds the scenario (see the README);
- ``load-100x10s``: 100 threads streaming for 10 s at once (issue 7).

Prints one row per run and the median of the runs. Times are from the moment the burst was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.rig import (
    BotStats,
    Conversation,
    Deployment,
    Stage,
    World,
    answer_text,
    now,
    peak_rate,
    percentile,
    rate_limit_counts,
    refresh_fairness,
    repeated,
    replies,
    rest_calls_between,
    send_all,
    shared_channels_world,
    stage,
    threads_world,
    wait_for_replies,
)
from standins.discord import FakeDiscord

WARM_UP_WORDS = 3
SETTLE_S = 1.5
"""After the warm-up: longer than the global window and the edit interval, so the burst starts clean."""
AFTER_S = 0.3
"""After the last reply is complete: time for stray writes to show (there should be none)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[FakeDiscord], World]
    warm_up: bool
    deltas: int = 40
    delta_delay_s: float = 0.1
    timeout_s: float = 120.0


SCENARIOS: dict[str, Scenario] = {
    "threads-10": Scenario("threads-10", lambda s: threads_world(s, 10), warm_up=True),
    "threads-50": Scenario("threads-50", lambda s: threads_world(s, 50), warm_up=True),
    "threads-100": Scenario("threads-100", lambda s: threads_world(s, 100), warm_up=True),
    "shared-2x50": Scenario("shared-2x50", lambda s: shared_channels_world(s, 2, 50), warm_up=False),
    "load-100x10s": Scenario(
        "load-100x10s", lambda s: threads_world(s, 100), warm_up=True, deltas=100, delta_delay_s=0.1
    ),
}
ISSUE_10 = ("threads-10", "threads-50", "threads-100", "shared-2x50")


@dataclass
class StreamingFigures:
    """One run of one scenario; times in seconds from the burst."""

    replies: int
    complete: int
    all_done_s: float
    first_text_p50_s: float
    first_text_max_s: float
    edits_per_message: float
    edits_per_message_per_s: float
    refresh_unfair: int
    global_429: int
    channel_429: int
    peak_req_per_s: int
    peak_rss_mb: float
    last_byte_to_final_p50_ms: float
    last_byte_to_final_p99_ms: float
    last_byte_to_final_max_ms: float
    last_byte_to_engine_p99_ms: float
    """The bot's own part: the model's last byte until the engine emits the turn's end."""
    engine_to_final_p99_ms: float
    """The rest: the streamer, the write scheduler (waiting for budget) and discord.py's request."""
    bot_cpu_s: float
    errors_logged: int


async def run_once(
    scenario: Scenario, profile: Path | None = None, deployment: Deployment | None = None
) -> tuple[StreamingFigures, BotStats]:
    async with stage(scenario.build, profile=profile, deployment=deployment) as st:
        conversations = st.world.conversations
        expected: dict[int, str] = {}
        if scenario.warm_up:
            await _warm_up(st, conversations)
            expected = {
                c.reply_channel_id or 0: answer_text(c.index, WARM_UP_WORDS) + "\n" for c in conversations
            }
        st.script.words = 60
        st.script.deltas = scenario.deltas
        st.script.delta_delay_s = scenario.delta_delay_s
        burst_at = now()
        await send_all(st.world, conversations, "Tell me something")
        for c in conversations:
            assert c.reply_channel_id is not None
            expected[c.reply_channel_id] = expected.get(c.reply_channel_id, "") + answer_text(c.index, 60)
        await wait_for_replies(st.server, expected, scenario.timeout_s)
        await asyncio.sleep(AFTER_S)
        end = now()
        stats = await st.bot.stop()
        return _figures(st, conversations, burst_at, end, stats), stats


async def _warm_up(st: Stage, conversations: Sequence[Conversation]) -> None:
    """One quick turn per conversation, as the earlier mention did; then let the limits' windows pass."""
    st.script.words = WARM_UP_WORDS
    st.script.deltas = 1
    st.script.delta_delay_s = 0.0
    await send_all(st.world, conversations, "Hello")
    expected = {c.reply_channel_id or 0: answer_text(c.index, WARM_UP_WORDS) for c in conversations}
    await wait_for_replies(st.server, expected, 60.0)
    await asyncio.sleep(SETTLE_S)


def _figures(
    st: Stage, conversations: Sequence[Conversation], burst_at: float, end: float, stats: BotStats
) -> StreamingFigures:
    records = replies(st, conversations, burst_at, stats)
    first = [r.first_text_at - burst_at for r in records if r.first_text_at is not None]
    finals = [r.final_at - burst_at for r in records if r.final_at is not None]
    overhead_ms = [
        (r.final_at - r.last_byte_at) * 1000
        for r in records
        if r.final_at is not None and r.last_byte_at is not None
    ]
    to_engine_ms = [
        (r.engine_done_at - r.last_byte_at) * 1000
        for r in records
        if r.engine_done_at is not None and r.last_byte_at is not None
    ]
    engine_to_final_ms = [
        (r.final_at - r.engine_done_at) * 1000
        for r in records
        if r.final_at is not None and r.engine_done_at is not None
    ]
    edits = [n for r in records for n in r.edits_per_message.values()]
    per_s = [
        sum(r.edits_per_message.values()) / (r.final_at - r.first_text_at)
        for r in records
        if r.first_text_at is not None and r.final_at is not None and r.final_at > r.first_text_at
    ]
    global_429, channel_429 = rate_limit_counts(st.server, burst_at)
    calls = rest_calls_between(st.server, burst_at, end)
    return StreamingFigures(
        replies=len(records),
        complete=len(finals),
        all_done_s=max(finals, default=float("nan")),
        first_text_p50_s=percentile(first, 50),
        first_text_max_s=max(first, default=float("nan")),
        edits_per_message=statistics.fmean(edits) if edits else 0.0,
        edits_per_message_per_s=statistics.fmean(per_s) if per_s else 0.0,
        refresh_unfair=refresh_fairness(records),
        global_429=global_429,
        channel_429=channel_429,
        peak_req_per_s=peak_rate(c.at for c in calls),
        peak_rss_mb=stats.peak_rss_bytes / 2**20,
        last_byte_to_final_p50_ms=percentile(overhead_ms, 50),
        last_byte_to_final_p99_ms=percentile(overhead_ms, 99),
        last_byte_to_final_max_ms=max(overhead_ms, default=float("nan")),
        last_byte_to_engine_p99_ms=percentile(to_engine_ms, 99),
        engine_to_final_p99_ms=percentile(engine_to_final_ms, 99),
        bot_cpu_s=stats.cpu_s,
        errors_logged=stats.errors_logged,
    )


HEADER = (
    f"{'scenario':<14} {'done s':>7} {'1st p50':>7} {'1st max':>7} {'edit/msg':>8} {'edit/s':>6} "
    f"{'unfair':>6} {'g429':>4} {'c429':>4} {'peak/s':>6} {'RSS MB':>6} "
    f"{'lb->fin p50':>11} {'p99 ms':>7} {'max ms':>7} {'lb->eng p99':>11} {'eng->fin p99':>12} "
    f"{'cpu s':>6} {'ok':>7}"
)


def row(name: str, f: StreamingFigures) -> str:
    return (
        f"{name:<14} {f.all_done_s:7.2f} {f.first_text_p50_s:7.2f} {f.first_text_max_s:7.2f} "
        f"{f.edits_per_message:8.2f} {f.edits_per_message_per_s:6.2f} {f.refresh_unfair:6.0f} "
        f"{f.global_429:4.0f} {f.channel_429:4.0f} {f.peak_req_per_s:6.0f} {f.peak_rss_mb:6.1f} "
        f"{f.last_byte_to_final_p50_ms:11.1f} {f.last_byte_to_final_p99_ms:7.1f} "
        f"{f.last_byte_to_final_max_ms:7.1f} {f.last_byte_to_engine_p99_ms:11.1f} "
        f"{f.engine_to_final_p99_ms:12.1f} {f.bot_cpu_s:6.2f} {f.complete:3.0f}/{f.replies:<3.0f}"
    )


async def run(names: Sequence[str], runs: int, profile: Path | None = None) -> dict[str, StreamingFigures]:
    print(HEADER)
    medians: dict[str, StreamingFigures] = {}
    for name in names:
        measure = functools.partial(run_once, SCENARIOS[name], profile)
        medians[name] = await repeated(runs, measure, row, name=f"{name} ")
    return medians


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=list(ISSUE_10))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write the bot's cProfile stats of the burst here")
    args = parser.parse_args(argv)
    asyncio.run(run(args.scenario, args.runs, args.profile))


if __name__ == "__main__":
    main()
