"""The reply streamer and the scheduler's asyncio driver on a virtual-time event loop; the Discord sink.

The loop's clock jumps straight to the next timer whenever nothing is ready, so seconds of streaming
run in milliseconds and every timing is exact: nothing here sleeps in real time.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

import discord
import pytest
from yarl import URL

from bot.discord.render.discord_sink import DiscordSink, outcome_of
from bot.discord.render.scheduler import (
    EDIT_ROUTE,
    SKIPPED,
    SchedulerConfig,
    WriteKind,
    WriteScheduler,
    rate_limit_trace_config,
)
from bot.discord.render.split import FENCE, MAX_MESSAGE_CHARS, split_message
from bot.discord.render.stream import (
    PostResult,
    ReplyButton,
    ReplyStreamer,
    SentMessage,
    StreamConfig,
    StreamResult,
    WriteOutcome,
)
from bot.engine.events import (
    Busy,
    Cancelled,
    Citation,
    CodeRun,
    Completed,
    Failed,
    GeneratedFile,
    Queued,
    Started,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnEvent,
    Usage,
)

T = TypeVar("T")

# -- virtual time -------------------------------------------------------------------------------------


class _VirtualSelector(selectors.SelectSelector):
    """Never blocks: a wait for ``timeout`` seconds moves the loop's clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: the loop would wait forever (nothing scheduled)")
        if timeout > 0:
            self._loop.virtual_now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.virtual_now = 1000.0
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self.virtual_now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


# -- a sink that records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeMessage:
    id: int


@dataclass
class Call:
    at: float
    op: str
    message_id: int | None
    text: str
    files: tuple[str, ...] = ()


@dataclass
class FakeSink:
    """Records every write with the loop time it started; each takes ``latency_s`` (virtual)."""

    channel_id: int = 1
    latency_s: float = 0.02
    max_file_bytes: int = 1000
    calls: list[Call] = field(default_factory=list)
    contents: dict[int, str] = field(default_factory=dict)
    attachments: dict[int, tuple[str, ...]] = field(default_factory=dict)
    buttons: dict[int, tuple[str, ...]] = field(default_factory=dict)
    fail_edits: int = 0
    gone: bool = False
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def post(
        self,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        nonce: str | None = None,
        buttons: Sequence[ReplyButton] = (),
    ) -> PostResult:
        start = self._now()
        await asyncio.sleep(self.latency_s)
        if self.gone:
            self.calls.append(Call(start, "post-refused", None, text))
            return PostResult(None, WriteOutcome.GONE)
        message_id = next(self.ids)
        assert len(text) <= MAX_MESSAGE_CHARS
        self.calls.append(Call(start, "post", message_id, text, tuple(f.filename for f in files)))
        self.contents[message_id] = text
        self.attachments[message_id] = tuple(f.filename for f in files)
        if buttons:
            self.buttons[message_id] = tuple(b.custom_id for b in buttons)
        return PostResult(FakeMessage(message_id), WriteOutcome.OK)

    async def edit(
        self,
        message: SentMessage,
        text: str,
        files: Sequence[GeneratedFile] = (),
        *,
        buttons: Sequence[ReplyButton] = (),
    ) -> WriteOutcome:
        start = self._now()
        await asyncio.sleep(self.latency_s)
        if self.fail_edits:
            self.fail_edits -= 1
            self.calls.append(Call(start, "edit-failed", message.id, text))
            return WriteOutcome.FAILED
        assert len(text) <= MAX_MESSAGE_CHARS
        self.calls.append(Call(start, "edit", message.id, text, tuple(f.filename for f in files)))
        self.contents[message.id] = text
        if files:
            self.attachments[message.id] = tuple(f.filename for f in files)
        if buttons:
            self.buttons[message.id] = tuple(b.custom_id for b in buttons)
        return WriteOutcome.OK

    async def typing(self) -> WriteOutcome:
        self.calls.append(Call(self._now(), "typing", None, ""))
        await asyncio.sleep(self.latency_s)
        return WriteOutcome.OK

    async def delete(self, message: SentMessage) -> WriteOutcome:
        self.calls.append(Call(self._now(), "delete", message.id, ""))
        self.contents.pop(message.id, None)
        return WriteOutcome.OK

    def messages(self) -> list[str]:
        return [self.contents[i] for i in sorted(self.contents)]

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.op in ("post", "edit")]


