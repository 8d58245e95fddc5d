"""Everything this process keeps in memory: conversation lanes, caches, cooldowns, the model gate.

Kept in one place on purpose. Several shard processes would each own a disjoint set of guilds (and
DMs live on shard 0), so per-conversation locks stay correct per process; the caches here are
write-through copies of what the database holds.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from bot.config import GuildSettings
from bot.tooling import ConfirmationOutcome, ConfirmationRequest
from bot.vector_index import VectorIndex

log = logging.getLogger(__name__)

DEFAULT_KNOWLEDGE_MEMORY_BYTES = 1024 << 20


class Ticket:
    """A place in one conversation's line; `ahead` is how many turns go first."""

    __slots__ = ("_future", "ahead", "key", "task")

    def __init__(self, key: str, ahead: int, future: asyncio.Future[None]) -> None:
        self.key = key
        self.ahead = ahead
        self._future = future
        self.task: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        await self._future


@dataclass
class _Lane:
    holder: Ticket | None = None
    waiting: deque[Ticket] = field(default_factory=deque)


class ConversationLanes:
    """One turn at a time per conversation, the rest waiting in arrival order (bounded)."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self, key: str, *, max_waiting: int) -> Ticket | None:
        """Take a place in line, or None when `max_waiting` turns already wait."""
        self._idle.clear()
        lane = self._lanes.setdefault(key, _Lane())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if lane.holder is None:
            ticket = Ticket(key, 0, future)
            lane.holder = ticket
            future.set_result(None)
            return ticket
        if len(lane.waiting) >= max_waiting:
            return None
        ticket = Ticket(key, len(lane.waiting) + 1, future)
        lane.waiting.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Give up the place (done, failed or abandoned while waiting); the next in line goes."""
        lane = self._lanes.get(ticket.key)
        if lane is None:
            return
        if lane.holder is ticket:
            lane.holder = None
            while lane.waiting:
                successor = lane.waiting.popleft()
                if not successor._future.done():
                    lane.holder = successor
                    successor._future.set_result(None)
                    break
        else:
            with suppress(ValueError):
                lane.waiting.remove(ticket)
            ticket._future.cancel()
        if lane.holder is None and not lane.waiting:
            del self._lanes[ticket.key]
            if not self._lanes:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Until no conversation has a turn running or waiting (shutdown, tests)."""
        await self._idle.wait()

    def active(self, key: str) -> Ticket | None:
        lane = self._lanes.get(key)
        return lane.holder if lane else None

    def waiting(self, key: str) -> int:
        lane = self._lanes.get(key)
        return len(lane.waiting) if lane else 0


class GateFullError(Exception):
    """Too many turns already wait for a model call slot."""


class ModelCallGate:
    """A global cap on concurrent model calls, with a bounded waiting room."""

    def __init__(self, max_concurrent: int, max_waiting: int) -> None:
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._max_waiting = max_waiting
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._semaphore.locked():
            if self._waiting >= self._max_waiting:
                raise GateFullError
            self._waiting += 1
            try:
                await self._semaphore.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._semaphore.acquire()
        try:
            yield
        finally:
            self._semaphore.release()


class Cooldowns:
    """When each member last started a turn, per guild (the per-user cooldown)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[int, int], float] = {}

    def remaining_s(self, guild_id: int | None, user_id: int, cooldown_s: float) -> float:
        last = self._last.get((guild_id or 0, user_id))
        if last is None or cooldown_s <= 0:
            return 0.0
        return max(0.0, cooldown_s - (self._clock() - last))

    def mark(self, guild_id: int | None, user_id: int) -> None:
        self._last[(guild_id or 0, user_id)] = self._clock()


