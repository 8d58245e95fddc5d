"""What the chat benchmarks share: the stand-ins in this process, the real bot in a child process.

The driver (this process) runs the stand-in Discord and OpenAI servers and plays the users; the bot
runs in `bench.bot_process`, so on a 2-core machine the stand-ins' own work (SSE framing, JSON, their
event loop) does not share the bot's core and the bot's RSS is its own. Every time is taken on the
stand-ins' side with one clock (time.monotonic(), which is also the loop's clock): a MESSAGE_CREATE
leaving the gateway, a request reaching the model, the model's last byte, a write reaching Discord.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from bot.storage import Storage
from standins.discord import FakeChannel, FakeDiscord, FakeGuild, FakeUser, RestCall
from standins.openai import FakeConversation, FakeOpenAI, RecordedRequest, Reply

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BOT_COMMAND = ("-m", "bench.bot_process")
"""How the bot process is started (after the interpreter; the spec file comes last)."""
BOT_READY_TIMEOUT_S = 60.0
RSS_SAMPLE_EVERY_S = 0.02
MARKER = re.compile(r"\[c(\d+)\]")
BOT_VARIABLE_PREFIXES = ("BOT_", "DISCORD_", "OPENAI_")
"""The bot's environment variables: never inherited by a bot process the benchmark starts."""
WRITE_KINDS = frozenset({"message_create", "message_edit", "message_delete"})
WORDS = (
    "the", "answer", "streams", "in", "small", "pieces", "while", "the", "model", "thinks", "about",
    "what", "comes", "next", "and", "every", "piece", "lands", "in", "the", "message", "soon",
)  # fmt: skip


# -- small statistics -------------------------------------------------------------------------------

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Figures = TypeVar("Figures", bound="DataclassInstance")


def median_of(runs: Sequence[Figures]) -> Figures:
    """Figures (a dataclass of numbers) whose every field is the median of that field over the runs."""
    kind = type(runs[0])
    return kind(**{f.name: statistics.median(getattr(r, f.name) for r in runs) for f in fields(kind)})


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def peak_rate(times: Iterable[float], window_s: float = 1.0) -> int:
    """The most events in any window of ``window_s`` (a rolling count)."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


# -- the conversations of a scenario ---------------------------------------------------------------


def answer_text(index: int, words: int) -> str:
    """The model's exact answer to conversation ``index``: unique, so a misrouted reply shows."""
    body = " ".join(WORDS[(index + i) % len(WORDS)] for i in range(words))
    return f"Answer {index}: {body}."


@dataclass
class Conversation:
    index: int
    user: FakeUser
    channel: FakeChannel
    """Where the user writes (a thread, or the shared channel whose mention opens a thread)."""
    reply_channel_id: int | None = None
    """Where the reply lands: the thread, or the one the mention opens (known once it is sent)."""
    sent_at: float = 0.0
    """When the MESSAGE_CREATE left the stand-in's gateway."""

    @property
    def marker(self) -> str:
        return f"[c{self.index}]"


@dataclass
class ModelScript:
    """The stand-in model's behaviour, changeable between phases (warm-up, measured burst)."""

    words: int = 40
    deltas: int = 40
    delta_delay_s: float = 0.1
    delay_s: float = 0.0

    def responder(self, body: dict[str, Any]) -> Reply:
        index = conversation_of(body)
        return Reply(
            answer_text(index, self.words),
            deltas=self.deltas,
            delta_delay_s=self.delta_delay_s,
            pace="deltas",
            delay_s=self.delay_s,
        )


def conversation_of(body: dict[str, Any]) -> int:
    """The conversation a model request belongs to, from the marker in the user's text."""
    match = MARKER.search(json.dumps(body.get("input") or body.get("messages")))
    if match is None:
        raise ValueError("a model request without a conversation marker")
    return int(match.group(1))


@dataclass
class World:
    server: FakeDiscord
    guild: FakeGuild
    """The first guild (the only one, unless the world is split between shards)."""
    conversations: list[Conversation]


