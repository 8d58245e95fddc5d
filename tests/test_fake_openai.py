"""Tests of the stand-in OpenAI server, driven by the real SDK and checked against the SDK's own models.

The SDK builds its objects leniently (a missing field does not fail), so every shape is also validated
strictly here with the SDK's pydantic models: if these pass, the bot's tests parse what OpenAI sends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types import (
    CreateEmbeddingResponse,
    ImagesResponse,
    Model,
    ModerationCreateResponse,
    ModerationMultiModalInputParam,
)
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
)
from openai.types.containers import FileRetrieveResponse
from openai.types.conversations import Conversation, ConversationItem, ConversationItemList
from openai.types.responses import FunctionToolParam, Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from standins.openai import (
    CodeInterpreterCall,
    ContainerFile,
    Drop,
    FakeOpenAI,
    FunctionCall,
    HttpError,
    ImageReply,
    ModerationResult,
    Reply,
    ResponseStatus,
    UrlCitation,
    WebSearchCall,
    cosine_similarity,
    fake_embedding,
)
from standins.png import encode_png, read_png

MODEL = "gpt-5.4-mini"
AUTH = {"Authorization": "Bearer test"}
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
CONVERSATION_ITEM = TypeAdapter(ConversationItem)
WEATHER_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
TIME_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_time",
    "description": "Current time in a time zone.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    "strict": True,
}


class Booking(BaseModel):
    """A structured-output target."""

    room: str
    hours: int


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with fake.client() as sdk_client:
        yield sdk_client


async def post_raw(fake: FakeOpenAI, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST without the SDK, so the JSON can be validated strictly."""
    async with httpx2.AsyncClient() as http:
        answer = await http.post(f"{fake.base_url}{path}", json=body, headers=AUTH)
    return answer.status_code, answer.json()


async def fake_get(fake: FakeOpenAI, path: str) -> tuple[int, Any]:
    """GET without the SDK, so the JSON can be validated strictly."""
    async with httpx2.AsyncClient() as http:
        answer = await http.get(f"{fake.base_url}{path}", headers=AUTH)
    return answer.status_code, answer.json()


