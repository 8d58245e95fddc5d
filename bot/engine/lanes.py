"""Order: one turn at a time per conversation (lanes), one message intake at a time per channel.

Both keep the order things arrived in; the engine owns the first, the chat intake the second.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field


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
