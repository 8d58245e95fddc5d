"""1,000 conversations at once with a model that takes 1 s (issue 7), through the real bot.

    .venv/bin/python -m bench.bench_concurrency [--conversations 1000] [--runs 3]

N people, each in a thread the bot owns whose conversation already exists (seeded in the bot's
database and the stand-in model before the bot starts), send a message at the same moment. The model
answers after ``MODEL_LATENCY_S`` in one go. Figures, from the moment the burst was sent:

- engine wall time: until the bot's engine had every answer (the turn's terminal event, noted in the
  bot's process): the goal's 1.3 s is about this, the bot's concurrency;
- Discord wall time: until every reply was written, exact, in its thread. Every reply is at least one
  post and the write scheduler keeps the bot under 45 writes a second, so N replies cannot be
  delivered in less than N / 45 s (22.2 s for 1,000); the figure shows how close the bot comes;
- the bot's peak RSS, CPU time, and 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.rig import (
    BotStats,
    Deployment,
    answer_text,
    now,
    peak_rate,
    percentile,
    rate_limit_counts,
    repeated,
    replies,
    rest_calls_between,
    send_all,
    stage,
    threads_world,
    wait_for_replies,
)
from bot.discord.render.scheduler import GLOBAL_PER_S

MODEL_LATENCY_S = 1.0
WORDS = 12
DELIVERY_TIMEOUT_S = 120.0


@dataclass
class ConcurrencyFigures:
    conversations: int
    send_s: float
    """How long the stand-in took to send the burst (every MESSAGE_CREATE)."""
    requests_s: float
    """Until the last model request reached the model."""
    engine_s: float
    engine_p50_s: float
    discord_s: float
    discord_bound_s: float
    complete: int
    global_429: int
    channel_429: int
    peak_req_per_s: int
    peak_rss_mb: float
    bot_cpu_s: float
    stand_in_cpu_s: float
    """CPU time of this process (the stand-ins and the driver) until every reply was written."""


async def run_once(
    count: int, profile: Path | None = None, deployment: Deployment | None = None
) -> tuple[ConcurrencyFigures, BotStats]:
    """``deployment``: several processes (the threads split between their guilds), PostgreSQL, Redis."""
    shards = deployment.processes if deployment else 1
    world = functools.partial(threads_world, count=count, shards=shards)
    async with stage(world, seed=True, profile=profile, deployment=deployment) as st:
        st.script.words, st.script.deltas, st.script.delta_delay_s = WORDS, 4, 0.0
        st.script.delay_s = MODEL_LATENCY_S
        conversations = st.world.conversations
        cpu_at = time.process_time()
        burst_at = now()
        await send_all(st.world, conversations, "Hello")
        sent_at = now()
        expected = {c.reply_channel_id or 0: answer_text(c.index, WORDS) for c in conversations}
        await wait_for_replies(st.server, expected, DELIVERY_TIMEOUT_S)
        stand_in_cpu_s = time.process_time() - cpu_at
        await asyncio.sleep(0.3)
        end = now()
        stats = await st.bot.stop()
        records = replies(st, conversations, burst_at, stats)
        engine = [r.engine_done_at - burst_at for r in records if r.engine_done_at is not None]
        finals = [r.final_at - burst_at for r in records if r.final_at is not None]
        requested = [r.model_request_at - burst_at for r in records if r.model_request_at is not None]
        global_429, channel_429 = rate_limit_counts(st.server, burst_at)
        figures = ConcurrencyFigures(
            conversations=count,
            send_s=sent_at - burst_at,
            requests_s=max(requested, default=float("nan")),
            engine_s=max(engine) if len(engine) == count else float("nan"),
            engine_p50_s=percentile(engine, 50),
            discord_s=max(finals, default=float("nan")),
            discord_bound_s=count / GLOBAL_PER_S,
            complete=len(finals),
            global_429=global_429,
            channel_429=channel_429,
            peak_req_per_s=peak_rate(c.at for c in rest_calls_between(st.server, burst_at, end)),
            peak_rss_mb=stats.peak_rss_bytes / 2**20,
            bot_cpu_s=stats.cpu_s,
            stand_in_cpu_s=stand_in_cpu_s,
        )
        return figures, stats


HEADER = (
    f"{'run':<10} {'convs':>5} {'send s':>6} {'reqs s':>6} {'engine s':>8} {'p50 s':>6} {'discord s':>9} "
    f"{'bound s':>7} {'done':>5} {'g429':>4} {'c429':>4} {'peak/s':>6} {'RSS MB':>6} {'cpu s':>6} "
    f"{'stand-in cpu s':>14}"
)


def row(name: str, f: ConcurrencyFigures) -> str:
    return (
        f"{name:<10} {f.conversations:5.0f} {f.send_s:6.2f} {f.requests_s:6.2f} {f.engine_s:8.2f} "
        f"{f.engine_p50_s:6.2f} {f.discord_s:9.2f} {f.discord_bound_s:7.1f} {f.complete:5.0f} "
        f"{f.global_429:4.0f} {f.channel_429:4.0f} {f.peak_req_per_s:6.0f} {f.peak_rss_mb:6.1f} "
        f"{f.bot_cpu_s:6.2f} {f.stand_in_cpu_s:14.2f}"
    )


async def run(count: int, runs: int, profile: Path | None = None) -> ConcurrencyFigures:
    print(f"{count} conversations at once, model latency {MODEL_LATENCY_S} s (times from the burst)")
    print(HEADER)
    return await repeated(runs, lambda: run_once(count, profile), row)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write the bot's cProfile stats here")
    args = parser.parse_args(argv)
    asyncio.run(run(args.conversations, args.runs, args.profile))


if __name__ == "__main__":
    main()
