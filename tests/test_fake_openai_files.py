"""The stand-in OpenAI's Files API, `container.file_ids` and `image_generation_call`, driven by the real
SDK and validated strictly with the SDK's own models (see tests/test_fake_openai.py)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types import FileObject
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from standins.openai import CodeInterpreterCall, FakeOpenAI, ImageGenerationCall, Reply
from standins.png import read_png

MODEL = "gpt-5.4-mini"
AUTH = {"Authorization": "Bearer test"}
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with fake.client(max_retries=0) as sdk_client:
        yield sdk_client


async def test_upload_retrieve_content_and_delete(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    uploaded = await client.files.create(
        file=("sales.csv", b"month,total\nJan,3\n"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    async with httpx2.AsyncClient() as http:
        raw = (await http.get(f"{fake.base_url}/files/{uploaded.id}", headers=AUTH)).json()
    strict = FileObject.model_validate(raw, strict=True)
    assert strict.filename == "sales.csv" and strict.bytes == 18 and strict.purpose == "user_data"
    assert strict.id.startswith("file-")
    assert strict.expires_at is not None and abs(strict.expires_at - (time.time() + 3600)) < 60
    content = await client.files.content(uploaded.id)
    assert content.content == b"month,total\nJan,3\n"
    deleted = await client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError) as missing:
        await client.files.retrieve(uploaded.id)
    assert missing.value.body == {
        "message": f"No such File object: {uploaded.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }


async def test_upload_refusals_missing_purpose_and_too_large(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    async with httpx2.AsyncClient() as http:
        answer = await http.post(f"{fake.base_url}/files", files={"file": ("a.txt", b"hello")}, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "purpose"
    fake.max_file_bytes = 4
    with pytest.raises(openai.BadRequestError) as too_large:
        await client.files.create(file=("a.txt", b"hello"), purpose="user_data")
    assert too_large.value.code == "file_too_large"
    assert fake.files == {}


async def test_container_file_ids_must_exist_and_reach_the_container(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.responses.create(
            model=MODEL,
            input="plot",
            tools=[{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-nope"]}}],
        )
    assert unknown.value.param == "tools[0].container.file_ids[0]"
    uploaded = await client.files.create(file=("sales.csv", b"month,total\n"), purpose="user_data")
    fake.responses.push(Reply("plotted", hosted=[CodeInterpreterCall("import pandas")]))
    response = await client.responses.create(
        model=MODEL,
        input="plot",
        tools=[{"type": "code_interpreter", "container": {"type": "auto", "file_ids": [uploaded.id]}}],
    )
    call = response.output[0]
    assert call.type == "code_interpreter_call"
    listed = await client.containers.files.list(call.container_id)
    assert [(f.path, f.source, f.bytes) for f in listed.data] == [("/mnt/data/sales.csv", "user", 12)]
    given = listed.data[0]
    content = await client.containers.files.content.retrieve(given.id, container_id=call.container_id)
    assert content.content == b"month,total\n"


async def test_input_file_must_name_an_uploaded_file(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    part: Any = {"type": "input_file", "file_id": "file-missing"}
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(
            model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "read"}, part]}]
        )
    uploaded = await client.files.create(file=("plan.pdf", b"%PDF-1.4"), purpose="user_data")
    part["file_id"] = uploaded.id
    response = await client.responses.create(
        model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "read"}, part]}]
    )
    assert response.output_text == "echo: read"


async def test_image_generation_call_streams_in_the_real_shape(fake: FakeOpenAI) -> None:
    fake.responses.push(
        Reply("Here it is.", hosted=[ImageGenerationCall(revised_prompt="a floor plan", rgb=(1, 2, 3))])
    )
    async with (
        httpx2.AsyncClient() as http,
        http.stream(
            "POST",
            f"{fake.base_url}/responses",
            json={"model": MODEL, "input": "draw", "stream": True, "tools": [{"type": "image_generation"}]},
            headers=AUTH,
        ) as answer,
    ):
        text = (await answer.aread()).decode()
    events = [
        STREAM_EVENT.validate_json(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data: ")
    ]
    types = [event.type for event in events]
    assert types[2:8] == [
        "response.output_item.added",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
        "response.image_generation_call.partial_image",
        "response.image_generation_call.completed",
        "response.output_item.done",
    ]
    done = events[7]
    assert done.type == "response.output_item.done" and done.item.type == "image_generation_call"
    assert done.item.revised_prompt == "a floor plan" and done.item.result is not None
    assert read_png(base64.b64decode(done.item.result)).first_pixel == (1, 2, 3)


async def test_failed_image_generation_has_no_result(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.responses.push(Reply("I could not draw that.", hosted=[ImageGenerationCall(failed=True)]))
    response = await client.responses.create(model=MODEL, input="draw", tools=[{"type": "image_generation"}])
    call = response.output[0]
    assert call.type == "image_generation_call" and call.status == "failed" and call.result is None