async def model(
    events: Sequence[TurnEvent | float],
) -> AsyncIterator[TurnEvent]:
    """Yield events; a float is a pause (virtual seconds), like a model thinking between deltas."""
    for item in events:
        if isinstance(item, float | int):
            await asyncio.sleep(item)
        else:
            yield item


def streamed(text: str, pieces: int, over_s: float) -> list[TurnEvent | float]:
    """The text as ``pieces`` deltas spread over ``over_s`` seconds."""
    size = max(1, -(-len(text) // pieces))
    out: list[TurnEvent | float] = []
    for i in range(0, len(text), size):
        out += [over_s / pieces, TextDelta(text[i : i + size])]
    return out


def done(text: str, **kwargs: Any) -> Completed:
    return Completed(text=text, usage=Usage(1, 1), **kwargs)


async def stream(
    events: Sequence[TurnEvent | float],
    sink: FakeSink | None = None,
    scheduler: WriteScheduler | None = None,
    config: StreamConfig | None = None,
) -> tuple[StreamResult, FakeSink]:
    sink = sink or FakeSink()
    scheduler = scheduler or WriteScheduler()
    try:
        result = await ReplyStreamer(sink, scheduler, config=config).render(model(events))
    finally:
        await scheduler.close()
    return result, sink


# -- the streamer ----------------------------------------------------------------------------------------


def test_final_text_is_exact() -> None:
    text = "Hello **world**, this is <@123> and @everyone: `code` and more."
    result, sink = run_virtual(lambda: stream([Started(), *streamed(text, 10, 1.0), done(text)]))
    assert sink.messages() == [text]
    assert result.final_text == text and result.delivered and result.outcome == "completed"
    assert result.message_ids == tuple(sorted(sink.contents))


def test_long_answer_with_code_block_is_split_into_balanced_parts() -> None:
    prose = " ".join(f"word{i}" for i in range(200))
    code = "\n".join(f"    print({i})  # step {i}" for i in range(120))
    text = prose + "\n\nHere it is:\n\n```python\n" + code + "\n```\n\n" + prose
    assert 5000 <= len(text) <= 7000
    result, sink = run_virtual(lambda: stream([Started(), *streamed(text, 100, 5.0), done(text)]))
    messages = sink.messages()
    assert messages == split_message(text)
    assert len(messages) >= 3
    assert all(len(m) <= MAX_MESSAGE_CHARS and m.count(FENCE) % 2 == 0 for m in messages)
    assert result.delivered and len(result.message_ids) == len(messages)
    # the messages were posted in order
    posts = [c for c in sink.calls if c.op == "post"]
    post_ids = [c.message_id for c in posts]
    assert None not in post_ids and post_ids == sorted(i for i in post_ids if i is not None)


def test_no_edit_closer_than_the_interval_before_the_final() -> None:
    text = " ".join(f"token{i}" for i in range(300))

    async def main() -> tuple[float, FakeSink]:
        sink = FakeSink()
        scheduler = WriteScheduler(SchedulerConfig(edit_interval_s=1.0))
        streamer = ReplyStreamer(sink, scheduler)
        streamer.start()
        for event in streamed(text, 120, 6.0):
            if isinstance(event, float):
                await asyncio.sleep(event)
            else:
                streamer.feed(event)
        finished_at = asyncio.get_running_loop().time()
        streamer.feed(done(text))
        await streamer.wait()
        await scheduler.close()
        return finished_at, sink

    finished_at, sink = run_virtual(main)
    by_message: dict[int | None, list[Call]] = defaultdict(list)
    for call in sink.writes():
        by_message[call.message_id].append(call)
    for calls in by_message.values():
        streaming = [c for c in calls if c.at < finished_at]
        for before, after in itertools.pairwise(streaming):
            assert after.at - before.at >= 1.0 - 1e-9
    edits = [c for c in sink.writes() if c.op == "edit"]
    assert len(edits) >= 4, "the text was shown as it grew"
    final = sink.writes()[-1]
    assert final.at - finished_at < 1e-6, "the final edit goes at once, not after the interval"
    assert sink.messages() == split_message(text)


def test_tool_activity_line_while_a_tool_runs_then_gone() -> None:
    events: list[TurnEvent | float] = [
        Started(),
        TextDelta("Let me book that."),
        0.1,
        ToolStarted("c1", "book_table", "Booking a table…"),
        2.0,
        ToolFinished("c1", "book_table", True, "Booked a table for 4 at 19:00"),
        1.5,
        TextDelta(" Done: see you at 19:00."),
        0.1,
        done("Let me book that. Done: see you at 19:00."),
    ]
    _result, sink = run_virtual(lambda: stream(events))
    shown = [c.text for c in sink.writes()]
    assert any("-# 🔧 Booking a table…" in t for t in shown)
    assert any("-# ✅ Booked a table for 4 at 19:00" in t for t in shown)
    assert sink.messages() == ["Let me book that. Done: see you at 19:00."]


def test_tool_line_alone_before_any_text() -> None:
    events: list[TurnEvent | float] = [
        Started(),
        ToolStarted("c1", "web_search", "Searching the web…"),
        1.0,
        ToolFinished("c1", "web_search", True, ""),
        TextDelta("Found it."),
        done("Found it."),
    ]
    _, sink = run_virtual(lambda: stream(events))
    assert sink.writes()[0].text == "-# 🔧 Searching the web…"
    assert sink.messages() == ["Found it."]


def test_failure_keeps_partial_text_and_adds_a_note() -> None:
    events: list[TurnEvent | float] = [
        Started(),
        *streamed("Partial answer ```python\nprint(1)", 4, 1.0),
        Failed("timeout", "The model took too long.", partial_text="Partial answer ```python\nprint(1)"),
    ]
    result, sink = run_virtual(lambda: stream(events))
    (message,) = sink.messages()
    assert message.startswith("Partial answer ```python\nprint(1)\n```")
    assert message.endswith("⚠️ The model took too long.")
    assert message.count(FENCE) % 2 == 0, "the note is outside the code block"
    assert result.outcome == "failed"


def test_failure_keeps_what_was_shown_when_the_engine_reports_less() -> None:
    events: list[TurnEvent | float] = [
        Started(),
        *streamed("Shown so far", 3, 1.0),
        Failed("server", "Oops."),
    ]
    _, sink = run_virtual(lambda: stream(events))
    assert sink.messages() == ["Shown so far\n\n⚠️ Oops."]


def test_failure_before_any_text_is_one_note() -> None:
    _result, sink = run_virtual(lambda: stream([Started(), Failed("quota", "Out of credit.")]))
    assert sink.messages() == ["⚠️ Out of credit."]


def test_cancelled_adds_a_stopped_note() -> None:
    events: list[TurnEvent | float] = [Started(), *streamed("Half an ans", 2, 0.5), Cancelled("Half an ans")]
    result, sink = run_virtual(lambda: stream(events))
    assert sink.messages() == ["Half an ans\n\n-# ⏹️ Stopped."]
    assert result.outcome == "cancelled"


def test_busy_posts_one_short_message() -> None:
    result, sink = run_virtual(lambda: stream([Busy("Still answering your earlier messages.")]))
    assert [c.op for c in sink.calls] == ["post"]
    assert sink.messages() == ["⏳ Still answering your earlier messages."]
    assert result.outcome == "busy"


def test_a_queued_turn_posts_nothing_before_its_text() -> None:
    """A placeholder would take a place in the channel before the earlier answers it waits for."""
    events: list[TurnEvent | float] = [Queued(2), 3.0, Started(), TextDelta("Hi"), done("Hi")]
    _, sink = run_virtual(lambda: stream(events))
    assert [c.op for c in sink.calls] == ["typing", "post"]
    assert sink.messages() == ["Hi"]


def test_typing_until_the_first_text_and_refreshed_only_while_needed() -> None:
    events: list[TurnEvent | float] = [
        Started(),
        20.0,
        TextDelta("Thought hard."),
        5.0,
        done("Thought hard."),
    ]
    _, sink = run_virtual(lambda: stream(events))
    typing = [c.at for c in sink.calls if c.op == "typing"]
    first_post = next(c.at for c in sink.calls if c.op == "post")
    start = 1000.0
    assert typing == pytest.approx([start + 0.5, start + 8.5, start + 16.5])
    assert all(t < first_post for t in typing)


def test_no_typing_when_the_answer_comes_quickly() -> None:
    _, sink = run_virtual(lambda: stream([Started(), 0.1, TextDelta("Fast."), done("Fast.")]))
    assert [c.op for c in sink.calls] == ["post"]


def test_sources_code_runs_and_files_are_rendered_on_the_last_message() -> None:
    completed = done(
        "The plot is attached.",
        citations=(
            Citation("Python docs [3.12]", "https://docs.python.org/3/library/re.html"),
            Citation("Same again", "https://docs.python.org/3/library/re.html"),
            Citation("A (paren) page", "https://example.com/a b>c"),
        ),
        code_runs=(CodeRun("ci1", "import math\nprint(math.pi)\n```oops", "3.141592653589793"),),
        files=(GeneratedFile("plot.png", b"x" * 10), GeneratedFile("huge.csv", b"y" * 5000)),
    )
    result, sink = run_virtual(lambda: stream([Started(), TextDelta("The plot is attached."), completed]))
    (message,) = sink.messages()
    assert message.startswith("The plot is attached.\n\n")
    assert "```python\nimport math\nprint(math.pi)\n`\u200b`\u200b`oops\n```" in message
    assert "-# Output\n```\n3.141592653589793\n```" in message
    assert "-# 1. [Python docs \\[3.12\\]](<https://docs.python.org/3/library/re.html>)" in message
    assert "-# 2. [A (paren) page](<https://example.com/a%20b%3Ec>)" in message
    assert "3." not in message.split("-# Sources")[1].split("\n-# 📎")[0].replace("[3.12", "")
    assert "`huge.csv` (5 KB) is too large to attach here (limit 1000 B)" in message
    assert message.count(FENCE) % 2 == 0
    (message_id,) = result.message_ids
    assert sink.attachments[message_id] == ("plot.png",)


def test_buttons_go_on_the_last_message_of_a_finished_reply_only() -> None:
    long_text = "word " * 700  # two messages
    seen: list[Completed | Failed | Cancelled] = []

    def buttons_for(event: Completed | Failed | Cancelled) -> list[ReplyButton]:
        seen.append(event)
        return [ReplyButton("Steps", f"steps:{event.turn_id}", "🧾")] if event.steps else []

    async def main(events: Sequence[TurnEvent | float]) -> tuple[StreamResult, FakeSink]:
        sink, scheduler = FakeSink(), WriteScheduler()
        try:
            streamer = ReplyStreamer(sink, scheduler, buttons_for=buttons_for)
            return await streamer.render(model(events)), sink
        finally:
            await scheduler.close()

    ran_tools = {"turn_id": 7, "steps": 2}
    events = [Started(), *streamed(long_text, 20, 4.0), done(long_text, **ran_tools)]
    result, sink = run_virtual(lambda: main(events))
    assert len(result.message_ids) == 2 and len(seen) == 1
    assert sink.buttons == {result.message_ids[-1]: ("steps:7",)}
    # The final text equals what streamed, so the button costs exactly one extra edit of the last part.
    result, sink = run_virtual(lambda: main([Started(), TextDelta("Hi"), done("Hi", **ran_tools)]))
    assert sink.buttons == {result.message_ids[0]: ("steps:7",)}
    result, sink = run_virtual(lambda: main([Started(), TextDelta("Hi"), done("Hi")]))
    assert sink.buttons == {}, "a turn without tools has no steps to show"
    # A turn that failed, was stopped or was cut by a shutdown after its tools ran shows them too.
    failed = Failed("server", "Down.", turn_id=8, steps=1)
    result, sink = run_virtual(lambda: main([Started(), TextDelta("Hi"), failed]))
    assert result.outcome == "failed" and sink.buttons == {result.message_ids[0]: ("steps:8",)}
    stopped = Cancelled("Hi", turn_id=9, steps=1)
    result, sink = run_virtual(lambda: main([Started(), TextDelta("Hi"), stopped]))
    assert result.outcome == "cancelled" and sink.buttons == {result.message_ids[0]: ("steps:9",)}
    cut = Cancelled("Hi", reason="shutdown", turn_id=10, steps=2)
    result, sink = run_virtual(lambda: main([Started(), TextDelta("Hi"), cut]))
    assert result.outcome == "interrupted" and sink.buttons == {result.message_ids[0]: ("steps:10",)}
    result, sink = run_virtual(lambda: main([Started(), TextDelta("Hi"), Cancelled("Hi")]))
    assert result.outcome == "cancelled" and sink.buttons == {}, "stopped before any tool: no steps"


async def test_discord_sink_sends_buttons_as_a_view_and_leaves_them_alone_on_plain_edits() -> None:
    channel = _FakeChannel()
    sink = DiscordSink(channel)  # type: ignore[arg-type]
    posted = await sink.post("answer", buttons=[ReplyButton("Steps", "steps:9", "🧾")])
    (button,) = channel.sent[0]["view"].children
    assert (button.label, button.custom_id) == ("Steps", "steps:9")
    message = posted.message
    assert isinstance(message, _FakeDiscordMessage)
    await sink.edit(FakeMessage(message.id), "answer, edited")
    assert "view" not in message.edits[0], "an edit without buttons keeps the message's components"
    await sink.edit(FakeMessage(message.id), "answer", buttons=[ReplyButton("Steps", "steps:9")])
    assert message.edits[1]["view"].children[0].custom_id == "steps:9"


def test_a_failed_edit_is_retried_and_the_reply_carries_on() -> None:
    text = "one two three four five six seven"
    sink = FakeSink(fail_edits=1)
    result, sink = run_virtual(lambda: stream([Started(), *streamed(text, 7, 3.0), done(text)], sink=sink))
    assert any(c.op == "edit-failed" for c in sink.calls)
    assert sink.messages() == [text] and result.delivered


def test_a_channel_that_refuses_posts_ends_the_reply_undelivered() -> None:
    sink = FakeSink(gone=True)
    result, sink = run_virtual(lambda: stream([Started(), TextDelta("Hi"), 1.0, done("Hi there")], sink=sink))
    assert not result.delivered
    assert [c.op for c in sink.calls] == ["post-refused"], "no more requests after a 403/404"


def test_an_event_stream_that_ends_without_a_terminal_event_is_marked_cut_off() -> None:
    result, sink = run_virtual(lambda: stream([Started(), TextDelta("Half")]))
    assert sink.messages() == ["Half\n\n⚠️ The answer was cut off."]
    assert result.outcome == "interrupted"


def test_a_final_text_shorter_than_the_stream_deletes_extra_messages() -> None:
    long_text = "x " * 1500

    async def main() -> FakeSink:
        sink = FakeSink()
        scheduler = WriteScheduler()
        result = await ReplyStreamer(sink, scheduler).render(
            model([*streamed(long_text, 30, 3.0), done("x")])
        )
        await scheduler.close()
        assert result.message_ids and len(result.message_ids) == 1
        return sink

    sink = run_virtual(main)
    assert any(c.op == "delete" for c in sink.calls)
    assert sink.messages() == ["x"]


def test_a_long_streamed_reply_ends_exactly_as_the_final_text() -> None:
    """~24k characters in 400 deltas: the final write leaves exactly the final text's parts.

    How fast the final write follows the last byte is a figure, not a test: `python -m bench.bench_overhead`.
    """
    text = "\n\n".join(" ".join(f"w{i}x{j}" for j in range(60)) for i in range(60))

    async def main() -> list[str]:
        sink = FakeSink(latency_s=0.0)
        scheduler = WriteScheduler()
        streamer = ReplyStreamer(sink, scheduler)
        for event in streamed(text, 400, 8.0):
            if isinstance(event, float):
                await asyncio.sleep(event)
            else:
                streamer.feed(event)
        streamer.feed(done(text))
        await streamer.wait()
        await scheduler.close()
        return sink.messages()

    assert run_virtual(main) == split_message(text)


def test_hundred_concurrent_replies_stay_in_budget_and_meet_the_goals() -> None:
    """Issue 10's shape end to end through the streamer: 100 replies, 40 deltas over 4 s each."""
    config = SchedulerConfig()
    text = " ".join(f"word{i}" for i in range(120))

    async def main() -> tuple[list[FakeSink], float]:
        scheduler = WriteScheduler(config)
        sinks = [FakeSink(channel_id=i, latency_s=0.02) for i in range(100)]
        start = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(
                ReplyStreamer(s, scheduler).render(model([Started(), *streamed(text, 40, 4.0), done(text)]))
                for s in sinks
            )
        )
        await scheduler.close()
        assert all(r.delivered for r in results)
        assert scheduler.stats.rate_limited == 0
        return sinks, start

    sinks, start = run_virtual(main)
    calls = sorted((c for s in sinks for c in s.calls), key=lambda c: c.at)
    times = [c.at for c in calls]
    for i, t in enumerate(times):
        assert sum(1 for u in times[i : i + 46] if u < t + 1.0) <= 45, "never over 45 writes a second"
    first_text = [min(c.at for c in s.calls if c.op == "post") + s.latency_s - start for s in sinks]
    completed = [max(c.at for c in s.writes()) + s.latency_s - start for s in sinks]
    assert max(first_text) <= 2.4
    assert max(completed) <= 6.8
    assert all(s.messages() == [text] for s in sinks)
    refreshes = Counter(len(s.writes()) - 2 for s in sinks)  # minus the first post and the final edit
    assert max(refreshes) - min(refreshes) <= 1, refreshes


# -- the scheduler's driver ------------------------------------------------------------------------------


def test_driver_runs_jobs_and_merged_writes_share_a_future() -> None:
    async def main() -> None:
        scheduler = WriteScheduler()
        ran: list[str] = []

        def job(name: str) -> Callable[[], Awaitable[object]]:
            async def run() -> object:
                ran.append(name)
                return name

            return run

        first = scheduler.submit(WriteKind.REFRESH, 1, job("a"), route=EDIT_ROUTE, target="m", reply="r")
        assert await first == "a"
        second = scheduler.submit(WriteKind.REFRESH, 1, job("b"), route=EDIT_ROUTE, target="m", reply="r")
        third = scheduler.submit(WriteKind.REFRESH, 1, job("c"), route=EDIT_ROUTE, target="m", reply="r")
        assert second is third
        loop = asyncio.get_running_loop()
        before = loop.time()
        assert await third == "c"
        assert loop.time() - before == pytest.approx(1.0, abs=0.01), "the edit interval held it back"
        assert ran == ["a", "c"]
        await scheduler.close()

    run_virtual(main)


def test_driver_gives_back_the_budget_of_a_skipped_job_and_reports_errors() -> None:
    async def main() -> None:
        scheduler = WriteScheduler()

        async def skip() -> object:
            return SKIPPED

        async def boom() -> object:
            raise ValueError("bug in a job")

        assert await scheduler.perform(WriteKind.FINAL, 1, skip, route=EDIT_ROUTE) is SKIPPED
        assert scheduler.stats.refunded == 1
        with pytest.raises(ValueError):
            await scheduler.perform(WriteKind.FINAL, 1, boom, route=EDIT_ROUTE)
        await scheduler.close()

    run_virtual(main)


def test_trace_config_feeds_discord_rate_limit_headers_to_the_scheduler() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        scheduler = WriteScheduler()
        (on_request_end,) = rate_limit_trace_config(scheduler).on_request_end
        headers = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "3.5"}
        edit = SimpleNamespace(
            method="PATCH",
            url=URL("https://discord.com/api/v10/channels/77/messages/5"),
            response=SimpleNamespace(status=200, headers=headers),
        )
        before = loop.time()
        await on_request_end(None, None, edit)  # type: ignore[arg-type]

        async def job() -> object:
            return loop.time()

        started = await scheduler.perform(WriteKind.FINAL, 77, job, route=EDIT_ROUTE)
        assert started == pytest.approx(before + 3.5), "Discord said the bucket is empty: wait for its reset"
        too_many = SimpleNamespace(
            method="POST",
            url=URL("https://discord.com/api/v10/channels/1/messages"),
            response=SimpleNamespace(status=429, headers={"Retry-After": "2", "X-RateLimit-Global": "true"}),
        )
        await on_request_end(None, None, too_many)  # type: ignore[arg-type]
        paused_at = loop.time()
        assert await scheduler.perform(WriteKind.FINAL, 5, job, route=EDIT_ROUTE) == pytest.approx(
            paused_at + 2
        )
        assert scheduler.stats.global_rate_limited == 1
        await scheduler.close()

    run_virtual(main)


