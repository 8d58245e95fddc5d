"""Mention -> model request while the write budget is busy (issue 14), through the real bot.

    .venv/bin/python -m bench.bench_mention_latency [--mentions 300] [--gap-ms 40] [--runs 3]

``--mentions`` people mention the bot, one every ``--gap-ms`` ms, round-robin over ``CHANNELS``
channels (so each channel sees a mention every ~2 s, within its thread-creation bucket); every
mention opens a thread and its reply streams 40 deltas over 4 s, so a hundred replies stream at once
and their writes keep the global budget busy. Figure, on the stand-ins' clock: the MESSAGE_CREATE
leaving the gateway -> the reply's model request reaching the model (p50, p99, max), the model's
time to first token being the slowest part of a reply. Also: when the thread-creation POST reached
Discord, from the mention (p50, p99), and whether every reply arrived exact in its thread.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bench.rig import (
    BotStats,
    answer_text,
    now,
    percentile,
    rate_limit_counts,
    repeated,
    replies,
    send_all,
    shared_channels_world,
    stage,
    wait_for_replies,
)

CHANNELS = 50
WORDS = 12
DELTAS = 4
DELTA_DELAY_MS = 100.0
DELIVERY_TIMEOUT_S = 120.0


@dataclass
class MentionFigures:
    mentions: int
    request_p50_ms: float
    request_p99_ms: float
    request_max_ms: float
    late_over_100ms: int
    """Model requests that left more than 100 ms after their mention."""
    thread_p50_ms: float
    thread_p99_ms: float
    complete: int
    global_429: int
    channel_429: int


async def run_once(
    mentions: int, gap_s: float, deltas: int, delta_delay_s: float
) -> tuple[MentionFigures, BotStats]:
    per_channel = -(-mentions // CHANNELS)
    async with stage(lambda s: shared_channels_world(s, CHANNELS, per_channel)) as st:
        st.script.words, st.script.deltas, st.script.delta_delay_s = WORDS, deltas, delta_delay_s
        ordered = sorted(st.world.conversations, key=lambda c: (c.index % per_channel, c.index))
        conversations = ordered[:mentions]
        start = now()
        for number, conversation in enumerate(conversations):
            await asyncio.sleep(max(0.0, start + number * gap_s - now()))
            await send_all(st.world, [conversation], "Hello")
        expected = {c.reply_channel_id or 0: answer_text(c.index, WORDS) for c in conversations}
        await wait_for_replies(st.server, expected, DELIVERY_TIMEOUT_S)
        await asyncio.sleep(0.3)
        stats = await st.bot.stop()
        records = replies(st, conversations, start, stats)
        requested = [
            (r.model_request_at - r.conversation.sent_at) * 1000
            for r in records
            if r.model_request_at is not None
        ]
        thread_posts = {
            c.path.rsplit("/", 2)[-2]: c.at
            for c in st.server.calls
            if c.kind == "thread_create_from_message" and c.at >= start
        }
        threads = [
            (thread_posts[str(c.reply_channel_id)] - c.sent_at) * 1000
            for c in conversations
            if str(c.reply_channel_id) in thread_posts
        ]
        global_429, channel_429 = rate_limit_counts(st.server, start)
        figures = MentionFigures(
            mentions=mentions,
            request_p50_ms=percentile(requested, 50),
            request_p99_ms=percentile(requested, 99),
            request_max_ms=max(requested, default=float("nan")),
            late_over_100ms=sum(ms > 100 for ms in requested),
            thread_p50_ms=percentile(threads, 50),
            thread_p99_ms=percentile(threads, 99),
            complete=sum(r.final_at is not None for r in records),
            global_429=global_429,
            channel_429=channel_429,
        )
        return figures, stats


HEADER = (
    f"{'run':<10} {'mentions':>8} {'req p50 ms':>10} {'p99':>7} {'max':>7} {'>100ms':>6} "
    f"{'thread p50 ms':>13} {'p99':>7} {'done':>5} {'g429':>4} {'c429':>4}"
)


def row(name: str, f: MentionFigures) -> str:
    return (
        f"{name:<10} {f.mentions:8.0f} {f.request_p50_ms:10.1f} {f.request_p99_ms:7.1f} "
        f"{f.request_max_ms:7.1f} {f.late_over_100ms:6.0f} {f.thread_p50_ms:13.1f} {f.thread_p99_ms:7.1f} "
        f"{f.complete:5.0f} {f.global_429:4.0f} {f.channel_429:4.0f}"
    )


async def run(
    mentions: int, gap_ms: float, runs: int, deltas: int = DELTAS, delta_delay_ms: float = DELTA_DELAY_MS
) -> MentionFigures:
    print(
        f"{mentions} mentions {gap_ms:.0f} ms apart over {CHANNELS} channels, each opening a thread; "
        f"answers of {deltas} deltas {delta_delay_ms:.0f} ms apart "
        "(req: mention -> model request; thread: mention -> thread creation at Discord)"
    )
    print(HEADER)
    return await repeated(runs, lambda: run_once(mentions, gap_ms / 1000, deltas, delta_delay_ms / 1000), row)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mentions", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=40.0)
    parser.add_argument("--deltas", type=int, default=DELTAS, help="text deltas per answer")
    parser.add_argument("--delta-delay-ms", type=float, default=DELTA_DELAY_MS)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(run(args.mentions, args.gap_ms, args.runs, args.deltas, args.delta_delay_ms))


if __name__ == "__main__":
    main()
