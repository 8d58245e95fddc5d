"""The Discord write budget shared by every process through a real Redis, and its fallback.

Two `WriteScheduler`s stand for two processes of the bot (each with its own Redis client and process
id); their jobs record start times on the loop clock. The assertions are the budget's invariants (starts
in any rolling second, summed over the processes), not timings; each test runs for a few seconds of
real time because the budget is real.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from bot.config import AppConfig, DiscordConfig, load_config
from bot.discord.render.scheduler import GLOBAL_PER_S, GLOBAL_WINDOW_S, POST_ROUTE, WriteKind, WriteScheduler
from bot.discord.render.scheduler.shared_budget import (
    BudgetMode,
    SharedBudget,
    budget_key,
    process_share,
    redis_client,
    shared_write_budget,
)
from bot.errors import ConfigError
from bot.metrics import BotMetrics
from standins.discord import FakeDiscord
from standins.discord.constants import API_PREFIX
from tests.conftest import fake_secrets
from tests.redis_server import RedisServer

PROBE_INTERVAL_S = 0.3
"""Short, so a test sees Redis come back within a second or two."""
WRITES_PER_PROCESS = 200
WAIT_S = 60.0
"""Safety net only: 400 writes at 45 a second take about 9 s."""


@dataclass
class Process:
    """One bot process: its scheduler, its budget and the start times of its writes."""

    name: str
    scheduler: WriteScheduler
    budget: SharedBudget
    metrics: BotMetrics
    starts: list[float] = field(default_factory=list)
    on_start: Callable[[], None] | None = None

    def submit_writes(self, count: int, tag: str = "w") -> list[asyncio.Future[object]]:
        loop = asyncio.get_running_loop()

        async def job() -> str:
            self.starts.append(loop.time())
            if self.on_start is not None:
                self.on_start()
            return "sent"

        # one channel per write: only the global budget limits them, never a channel's bucket
        return [
            self.scheduler.submit(
                WriteKind.FINAL, (self.name, tag, i), job, route=POST_ROUTE, target=(self.name, tag, i)
            )
            for i in range(count)
        ]


def max_in_rolling_window(times: list[float], window_s: float = GLOBAL_WINDOW_S) -> int:
    """The most starts in any window [t, t + window_s) that begins at a start."""
    ordered = sorted(times)
    most, end = 0, 0
    for i, start in enumerate(ordered):
        while end < len(ordered) and ordered[end] < start + window_s:
            end += 1
        most = max(most, end - i)
    return most


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    """The session's Redis, emptied for this test (and running again if a test stopped it)."""
    redis_server.start()
    client = redis_client(redis_server.url)
    await client.flushall()
    await client.aclose()
    yield redis_server.url
    redis_server.start()


@asynccontextmanager
async def processes(
    url: str, count: int, *, process_count: int = 2, urls: Sequence[str] = ()
) -> AsyncIterator[list[Process]]:
    """`count` processes of a deployment of `process_count`; `urls` gives some their own way to Redis."""
    made: list[Process] = []
    try:
        for index in range(count):
            metrics = BotMetrics()
            budget = SharedBudget(
                redis_client(urls[index] if index < len(urls) else url),
                key=budget_key("the-bot-token"),
                per_s=GLOBAL_PER_S,
                window_s=GLOBAL_WINDOW_S,
                process_count=process_count,
                probe_interval_s=PROBE_INTERVAL_S,
                metrics=metrics,
            )
            scheduler = WriteScheduler(metrics=metrics, shared_budget=budget)
            made.append(Process(f"p{index}", scheduler, budget, metrics))
        yield made
    finally:
        for process in made:
            await process.scheduler.close()
            await process.budget.close()


