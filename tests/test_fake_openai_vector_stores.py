"""The stand-in OpenAI's vector stores and hosted file search, through the real SDK: every answer must
parse as the SDK's own types (`VectorStore`, `VectorStoreFile`, `ResponseFileSearchToolCall`,
`AnnotationFileCitation`)."""

from __future__ import annotations

import openai
import pytest
from openai.types.responses import ResponseFileSearchToolCall, ResponseOutputMessage
from openai.types.responses.response_output_text import AnnotationFileCitation, ResponseOutputText

from standins.openai import FakeOpenAI, FileSearchCall, Reply

HANDBOOK = b"Staff handbook\n\nHoliday leave is 25 days a year.\n\nThe office opens at 9 am."
MENU = b"Canteen menu\n\nSoup on Mondays, fish on Fridays."


async def stored_file(client: openai.AsyncOpenAI, name: str, data: bytes) -> str:
    uploaded = await client.files.create(file=(name, data), purpose="assistants")
    return uploaded.id


async def test_a_file_is_attached_processed_searched_and_removed(fake_openai: FakeOpenAI) -> None:
    async with fake_openai.client() as client:
        store = await client.vector_stores.create(name="guild 1", metadata={"guild_id": "1"})
        assert (store.object, store.metadata, store.file_counts.total) == (
            "vector_store",
            {"guild_id": "1"},
            0,
        )
        handbook = await stored_file(client, "handbook.txt", HANDBOOK)
        menu = await stored_file(client, "menu.txt", MENU)
        attached = await client.vector_stores.files.create(vector_store_id=store.id, file_id=handbook)
        assert attached.status == "in_progress"
        done = await client.vector_stores.files.create_and_poll(menu, vector_store_id=store.id)
        assert done.status == "completed" and done.last_error is None
        assert (await client.vector_stores.retrieve(store.id)).file_counts.completed == 1

        page = await client.vector_stores.search(store.id, query="how many holiday days?")
        [hit, *_] = page.data
        assert (hit.filename, hit.content[0].text) == ("handbook.txt", "Holiday leave is 25 days a year.")
        assert hit.file_id == handbook and 0 < hit.score <= 1

        deleted = await client.vector_stores.files.delete(handbook, vector_store_id=store.id)
        assert deleted.deleted
        page = await client.vector_stores.search(store.id, query="holiday leave")
        assert all(result.file_id != handbook for result in page.data)
        assert (await client.vector_stores.delete(store.id)).deleted
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.retrieve(store.id)


async def test_a_file_the_store_cannot_process_fails_with_its_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.unprocessable_files["scan.pdf"] = "The file has no text to extract."
    async with fake_openai.client() as client:
        store = await client.vector_stores.create(name="guild 2")
        scan = await stored_file(client, "scan.pdf", b"%PDF-1.7 ...")
        result = await client.vector_stores.files.create_and_poll(scan, vector_store_id=store.id)
        assert result.status == "failed"
        assert result.last_error is not None
        assert result.last_error.message == "The file has no text to extract."
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.files.create(vector_store_id=store.id, file_id="file-missing")


async def test_file_search_in_a_response_searches_the_named_stores_and_cites_files(
    fake_openai: FakeOpenAI,
) -> None:
    async with fake_openai.client() as client:
        store = await client.vector_stores.create(name="guild 3")
        handbook = await stored_file(client, "handbook.txt", HANDBOOK)
        await client.vector_stores.files.create_and_poll(handbook, vector_store_id=store.id)
        with pytest.raises(openai.BadRequestError, match="vs_unknown"):
            await client.responses.create(
                model="gpt-5.5",
                input="hi",
                tools=[{"type": "file_search", "vector_store_ids": ["vs_unknown"]}],
            )
        fake_openai.responses.push(Reply("You get 25 days.", hosted=[FileSearchCall(["holiday days"])]))
        response = await client.responses.create(
            model="gpt-5.5",
            input="How much holiday?",
            tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
            include=["file_search_call.results"],
        )
    call, message = response.output
    assert isinstance(call, ResponseFileSearchToolCall)
    assert (call.status, call.queries) == ("completed", ["holiday days"])
    assert call.results is not None and call.results[0].filename == "handbook.txt"
    assert isinstance(message, ResponseOutputMessage)
    text = message.content[0]
    assert isinstance(text, ResponseOutputText)
    [citation] = text.annotations
    assert isinstance(citation, AnnotationFileCitation)
    assert (citation.file_id, citation.filename, citation.index) == (handbook, "handbook.txt", len(text.text))


async def test_file_search_streams_its_item_and_leaves_results_out_unless_included(
    fake_openai: FakeOpenAI,
) -> None:
    async with fake_openai.client() as client:
        store = await client.vector_stores.create(name="guild 4")
        menu = await stored_file(client, "menu.txt", MENU)
        await client.vector_stores.files.create_and_poll(menu, vector_store_id=store.id)
        fake_openai.responses.push(Reply("Fish.", hosted=[FileSearchCall(["fridays"])]))
        stream = await client.responses.create(
            model="gpt-5.5",
            input="What is on Friday?",
            tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
            stream=True,
        )
        types = []
        async for event in stream:
            types.append(event.type)
            if event.type == "response.output_item.done" and event.item.type == "file_search_call":
                assert event.item.results is None
            if event.type == "response.completed":
                final = event.response
    assert types[2:7] == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert final.output_text == "Fish."
