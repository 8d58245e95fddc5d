"""Run steps: what a turn's tools did, recorded as it runs and shown by the reply's Steps button.

The store runs on SQLite and PostgreSQL; the recording runs through the real engine and both backends
against the stand-in OpenAI; the button runs end to end on the stand-in Discord, also after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import unicodedata
from pathlib import Path
from typing import Any

import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.discord import steps as steps_module
from bot.discord.render.discord_sink import button_view
from bot.discord.render.stream import ReplyButton
from bot.discord.steps import (
    NO_STEPS,
    NOT_HERE,
    STEPS_ID,
    UNREADABLE,
    may_see,
    steps_buttons,
    steps_description,
    steps_embed,
    steps_id,
)
from bot.engine.events import (
    TERMINAL_EVENTS,
    Cancelled,
    CodeRun,
    Completed,
    Failed,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnEvent,
    Usage,
)
from bot.engine.run_steps import CANCELLED_RESULT, StepRecorder
from bot.engine.turn import UserTurn
from bot.services import Services
from bot.storage import Storage
from bot.storage.database import Database
from bot.storage.turn_steps import (
    ARGUMENTS_CHARS,
    RESULT_CHARS,
    RecordedSteps,
    TurnStep,
    TurnStepStore,
    clip,
)
from bot.tooling import ConfirmationOutcome, ConfirmationRequest
from standins.discord import CALLBACK_DEFERRED_MESSAGE, FakeDiscord, StoredMessage
from standins.discord.models import walk_components
from standins.openai import (
    CodeInterpreterCall,
    FakeOpenAI,
    FunctionCall,
    HttpError,
    Reply,
    WebSearchCall,
)
from tests import conftest
from tests.conftest import ServicesFactory
from tests.harness import FAST_BUCKET, Harness, build_world, running_bot
from tests.postgres_server import PostgresServer
from tests.tool_support import (
    CHANNEL,
    GUILD,
    KEY,
    Clock,
    ScriptedConfirmer,
    run_turn,
    services_with_tools,
    turn_context,
)

DATABASE_ENGINES = conftest.DATABASE_ENGINES
WAIT_S = 10.0
CODE = "print(sum(x * x for x in range(5)))"
LOGS = "30\n"
PERSON_THINKS_S = 0.5
BOOKING = {"restaurant": "Trattoria Roma", "party_size": 4, "time": "2026-05-05T20:00", "notes": None}


def step(name: str = "find_restaurants", **overrides: Any) -> TurnStep:
    values: dict[str, Any] = {
        "kind": "function",
        "name": name,
        "arguments": "{}",
        "outcome": "ok",
        "result": "done",
        "started_at": time.time(),
        "duration_s": 0.25,
    }
    return TurnStep(**{**values, **overrides})


async def a_turn(storage: Storage, *, guild_id: int | None = GUILD, channel_id: int = CHANNEL) -> int:
    return await storage.turns.start(
        conversation_key=f"channel:{channel_id}",
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=7,
        message_id=None,
        run_id="run",
    )


def final(events: list[TurnEvent]) -> Completed:
    last = events[-1]
    assert isinstance(last, Completed), last
    return last


class HeldSteps(TurnStepStore):
    """The real store, each write held until the test lets it through: a slow or unreachable database."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.through = asyncio.Event()
        self.writing = asyncio.Event()

    async def add(self, turn_id: int, ordinal: int, step: TurnStep) -> None:
        self.writing.set()
        await self.through.wait()
        await super().add(turn_id, ordinal, step)

    async def of_turn(self, turn_id: int) -> RecordedSteps | None:
        await self.through.wait()
        return await super().of_turn(turn_id)


def function_finished(call_id: str, summary: str) -> ToolFinished:
    return ToolFinished(call_id, "find_restaurants", True, summary, duration_s=0.1, function_call=True)


# ------------------------------------------------------------------------------ the store