async def stream_raw(fake: FakeOpenAI, path: str, body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """POST a streaming request without the SDK and split the SSE frames into (event, data)."""
    async with (
        httpx2.AsyncClient() as http,
        http.stream("POST", f"{fake.base_url}{path}", json=body, headers=AUTH) as answer,
    ):
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = (await answer.aread()).decode()
    frames: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
        frames.append((event, "\n".join(data)))
    return frames


async def response_events(fake: FakeOpenAI, body: dict[str, Any]) -> list[Any]:
    """Stream a response and validate every event strictly; also check framing and numbering."""
    frames = await stream_raw(fake, "/responses", {**body, "stream": True})
    events = []
    for event_name, data in frames:
        event = STREAM_EVENT.validate_json(data)
        assert event_name == event.type
        events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


# ------------------------------------------------------------------------------------------- responses


async def test_streamed_text_follows_the_real_event_sequence(fake: FakeOpenAI) -> None:
    fake.responses.push(Reply("Hello there, friend"))
    events = await response_events(fake, {"model": MODEL, "input": "hi", "instructions": "Be kind."})
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there, friend"
    final = events[-1].response
    Response.model_validate(final.model_dump(mode="json", by_alias=True))
    assert final.status == "completed"
    assert final.output_text == "Hello there, friend"
    assert final.instructions == "Be kind."
    assert (
        final.usage is not None
        and final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens
    )


async def test_sdk_stream_helper_and_delta_count(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply("abcdefgh", deltas=4))
    deltas: list[str] = []
    async with client.responses.stream(model=MODEL, input="hi") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert deltas == ["ab", "cd", "ef", "gh"]
    assert final.output_text == "abcdefgh"


async def test_non_streamed_response_is_a_valid_response(fake: FakeOpenAI) -> None:
    status, body = await post_raw(fake, "/responses", {"model": MODEL, "input": "ping", "store": True})
    assert status == 200
    response = Response.model_validate(body)
    assert response.output_text == "echo: ping"
    assert response.usage is not None and response.usage.input_tokens > 0


async def test_default_echo_and_async_responder(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model=MODEL, input="what is up")
    assert first.output_text == "echo: what is up"

    async def shout(body: dict[str, Any]) -> Reply:
        await asyncio.sleep(0)
        return Reply(str(body["input"]).upper())

    fake.responses.default = shout
    second = await client.responses.create(model=MODEL, input="quiet")
    assert second.output_text == "QUIET"


async def test_parallel_function_calls_then_outputs_on_a_conversation(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create(metadata={"discord_thread": "42"})
    fake.responses.push(
        Reply(
            calls=[
                FunctionCall("get_weather", {"city": "Paris"}, call_id="call_weather"),
                FunctionCall("get_time", {"tz": "Europe/Paris"}),
            ]
        ),
        Reply("It is sunny and noon."),
    )
    first = await client.responses.create(
        model=MODEL,
        conversation=conversation.id,
        input="Weather and time in Paris?",
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id == "call_weather"
    assert calls[1].call_id.startswith("call_")
    assert first.conversation is not None and first.conversation.id == conversation.id

    second = await client.responses.create(
        model=MODEL,
        conversation=conversation.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": json.dumps({"ok": c.name})}
            for c in calls
        ],
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    assert second.output_text == "It is sunny and noon."

    state = fake.conversations[conversation.id]
    assert state.metadata == {"discord_thread": "42"}
    assert [item["type"] for item in state.items] == [
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    assert state.texts("assistant") == ["It is sunny and noon."]
    assert fake.max_inflight_per_conversation == 1

    listed = [item async for item in client.conversations.items.list(conversation.id, order="asc")]
    assert [item.type for item in listed] == [item["type"] for item in state.items]
    status, page = await fake_get(fake, f"/conversations/{conversation.id}/items?order=asc&limit=2")
    assert status == 200
    parsed_page = ConversationItemList.model_validate(page)
    assert parsed_page.has_more is True and len(parsed_page.data) == 2
    for item in state.items:
        CONVERSATION_ITEM.validate_python(item)


async def test_missing_tool_output_is_rejected_like_openai(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    fake.responses.push(Reply(calls=[FunctionCall("get_weather", {"city": "Oslo"}, call_id="call_oslo")]))
    await client.responses.create(
        model=MODEL, conversation=conversation.id, input="Oslo?", tools=[WEATHER_TOOL]
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model=MODEL, conversation=conversation.id, input="never mind")
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "No tool output found for function call call_oslo."
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert len(fake.conversations[conversation.id].items) == 2  # the rejected turn left no trace


async def test_conversation_crud_and_errors(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    status, created = await post_raw(
        fake, "/conversations", {"metadata": {"k": "v"}, "items": [{"role": "user", "content": "seed"}]}
    )
    assert status == 200
    conversation = Conversation.model_validate(created)
    assert conversation.id.startswith("conv_") and conversation.metadata == {"k": "v"}
    assert fake.conversations[conversation.id].texts() == ["seed"]

    updated = await client.conversations.update(conversation.id, metadata={"k": "w"})
    assert updated.metadata == {"k": "w"}
    added = await client.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": "more"}]
    )
    assert [item.type for item in added.data] == ["message"]
    item_id = added.data[0].id
    assert item_id is not None
    fetched = await client.conversations.items.retrieve(item_id, conversation_id=conversation.id)
    assert fetched.id == item_id

    with pytest.raises(openai.BadRequestError):
        await client.responses.create(
            model=MODEL, conversation=conversation.id, previous_response_id="resp_x", input="hi"
        )
    deleted = await client.conversations.delete(conversation.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError) as caught:
        await client.conversations.retrieve(conversation.id)
    assert "not found" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, conversation="conv_missing", input="hi")


async def test_previous_response_id_chains_context(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply(calls=[FunctionCall("get_weather", {"city": "Rome"}, call_id="call_rome")]))
    first = await client.responses.create(model=MODEL, input="Rome?", tools=[WEATHER_TOOL])
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model=MODEL, previous_response_id=first.id, input="skip it")
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_rome", "output": "21C"}],
    )
    assert second.output_text == "echo: 21C"
    stored = await client.responses.retrieve(second.id)
    assert stored.id == second.id and stored.status == "completed"


@pytest.mark.parametrize(
    ("status", "terminal", "appended"),
    [
        ("completed", "response.completed", True),
        ("incomplete", "response.incomplete", True),
        ("failed", "response.failed", False),
        ("cancelled", "response.failed", False),
    ],
)
async def test_each_terminal_status(
    fake: FakeOpenAI, client: openai.AsyncOpenAI, status: ResponseStatus, terminal: str, appended: bool
) -> None:
    conversation = await client.conversations.create()
    fake.responses.push(Reply("partial answer", status=status, incomplete_reason="content_filter"))
    events = await response_events(fake, {"model": MODEL, "input": "go", "conversation": conversation.id})
    assert events[-1].type == terminal
    final = events[-1].response
    assert final.status == status
    if status == "failed":
        assert final.error is not None and final.error.code == "server_error"
    if status == "incomplete":
        assert final.incomplete_details is not None and final.incomplete_details.reason == "content_filter"
    assert bool(fake.conversations[conversation.id].items) is appended

    fake.responses.push(Reply("again", status=status))
    code, body = await post_raw(fake, "/responses", {"model": MODEL, "input": "go"})
    assert code == 200 and Response.model_validate(body).status == status


async def test_rate_limit_with_retry_after_then_success(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(HttpError(429, "Slow down", headers={"retry-after": "0.01"}), Reply("finally"))
    response = await client.responses.create(model=MODEL, input="hi")
    assert response.output_text == "finally"
    assert [r.status for r in fake.requests_to("/v1/responses")] == [429, 200]


async def test_http_error_without_retries_surfaces_in_openai_shape(fake: FakeOpenAI) -> None:
    fake.images.push(
        HttpError(400, "Your request was rejected by the safety system.", code="moderation_blocked")
    )
    async with fake.client(max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.images.generate(model="gpt-image-2", prompt="something bad")
    assert caught.value.code == "moderation_blocked"
    assert caught.value.type == "invalid_request_error"


async def test_dropped_connection_is_retried_by_the_sdk(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Drop(), Reply("survived"))
    response = await client.responses.create(model=MODEL, input="hi")
    assert response.output_text == "survived"
    assert [r.status for r in fake.requests_to("/v1/responses")] == [None, 200]


async def test_invalid_api_key_is_401(fake: FakeOpenAI) -> None:
    async with fake.client(api_key="invalid") as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.responses.create(model=MODEL, input="hi")
    assert caught.value.code == "invalid_api_key"


async def test_cut_stream_raises_in_the_sdk_and_leaves_the_conversation_alone(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    fake.responses.push(Reply("one two three four five", cut_after=4))
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async with client.responses.stream(model=MODEL, input="hi", conversation=conversation.id) as stream:
            async for event in stream:
                seen.append(event.type)
    assert seen[:2] == ["response.created", "response.in_progress"]
    assert "response.completed" not in seen
    assert fake.conversations[conversation.id].items == []


async def test_malformed_answers_fail_to_parse(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply("x", malformed=True))
    with pytest.raises(json.JSONDecodeError):
        await client.responses.create(model=MODEL, input="hi")
    fake.responses.push(Reply("x y z", malformed=True))
    with pytest.raises(json.JSONDecodeError):
        async with client.responses.stream(model=MODEL, input="hi") as stream:
            async for _ in stream:
                pass


async def test_cancel_a_streaming_response(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply("word " * 200, delta_delay_s=0.002))
    stream = await client.responses.create(model=MODEL, input="long", stream=True)
    types: list[str] = []
    response_id = ""
    async for event in stream:
        STREAM_EVENT.validate_python(event.to_dict())  # the SDK builds leniently; check strictly
        types.append(event.type)
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta" and types.count(event.type) == 3:
            cancelled = await client.responses.cancel(response_id)
            assert cancelled.status == "cancelled"
        if event.type == "response.failed":
            assert event.response.status == "cancelled"
    assert types[-1] == "response.failed"
    assert types.count("response.output_text.delta") < 200
    assert (await client.responses.retrieve(response_id)).status == "cancelled"


async def test_responses_parse_and_refusal(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply('{"room": "B2", "hours": 3}'), Reply(refusal="I can't help with that."))
    parsed = await client.responses.parse(model=MODEL, input="book B2 for 3h", text_format=Booking)
    assert parsed.output_parsed == Booking(room="B2", hours=3)
    assert fake.requests[-1].json["text"]["format"]["type"] == "json_schema"

    refused = await client.responses.parse(model=MODEL, input="bad", text_format=Booking)
    assert refused.output_parsed is None
    message = refused.output[0]
    assert message.type == "message" and message.content[0].type == "refusal"

    fake.responses.push(Reply(refusal="No."))
    events = await response_events(fake, {"model": MODEL, "input": "bad"})
    assert "response.refusal.done" in [e.type for e in events]


async def test_hosted_tools_code_interpreter_files_and_web_citations(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    chart = encode_png(4, 3, (10, 20, 30))
    fake.responses.push(
        Reply(
            "Here is your analysis.",
            hosted=[
                WebSearchCall(
                    "sales 2026", citations=[UrlCitation("https://example.com/sales", "Sales report")]
                ),
                CodeInterpreterCall(
                    "import pandas\nprint(42)\n",
                    logs="42\n",
                    files=[ContainerFile("data.csv", b"a,b\n1,2\n")],
                    images=[ContainerFile("chart.png", chart)],
                ),
            ],
        )
    )
    events = await response_events(
        fake, {"model": MODEL, "input": "analyse", "include": ["code_interpreter_call.outputs"]}
    )
    types = [e.type for e in events]
    for expected in (
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.output_text.annotation.added",
    ):
        assert expected in types
    final = events[-1].response
    assert [item.type for item in final.output] == ["web_search_call", "code_interpreter_call", "message"]
    interpreter = final.output[1]
    assert interpreter.type == "code_interpreter_call" and interpreter.outputs is not None
    assert [o.type for o in interpreter.outputs] == ["logs", "image"]
    text_part = final.output[2].content[0]
    assert text_part.type == "output_text"
    kinds = [a.type for a in text_part.annotations]
    assert kinds == ["url_citation", "container_file_citation", "container_file_citation"]
    url = text_part.annotations[0]
    assert text_part.text[url.start_index : url.end_index] == "([example.com](https://example.com/sales))"

    files = {a.filename: a for a in text_part.annotations if a.type == "container_file_citation"}
    downloaded = await client.containers.files.content.retrieve(
        files["chart.png"].file_id, container_id=files["chart.png"].container_id
    )
    assert read_png(downloaded.content).first_pixel == (10, 20, 30)
    csv = await client.containers.files.content.retrieve(
        files["data.csv"].file_id, container_id=files["data.csv"].container_id
    )
    assert csv.content == b"a,b\n1,2\n"
    status, meta = await fake_get(
        fake, f"/containers/{files['data.csv'].container_id}/files/{files['data.csv'].file_id}"
    )
    assert status == 200
    assert FileRetrieveResponse.model_validate(meta).path == "/mnt/data/data.csv"


async def test_code_interpreter_outputs_need_include(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply("done", hosted=[CodeInterpreterCall("print(1)", logs="1")]))
    response = await client.responses.create(model=MODEL, input="run")
    assert response.output[0].type == "code_interpreter_call" and response.output[0].outputs is None


# ---------------------------------------------------------------------------------------------- chat


async def test_chat_streaming_with_tool_calls(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    calls = [FunctionCall("get_weather", {"city": "Lima"}), FunctionCall("get_time", {"tz": "America/Lima"})]
    fake.chat.push(Reply("Checking.", calls=calls))
    frames = await stream_raw(
        fake,
        "/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Lima?"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert frames[-1] == (None, "[DONE]")
    chunks = [ChatCompletionChunk.model_validate_json(data) for _, data in frames[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None

    fake.chat.push(Reply(calls=calls))
    chat_tools: list[ChatCompletionFunctionToolParam] = [
        {
            "type": "function",
            "function": {"name": t["name"], "parameters": t["parameters"] or {}, "strict": True},
        }
        for t in (WEATHER_TOOL, TIME_TOOL)
    ]
    async with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "Lima?"}], tools=chat_tools
    ) as stream:
        async for _ in stream:
            pass
        completion = await stream.get_final_completion()
    tool_calls = completion.choices[0].message.tool_calls or []
    assert [tc.function.name for tc in tool_calls] == ["get_weather", "get_time"]
    assert json.loads(tool_calls[1].function.arguments) == {"tz": "America/Lima"}
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_chat_completion_json_and_tool_message_rules(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    status, body = await post_raw(
        fake, "/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hey"}]}
    )
    assert status == 200
    completion = ChatCompletion.model_validate(body)
    assert completion.choices[0].message.content == "echo: hey"
    assert completion.choices[0].finish_reason == "stop"

    assistant_call: ChatCompletionAssistantMessageParam = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}, assistant_call, {"role": "user", "content": "y"}],
        )
    assert "call_1" in caught.value.message
    answered = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "x"},
            assistant_call,
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
    )
    assert answered.choices[0].message.content == "echo: 42"

    fake.chat.push(Reply("truncated", status="incomplete"))
    cut = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert cut.choices[0].finish_reason == "length"