# -- the Discord sink ------------------------------------------------------------------------------------


class _FakeChannel:
    def __init__(self) -> None:
        self.id = 42
        self.guild = SimpleNamespace(filesize_limit=25 * 1024 * 1024)
        self.sent: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.messages: dict[int, _FakeDiscordMessage] = {}

    async def send(self, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        self.sent.append(kwargs)
        message = self.messages[len(self.sent)] = _FakeDiscordMessage(
            len(self.sent), kwargs.get("content") or "", list(kwargs.get("files") or [])
        )
        return message

    def get_partial_message(self, message_id: int) -> _FakeDiscordMessage:
        return self.messages[message_id]

    def typing(self) -> Awaitable[None]:
        return asyncio.sleep(0)


class _FakeDiscordMessage:
    def __init__(self, message_id: int, content: str = "", attachments: list[Any] | None = None) -> None:
        self.id = message_id
        self.content = content
        self.attachments = attachments or []
        self.edits: list[dict[str, Any]] = []

    async def edit(self, **kwargs: Any) -> None:
        self.edits.append(kwargs)


def _http_error(cls: type[discord.HTTPException], status: int) -> discord.HTTPException:
    response: Any = SimpleNamespace(status=status, reason="x")  # what discord.py reads of a response
    return cls(response, {"code": 1, "message": "nope"})


async def test_discord_sink_never_allows_mentions_and_replies_without_pinging() -> None:
    channel = _FakeChannel()
    origin = SimpleNamespace(to_reference=lambda fail_if_not_exists: ("ref", fail_if_not_exists))
    sink = DiscordSink(channel, reply_to=origin)  # type: ignore[arg-type]
    assert sink.channel_id == 42 and sink.max_file_bytes == 25 * 1024 * 1024
    first = await sink.post("hi @everyone <@1>")
    second = await sink.post("more", [GeneratedFile("a.txt", b"a")])
    assert first.outcome is second.outcome is WriteOutcome.OK
    for sent in channel.sent:
        mentions = sent["allowed_mentions"]
        assert mentions.everyone is False and mentions.users is False and mentions.roles is False
        assert mentions.replied_user is False
        assert sent["mention_author"] is False
    assert channel.sent[0]["reference"] == ("ref", False)
    assert channel.sent[1]["reference"] is None, "only the first message is a reply"
    assert [f.filename for f in channel.sent[1]["files"]] == ["a.txt"]
    message = first.message
    assert isinstance(message, _FakeDiscordMessage)
    assert await sink.edit(FakeMessage(message.id), "edited <@&9>") is WriteOutcome.OK
    assert message.edits[0]["allowed_mentions"].everyone is False
    assert message.edits[0]["allowed_mentions"].roles is False


async def test_discord_sink_maps_http_errors_to_outcomes() -> None:
    channel = _FakeChannel()
    sink = DiscordSink(channel)  # type: ignore[arg-type]
    channel.error = _http_error(discord.Forbidden, 403)
    assert (await sink.post("x")) == PostResult(None, WriteOutcome.GONE)
    channel.error = _http_error(discord.HTTPException, 400)
    assert (await sink.post("x")).outcome is WriteOutcome.REJECTED
    channel.error = _http_error(discord.DiscordServerError, 503)
    assert (await sink.post("x")).outcome is WriteOutcome.FAILED
    channel.error = OSError("connection reset")
    assert (await sink.post("x")).outcome is WriteOutcome.FAILED
    assert outcome_of(_http_error(discord.NotFound, 404)) is WriteOutcome.GONE
    assert outcome_of(_http_error(discord.HTTPException, 429)) is WriteOutcome.FAILED