async def test_steps_come_back_in_order_clipped_with_where_the_turn_was(storage: Storage) -> None:
    turn_id = await a_turn(storage)
    other = await a_turn(storage, guild_id=None, channel_id=55)
    long_arguments = json.dumps({"notes": "x" * 500})
    await storage.turn_steps.add(turn_id, 1, step("book_restaurant", outcome="declined", duration_s=None))
    await storage.turn_steps.add(turn_id, 0, step(arguments=long_arguments, result="line\n" * 200))
    await storage.turn_steps.add(other, 0, step("code_interpreter", kind="hosted"))

    recorded = await storage.turn_steps.of_turn(turn_id)
    assert recorded is not None
    assert (recorded.turn_id, recorded.guild_id, recorded.channel_id) == (turn_id, GUILD, CHANNEL)
    first, second = recorded.steps
    assert first.name == "find_restaurants" and second.name == "book_restaurant"
    assert len(first.arguments) == ARGUMENTS_CHARS and first.arguments.endswith("…")
    assert len(first.result) == RESULT_CHARS and "\n" not in first.result
    assert (second.outcome, second.duration_s) == ("declined", None)
    dm = await storage.turn_steps.of_turn(other)
    assert dm is not None and dm.guild_id is None and dm.steps[0].kind == "hosted"


async def test_a_turn_without_steps_has_no_record_and_old_steps_are_pruned(storage: Storage) -> None:
    quiet = await a_turn(storage)
    assert await storage.turn_steps.of_turn(quiet) is None
    assert await storage.turn_steps.of_turn(10_000) is None
    old = await a_turn(storage)
    await storage.turn_steps.add(old, 0, step(started_at=time.time() - 100 * 24 * 3600))
    recent = await a_turn(storage)
    await storage.turn_steps.add(recent, 0, step())
    assert await storage.turn_steps.prune() == 1
    assert await storage.turn_steps.of_turn(old) is None
    assert await storage.turn_steps.of_turn(recent) is not None


@given(st.text(), st.integers(min_value=1, max_value=400))
def test_a_clipped_text_is_one_short_line_a_database_takes(text: str, limit: int) -> None:
    clipped = clip(text, limit)
    assert len(clipped) <= limit
    assert not any(unicodedata.category(c) in ("Cc", "Cs") and c != " " for c in clipped)
    assert clipped == clipped.strip() and "  " not in clipped
    clipped.encode()  # no lone surrogate: PostgreSQL takes it as UTF-8