async def test_chat_parse_and_refusal(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.chat.push(Reply('{"room": "A1", "hours": 2}'), Reply(refusal="I won't."))
    parsed = await client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "book"}], response_format=Booking
    )
    assert parsed.choices[0].message.parsed == Booking(room="A1", hours=2)
    refused = await client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "book"}], response_format=Booking
    )
    assert refused.choices[0].message.refusal == "I won't."
    assert refused.choices[0].message.parsed is None


async def test_chat_stream_failure_and_cut(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.chat.push(Reply("partial", status="failed", error_message="boom"))
    with pytest.raises(openai.APIError, match="boom"):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
        async for _ in stream:
            pass
    fake.chat.push(Reply("a b c d e", cut_after=2))
    with pytest.raises(openai.APIConnectionError):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
        async for _ in stream:
            pass
    fake.chat.push(Reply("a b c d e", malformed=True))
    with pytest.raises(json.JSONDecodeError):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
        async for _ in stream:
            pass


# ------------------------------------------------------------------------ images, embeddings, moderation


async def test_images_are_real_pngs(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    status, body = await post_raw(
        fake, "/images/generations", {"model": "gpt-image-2", "prompt": "a cat", "n": 2, "size": "1536x1024"}
    )
    assert status == 200
    images = ImagesResponse.model_validate(body)
    assert images.size == "1536x1024" and images.output_format == "png" and images.usage is not None
    assert images.data is not None and len(images.data) == 2
    infos = [read_png(base64.b64decode(image.b64_json or "")) for image in images.data]
    assert {(i.width, i.height) for i in infos} == {(1536, 1024)}
    assert all(image.url is None for image in images.data)

    fake.images.push(ImageReply(rgb=(1, 2, 3), size=(8, 8)))
    small = await client.images.generate(model="gpt-image-1-mini", prompt="dot")
    assert small.data is not None
    assert read_png(base64.b64decode(small.data[0].b64_json or "")).first_pixel == (1, 2, 3)

    with pytest.raises(openai.NotFoundError):
        await client.images.generate(model="dall-e-3", prompt="retired")
    with pytest.raises(openai.BadRequestError):
        await client.images.generate(model="gpt-image-2", prompt="x", response_format="url")


async def test_embeddings_rank_texts_that_share_words_higher(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    texts = ["the cat sat on the mat", "a cat on a mat", "quarterly tax filing deadline"]
    result = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert fake.requests[-1].json["encoding_format"] == "base64"  # what the SDK asks for by default
    vectors = [item.embedding for item in result.data]
    assert len(vectors[0]) == 1536
    assert vectors[0] == fake_embedding(texts[0], 1536)
    assert cosine_similarity(vectors[0], vectors[1]) > cosine_similarity(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 0

    status, body = await post_raw(
        fake,
        "/embeddings",
        {"model": "text-embedding-3-large", "input": "hello", "dimensions": 256, "encoding_format": "float"},
    )
    assert status == 200
    parsed = CreateEmbeddingResponse.model_validate(body)
    assert parsed.data[0].embedding == pytest.approx(fake_embedding("hello", 256))
    large = await client.embeddings.create(model="text-embedding-3-large", input="hello")
    assert len(large.data[0].embedding) == 3072


async def test_moderation_clean_and_flagged(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    status, body = await post_raw(fake, "/moderations", {"model": "omni-moderation-latest", "input": "hello"})
    assert status == 200
    clean = ModerationCreateResponse.model_validate(body)
    assert clean.results[0].flagged is False

    fake.moderations.push(ModerationResult(flagged_categories=["violence", "harassment"]))
    parts: list[ModerationMultiModalInputParam] = [
        {"type": "text", "text": "threat"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    flagged = await client.moderations.create(model="omni-moderation-latest", input=parts)
    (result,) = flagged.results
    assert result.flagged and result.categories.violence and result.categories.harassment
    assert not result.categories.sexual
    assert sorted(result.category_applied_input_types.violence) == ["image", "text"]
    assert result.category_applied_input_types.harassment == ["text"]
    with pytest.raises(ValueError, match="unknown moderation categories"):
        ModerationResult(flagged_categories=["violent"])


# ------------------------------------------------------------------------------------ server behaviour


async def test_unknown_routes_and_retired_apis_are_404_in_openai_shape(fake: FakeOpenAI) -> None:
    for path in ("/nope", "/assistants", "/threads/thread_1/runs"):
        status, body = await fake_get(fake, path)
        assert status == 404
        assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_models_list(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert "text-embedding-3-small" in ids and "gpt-image-2" in ids
    status, body = await fake_get(fake, "/models/gpt-image-2")
    assert status == 200 and Model.model_validate(body).id == "gpt-image-2"


async def test_fail_next_applies_to_any_route(fake: FakeOpenAI) -> None:
    fake.fail_next("/v1/conversations", HttpError(503, "busy"))
    async with fake.client(max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError):
            await sdk.conversations.create()
        assert (await sdk.conversations.create()).id.startswith("conv_")


async def test_wait_for_requests_wakes_on_arrival(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.responses.push(Reply("late", delay_s=0.05))
    task = asyncio.create_task(client.responses.create(model=MODEL, input="hi"))
    (request,) = await fake.wait_for_requests("/v1/responses", 1, timeout=5)
    assert request.json["input"] == "hi" and request.headers["authorization"] == "Bearer test"
    await fake.wait_for_answers("/v1/responses", 1, timeout=5)
    assert (await task).output_text == "late"
    with pytest.raises(TimeoutError):
        await fake.wait_for(lambda: len(fake.requests) > 99, timeout=0.05)


async def test_overlapping_responses_on_one_conversation_are_counted(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    fake.responses.push(Reply("a", delay_s=0.1), Reply("b", delay_s=0.1))
    await asyncio.gather(
        client.responses.create(model=MODEL, conversation=conversation.id, input="1"),
        client.responses.create(model=MODEL, conversation=conversation.id, input="2"),
    )
    assert fake.max_inflight_per_conversation == 2


async def test_concurrent_delayed_requests_do_not_serialise(fake: FakeOpenAI) -> None:
    delay_s = 0.5
    fake.responses.default = lambda body: Reply("ok", delay_s=delay_s)
    limits = httpx2.Limits(max_connections=300, max_keepalive_connections=300)
    async with fake.client(http_client=httpx2.AsyncClient(limits=limits)) as sdk:
        started = time.monotonic()
        results = await asyncio.gather(*(sdk.responses.create(model=MODEL, input=str(n)) for n in range(200)))
        elapsed = time.monotonic() - started
    assert {r.output_text for r in results} == {"ok"}
    assert fake.max_inflight_requests >= 100
    assert elapsed < delay_s * 10  # loose: serialised would take 100 s


async def test_responder_bugs_fail_loudly() -> None:
    with pytest.raises(AssertionError, match="crashed"):
        async with FakeOpenAI() as server:
            server.responses.push(lambda body: Reply(str(1 / 0)))
            async with server.client(max_retries=0) as sdk:
                with pytest.raises(openai.InternalServerError):
                    await sdk.responses.create(model=MODEL, input="hi")
