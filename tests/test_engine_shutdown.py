"""The engine's shutdown: turns in progress get the grace, the rest end as interrupted, none start.

The real engine and SDK against the stand-in OpenAI server; the bot process itself is tested in
tests/faults/test_sigterm.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from bot.engine.engine import RESTARTING
from bot.engine.events import Busy, Cancelled, Completed, Queued, TextDelta, TurnEvent
from bot.services import Services
from standins.openai import FakeOpenAI, Reply
from tests.conftest import ServicesFactory
from tests.test_engine import KEY, context, turn

LONG_REPLY = Reply(" ".join(f"word{i}" for i in range(100)), deltas=100, delta_delay_s=0.5, pace="deltas")
"""50 s of streaming: only a shutdown that cuts it short lets a test end."""
NEVER_S = 3600.0
SAFETY_S = 30.0
"""Fails a test whose shutdown hangs instead of hanging the suite (never a measurement)."""


@dataclass
class Watched:
    """A turn consumed in the background: its events as they come."""

    events: list[TurnEvent] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    ended: bool = False

    async def until(self, predicate: Callable[[list[TurnEvent]], bool]) -> None:
        async with asyncio.timeout(SAFETY_S), self.changed:
            await self.changed.wait_for(lambda: predicate(self.events) or self.ended)

    async def streaming(self) -> None:
        await self.until(lambda events: any(isinstance(e, TextDelta) for e in events))


@pytest.fixture
async def watch() -> AsyncIterator[Callable[[Services, str, int], Watched]]:
    """Starts turns in the background; any still running are cancelled after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(services: Services, text: str, author: int = 7) -> Watched:
        watched = Watched()

        async def run() -> None:
            try:
                async for event in services.engine.reply(KEY, turn(text, author=author), context()):
                    async with watched.changed:
                        watched.events.append(event)
                        watched.changed.notify_all()
            finally:
                async with watched.changed:
                    watched.ended = True
                    watched.changed.notify_all()

        tasks.append(asyncio.create_task(run()))
        return watched

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


Watch = Callable[[Services, str, int], Watched]


async def journal(services: Services, turn_id: int) -> str | None:
    return await services.storage.turns.status(turn_id)


async def test_a_turn_that_ends_within_the_grace_completes(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, watch: Watch
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("one two three four five", deltas=5, delta_delay_s=0.05, pace="deltas"))
    reply = watch(services, "hi", 7)
    await reply.streaming()
    async with asyncio.timeout(SAFETY_S):
        cut = await services.engine.shut_down(grace_s=NEVER_S, wrap_up_s=NEVER_S)
    assert cut == 0
    await reply.until(lambda events: False)  # its consumer let go too
    assert isinstance(reply.events[-1], Completed) and reply.events[-1].text == "one two three four five"
    assert await journal(services, 1) == "completed"


async def test_a_turn_still_running_after_the_grace_ends_as_interrupted(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, watch: Watch
) -> None:
    services = await make_services()
    fake_openai.responses.push(LONG_REPLY)
    reply = watch(services, "tell me a long story", 7)
    await reply.streaming()
    async with asyncio.timeout(SAFETY_S):
        cut = await services.engine.shut_down(grace_s=0, wrap_up_s=NEVER_S)
    assert cut == 1
    final = reply.events[-1]
    assert isinstance(final, Cancelled) and final.reason == "shutdown"
    streamed = "".join(e.text for e in reply.events if isinstance(e, TextDelta))
    assert streamed.startswith("word0") and final.partial_text == streamed
    assert await journal(services, 1) == "interrupted"
    # Finished as interrupted, not left running: the next start has nothing to report as lost.
    assert await services.storage.turns.take_interrupted() == []


async def test_a_second_signal_ends_the_grace_at_once(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, watch: Watch
) -> None:
    services = await make_services()
    fake_openai.responses.push(LONG_REPLY)
    reply = watch(services, "tell me a long story", 7)
    await reply.streaming()
    shutting_down = asyncio.create_task(services.engine.shut_down(grace_s=NEVER_S, wrap_up_s=NEVER_S))
    await asyncio.sleep(0)  # one loop turn: the shutdown now waits out its (hour-long) grace
    assert not shutting_down.done()
    services.engine.end_grace()
    async with asyncio.timeout(SAFETY_S):
        assert await shutting_down == 1
    final = reply.events[-1]
    assert isinstance(final, Cancelled) and final.reason == "shutdown"
    assert await journal(services, 1) == "interrupted"


async def test_no_turn_starts_once_shutting_down(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, watch: Watch
) -> None:
    services = await make_services()
    fake_openai.responses.push(LONG_REPLY)
    first = watch(services, "tell me a long story", 1)
    await first.streaming()
    queued = watch(services, "and then?", 2)
    await queued.until(lambda events: bool(events))
    assert isinstance(queued.events[0], Queued)  # it waits in line behind the first
    async with asyncio.timeout(SAFETY_S):
        await services.engine.shut_down(grace_s=0, wrap_up_s=NEVER_S)
    late = [event async for event in services.engine.reply(KEY, turn("hello?", author=3), context())]

    final = first.events[-1]
    assert isinstance(final, Cancelled) and final.reason == "shutdown"
    assert queued.events[-1] == Busy(RESTARTING)  # it reached the front of its line during the shutdown
    assert late == [Busy(RESTARTING)]
    assert len(fake_openai.requests_to("/v1/responses")) == 1  # neither reached the model


async def test_stop_still_ends_a_turn_as_stopped_and_cancelled(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, watch: Watch
) -> None:
    services = await make_services()
    fake_openai.responses.push(LONG_REPLY)
    reply = watch(services, "tell me a long story", 7)
    await reply.streaming()
    assert services.engine.cancel(KEY)
    async with asyncio.timeout(SAFETY_S):
        await services.engine.wait_idle()
    final = reply.events[-1]
    assert isinstance(final, Cancelled) and final.reason == "stopped"
    assert await journal(services, 1) == "cancelled"