class PendingTurns:
    """How many turns each member has waiting or running, per guild (the per-user queue limit)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, int], int] = {}

    def count(self, guild_id: int | None, user_id: int) -> int:
        return self._counts.get((guild_id or 0, user_id), 0)

    def add(self, guild_id: int | None, user_id: int) -> None:
        key = (guild_id or 0, user_id)
        self._counts[key] = self._counts.get(key, 0) + 1

    def remove(self, guild_id: int | None, user_id: int) -> None:
        key = (guild_id or 0, user_id)
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)


class IntakeLocks:
    """One message intake at a time per channel, in arrival order (asyncio.Lock is first come, first
    served), so messages enter their conversation's line in the order Discord delivered them."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, channel_id: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(channel_id, (asyncio.Lock(), 0))
        self._locks[channel_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[channel_id]
            if users <= 1:
                del self._locks[channel_id]
            else:
                self._locks[channel_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class SettingsCache:
    """Effective settings per guild, written through by the settings service.

    `lock` orders loads and writes: a load that read the database before a write must not put its
    older copy back after the write did.
    """

    def __init__(self) -> None:
        self._by_guild: dict[int, GuildSettings] = {}
        self.lock = asyncio.Lock()

    def get(self, guild_id: int) -> GuildSettings | None:
        return self._by_guild.get(guild_id)

    def put(self, guild_id: int, settings: GuildSettings) -> None:
        self._by_guild[guild_id] = settings

    def drop(self, guild_id: int) -> None:
        self._by_guild.pop(guild_id, None)


SpaceKey = tuple[int, str, int]  # (guild id, embedding model, dimensions)


class KnowledgeIndexes:
    """Each guild's knowledge vectors per embedding space, loaded on first search, written through on
    remember/forget, within a memory budget: past it the least recently used are dropped (the
    database has every vector; a dropped index loads again when next searched).

    The lock of a space serialises its loading and its changes, so a load never misses or doubles a
    write that lands meanwhile.
    """

    def __init__(self, max_bytes: int = DEFAULT_KNOWLEDGE_MEMORY_BYTES) -> None:
        self.max_bytes = max_bytes
        self._indexes: OrderedDict[SpaceKey, VectorIndex] = OrderedDict()  # least recently used first
        self._locks: dict[SpaceKey, asyncio.Lock] = {}

    def get(self, key: SpaceKey) -> VectorIndex | None:
        index = self._indexes.get(key)
        if index is not None:
            self._indexes.move_to_end(key)
        return index

    def put(self, key: SpaceKey, index: VectorIndex) -> None:
        self._indexes[key] = index
        self._indexes.move_to_end(key)
        self.trim()

    def trim(self) -> list[SpaceKey]:
        """Drop the least recently used indexes while over budget; the latest always stays."""
        total = self.nbytes
        dropped: list[SpaceKey] = []
        while total > self.max_bytes and len(self._indexes) > 1:
            key, index = self._indexes.popitem(last=False)
            total -= index.nbytes
            dropped.append(key)
        if dropped:
            log.info(
                "Knowledge indexes over %d MB: dropped %d (now %d MB in %d)",
                self.max_bytes >> 20,
                len(dropped),
                total >> 20,
                len(self._indexes),
            )
        return dropped

    @property
    def nbytes(self) -> int:
        return sum(index.nbytes for index in self._indexes.values())

    def __contains__(self, key: SpaceKey) -> bool:
        return key in self._indexes

    def lock(self, key: SpaceKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


@dataclass(eq=False)
class OpenQuestion:
    """A confirmation this process is waiting on; `outcome` is set once, by the first answer."""

    token: str
    request: ConfirmationRequest
    outcome: ConfirmationOutcome | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, outcome: ConfirmationOutcome) -> bool:
        """Record `outcome` unless something was recorded first; True if this call decided."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.decided.set()
        return True


class OpenQuestions:
    """The confirmations waiting for an answer, by a random token that the question's buttons carry.

    The token is random rather than a counter so that a button left on screen by an earlier run of the
    bot can never answer a question asked by this one.
    """

    def __init__(self) -> None:
        self._open: dict[str, OpenQuestion] = {}

    def ask(self, request: ConfirmationRequest) -> OpenQuestion:
        question = OpenQuestion(secrets.token_hex(16), request)
        self._open[question.token] = question
        return question

    def get(self, token: str) -> OpenQuestion | None:
        return self._open.get(token)

    def close(self, question: OpenQuestion) -> None:
        self._open.pop(question.token, None)

    def __len__(self) -> int:
        return len(self._open)


@dataclass
class ProcessState:
    """The one home of per-process state; built once at start-up and passed down."""

    model_gate: ModelCallGate
    lanes: ConversationLanes = field(default_factory=ConversationLanes)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    pending: PendingTurns = field(default_factory=PendingTurns)
    settings: SettingsCache = field(default_factory=SettingsCache)
    intake: IntakeLocks = field(default_factory=IntakeLocks)
    knowledge: KnowledgeIndexes = field(default_factory=KnowledgeIndexes)
    questions: OpenQuestions = field(default_factory=OpenQuestions)
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))
    """This process run's id, on each turn it journals: turns of other runs left running are lost."""

    @classmethod
    def create(
        cls,
        *,
        max_concurrent_model_calls: int,
        max_waiting_model_calls: int,
        knowledge_memory_bytes: int = DEFAULT_KNOWLEDGE_MEMORY_BYTES,
    ) -> ProcessState:
        return cls(
            model_gate=ModelCallGate(max_concurrent_model_calls, max_waiting_model_calls),
            knowledge=KnowledgeIndexes(knowledge_memory_bytes),
        )