class CuttableLink:
    """One process's own network path to Redis: a TCP relay on 127.0.0.1 that `cut()` breaks (open
    connections reset, new ones refused) while the other processes still reach Redis, and `mend()`
    brings back on the same port."""

    def __init__(self, redis: RedisServer) -> None:
        self._redis = redis
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def mend(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection(self._redis.host, self._redis.port)
        self._writers |= {client_writer, redis_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(pipe(client_reader, redis_writer), pipe(redis_reader, client_writer))


@asynccontextmanager
async def cuttable_link(redis: RedisServer) -> AsyncIterator[CuttableLink]:
    link = CuttableLink(redis)
    await link.mend()
    try:
        yield link
    finally:
        link.cut()


async def all_done(futures: list[asyncio.Future[object]]) -> None:
    async with asyncio.timeout(WAIT_S):
        results = await asyncio.gather(*futures)
    assert results == ["sent"] * len(futures)


def budget_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("shared_budget")]


async def test_two_saturated_processes_stay_within_one_budget_and_share_it_fairly(redis_url: str) -> None:
    async with processes(redis_url, 2) as (a, b):
        futures = {p.name: p.submit_writes(WRITES_PER_PROCESS) for p in (a, b)}
        finished_at: list[float] = []
        for process in (a, b):
            gathered = asyncio.gather(*futures[process.name])
            gathered.add_done_callback(lambda _: finished_at.append(asyncio.get_running_loop().time()))
        await all_done(futures["p0"] + futures["p1"])

        assert max_in_rolling_window(a.starts + b.starts) <= GLOBAL_PER_S
        assert len(a.starts) == len(b.starts) == WRITES_PER_PROCESS
        # Fair: the first to ask may take the first window whole (it was alone then); from the next
        # window until one of them is through, both were saturated and each had about half.
        begin = min(a.starts[0], b.starts[0]) + GLOBAL_WINDOW_S
        end = min(finished_at)
        shares = [len([t for t in p.starts if begin <= t < end]) for p in (a, b)]
        assert min(shares) >= 0.4 * sum(shares), shares
        assert a.budget.mode is b.budget.mode is BudgetMode.SHARED
        assert a.metrics.discord_budget_shared._value.get() == 1


async def test_the_only_process_of_a_deployment_uses_the_whole_budget(redis_url: str) -> None:
    async with processes(redis_url, 1, process_count=1) as (alone,):
        await all_done(alone.submit_writes(3 * GLOBAL_PER_S))
        # never more than the budget, and the whole of it
        assert max_in_rolling_window(alone.starts) == GLOBAL_PER_S


async def test_a_process_leaves_the_share_of_a_configured_process_never_heard_from(redis_url: str) -> None:
    """K=2, the other process never reached Redis (still starting, or cut off): it may send its 1/K."""
    async with processes(redis_url, 1, process_count=2) as (alone,):
        await all_done(alone.submit_writes(3 * GLOBAL_PER_S))
        assert max_in_rolling_window(alone.starts) == GLOBAL_PER_S - process_share(GLOBAL_PER_S, 2)


async def test_redis_lost_mid_run_falls_back_safely_and_comes_back_after_probation(
    redis_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.discord.render.scheduler.shared_budget")
    async with processes(redis_url, 2) as (a, b):
        halfway = asyncio.Event()

        def stop_at_halfway() -> None:
            if len(a.starts) + len(b.starts) >= WRITES_PER_PROCESS:
                halfway.set()

        a.on_start = b.on_start = stop_at_halfway
        futures = a.submit_writes(WRITES_PER_PROCESS) + b.submit_writes(WRITES_PER_PROCESS)
        async with asyncio.timeout(WAIT_S):
            await halfway.wait()
        redis_server.stop()
        await all_done(futures)  # no write lost: they wait for the local share

        assert max_in_rolling_window(a.starts + b.starts) <= GLOBAL_PER_S
        assert a.budget.mode is not BudgetMode.SHARED and b.budget.mode is not BudgetMode.SHARED
        warnings = budget_warnings(caplog)
        assert sorted(w.getMessage().split("process ")[1][:12] for w in warnings) == sorted(
            [a.budget.process_id, b.budget.process_id]
        ), "exactly one warning per process"
        for process in (a, b):
            assert process.metrics.discord_budget_shared._value.get() == 0
            assert process.metrics.redis_failures._value.get() >= 1
        fallback_cap = process_share(GLOBAL_PER_S, 2)
        late = [t for t in a.starts if t > a.starts[-1] - 2 * GLOBAL_WINDOW_S]
        assert max_in_rolling_window(late) <= fallback_cap  # the 1/K share, once the switch is over

        # Redis back: each records its window there and keeps to its share through the probation,
        # then draws from the shared budget again; writes keep flowing and the sum stays in budget.
        redis_server.start()
        both_shared = asyncio.Event()

        def keep_writing(process: Process) -> Callable[[], None]:
            def on_start() -> None:
                if a.budget.shared and b.budget.shared:
                    both_shared.set()
                elif len(process.scheduler.core.queued()) < 5:
                    process.submit_writes(10, tag=f"more{len(process.starts)}")

            return on_start

        a.on_start, b.on_start = keep_writing(a), keep_writing(b)
        since = len(a.starts), len(b.starts)
        a.submit_writes(10, tag="again")
        b.submit_writes(10, tag="again")
        async with asyncio.timeout(WAIT_S):
            await both_shared.wait()
        assert max_in_rolling_window(a.starts[since[0] :] + b.starts[since[1] :]) <= GLOBAL_PER_S
        assert len(budget_warnings(caplog)) == 2
        back = [r for r in caplog.records if r.levelno == logging.INFO and "Redis is back" in r.getMessage()]
        assert len(back) == 2
        assert a.metrics.discord_budget_shared._value.get() == 1


def keep_busy(process: Process) -> Callable[[], None]:
    """An `on_start` that keeps the process's queue full: it always wants more than its budget."""

    def on_start() -> None:
        if len(process.scheduler.core.queued()) < GLOBAL_PER_S:
            process.submit_writes(GLOBAL_PER_S, tag=f"more{len(process.starts)}")

    return on_start


async def saturate_then_cut_one_off(a: Process, b: Process, link: CuttableLink) -> float:
    """Both processes saturated; once both drew from Redis a while, `b`'s link is cut; returns when.

    Both stay saturated until the test sets their `on_start` to something else.
    """
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()

    def cut_when_ready() -> None:
        if min(len(a.starts), len(b.starts)) >= GLOBAL_PER_S:
            ready.set()

    def saturated_and_watched(process: Process) -> Callable[[], None]:
        keep_full = keep_busy(process)

        def on_start() -> None:
            keep_full()
            cut_when_ready()

        return on_start

    a.on_start, b.on_start = saturated_and_watched(a), saturated_and_watched(b)
    a.submit_writes(GLOBAL_PER_S)
    b.submit_writes(GLOBAL_PER_S)
    async with asyncio.timeout(WAIT_S):
        await ready.wait()
    assert a.budget.shared and b.budget.shared
    link.cut()
    return loop.time()


async def wait_for(condition: Callable[[], bool], process: Process) -> None:
    """Wait until `condition()` holds, checked at each start of `process` (it must be kept busy)."""
    reached = asyncio.Event()
    previous = process.on_start

    def on_start() -> None:
        if previous is not None:
            previous()
        if condition():
            reached.set()

    process.on_start = on_start
    async with asyncio.timeout(WAIT_S):
        await reached.wait()
    process.on_start = previous


async def test_a_process_cut_off_alone_falls_back_while_the_others_leave_its_share(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with (
        cuttable_link(redis_server) as link,
        processes(redis_url, 2, urls=[redis_url, link.url]) as (a, b),
    ):
        cut_at = await saturate_then_cut_one_off(a, b, link)
        settled_at = cut_at + b.budget.silence_s + GLOBAL_WINDOW_S
        # B has fallen back; A still reaches Redis, keeps drawing from it and stays SHARED
        await wait_for(lambda: a.starts[-1] > settled_at + 2 * GLOBAL_WINDOW_S, a)
        await wait_for(lambda: b.starts[-1] > settled_at + 2 * GLOBAL_WINDOW_S, b)
        a.on_start = b.on_start = None

        assert b.budget.mode is BudgetMode.FALLBACK and a.budget.mode is BudgetMode.SHARED
        # Throughout, the cut included: the two together never pass the budget.
        assert max_in_rolling_window(a.starts + b.starts) <= GLOBAL_PER_S
        # Once B's beat has expired, A leaves B its 1/K and B keeps to it.
        share = process_share(GLOBAL_PER_S, 2)
        a_after = [t for t in a.starts if t >= settled_at]
        b_after = [t for t in b.starts if t >= settled_at]
        assert max_in_rolling_window(a_after) <= GLOBAL_PER_S - share
        assert max_in_rolling_window(b_after) <= share
        assert b_after, "B kept writing on its own share"


async def test_a_process_back_after_a_cut_is_counted_again_after_its_probation(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with (
        cuttable_link(redis_server) as link,
        processes(redis_url, 2, urls=[redis_url, link.url]) as (a, b),
    ):
        await saturate_then_cut_one_off(a, b, link)
        await wait_for(lambda: b.budget.mode is BudgetMode.FALLBACK, b)
        await link.mend()
        since = len(a.starts), len(b.starts)
        await wait_for(lambda: b.budget.shared, b)
        # through B's return and probation, the sum stayed within the budget
        assert max_in_rolling_window(a.starts[since[0] :] + b.starts[since[1] :]) <= GLOBAL_PER_S

        # B now idle: its beats alone keep it counted, and A may draw the whole budget left to it.
        b.on_start = None
        if b.scheduler.core.queued():
            await wait_for(lambda: not b.scheduler.core.queued(), b)
        a.on_start = None
        idle_at = asyncio.get_running_loop().time()
        await all_done(a.submit_writes(5 * GLOBAL_PER_S, tag="alone"))
        assert b.budget.shared
        assert max_in_rolling_window(a.starts[since[0] :] + b.starts[since[1] :]) <= GLOBAL_PER_S
        # long after B's last write (and last acquire) its beat would have expired, had it stopped
        a_later = [t for t in a.starts if t >= idle_at + b.budget.beat_ttl_s + GLOBAL_WINDOW_S]
        assert max_in_rolling_window(a_later) == GLOBAL_PER_S


async def test_two_processes_sharing_redis_get_no_global_429_from_stand_in_discord(
    redis_url: str,
) -> None:
    """Real HTTP writes to the stand-in Discord, which answers a global 429 past 50 in any second."""
    async with (
        FakeDiscord(global_limit=50, rate_limits={"message_create": None}) as server,
        aiohttp.ClientSession() as http,
        processes(redis_url, 2) as (a, b),
    ):
        guild = server.add_guild()
        channel = server.add_text_channel(guild.id, "general")
        url = f"{server.base_url}{API_PREFIX}/channels/{channel.id}/messages"
        headers = {"Authorization": f"Bot {server.token}"}

        def post(text: str) -> Callable[[], Awaitable[object]]:
            async def job() -> object:
                async with http.post(url, json={"content": text}, headers=headers) as response:
                    return response.status

            return job

        futures = [
            process.scheduler.submit(
                WriteKind.FINAL, (process.name, i), post(f"{process.name} {i}"), route=POST_ROUTE
            )
            for process in (a, b)
            for i in range(100)
        ]
        async with asyncio.timeout(WAIT_S):
            statuses = await asyncio.gather(*futures)
        assert statuses == [200] * len(futures)
        assert server.rate_limit_hits_of("global") == []
        assert len(server.messages_in(channel.id)) == len(futures)


def test_process_count_follows_the_shards_this_process_runs_unless_given() -> None:
    assert DiscordConfig().processes == 1
    assert DiscordConfig(shard_count=5, shard_ids=(0, 1)).processes == 3  # 5 shards, 2 a process
    assert DiscordConfig(shard_count=4).processes == 1  # every shard in this one process
    assert DiscordConfig(shard_count=4, shard_ids=(0,), process_count=2).processes == 2
    env = {"BOT_PROCESS_COUNT": "3", "BOT_REDIS_URL": "redis://localhost:6379/0"}
    config = load_config(Path("absent.toml"), required=False, env=env)
    assert (config.discord.processes, config.redis.url) == (3, "redis://localhost:6379/0")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://user:hunter2@localhost", "must start with redis://"),
        ("redis://:hunter2@localhost:port/0", "is not a Redis URL"),
    ],
)
def test_a_bad_redis_url_is_one_clear_error_that_never_shows_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as from_env:
        load_config(Path("absent.toml"), required=False, env={"BOT_REDIS_URL": url})
    assert "BOT_REDIS_URL" in str(from_env.value) and problem in str(from_env.value)
    assert "hunter2" not in str(from_env.value)
    with pytest.raises(ValidationError) as from_file:
        AppConfig.model_validate({"redis": {"url": url}})
    assert problem in str(from_file.value)


async def test_without_redis_the_bot_keeps_to_its_share_of_the_budget() -> None:
    config = AppConfig.model_validate({"discord": {"shard_count": 4, "shard_ids": [2, 3]}})
    metrics = BotMetrics()
    assert shared_write_budget(config, fake_secrets(), metrics) is None
    assert metrics.discord_budget_shared._value.get() == 0
    assert process_share(GLOBAL_PER_S, config.discord.processes) == 22
    assert process_share(GLOBAL_PER_S, 100) == 1  # never nothing at all