def threads_world(server: FakeDiscord, count: int, shards: int = 1) -> World:
    """``count`` people, each in a thread the bot owns (opened by an earlier mention); with ``shards``
    above 1, one guild per shard, the people dealt round-robin between them."""
    guilds = [server.add_guild(f"Bench {n}", on_shard=(n, shards)) for n in range(shards)]
    parents = [server.add_text_channel(guild.id, "general") for guild in guilds]
    conversations = []
    for index in range(count):
        guild, parent = guilds[index % shards], parents[index % shards]
        user = server.add_user(f"user{index}", guilds=[guild.id])
        thread = server.add_thread(parent.id, f"Chat {index}", owner=server.bot_user)
        conversations.append(Conversation(index, user, thread, thread.id))
    return World(server, guilds[0], conversations)


def shared_channels_world(server: FakeDiscord, channels: int, per_channel: int) -> World:
    """``channels`` text channels with ``per_channel`` people each, who mention the bot there."""
    guild = server.add_guild("Bench")
    conversations: list[Conversation] = []
    for number in range(channels):
        channel = server.add_text_channel(guild.id, f"shared-{number}")
        for _ in range(per_channel):
            index = len(conversations)
            user = server.add_user(f"user{index}", guilds=[guild.id])
            conversations.append(Conversation(index, user, channel))
    return World(server, guild, conversations)


async def send_all(world: World, conversations: Sequence[Conversation], text: str) -> float:
    """Each conversation's user sends its message, back to back; returns when the first left."""
    server = world.server
    first = math.inf
    for conversation in conversations:
        mention = conversation.reply_channel_id is None
        payload = await server.user_message(
            conversation.channel.id,
            conversation.user,
            f"{text} {conversation.marker}",
            mentions_bot=mention,
        )
        conversation.sent_at = next(
            d.at
            for d in reversed(server.dispatched)
            if d.event == "MESSAGE_CREATE" and d.data.get("id") == payload["id"]
        )
        first = min(first, conversation.sent_at)
        if mention:
            conversation.reply_channel_id = int(payload["id"])  # the thread it opens has the message's id
    return first


def bot_text(server: FakeDiscord, channel_id: int) -> str:
    messages = server.messages_in(channel_id, include_ephemeral=False)
    return "\n".join(m.content for m in messages if m.author_id == server.bot_user.id)


async def wait_for_replies(
    server: FakeDiscord,
    expected: dict[int, str],
    timeout_s: float,
) -> None:
    """Until each channel in ``expected`` holds exactly its text from the bot (checked on each write).

    Only the channels a new write went to are looked at again: the check runs on every change of
    the stand-in's state, and must stay cheap in the stand-ins' process with a thousand replies.
    """
    pending = dict(expected)
    seen_calls: int | None = None  # None: look at every channel once

    def done() -> bool:
        nonlocal seen_calls
        calls = server.calls
        touched: set[int] = set(pending)
        if seen_calls is not None:
            touched &= {c.channel_id for c in calls[seen_calls:] if c.kind in WRITE_KINDS and c.channel_id}
        seen_calls = len(calls)
        for channel_id in touched:
            if bot_text(server, channel_id) == pending[channel_id]:
                del pending[channel_id]
        return not pending

    try:
        await server.wait_for(done, timeout=timeout_s)
    except TimeoutError:
        sample = list(pending.items())[:3]
        shown = [(cid, bot_text(server, cid)[:80], want[:80]) for cid, want in sample]
        raise TimeoutError(f"{len(pending)} replies not complete after {timeout_s} s: {shown}") from None


# -- the bot process ------------------------------------------------------------------------------


@dataclass
class BotStats:
    peak_rss_bytes: int
    max_rss_bytes: int
    cpu_s: float
    turn_ends: list[tuple[str, float]]
    """(conversation key, when the turn's terminal event left the engine), in order."""
    writes_started: dict[str, int]
    errors_logged: int
    log_tail: str