async def test_a_step_the_database_refuses_is_logged_and_the_turn_keeps_the_others(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """Any database error writing a step (here the step's place is taken) leaves that step out."""
    turn_id = await a_turn(storage)
    await storage.turn_steps.add(turn_id, 0, step(result="already there"))
    recorder = StepRecorder(storage.turn_steps, turn_id)
    recorder.observe(function_finished("c1", "Found 2"))
    recorder.observe(function_finished("c2", "Found 3"))
    with caplog.at_level(logging.WARNING, logger="bot.engine.run_steps"):
        await recorder.close()
    assert recorder.count == 1  # only what landed: the button promises no step that is not there
    [refused] = [r for r in caplog.records if "step 0 of turn" in r.getMessage()]
    assert refused.exc_info is not None
    recorded = await storage.turn_steps.of_turn(turn_id)
    assert recorded is not None and [s.result for s in recorded.steps] == ["already there", "Found 3"]


async def test_steps_the_database_does_not_take_in_time_are_given_up_at_the_turns_end(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage: observing never waits for the database (it only queues), and the turn's end waits
    a bounded while, then says how many steps were not kept."""
    turn_id = await a_turn(storage)
    held = HeldSteps(storage.db)
    recorder = StepRecorder(held, turn_id, close_within_s=0.05)
    recorder.observe(function_finished("c1", "Found 2"))
    recorder.observe(function_finished("c2", "Found 3"))
    await asyncio.wait_for(held.writing.wait(), WAIT_S)
    with caplog.at_level(logging.WARNING, logger="bot.engine.run_steps"):
        await recorder.close()
    assert recorder.count == 0
    assert any("2 step(s) of turn" in r.getMessage() for r in caplog.records)
    held.through.set()
    assert await storage.turn_steps.of_turn(turn_id) is None


async def test_a_cancel_at_the_turns_end_still_keeps_the_steps_queued(storage: Storage) -> None:
    turn_id = await a_turn(storage)
    held = HeldSteps(storage.db)
    recorder = StepRecorder(held, turn_id)
    recorder.observe(ToolStarted("c1", "find_restaurants", "Looking…", "{}", function_call=True))
    recorder.observe(function_finished("c1", "Found 2"))
    recorder.observe(ToolStarted("c2", "find_restaurants", "Looking…", "{}", function_call=True))
    closing = asyncio.create_task(recorder.close())
    await asyncio.wait_for(held.writing.wait(), WAIT_S)
    closing.cancel()
    held.through.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert recorder.count == 2
    recorded = await storage.turn_steps.of_turn(turn_id)
    assert recorded is not None and [s.outcome for s in recorded.steps] == ["ok", "cancelled"]


# ------------------------------------------------------------------------------ recorded by the engine


async def recorded_steps(services: Services, done: Completed) -> tuple[TurnStep, ...]:
    assert done.turn_id is not None
    recorded = await services.storage.turn_steps.of_turn(done.turn_id)
    assert recorded is not None
    assert len(recorded.steps) == done.steps
    return recorded.steps


async def test_each_call_of_a_turn_is_recorded_in_order_hosted_and_declined_too(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    fake_openai.responses.push(
        Reply(
            "Let me look.",
            hosted=[CodeInterpreterCall(CODE, LOGS)],
            calls=[
                FunctionCall("find_restaurants", {"cuisine": "italian"}),
                FunctionCall("find_restaurants", {"cuisine": "italian", "stars": 5}),
            ],
        ),
        Reply(calls=[FunctionCall("book_restaurant", BOOKING)]),
        Reply("You said no, so nothing is booked."),
    )
    confirmer = ScriptedConfirmer(ConfirmationOutcome.DECLINED)
    context = turn_context(confirmer, families=("restaurants", "code_interpreter"))
    done = final(await run_turn(services, "find an italian place and book it", context))

    assert done.steps == 4
    code, found, invalid, booking = await recorded_steps(services, done)
    assert (code.kind, code.name, code.outcome) == ("hosted", "code_interpreter", "ok")
    assert (code.arguments, code.result) == (CODE, "30")
    assert code.duration_s is not None
    assert (found.kind, found.outcome) == ("function", "ok")
    assert json.loads(found.arguments)["cuisine"] == "italian"
    assert found.result.startswith("Found ") and "Trattoria Roma" in found.result
    assert invalid.outcome == "error" and "stars" in invalid.result and '"stars":5' in invalid.arguments
    assert (booking.name, booking.outcome) == ("book_restaurant", "declined")
    assert "declined" in booking.result and "Trattoria Roma" in booking.arguments
    for recorded in (found, invalid, booking):
        assert recorded.duration_s is not None and recorded.duration_s >= 0
    assert code.started_at <= found.started_at <= booking.started_at


async def test_a_web_search_is_recorded_with_its_query(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        Reply("Pizza is popular.", hosted=[WebSearchCall("best pizza in town")]),
    )
    done = final(await run_turn(services, "pizza?", turn_context(families=("web_search",))))
    [search] = await recorded_steps(services, done)
    assert (search.kind, search.name, search.outcome) == ("hosted", "web_search", "ok")
    assert search.arguments == "best pizza in town"
    assert search.result == "Searched the web for “best pizza in town”"


async def test_the_chat_backend_records_its_calls_the_same_way(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("find_restaurants", {"cuisine": "sushi"})]),
        Reply("Nothing with sushi, sorry."),
    )
    done = final(await run_turn(services, "sushi?", turn_context(backend="chat")))
    [only] = await recorded_steps(services, done)
    assert (only.kind, only.name, only.outcome, only.arguments) == (
        "function",
        "find_restaurants",
        "ok",
        '{"cuisine":"sushi"}',
    )


async def test_a_turn_that_fails_after_its_tools_ran_still_shows_them(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock(), openai={"max_retries": 0})
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("find_restaurants", {"cuisine": "sushi"})]),
        HttpError(500, "The server had an error while processing your request."),
    )
    events = await run_turn(services, "sushi?", turn_context(backend="chat"))
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "server"
    assert failed.turn_id is not None and failed.steps == 1
    assert [b.custom_id for b in steps_buttons(failed)] == [steps_id(failed.turn_id)]
    recorded = await services.storage.turn_steps.of_turn(failed.turn_id)
    assert recorded is not None and [step.name for step in recorded.steps] == ["find_restaurants"]


async def test_a_turn_without_tools_records_no_steps(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("Hello!"))
    done = final(await run_turn(services, "hi", turn_context(families=())))
    assert done.turn_id is not None and done.steps == 0
    assert await services.storage.turn_steps.of_turn(done.turn_id) is None
    assert steps_buttons(done) == ()


async def test_steps_are_kept_as_calls_end_and_a_call_cut_short_is_recorded_cancelled(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    """A search ends, then a booking waits for a click that never comes: the search's step is already
    kept while the turn runs (a crash now would keep it); /stop records the booking as cancelled."""
    services = await services_with_tools(make_services, Clock())
    fake_openai.responses.push(
        Reply(
            calls=[
                FunctionCall("find_restaurants", {"cuisine": "italian"}),
                FunctionCall("book_restaurant", BOOKING),
            ]
        )
    )
    asked = asyncio.Event()

    class NeverAnswers:
        async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
            asked.set()
            await asyncio.Event().wait()  # the person never clicks: /stop ends the turn
            raise AssertionError("unreachable")

    context = dataclasses.replace(turn_context(families=("restaurants",)), confirmer=NeverAnswers())
    turn = asyncio.create_task(run_turn(services, "find an italian place and book it", context))
    await asyncio.wait_for(asked.wait(), WAIT_S)
    async with services.storage.db.read() as connection:  # the running turn's id: the only turn
        [row] = await connection.execute_fetchall("SELECT id FROM turns")
    so_far = await services.storage.turn_steps.of_turn(row["id"])
    assert so_far is not None and [s.name for s in so_far.steps] == ["find_restaurants"]

    assert services.engine.cancel(KEY)
    events = await turn
    stopped = events[-1]
    assert isinstance(stopped, Cancelled)
    assert (stopped.turn_id, stopped.steps) == (row["id"], 2)  # a stopped reply shows them too
    assert [b.custom_id for b in steps_buttons(stopped)] == [steps_id(row["id"])]
    recorded = await services.storage.turn_steps.of_turn(row["id"])
    assert recorded is not None
    found, cut = recorded.steps
    assert found == so_far.steps[0]
    assert (cut.name, cut.outcome, cut.result) == ("book_restaurant", "cancelled", CANCELLED_RESULT)
    assert "Trattoria Roma" in cut.arguments and cut.duration_s is not None


async def test_hosted_calls_take_their_time_from_their_events_and_wait_for_their_code(
    storage: Storage,
) -> None:
    """Straight through the recorder: a web search, an image and a code run the stream reported."""
    turn_id = await a_turn(storage)
    recorder = StepRecorder(storage.turn_steps, turn_id)
    for event in (
        ToolStarted("ws_1", "web_search", "Searching the web…"),
        ToolFinished("ws_1", "web_search", True, "Searched the web for “pizza”"),
        TextDelta("Here"),
        ToolStarted("ig_1", "image_generation", "Drawing…"),
        ToolFinished("ig_1", "image_generation", False, "The image could not be made"),
        ToolStarted("ci_1", "code_interpreter", "Running code…"),
        ToolFinished("ci_1", "code_interpreter", True, ""),
    ):
        recorder.observe(event)
    recorder.observe(CodeRun("ci_1", CODE, LOGS))  # the code run waited for its code and logs
    recorder.observe(ToolStarted("ws_2", "web_search", "Searching the web…"))
    await recorder.close()  # a search the turn never saw end
    assert recorder.count == 4

    recorded = await storage.turn_steps.of_turn(turn_id)
    assert recorded is not None
    search, image, code, unfinished = recorded.steps
    assert {s.kind for s in recorded.steps} == {"hosted"}
    assert (search.outcome, search.result) == ("ok", "Searched the web for “pizza”")
    assert (image.outcome, image.result) == ("error", "The image could not be made")
    assert (code.arguments, code.result) == (CODE, "30")
    assert (unfinished.name, unfinished.outcome) == ("web_search", "cancelled")
    assert all(s.duration_s is not None and s.duration_s >= 0 for s in recorded.steps)


async def test_a_stop_while_the_last_steps_are_written_still_ends_the_turn(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, database_location: str
) -> None:
    """The answer has ended and its steps are being written when /stop lands: the answer is still
    shown with its steps and journalled as it ended (a 'running' entry would read as interrupted at
    the next start)."""
    services = await make_services(storage={"database": database_location})
    held = HeldSteps(services.storage.db)
    services.storage.turn_steps = held
    fake_openai.responses.push(Reply("", hosted=[WebSearchCall("best pizza in town")]))
    turn = asyncio.create_task(run_turn(services, "pizza?", turn_context(families=("web_search",))))
    await asyncio.wait_for(held.writing.wait(), WAIT_S)  # the search's step: kept as the answer ended
    assert services.engine.cancel(KEY)
    held.through.set()
    events = await asyncio.wait_for(turn, WAIT_S)
    ended = events[-1]
    assert isinstance(ended, Completed | Failed)
    assert ended.steps == 1 and [e for e in events if isinstance(e, Cancelled)] == []
    await asyncio.wait_for(services.engine.wait_idle(), WAIT_S)
    async with services.storage.db.read() as connection:
        [row] = await connection.execute_fetchall("SELECT id, status FROM turns")
    assert (row["id"], row["status"]) == (
        ended.turn_id,
        "completed" if isinstance(ended, Completed) else "failed",
    )


async def test_code_logs_with_control_characters_are_recorded_clean(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, database_location: str
) -> None:
    """A NUL in what code printed (PostgreSQL refuses it in text) does not cost the step or the turn."""
    services = await make_services(storage={"database": database_location})
    fake_openai.responses.push(
        Reply("Done.", hosted=[CodeInterpreterCall("print('a\\x00b')", "a\x00b \x1b[1mbold\n")])
    )
    done = final(await run_turn(services, "run it", turn_context(families=("code_interpreter",))))
    [code] = await recorded_steps(services, done)
    assert code.result == "ab [1mbold"


async def test_a_side_effects_duration_leaves_out_the_wait_for_its_confirmation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    fake_openai.responses.push(Reply(calls=[FunctionCall("book_restaurant", BOOKING)]), Reply("Booked."))

    answered: list[float] = []

    class ThinksItOver:
        async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
            await asyncio.sleep(PERSON_THINKS_S)  # the person reading the question: time passing is the point
            answered.append(time.monotonic())
            return ConfirmationOutcome.APPROVED

    context = dataclasses.replace(turn_context(families=("restaurants",)), confirmer=ThinksItOver())
    done = final(await run_turn(services, "book it", context))
    turn_ended = time.monotonic()
    [booking] = await recorded_steps(services, done)
    assert booking.outcome == "ok" and booking.duration_s is not None
    # Counted from the answer on, whatever the machine's speed: never more than the rest of the turn.
    assert booking.duration_s <= turn_ended - answered[0]


# ------------------------------------------------------------------------------ how the steps read


def test_the_steps_read_in_order_and_a_long_list_ends_with_how_many_more() -> None:
    steps = [
        step(arguments='{"cuisine":"italian"}', result="Found 2 restaurants", duration_s=1.24),
        step("book_restaurant", outcome="declined", result="The user declined; nothing was done."),
        step("code_interpreter", kind="hosted", arguments="print(`1`)", result="1", duration_s=0.004),
    ]
    text = steps_description(steps)
    assert text.startswith('**1. find\\_restaurants** · 1.2 s\n`{"cuisine":"italian"}`\n✅ Found 2')
    assert "**2. book\\_restaurant** · 0.2 s" in text and "⚠️ declined: The user declined" in text
    assert "**3. code\\_interpreter (hosted)** · 4 ms\n`print(ˋ1ˋ)`\n✅ 1" in text

    footer = steps_embed(RecordedSteps(1, GUILD, CHANNEL, tuple(steps))).footer.text
    assert footer == "3 tool calls, in the order they started"

    many = [step(result="r" * 300) for _ in range(40)]
    cut = steps_description(many)
    assert len(cut) <= 4096 and cut.endswith(" more")
    shown = cut.count("**") // 2
    assert cut.endswith(f"… and {40 - shown} more") and 0 < shown < 40


def test_who_may_see_a_turns_steps() -> None:
    """Only where the reply is: the turn's own thread or channel (or DM); a copy of its button in
    another channel of the same guild shows nothing."""
    in_guild = RecordedSteps(1, GUILD, CHANNEL, (step(),))
    assert may_see(in_guild, guild_id=GUILD, channel_id=CHANNEL)
    assert not may_see(in_guild, guild_id=GUILD, channel_id=999)
    assert not may_see(in_guild, guild_id=GUILD + 1, channel_id=CHANNEL)
    assert not may_see(in_guild, guild_id=None, channel_id=55)  # from a DM
    in_dm = RecordedSteps(2, None, 55, (step(),))
    assert may_see(in_dm, guild_id=None, channel_id=55)
    assert not may_see(in_dm, guild_id=None, channel_id=56)
    assert not may_see(in_dm, guild_id=GUILD, channel_id=55)
    dm_pick = RecordedSteps(3, GUILD, 55, (step(),))  # a DM on a server's assistant: the server's turn
    assert may_see(dm_pick, guild_id=None, channel_id=55)
    assert not may_see(dm_pick, guild_id=None, channel_id=56)


def test_steps_ids_fit_discord_and_parse_back() -> None:
    custom_id = steps_id(2**63 - 1)
    assert len(custom_id) <= 100
    match = STEPS_ID.fullmatch(custom_id)
    assert match is not None and int(match["turn"]) == 2**63 - 1
    [button] = steps_buttons(Completed("ok", Usage(), turn_id=12, steps=3))
    assert button.custom_id == "steps:12"
    assert steps_buttons(Completed("ok", Usage(), turn_id=None, steps=3)) == ()


# ------------------------------------------------------------------------------ the button on Discord


def steps_custom_ids(message: StoredMessage) -> list[str]:
    return [
        str(c["custom_id"])
        for c in walk_components(message.components)
        if str(c.get("custom_id", "")).startswith("steps:")
    ]


async def press_steps(h: Harness, message: StoredMessage, *, user: Any) -> dict[str, Any]:
    """Press the message's Steps button as `user`; the bot's answer, which only they see.

    The press is acknowledged privately first (before the records are read), then answered.
    """
    [custom_id] = steps_custom_ids(message)
    click = await h.discord.click_button(message.id, custom_id, user=user)
    acknowledged = await h.discord.wait_for_response(click, timeout=WAIT_S)
    assert acknowledged.type == CALLBACK_DEFERRED_MESSAGE and acknowledged.ephemeral
    await h.discord.wait_for(lambda: bool(click.followup_ids), timeout=WAIT_S)
    answer = h.discord.message(click.followup_ids[-1])
    assert answer.ephemeral
    return answer.data


async def test_a_reply_that_ran_tools_shows_its_steps_also_after_a_restart(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(
        Reply("Hello there."),
        Reply("Let me look.", calls=[FunctionCall("find_restaurants", {"cuisine": "italian"})]),
        Reply("Trattoria Roma is italian."),
    )
    async with FakeDiscord(rate_limits={"message_create": FAST_BUCKET}) as server:
        world = build_world(server)
        elsewhere = server.add_guild("Elsewhere")
        lobby = server.add_text_channel(elsewhere.id, "lobby")
        server.add_member(elsewhere.id, world.alice)
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            await server.user_message(world.general.id, world.alice, f"{h.bot_mention} hi", mentions_bot=True)
            greeting = await server.wait_for_message(lambda m: "Hello there." in m.content, timeout=WAIT_S)
            thread_id = greeting.channel_id
            await server.user_message(thread_id, world.alice, "any italian place?")
            answer = await server.wait_for_message(
                lambda m: "Trattoria Roma is italian." in m.content and bool(m.components), timeout=WAIT_S
            )
            assert steps_custom_ids(server.message(greeting.id)) == []  # no tools, no button
            assert answer.id == server.bot_messages(thread_id)[-1].id  # on the reply's last message

            shown = await press_steps(h, answer, user=world.bob)  # anyone who sees the reply
            [embed] = shown["embeds"]
            description = embed["description"]
            assert description.startswith("**1. find\\_restaurants** · ")
            assert '`{"cuisine":"italian"}`\n✅ Found ' in description
            assert "Trattoria Roma" in description
            assert steps_custom_ids(server.message(answer.id))  # the reply itself is unchanged

        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            again = await press_steps(h, server.message(answer.id), user=world.alice)
            assert again["embeds"][0]["description"] == description

            # A Steps button whose turn has no records left (pruned, or an unknown turn).
            channel = h.bot.get_channel(world.general.id)
            assert isinstance(channel, discord.TextChannel)
            await channel.send("An old reply", view=button_view([ReplyButton("Steps", steps_id(10_000))]))
            old = await server.wait_for_message(lambda m: m.content == "An old reply", timeout=WAIT_S)
            assert (await press_steps(h, old, user=world.alice))["content"] == NO_STEPS

            # The same turn's button in another guild shows nothing of it.
            other = h.bot.get_channel(lobby.id)
            assert isinstance(other, discord.TextChannel)
            [answer_id] = steps_custom_ids(answer)
            await other.send("Copied", view=button_view([ReplyButton("Steps", answer_id)]))
            copied = await server.wait_for_message(lambda m: m.content == "Copied", timeout=WAIT_S)
            assert (await press_steps(h, copied, user=world.alice))["content"] == NOT_HERE


async def test_a_press_is_acknowledged_before_a_database_too_slow_to_answer_is_read(
    tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord wants an answer to a press within 3 s: it is acknowledged (privately) first, and a
    database that does not answer within the read's bound gets the "cannot be read" sentence."""
    monkeypatch.setattr(steps_module, "READ_WITHIN_S", 0.05)
    async with running_bot(tmp_path, fake_openai) as h:
        held = HeldSteps(h.services.storage.db)
        h.services.storage.turn_steps = held
        channel = h.bot.get_channel(h.general.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("A reply", view=button_view([ReplyButton("Steps", steps_id(1))]))
        reply = await h.discord.wait_for_message(lambda m: m.content == "A reply", timeout=WAIT_S)
        assert (await press_steps(h, reply, user=h.alice))["content"] == UNREADABLE


async def test_a_database_outage_does_not_hold_up_the_reply_for_its_steps(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, postgres_server: PostgresServer
) -> None:
    """PostgreSQL goes down as the model answers: writing a step would wait for the reconnection
    (30 s, from the second write on); the reply streams and ends without them, promising none."""
    services = await make_services(storage={"database": postgres_server.new_database()})

    async def answer_as_the_database_goes_down(body: dict[str, Any]) -> Reply:
        await asyncio.to_thread(postgres_server.stop)
        return Reply(
            "Pizza is popular.", hosted=[WebSearchCall("best pizza in town"), WebSearchCall("pizza near me")]
        )

    fake_openai.responses.push(answer_as_the_database_goes_down)
    user_turn = UserTurn(text="pizza?", author_id=7, author_name="Ada")
    events = services.engine.reply(KEY, user_turn, turn_context(families=("web_search",)))
    try:
        async with asyncio.timeout(WAIT_S):  # a safety net: the second step's write alone waits 30 s
            async for event in events:
                if isinstance(event, TERMINAL_EVENTS):
                    break
    finally:
        await asyncio.to_thread(postgres_server.start)
    assert isinstance(event, Completed) and event.text == "Pizza is popular."
    assert event.steps == 0 and steps_buttons(event) == ()
    await events.aclose()
