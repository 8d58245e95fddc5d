"""The conversation engine against the stand-in OpenAI server, through the real SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from bot.config import GuildSettings
from bot.discord.render.final_text import MAX_STATUS_CHARS
from bot.engine import TurnContext, UserTurn, conversation_key
from bot.engine.events import (
    Busy,
    Cancelled,
    Completed,
    Failed,
    Queued,
    Started,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnEvent,
)
from bot.services import Services
from bot.tooling import (
    ConfirmationOutcome,
    ConfirmationRequest,
    Tool,
    ToolContext,
    ToolResult,
)
from standins.openai import FakeOpenAI, FunctionCall, HttpError, Reply
from tests.conftest import ServicesFactory, settings

KEY = conversation_key(1001)
GUILD = 42


class WeatherArgs(BaseModel):
    city: str = Field(min_length=1, description="City name")


class BookArgs(BaseModel):
    thing: str


async def weather(args: WeatherArgs, context: ToolContext) -> ToolResult:
    return ToolResult.success({"city": args.city, "forecast": "sunny"}, f"Weather in {args.city}")


def register_test_tools(services: Services, booked: list[tuple[str, int]]) -> None:
    async def book(args: BookArgs, context: ToolContext) -> ToolResult:
        booked.append((args.thing, context.user_id))
        return ToolResult.success({"booked": args.thing}, f"Booked {args.thing}")

    async def preview(args: BookArgs, context: ToolContext) -> ConfirmationRequest:
        return ConfirmationRequest(
            "book", context.call_id, context.user_id, "Book it?", (("Thing", args.thing),)
        )

    services.tools.add(
        Tool("get_weather", "knowledge", "Weather for a city.", WeatherArgs, weather, "Looking")
    )
    services.tools.add(
        Tool(
            "book",
            "restaurants",
            "Book a thing.",
            BookArgs,
            book,
            "Booking",
            side_effect=True,
            preview=preview,
        )
    )


class ScriptedConfirmer:
    def __init__(self, *outcomes: ConfirmationOutcome) -> None:
        self.outcomes = list(outcomes)
        self.asked: list[ConfirmationRequest] = []

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
        self.asked.append(request)
        return self.outcomes.pop(0)


def turn(
    text: str = "hello", *, author: int = 7, name: str = "Ada", message_id: int | None = None
) -> UserTurn:
    return UserTurn(text=text, author_id=author, author_name=name, message_id=message_id)


def context(guild_settings: GuildSettings | None = None, **kwargs: Any) -> TurnContext:
    return TurnContext(guild_id=GUILD, channel_id=1001, settings=guild_settings or settings(), **kwargs)


async def collect(
    services: Services, user_turn: UserTurn, ctx: TurnContext, key: str = KEY
) -> list[TurnEvent]:
    return [event async for event in services.engine.reply(key, user_turn, ctx)]


def text_of(events: list[TurnEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def tool_outputs(request_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        item["call_id"]: json.loads(item["output"])
        for item in request_json["input"]
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }


# ------------------------------------------------------------------------------ responses backend


async def test_text_reply_is_streamed_and_the_conversation_stored(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("Hello there, how can I help?", deltas=4, usage=(12, 8)))
    events = await collect(services, turn("hi", message_id=555), context())

    assert isinstance(events[0], Started)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4
    final = events[-1]
    assert isinstance(final, Completed)
    assert final.text == text_of(events) == "Hello there, how can I help?"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 8)

    record = await services.storage.conversations.get(KEY)
    assert record is not None and record.conversation_id in fake_openai.conversations
    conversation = fake_openai.conversations[record.conversation_id]
    assert conversation.metadata == {"channel_id": "1001", "guild_id": str(GUILD)}
    assert conversation.texts("user") == ["Ada: hi"]
    request = fake_openai.requests_to("/v1/responses")[0].json
    assert request["stream"] is True
    assert request["instructions"] == settings().instructions
    assert request["conversation"] == record.conversation_id
    usage = await services.storage.usage.user_total(GUILD, 7, since_day="2000-01-01")
    assert (usage.input_tokens, usage.output_tokens, usage.turns) == (12, 8, 1)


async def test_second_message_reuses_the_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    await collect(services, turn("first"), context())
    await collect(services, turn("second", author=8, name="Bo"), context())
    conversations = {r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")}
    assert len(conversations) == 1
    assert len(fake_openai.requests_to("/v1/conversations", "POST")) == 1
    assert fake_openai.conversations[conversations.pop()].texts("user") == ["Ada: first", "Bo: second"]


async def test_restart_continues_the_same_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    first = await make_services()
    await collect(first, turn("remember 42"), context())
    await first.close()
    second = await make_services()
    events = await collect(second, turn("what number?"), context())
    assert isinstance(events[-1], Completed)
    conversations = [r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")]
    assert conversations[0] == conversations[1]


async def test_two_tool_rounds_with_parallel_calls(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_test_tools(services, [])
    fake_openai.responses.push(
        Reply(
            "Let me check.",
            calls=[
                FunctionCall("get_weather", {"city": "Paris"}),
                FunctionCall("get_weather", {"city": "Rome"}),
            ],
        ),
        Reply(calls=[FunctionCall("get_weather", {"city": "Oslo"})]),
        Reply("Sunny everywhere."),
    )
    events = await collect(services, turn("weather?"), context(settings(enabled_tools=("knowledge",))))

    started = [e for e in events if isinstance(e, ToolStarted)]
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [e.name for e in started] == ["get_weather"] * 3
    assert all(e.ok for e in finished) and len(finished) == 3
    final = events[-1]
    assert isinstance(final, Completed)
    assert final.text == "Let me check.\n\nSunny everywhere."

    requests = [r.json for r in fake_openai.requests_to("/v1/responses")]
    assert len(requests) == 3
    assert [t["name"] for t in requests[0]["tools"]] == ["get_weather"]
    assert requests[0]["tools"][0]["strict"] is True
    second_round = tool_outputs(requests[1])
    assert sorted(output["city"] for output in second_round.values()) == ["Paris", "Rome"]
    assert [o["city"] for o in tool_outputs(requests[2]).values()] == ["Oslo"]


async def test_invalid_arguments_are_fed_back_and_the_model_corrects(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_test_tools(services, [])
    fake_openai.responses.push(
        Reply(
            calls=[
                FunctionCall("get_weather", {"city": ""}),
                FunctionCall("get_weather", "{not json"),
                FunctionCall("teleport", {"to": "Mars"}),
            ]
        ),
        Reply(calls=[FunctionCall("get_weather", {"city": "Paris"})]),
        Reply("Paris is sunny."),
    )
    events = await collect(services, turn("weather?"), context(settings(enabled_tools=("knowledge",))))
    assert isinstance(events[-1], Completed)
    outputs = list(tool_outputs(fake_openai.requests_to("/v1/responses")[1].json).values())
    assert [o["ok"] for o in outputs] == [False, False, False]
    assert outputs[0]["error"]["code"] == "invalid_arguments" and "city" in outputs[0]["error"]["message"]
    assert "not valid JSON" in outputs[1]["error"]["message"]
    assert outputs[2]["error"]["code"] == "unknown_tool" and "get_weather" in outputs[2]["error"]["message"]
    corrected = list(tool_outputs(fake_openai.requests_to("/v1/responses")[2].json).values())
    assert corrected == [{"ok": True, "city": "Paris", "forecast": "sunny"}]


async def test_side_effect_is_confirmed_and_runs_once(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    booked: list[tuple[str, int]] = []
    register_test_tools(services, booked)
    confirmer = ScriptedConfirmer(ConfirmationOutcome.APPROVED, ConfirmationOutcome.DECLINED)
    fake_openai.responses.push(
        Reply(calls=[FunctionCall("book", {"thing": "table"}, call_id="call_book_1")]),
        Reply("Booked."),
        Reply(calls=[FunctionCall("book", {"thing": "taxi"})]),
        Reply("Okay, not booked."),
    )
    ctx = context(settings(enabled_tools=("restaurants",)), confirmer=confirmer)
    assert isinstance((await collect(services, turn("book a table"), ctx))[-1], Completed)
    assert isinstance((await collect(services, turn("and a taxi"), ctx))[-1], Completed)
    assert booked == [("table", 7)]
    assert [r.title for r in confirmer.asked] == ["Book it?", "Book it?"]
    declined = next(iter(tool_outputs(fake_openai.requests_to("/v1/responses")[3].json).values()))
    assert declined["error"]["code"] == "declined"

    # The same call id again (a retry, a replay) returns the stored outcome without running it.
    fake_openai.responses.push(
        Reply(calls=[FunctionCall("book", {"thing": "table"}, call_id="call_book_1")]), Reply("Done.")
    )
    await collect(services, turn("again"), ctx)
    assert booked == [("table", 7)] and len(confirmer.asked) == 2


@pytest.mark.parametrize(
    ("reply", "kind", "fragment"),
    [
        (Reply("partial", status="failed", error_message="boom"), "failed", "boom"),
        (
            Reply("partial", status="incomplete", incomplete_reason="max_output_tokens"),
            "incomplete",
            "length",
        ),
        (
            Reply("partial", status="incomplete", incomplete_reason="content_filter"),
            "content_filter",
            "filter",
        ),
        (Reply("partial", status="cancelled"), "failed", "cancelled"),
    ],
)
async def test_each_unfinished_status_fails_clearly_and_the_next_turn_works(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, reply: Reply, kind: str, fragment: str
) -> None:
    services = await make_services()
    fake_openai.responses.push(reply)
    final = (await collect(services, turn("hi"), context()))[-1]
    assert isinstance(final, Failed)
    assert final.kind == kind and fragment in final.reason
    assert final.partial_text == "partial"
    after = (await collect(services, turn("again"), context()))[-1]
    assert isinstance(after, Completed) and after.text == "echo: Ada: again"


async def test_rate_limit_is_retried_then_succeeds(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        HttpError(429, "slow down", code="rate_limit_exceeded", headers={"retry-after-ms": "5"})
    )
    fake_openai.responses.push(Reply("made it"))
    final = (await collect(services, turn(), context()))[-1]
    assert isinstance(final, Completed) and final.text == "made it"
    assert [r.status for r in fake_openai.requests_to("/v1/responses")] == [429, 200]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (HttpError(429, "quota", code="insufficient_quota", headers={"retry-after-ms": "1"}), "quota"),
        (HttpError(401, "bad key", code="invalid_api_key"), "auth"),
        (HttpError(404, "The model `gpt-x` does not exist", code="model_not_found"), "model_not_found"),
        (HttpError(503, "overloaded", headers={"retry-after-ms": "1"}), "server"),
    ],
)
async def test_api_errors_become_one_sentence(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, error: HttpError, kind: str
) -> None:
    services = await make_services()
    fake_openai.responses.push(error, error, error)
    final = (await collect(services, turn(), context()))[-1]
    assert isinstance(final, Failed) and final.kind == kind
    assert final.reason.endswith(".") and "\n" not in final.reason
    assert (await services.storage.turns.take_interrupted()) == []  # the turn is closed as failed


async def test_stream_cut_midway_keeps_partial_text_and_stores_nothing_complete(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(defaults={"backend": "chat"}, openai={"max_retries": 0})
    fake_openai.chat.push(Reply("one two three four five six seven", cut_after=4))
    ctx = context(settings(backend="chat"))
    events = await collect(services, turn(), ctx)
    final = events[-1]
    assert isinstance(final, Failed) and final.kind == "connection"
    assert final.partial_text == text_of(events) != ""
    assert await services.storage.history.count(KEY) == 0
    assert isinstance((await collect(services, turn("again"), ctx))[-1], Completed)
    assert await services.storage.history.count(KEY) == 2


async def test_responses_stream_cut_midway_fails_and_recovers(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    fake_openai.responses.push(Reply("one two three four five six", cut_after=6))
    final = (await collect(services, turn(), context()))[-1]
    assert isinstance(final, Failed) and final.kind == "connection"
    assert isinstance((await collect(services, turn("again"), context()))[-1], Completed)


async def test_malformed_stream_fails_clearly(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    fake_openai.responses.push(Reply("hello world", malformed=True))
    final = (await collect(services, turn(), context()))[-1]
    assert isinstance(final, Failed) and final.kind in {"server", "connection"}


async def test_three_concurrent_turns_are_serialised_in_order(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.default = lambda body: Reply("ok", delay_s=0.05)
    results = await asyncio.gather(
        *(collect(services, turn(f"message {i}", author=10 + i), context()) for i in range(3))
    )
    assert all(isinstance(events[-1], Completed) for events in results)
    assert [any(isinstance(e, Queued) for e in events) for events in results] == [False, True, True]
    assert fake_openai.max_inflight_per_conversation == 1
    conversation = next(iter(fake_openai.conversations.values()))
    assert conversation.texts("user") == ["Ada: message 0", "Ada: message 1", "Ada: message 2"]


async def test_full_queue_is_busy_and_sends_nothing(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(engine={"max_queued_turns": 1})
    gate = asyncio.Event()

    async def slow(body: dict[str, Any]) -> Reply:
        await gate.wait()
        return Reply("done")

    fake_openai.responses.default = slow
    first = asyncio.create_task(collect(services, turn("1", author=1), context()))
    await fake_openai.wait_for_requests("/v1/responses", 1)
    second = asyncio.create_task(collect(services, turn("2", author=2), context()))
    await asyncio.sleep(0)  # let the second turn take its place in line
    third = await collect(services, turn("3", author=3), context())
    assert len(third) == 1 and isinstance(third[0], Busy)
    gate.set()
    assert isinstance((await first)[-1], Completed) and isinstance((await second)[-1], Completed)
    assert len(fake_openai.requests_to("/v1/responses")) == 2


async def test_cancel_stops_the_reply_and_the_conversation_stays_usable(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("a b c d e f g h i j", delta_delay_s=0.2))
    events: list[TurnEvent] = []

    async def consume() -> None:
        async for event in services.engine.reply(KEY, turn(), context()):
            events.append(event)
            if isinstance(event, TextDelta):
                assert services.engine.cancel(KEY)

    await consume()
    assert isinstance(events[-1], Cancelled) and events[-1].partial_text == text_of(events)
    assert not services.engine.cancel(KEY)  # nothing left to stop
    assert isinstance((await collect(services, turn("again"), context()))[-1], Completed)


async def test_a_turn_that_breaks_after_a_model_call_still_counts_its_tokens(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    register_test_tools(services, [])
    ctx = context(settings(enabled_tools=("knowledge",)))
    fake_openai.responses.push(
        Reply("Checking.", calls=[FunctionCall("get_weather", {"city": "Paris"})], usage=(900, 200)),
        HttpError(500, "The server had an error while processing your request."),
    )
    final = (await collect(services, turn("weather in Paris?"), ctx))[-1]
    assert isinstance(final, Failed) and final.kind == "server"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (900, 200)  # the call that ended
    spent = await services.storage.usage.user_total(GUILD, 7, since_day="2000-01-01")
    assert (spent.input_tokens, spent.output_tokens, spent.turns) == (900, 200, 1)


async def test_a_turn_stopped_while_its_tool_waits_counts_the_model_call_before(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    """/stop while a booking waits for its Confirm: the model call that asked for it was paid for."""
    services = await make_services()
    register_test_tools(services, [])
    asked = asyncio.Event()

    class NeverAnswers:
        async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
            asked.set()
            await asyncio.Event().wait()  # the person never clicks; /stop ends the wait
            raise AssertionError("unreachable")

    fake_openai.responses.push(
        Reply(calls=[FunctionCall("book", {"thing": "table"})], usage=(700, 50)),
    )
    ctx = context(settings(enabled_tools=("restaurants",)), confirmer=NeverAnswers())

    async def stop_when_asked() -> None:
        await asked.wait()
        assert services.engine.cancel(KEY)

    stopper = asyncio.create_task(stop_when_asked())
    final = (await collect(services, turn("book a table"), ctx))[-1]
    await stopper
    assert isinstance(final, Cancelled) and final.reason == "stopped"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (700, 50)
    spent = await services.storage.usage.user_total(GUILD, 7, since_day="2000-01-01")
    assert (spent.input_tokens, spent.output_tokens) == (700, 50)


async def test_turn_timeout(make_services: ServicesFactory, fake_openai: FakeOpenAI) -> None:
    services = await make_services(engine={"turn_timeout_s": 0.2})
    fake_openai.responses.push(Reply("late", delay_s=2))
    final = (await collect(services, turn(), context()))[-1]
    assert isinstance(final, Failed) and final.kind == "timeout"


async def test_tool_round_limit_closes_the_calls(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(engine={"max_tool_rounds": 1})
    register_test_tools(services, [])
    fake_openai.responses.default = lambda body: Reply(calls=[FunctionCall("get_weather", {"city": "Paris"})])
    final = (await collect(services, turn(), context(settings(enabled_tools=("knowledge",)))))[-1]
    assert isinstance(final, Failed) and final.kind == "tool_rounds"
    fake_openai.responses.default = lambda body: Reply("fine")
    # OpenAI refuses a turn while a function call has no output: the engine closed them.
    assert isinstance((await collect(services, turn("again"), context()))[-1], Completed)


async def test_failure_after_tools_ran_keeps_their_outputs(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    booked: list[tuple[str, int]] = []
    register_test_tools(services, booked)
    fake_openai.responses.push(
        Reply(calls=[FunctionCall("book", {"thing": "table"})]),
        HttpError(500, "boom"),
    )
    ctx = context(
        settings(enabled_tools=("restaurants",)), confirmer=ScriptedConfirmer(ConfirmationOutcome.APPROVED)
    )
    final = (await collect(services, turn(), ctx))[-1]
    assert isinstance(final, Failed) and final.kind == "server"
    conversation = next(iter(fake_openai.conversations.values()))
    outputs = conversation.of_type("function_call_output")
    assert len(outputs) == 1 and json.loads(outputs[0]["output"])["booked"] == "table"
    assert isinstance((await collect(services, turn("so?"), ctx))[-1], Completed)
    assert booked == [("table", 7)]


# ------------------------------------------------------------------------------ cost control


async def test_cooldown_and_per_user_queue_refuse_politely(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    ctx = context(settings(user_cooldown_s=60))
    assert isinstance((await collect(services, turn(), ctx))[-1], Completed)
    refused = await collect(services, turn("again"), ctx)
    assert len(refused) == 1 and isinstance(refused[0], Failed) and refused[0].kind == "cooldown"
    assert isinstance((await collect(services, turn(author=99), ctx))[-1], Completed)  # others may talk


async def test_budget_refuses_before_calling_the_model(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("expensive", usage=(900, 200)))
    ctx = context(settings(daily_token_budget_user=1000))
    assert isinstance((await collect(services, turn(), ctx))[-1], Completed)
    refused = (await collect(services, turn("more"), ctx))[-1]
    assert (
        isinstance(refused, Failed) and refused.kind == "budget" and "resets at 00:00 UTC" in refused.reason
    )
    assert len(fake_openai.requests_to("/v1/responses")) == 1
    guild_ctx = context(settings(daily_token_budget_guild=1000))
    refused_guild = (await collect(services, turn(author=8), guild_ctx))[-1]
    assert isinstance(refused_guild, Failed) and "This server" in refused_guild.reason


# ------------------------------------------------------------------------------ chat backend


async def test_chat_backend_streams_keeps_history_and_runs_tools(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_test_tools(services, [])
    ctx = context(settings(backend="chat", enabled_tools=("knowledge",)))
    fake_openai.chat.push(
        Reply(
            "Checking.",
            calls=[FunctionCall("get_weather", {"city": "Paris"}), FunctionCall("get_weather", {})],
        ),
        Reply("Paris is sunny.", usage=(30, 5)),
        Reply("You asked about Paris."),
    )
    events = await collect(services, turn("weather in Paris?"), ctx)
    final = events[-1]
    assert isinstance(final, Completed) and final.text == "Checking.\n\nParis is sunny."
    assert [e.ok for e in events if isinstance(e, ToolFinished)] == [True, False]
    second_request = fake_openai.requests_to("/v1/chat/completions")[1].json
    tool_messages = [m for m in second_request["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"])["ok"] for m in tool_messages] == [True, False]
    assert second_request["messages"][0] == {"role": "system", "content": ctx.settings.instructions}

    await collect(services, turn("what did I ask?"), ctx)
    third = fake_openai.requests_to("/v1/chat/completions")[2].json["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert await services.storage.history.count(KEY) == 7


async def test_chat_history_is_trimmed_to_the_budget(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(chat_backend={"history_token_budget": 300})
    ctx = context(settings(backend="chat"))
    for i in range(6):
        await collect(services, turn(f"message {i} " + "word " * 60), ctx)
    last = fake_openai.requests_to("/v1/chat/completions")[-1].json["messages"]
    assert last[0]["role"] == "system" and last[1]["role"] == "user"
    assert len(last) < 12  # older turns left out
    assert last[-1]["content"].startswith("Ada: message 5")


async def test_chat_backend_failure_is_not_saved(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    ctx = context(settings(backend="chat"))
    fake_openai.chat.push(Reply("cut", status="incomplete", incomplete_reason="max_output_tokens"))
    final = (await collect(services, turn(), ctx))[-1]
    assert isinstance(final, Failed) and final.kind == "incomplete"
    assert await services.storage.history.count(KEY) == 0


async def test_chat_backend_answers_through_llama_cpps_streaming_quirks(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    """llama.cpp's server repeats a tool's whole name in every chunk, refuses a null content beside
    tool calls and sends no usage: the call still runs once under its own name, the follow-up request
    is taken, and the estimated usage counts the tool schemas sent with each request."""
    fake_openai.chat_dialect = "llama.cpp"
    services = await make_services(openai={"max_retries": 0})
    register_test_tools(services, [])
    ctx = context(settings(backend="chat", enabled_tools=("knowledge",)))
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("get_weather", {"city": "Paris, the one in France, not Texas"})]),
        Reply("Sunny."),
    )
    events = await collect(services, turn("weather?"), ctx)
    final = events[-1]
    assert isinstance(final, Completed) and final.text == "Sunny.", final
    assert [(e.name, e.ok) for e in events if isinstance(e, ToolFinished)] == [("get_weather", True)]
    first, second = (r.json for r in fake_openai.requests_to("/v1/chat/completions"))
    assistant = second["messages"][2]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    tools_tokens = len(json.dumps(first["tools"], separators=(",", ":"))) // 4
    assert final.usage.input_tokens >= 2 * tools_tokens


async def test_chat_stream_that_ends_without_a_finish_reason_says_what_to_check(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    services = await make_services(openai={"max_retries": 0})
    ctx = context(settings(backend="chat"))
    fake_openai.chat.push(Reply("Half an ans", no_finish=True))
    final = (await collect(services, turn(), ctx))[-1]
    assert isinstance(final, Failed) and final.kind == "connection"
    assert "stopped before finishing" in final.reason and "context size" in final.reason
    assert len(final.reason) <= MAX_STATUS_CHARS  # shown whole in the reply's status line
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("without a finish reason" in w and fake_openai.base_url in w for w in warnings), warnings
    assert await services.storage.history.count(KEY) == 0


async def test_chat_history_budget_leaves_room_for_the_instructions_and_tools(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(chat_backend={"history_token_budget": 600})
    register_test_tools(services, [])
    with_tools = context(settings(backend="chat", enabled_tools=("knowledge", "restaurants")))
    for i in range(6):
        await collect(services, turn(f"message {i} " + "word " * 60), with_tools)
    request = fake_openai.requests_to("/v1/chat/completions")[-1].json
    sent = sum(len(m["content"]) for m in request["messages"]) + len(
        json.dumps(request["tools"], separators=(",", ":"))
    )
    assert sent // 4 <= 600 + 50  # the budget, give or take the per-message overheads
    assert request["messages"][-1]["content"].startswith("Ada: message 5")


async def test_reset_starts_a_fresh_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    await collect(services, turn(), context())
    assert await services.engine.reset(KEY)
    await collect(services, turn("new topic"), context())
    conversations = [r.json["conversation"] for r in fake_openai.requests_to("/v1/responses")]
    assert conversations[0] != conversations[1]