async def repeated(
    runs: int,
    measure: Callable[[], Awaitable[tuple[Figures, BotStats]]],
    row: Callable[[str, Figures], str],
    *,
    name: str = "",
) -> Figures:
    """`measure` `runs` times: a row per run (and what the bot logged at ERROR), then the medians."""
    results = []
    for number in range(runs):
        figures, stats = await measure()
        results.append(figures)
        print(row(f"{name}#{number + 1}", figures), f"  (load {load_average()})", flush=True)
        if stats.errors_logged:
            print(f"  the bot logged {stats.errors_logged} errors:\n{stats.log_tail}")
    median = median_of(results)
    if runs > 1:
        print(row(f"{name}median", median), flush=True)
    return median


class BotProcess:
    """The bot in its own process (see `bench.bot_process`), with its RSS sampled while it runs.

    ``spec["config"]`` is written to ``directory``/config.toml; ``env``: the process's own
    environment variables (the token and URLs, the shards), on top of this process's environment
    without any of the bot's variables (so a developer's BOT_DATABASE never leaks in).
    """

    def __init__(self, spec: dict[str, Any], directory: Path, env: dict[str, str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / "config.toml"
        config_path.write_text(toml_text(spec["config"]))
        self._spec_path = directory / "spec.json"
        self._spec_path.write_text(json.dumps({**spec, "config_path": str(config_path)}))
        self._log_path = directory / "bot.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(BOT_VARIABLE_PREFIXES)}
        self._env = {**inherited, **env}
        self._process: asyncio.subprocess.Process | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.peak_rss_bytes = 0

    async def start(self) -> None:
        with self._log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                *BOT_COMMAND,
                str(self._spec_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=PROJECT_ROOT,
                env=self._env,
            )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), BOT_READY_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if line.strip() != b"READY":
            await self.kill()
            raise RuntimeError(f"the bot did not start: {line!r}\n{self._log_tail()}")
        self._sampler = asyncio.create_task(self._sample_rss(self._process.pid))

    async def stop(self) -> BotStats:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        process.stdin.write(b"STOP\n")
        await process.stdin.drain()
        process.stdin.close()
        stats: dict[str, Any] = {}
        async with asyncio.timeout(30):
            while line := await process.stdout.readline():
                if line.startswith(b"STATS "):
                    stats = json.loads(line[6:])
            await process.wait()
        if not stats:
            raise RuntimeError(f"the bot ended without its figures\n{self._log_tail()}")
        return BotStats(
            peak_rss_bytes=self.peak_rss_bytes,
            max_rss_bytes=int(stats["max_rss_bytes"]),
            cpu_s=float(stats["cpu_s"]),
            turn_ends=[(key, at) for key, at in stats["turn_ends"]],
            writes_started=dict(stats["writes_started"]),
            errors_logged=int(stats["errors_logged"]),
            log_tail=self._log_tail(),
        )

    async def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def _sample_rss(self, pid: int) -> None:
        process = psutil.Process(pid)
        with contextlib.suppress(psutil.Error):
            while True:
                self.peak_rss_bytes = max(self.peak_rss_bytes, process.memory_info().rss)
                await asyncio.sleep(RSS_SAMPLE_EVERY_S)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class BotGroup:
    """The bot processes of a stage, stopped and measured together (one process: that process)."""

    def __init__(self, processes: Sequence[BotProcess]) -> None:
        self.processes = list(processes)

    async def start(self) -> None:
        """One after the other, each ready (connected) before the next starts."""
        for process in self.processes:
            await process.start()

    async def stop(self) -> BotStats:
        """Every process's figures, summed (CPU, RSS) or merged (turn ends, in time order)."""
        stats = [await process.stop() for process in self.processes]
        writes: dict[str, int] = defaultdict(int)
        for one in stats:
            for kind, count in one.writes_started.items():
                writes[kind] += count
        return BotStats(
            peak_rss_bytes=sum(one.peak_rss_bytes for one in stats),
            max_rss_bytes=sum(one.max_rss_bytes for one in stats),
            cpu_s=sum(one.cpu_s for one in stats),
            turn_ends=sorted((end for one in stats for end in one.turn_ends), key=lambda end: end[1]),
            writes_started=dict(writes),
            errors_logged=sum(one.errors_logged for one in stats),
            log_tail="\n".join(one.log_tail for one in stats if one.log_tail),
        )

    async def kill(self) -> None:
        for process in self.processes:
            await process.kill()


@dataclass(frozen=True)
class Deployment:
    """How the bot is deployed for a stage: its processes (one shard each when several, the world's
    guilds split between them), its database (None: an SQLite file in the scratch directory) and the
    Redis that shares the Discord budget between the processes (None: each keeps 1/K of it)."""

    processes: int = 1
    database: str | None = None
    redis_url: str | None = None

    def env(self, number: int) -> dict[str, str]:
        """What process ``number`` of them is told in its environment, beyond the stand-ins."""
        env: dict[str, str] = {}
        if self.processes > 1:
            env |= {
                "BOT_SHARD_COUNT": str(self.processes),
                "BOT_SHARD_IDS": str(number),
                "BOT_PROCESS_COUNT": str(self.processes),
            }
        if self.redis_url is not None:
            env["BOT_REDIS_URL"] = self.redis_url
        return env


@dataclass
class Stage:
    """A running scenario: the stand-ins, the world, the bot, and a scratch directory."""

    server: FakeDiscord
    openai: FakeOpenAI
    world: World
    script: ModelScript
    bot: BotGroup


async def seed_conversations(database: Path | str, world: World, openai: FakeOpenAI) -> None:
    """Give every thread of the world a conversation, as its earlier turns would have left it: a row in
    the bot's database (through its own storage) and the model-side conversation it names."""
    storage = await Storage.open(database)
    try:
        for conversation in world.conversations:
            assert conversation.reply_channel_id is not None
            key = f"channel:{conversation.reply_channel_id}"
            model_side = FakeConversation(
                id=f"conv_bench{conversation.index}", created_at=int(time.time()), metadata={}
            )
            openai.conversations[model_side.id] = model_side
            record = await storage.conversations.get_or_create(
                key,
                backend="responses",
                guild_id=conversation.channel.guild_id,
                channel_id=conversation.reply_channel_id,
            )
            await storage.conversations.set_conversation_id(key, record.generation, model_side.id)
    finally:
        await storage.close()


@contextlib.asynccontextmanager
async def stage(
    build: Callable[[FakeDiscord], World],
    *,
    global_limit: int | None = 50,
    config: dict[str, Any] | None = None,
    profile: Path | None = None,
    seed: bool = False,
    deployment: Deployment | None = None,
) -> AsyncIterator[Stage]:
    """Start the stand-ins, build the world, start the bot against them; stop everything after.

    ``seed``: the threads' conversations exist before the bot starts (see ``seed_conversations``).
    ``deployment``: several processes, PostgreSQL, Redis (default: one process on an SQLite file).
    """
    deployment = deployment or Deployment()
    script = ModelScript()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        directory = Path(scratch)
        async with FakeDiscord(global_limit=global_limit) as server, FakeOpenAI() as openai:
            server.max_concurrency = 16  # every shard identifies at once, as a large bot's do
            openai.responses.default = script.responder
            world = build(server)
            database = deployment.database or str(directory / "bot.db")
            sections: dict[str, Any] = {
                "storage": {"database": database},
                "discord": {"sync_commands": False},
                "openai": {"max_retries": 0},
            }
            for name, values in (config or {}).items():
                sections[name] = {**sections.get(name, {}), **values}
            if seed:
                await seed_conversations(database, world, openai)
            spec = {
                "config": sections,
                "discord_base_url": server.base_url,
                "openai_base_url": openai.base_url,
                "token": server.token,
                "profile": str(profile) if profile else None,
            }
            stand_ins = {
                "DISCORD_TOKEN": server.token,
                "DISCORD_API_BASE_URL": server.base_url,
                "OPENAI_API_KEY": "bench",
            }
            bot = BotGroup(
                [
                    BotProcess(
                        {**spec, "profile": f"{profile}.{number}" if profile and number else spec["profile"]},
                        directory / f"bot{number}",
                        {**stand_ins, **deployment.env(number)},
                    )
                    for number in range(deployment.processes)
                ]
            )
            try:
                await bot.start()
                yield Stage(server, openai, world, script, bot)
            finally:
                await bot.kill()


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    """A config.toml of flat sections (strings, numbers, booleans, lists of them; None left out)."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item)  # a JSON string is a TOML basic string
        if isinstance(item, list | tuple):
            return "[" + ", ".join(value(part) for part in item) + "]"
        raise TypeError(f"no TOML for {item!r}")

    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value(item)}" for key, item in values.items() if item is not None]
        lines.append("")
    return "\n".join(lines)


# -- reading what happened ----------------------------------------------------------------------


@dataclass
class ReplyRecord:
    """One reply's writes as the stand-in Discord saw them."""

    conversation: Conversation
    first_text_at: float | None = None
    final_at: float | None = None
    edits_per_message: dict[str, int] = field(default_factory=dict)
    write_times: list[float] = field(default_factory=list)
    model_request_at: float | None = None
    last_byte_at: float | None = None
    engine_done_at: float | None = None
    """When the bot's engine had the whole answer (its terminal event), on the same clock."""


def replies(
    stage_: Stage, conversations: Sequence[Conversation], since: float, stats: BotStats | None = None
) -> list[ReplyRecord]:
    """Each conversation's writes after ``since``, its model request and the model's last byte."""
    engine_done = {key: at for key, at in (stats.turn_ends if stats else []) if at >= since}
    by_channel: dict[int, list[RestCall]] = defaultdict(list)
    for call in stage_.server.calls:
        if call.at >= since and call.channel_id is not None and call.kind in WRITE_KINDS:
            by_channel[call.channel_id].append(call)
    model_requests: dict[int, RecordedRequest] = {}
    for recorded in stage_.openai.requests_to("/v1/responses", "POST"):
        if recorded.time >= since:
            model_requests[conversation_of(recorded.json)] = recorded
    records = []
    for conversation in conversations:
        record = ReplyRecord(conversation)
        assert conversation.reply_channel_id is not None
        for call in by_channel.get(conversation.reply_channel_id, []):
            if not 200 <= call.status < 300:
                continue
            record.write_times.append(call.at)
            content = (call.json or {}).get("content") or ""
            if call.kind == "message_create" and record.first_text_at is None and content.strip():
                record.first_text_at = call.at
            if call.kind == "message_edit":
                record.edits_per_message[call.path] = record.edits_per_message.get(call.path, 0) + 1
        record.final_at = max(record.write_times, default=None)
        if (request := model_requests.get(conversation.index)) is not None:
            record.model_request_at = request.time
            record.last_byte_at = request.finished_at
        record.engine_done_at = engine_done.get(f"channel:{conversation.reply_channel_id}")
        records.append(record)
    return records


def refresh_fairness(records: Sequence[ReplyRecord]) -> int:
    """How often a reply got its (k+1)-th refresh while another streaming reply had fewer than k.

    A reply is streaming from its first post until its final write; its writes in between are
    refreshes. 0 means refreshes went round-robin: nobody's second before everybody's first.
    """
    spans = []
    for record in records:
        if record.first_text_at is None or record.final_at is None:
            continue
        refreshes = sorted(t for t in record.write_times if record.first_text_at < t < record.final_at)
        spans.append((record.first_text_at, record.final_at, refreshes))
    violations = 0
    for _, _, refreshes in spans:
        for k, at in enumerate(refreshes):  # this is refresh number k + 1
            for first, final, others in spans:
                if first < at < final and bisect.bisect_left(others, at) < k:
                    violations += 1
                    break
    return violations


def rest_calls_between(server: FakeDiscord, start: float, end: float) -> list[RestCall]:
    return [c for c in server.calls if start <= c.at <= end]


def rate_limit_counts(server: FakeDiscord, since: float) -> tuple[int, int]:
    """(global 429s, per-channel/route 429s) the stand-in answered after ``since``."""
    hits = [h for h in server.rate_limit_hits if h.at >= since]
    global_hits = sum(h.scope == "global" for h in hits)
    return global_hits, len(hits) - global_hits


def now() -> float:
    return time.monotonic()
