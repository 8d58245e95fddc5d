"""Documents as knowledge: a file remembered as one entry, its passages found and cited with their
page and headings (in storage, through /remember and /search on Discord, and by the knowledge tool in
a conversation), forgotten whole; bad files refused with their sentence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.documents import parse_document
from bot.engine import TurnContext, UserTurn
from bot.engine.events import Completed, ToolFinished
from bot.knowledge import EmbeddingFailedError, KnowledgeBase
from bot.storage import Storage
from bot.storage.knowledge import DocumentFile, NewChunk
from standins.discord import CALLBACK_MESSAGE, FakeUser, StoredMessage, Upload
from standins.openai import FakeOpenAI, FunctionCall, HttpError, Reply
from tests import conftest
from tests.conftest import ServicesFactory
from tests.conftest import settings as guild_settings
from tests.document_files import docx_bytes, pdf_bytes
from tests.harness import Harness, running_bot
from tools.knowledge import hit_json, search_knowledge_tool

DATABASE_ENGINES = conftest.DATABASE_ENGINES
GUILD = 42
ALICE, BOB = 7, 8
SMALL = "text-embedding-3-small"
COGS = ("cogs.knowledge",)

DRILL = "The fire drill assembly point is the north car park."


def handbook(pages: int = 14) -> bytes:
    """A handbook whose page 12 starts a "Fire drill" section under "Safety"; the rest is filler."""
    content = [[f"Page {n} is about topic{n} and nothing else."] for n in range(1, pages + 1)]
    content[0] = ["Welcome", "Hedgehog houses since 1999."]
    content[10] = ["Safety", "Wear gloves in the workshop."]
    content[11] = ["Fire drill", DRILL]
    outline = [("Welcome", 0, None), ("Safety", 10, None), ("Fire drill", 11, "Safety")]
    return pdf_bytes(content, outline=outline)


# ------------------------------------------------------------------------------------------ storage


async def test_a_file_entry_keeps_its_type_size_pages_and_each_chunk_its_place(storage: Storage) -> None:
    vector = b"\x00" * 8
    entry, chunk_ids = await storage.knowledge.add(
        guild_id=GUILD,
        author_id=ALICE,
        title="handbook.pdf",
        source="handbook.pdf",
        jump_url=None,
        model="m",
        dims=2,
        chunks=[
            NewChunk("intro", vector, 1, ()),
            NewChunk("drill", vector, 16, ("Safety", "Fire › drill"), "12"),  # separator in a title; label
            ("a plain chunk", vector),
        ],
        document=DocumentFile("pdf", 123_456, 14),
    )
    assert (entry.file_type, entry.file_bytes, entry.page_count) == ("pdf", 123_456, 14)
    stored = await storage.knowledge.chunks(chunk_ids)
    assert [(stored[i].page, stored[i].headings, stored[i].page_label) for i in chunk_ids] == [
        (1, (), None),
        (16, ("Safety", "Fire › drill"), "12"),
        (None, (), None),
    ]
    again = await storage.knowledge.get(GUILD, entry.id)
    assert again is not None and (again.file_type, again.file_bytes, again.page_count) == ("pdf", 123_456, 14)
    note, _ = await storage.knowledge.add(
        guild_id=GUILD, author_id=ALICE, title="note", source="text", jump_url=None, model="m", dims=2,
        chunks=[("note", vector)],
    )  # fmt: skip
    assert (note.file_type, note.file_bytes, note.page_count) == (None, None, None)

    removed = await storage.knowledge.delete(GUILD, entry.id)
    assert removed is not None and removed.chunk_count == 3
    assert await storage.knowledge.chunks(chunk_ids) == {}  # every chunk of the file went with it
    assert await storage.knowledge.vector_count(GUILD, "m", 2) == 1  # the note's


# ---------------------------------------------------------------------------------- knowledge base


async def test_a_document_is_one_entry_found_with_its_page_and_forgotten_whole(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, database_location: str
) -> None:
    services = await make_services(storage={"database": database_location})
    knowledge = KnowledgeBase(services.openai, services.storage, services.state.knowledge, batch_size=4)
    document = parse_document("handbook.pdf", handbook(), "application/pdf")
    progress: list[tuple[int, int]] = []
    remembered = await knowledge.remember_document(
        document, guild_id=GUILD, author_id=ALICE, model=SMALL, progress=lambda *seen: progress.append(seen)
    )
    entry = remembered.entry
    assert (entry.title, entry.source, entry.file_type, entry.page_count) == ("handbook.pdf",) * 2 + (
        "pdf",
        14,
    )
    assert entry.chunk_count == 14 and progress == [(4, 14), (8, 14), (12, 14), (14, 14)]
    inputs = [text for r in fake_openai.requests_to("/v1/embeddings") for text in r.json["input"]]
    assert f"Safety › Fire drill\n\nFire drill\n{DRILL}" in inputs  # embedded under its headings

    results = await knowledge.search(guild_id=GUILD, query="fire drill assembly point", count=3, model=SMALL)
    top = results.hits[0]
    assert (top.page, top.headings, top.text) == (12, ("Safety", "Fire drill"), f"Fire drill\n{DRILL}")
    assert top.citation == "handbook.pdf, p. 12 (Safety › Fire drill)"
    usage = await services.storage.usage.user_total(GUILD, ALICE, since_day="2000-01-01")
    assert usage.input_tokens == remembered.tokens > 0

    await knowledge.forget(guild_id=GUILD, entry_id=entry.id, user_id=ALICE, is_admin=False)
    assert await services.storage.knowledge.vector_count(GUILD, SMALL, 1536) == 0
    after = await knowledge.search(guild_id=GUILD, query="fire drill assembly point", count=3, model=SMALL)
    assert after.hits == []


async def test_a_pdf_with_printed_page_numbers_is_cited_by_them_after_storage(
    make_services: ServicesFactory, database_location: str
) -> None:
    """Front matter numbered i-iv: the drill is on the 16th page, printed (and cited as) p. 12."""
    services = await make_services(storage={"database": database_location})
    knowledge = KnowledgeBase(services.openai, services.storage, services.state.knowledge)
    pages = [[f"Preface part {n}."] for n in range(1, 5)] + [[f"Chapter page {n}."] for n in range(1, 12)]
    pages.append([DRILL])
    data = pdf_bytes(pages, page_labels=[(0, 3, "/r", None), (4, 15, "/D", None)])
    document = parse_document("handbook.pdf", data, "application/pdf")
    await knowledge.remember_document(document, guild_id=GUILD, author_id=ALICE, model=SMALL)
    results = await knowledge.search(guild_id=GUILD, query="fire drill assembly point", count=1, model=SMALL)
    [top] = results.hits
    assert (top.text, top.page, top.page_label) == (DRILL, 16, "12")
    assert top.citation == "handbook.pdf, p. 12"
    # The model reads the same page the citation names, never the 16th's position.
    assert hit_json(top)["page"] == "12" and hit_json(top)["cite"] == "handbook.pdf, p. 12"


async def test_a_file_that_fails_part_way_stores_nothing_but_counts_the_batches_paid_for(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    knowledge = KnowledgeBase(services.openai, services.storage, services.state.knowledge, batch_size=4)
    document = parse_document("handbook.pdf", handbook(), None)
    fake_openai.embeddings.push(None, None, HttpError(400, "Too many tokens", code="invalid_request_error"))
    with pytest.raises(EmbeddingFailedError) as failed:
        await knowledge.remember_document(document, guild_id=GUILD, author_id=ALICE, model=SMALL)
    assert "Too many tokens" in str(failed.value)
    assert len(fake_openai.requests_to("/v1/embeddings")) == 3
    assert await services.storage.knowledge.entries(GUILD) == []
    usage = await services.storage.usage.user_total(GUILD, ALICE, since_day="2000-01-01")
    assert usage.input_tokens == failed.value.tokens > 0  # the two batches embedded before the failure


async def test_the_knowledge_tool_cites_the_file_page_and_section_in_a_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    knowledge = KnowledgeBase(services.openai, services.storage, services.state.knowledge)
    document = parse_document("handbook.pdf", handbook(), None)
    await knowledge.remember_document(document, guild_id=GUILD, author_id=ALICE, model=SMALL)
    await knowledge.remember(
        guild_id=GUILD, author_id=ALICE, text="Fire drill snacks are in the kitchen.", model=SMALL
    )
    services.tools.add(search_knowledge_tool(knowledge))
    fake_openai.responses.push(
        Reply(calls=[FunctionCall("search_knowledge", {"query": "fire drill assembly point", "count": 2})]),
        Reply("Meet at the north car park (handbook.pdf, p. 12)."),
    )
    context = TurnContext(
        guild_id=GUILD, channel_id=1001, settings=guild_settings(enabled_tools=("knowledge",))
    )
    turn = UserTurn("where do we meet in a fire drill?", BOB, "Bob")
    events = [e async for e in services.engine.reply("channel:1001", turn, context)]
    assert isinstance(events[-1], Completed)
    assert [e.ok for e in events if isinstance(e, ToolFinished)] == [True]
    second = fake_openai.requests_to("/v1/responses")[1].json
    output = next(item["output"] for item in second["input"] if item.get("type") == "function_call_output")
    passage, note = json.loads(output)["results"]
    assert passage["cite"] == "handbook.pdf, p. 12 (Safety › Fire drill)"
    assert (passage["page"], passage["section"], passage["source"]) == (
        12,
        ["Safety", "Fire drill"],
        "handbook.pdf",
    )
    assert "cite" not in note and note["source"] == "text"  # a note has no pages to cite
    assert "handbook.pdf, p. 12" in search_knowledge_tool(knowledge).description


# ------------------------------------------------------------------------------------------ Discord


async def settled(h: Harness, name: str, options: dict[str, Any], user: FakeUser) -> StoredMessage:
    """Run a slash command; the message that answers it, once it settled (a followup, an immediate
    answer, or the "thinking…" placeholder edited into the answer)."""
    record = await h.discord.slash_command(name, options, user=user, channel_id=h.general.id)

    def answered() -> bool:
        original = h.discord.messages.get(record.original_message_id or 0)
        return (
            bool(record.followup_ids)
            or (record.acknowledged and record.response_type == CALLBACK_MESSAGE)
            or (original is not None and not original.deleted and not original.loading)
        )

    await h.discord.wait_for(answered)
    return h.discord.message(
        record.followup_ids[-1] if record.followup_ids else record.original_message_id or 0
    )


async def test_remember_a_pdf_with_progress_then_search_cites_its_page_and_forget_removes_it(
    tmp_path: Path, fake_openai: FakeOpenAI, database_location: str
) -> None:
    pages = 200  # one chunk a page: three embedding batches of 96
    async with running_bot(
        tmp_path, fake_openai, extensions=COGS, storage={"database": database_location}
    ) as h:
        record = await h.discord.slash_command(
            "remember",
            {"file": Upload("handbook.pdf", handbook(pages))},
            user=h.alice,
            channel_id=h.general.id,
        )

        def placeholder_says(text: str) -> bool:
            message = h.discord.messages.get(record.original_message_id or 0)
            return message is not None and any(
                text in str(version.get("content")) for version in [*message.versions, message.data]
            )

        batches: list[int] = []

        async def hold_the_second_batch(body: dict[str, Any]) -> None:
            """The second batch waits until the first batch's count is shown (no timing to luck on)."""
            batches.append(len(body["input"]))
            if len(batches) == 2:
                await h.discord.wait_for(
                    lambda: placeholder_says(f"Indexing handbook.pdf: 96/{pages} chunks…")
                )

        fake_openai.embeddings.default = hold_the_second_batch
        await h.discord.wait_for(lambda: placeholder_says("Remembered entry"), timeout=30)
        answer = h.discord.message(record.original_message_id or 0)
        # The placeholder became the answer: no second message beside a count left standing.
        assert [m.id for m in h.discord.bot_messages(h.general.id)] == [answer.id]
        assert record.followup_ids == [] and "Indexing" not in answer.content
        assert batches == [96, 96, 8]
        assert not answer.ephemeral and answer.content.startswith(
            f"Remembered entry **#1**: the PDF **handbook.pdf** ({pages} pages, {pages} chunks)."
        )
        assert "/forget entry:1" in answer.content
        found = await settled(h, "search", {"query": "fire drill assembly point", "count": 2}, h.world.bob)
        field = found.data["embeds"][0]["fields"][0]
        assert field["name"].startswith("1. #1 · ") and field["name"].endswith(
            " · handbook.pdf, p. 12 (Safety › Fire drill)"
        )
        assert DRILL in field["value"]
        # linked to the answer after it was sent: by now (the next command ran) it is
        guild_id = h.general.guild_id or 0
        entry = await h.services.storage.knowledge.get(guild_id, 1)
        assert entry is not None and entry.jump_url is not None and entry.jump_url.endswith(f"/{answer.id}")
        assert entry.file_bytes == len(handbook(pages)) and entry.page_count == pages

        typing = await h.discord.autocomplete(
            "forget", {"entry": "hand"}, focused="entry", user=h.alice, channel_id=h.general.id
        )
        await h.discord.wait_for(lambda: typing.acknowledged)
        assert [c["name"] for c in typing.autocomplete_choices or []] == [
            f"#1 · handbook.pdf (PDF, {pages} pages)"
        ]
        forgotten = await settled(h, "forget", {"entry": 1}, h.alice)
        assert forgotten.content.startswith(f"Forgot entry #1 (handbook.pdf) and its {pages} chunks.")
        assert await h.services.storage.knowledge.vector_count(guild_id, SMALL, 1536) == 0
        empty = await settled(h, "search", {"query": "fire drill"}, h.world.bob)
        assert empty.ephemeral and "Nothing in this server's knowledge matches" in empty.content
        assert h.discord.message(answer.id).content == answer.content  # no late count overwrote it


async def test_a_file_that_fails_while_its_count_shows_ends_with_a_private_sentence(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        record = await h.discord.slash_command(
            "remember", {"file": Upload("handbook.pdf", handbook(200))}, user=h.alice, channel_id=h.general.id
        )

        def counting() -> bool:
            message = h.discord.messages.get(record.original_message_id or 0)
            return message is not None and "Indexing handbook.pdf: 96/200 chunks…" in message.content

        async def fail_once_counting(body: dict[str, Any]) -> HttpError:
            await h.discord.wait_for(counting)
            return HttpError(400, "This input is not allowed.", code="invalid_request_error")

        fake_openai.embeddings.push(None, fail_once_counting)
        await h.discord.wait_for(lambda: bool(record.followup_ids))
        refused = h.discord.message(record.followup_ids[-1])
        assert refused.ephemeral and "This input is not allowed" in refused.content
        assert h.discord.message(record.original_message_id or 0).deleted  # the count went with it
        assert await h.services.storage.knowledge.entries(h.general.guild_id or 0) == []


async def test_word_and_markdown_files_are_remembered_with_their_headings(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    word = docx_bytes([("Heading 1", "Holidays"), ("", "Everyone gets 25 days of holiday a year.")])
    markdown = b"# Setup\n\n## Wifi\n\nThe wifi network is called Hedgehog.\n"
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        saved = await settled(h, "remember", {"file": Upload("rules.docx", word)}, h.alice)
        assert "the Word document **rules.docx** (1 chunk)" in saved.content
        saved = await settled(h, "remember", {"file": Upload("guide.md", markdown)}, h.alice)
        assert "the Markdown file **guide.md** (1 chunk)" in saved.content
        found = await settled(h, "search", {"query": "holiday days", "count": 1}, h.alice)
        assert found.data["embeds"][0]["fields"][0]["name"].endswith(" · rules.docx (Holidays)")
        found = await settled(h, "search", {"query": "wifi network", "count": 1}, h.alice)
        assert found.data["embeds"][0]["fields"][0]["name"].endswith(" · guide.md (Setup › Wifi)")


@pytest.mark.parametrize(
    ("upload", "sentence"),
    [
        (
            Upload("locked.pdf", pdf_bytes([["secret"]], user_password="pw")),
            "locked.pdf is protected by a password; remove the protection and attach it again.",
        ),
        (
            Upload("broken.pdf", b"%PDF-1.7 nothing more"),
            "broken.pdf is not a valid PDF (it may be damaged).",
        ),
        (Upload("scan.pdf", pdf_bytes([[]])), "scan.pdf has no text to read (a scanned PDF has images"),
        (
            Upload("tool.exe", b"MZ\x90\x00"),
            "tool.exe is not a document the bot can read (it reads PDF, DOCX",
        ),
        (Upload("old.doc", b"\xd0\xcf\x11\xe0"), "old.doc is Word 97-2003 (.doc), which the bot cannot read"),
        (
            Upload("big.txt", b"x" * (1024 * 1024 + 1)),
            "big.txt is too large to remember (1.0 MB; the limit is 1 MB).",
        ),
    ],
)
async def test_bad_files_get_their_sentence_privately_and_leave_nothing(
    tmp_path: Path, fake_openai: FakeOpenAI, upload: Upload, sentence: str
) -> None:
    async with running_bot(
        tmp_path, fake_openai, extensions=COGS, storage={"knowledge_document_max_mb": 1}
    ) as h:
        refused = await settled(h, "remember", {"file": upload}, h.alice)
        assert refused.ephemeral and sentence in refused.content
        assert await h.services.storage.knowledge.entries(h.general.guild_id or 0) == []
        assert fake_openai.requests_to("/v1/embeddings") == []
        if upload.filename == "big.txt":
            assert h.discord.calls_of("cdn") == []  # refused before it was downloaded


async def test_text_and_a_file_together_are_refused(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        both = await settled(h, "remember", {"text": "a note", "file": Upload("a.txt", b"a file")}, h.alice)
        assert both.ephemeral and "Give either some text or a file" in both.content
        assert await h.services.storage.knowledge.entries(h.general.guild_id or 0) == []


async def test_a_guild_on_an_openai_vector_store_gets_the_file_there_not_in_the_local_index(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        guild_id = h.general.guild_id or 0
        await h.services.settings.set(guild_id, "knowledge_store", "openai", user_id=h.world.admin.id)
        added = await settled(h, "remember", {"file": Upload("handbook.pdf", handbook())}, h.alice)
        assert not added.ephemeral and "to this server's OpenAI vector store as file **F1**" in added.content
        assert await h.services.storage.knowledge.entries(guild_id) == []
        assert fake_openai.requests_to("/v1/embeddings") == []
        assert [f.filename for f in await h.services.vector_knowledge.files(guild_id)] == ["handbook.pdf"]


@pytest.mark.parametrize(
    ("upload", "sentence"),
    [
        (Upload("tool.exe", b"MZ\x90\x00"), "OpenAI's file search cannot read .exe (tool.exe)"),
        (
            Upload("big.txt", b"x" * (1024 * 1024 + 1)),
            "big.txt is too large to remember (1.0 MB; the limit is 1 MB).",
        ),
        (Upload("empty.txt", b""), "empty.txt is empty."),
    ],
)
async def test_a_file_for_the_vector_store_is_checked_before_it_is_downloaded(
    tmp_path: Path, fake_openai: FakeOpenAI, upload: Upload, sentence: str
) -> None:
    async with running_bot(
        tmp_path, fake_openai, extensions=COGS, storage={"knowledge_document_max_mb": 1}
    ) as h:
        guild_id = h.general.guild_id or 0
        await h.services.settings.set(guild_id, "knowledge_store", "openai", user_id=h.world.admin.id)
        refused = await settled(h, "remember", {"file": upload}, h.alice)
        assert refused.ephemeral and sentence in refused.content
        assert h.discord.calls_of("cdn") == []  # never downloaded
        assert fake_openai.requests_to("/v1/files") == []
        assert await h.services.vector_knowledge.files(guild_id) == []


async def test_a_member_over_their_budget_cannot_add_to_the_vector_store(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        guild_id = h.general.guild_id or 0
        admin = h.world.admin.id
        await h.services.settings.set(guild_id, "knowledge_store", "openai", user_id=admin)
        await h.services.settings.set(guild_id, "daily_token_budget_user", 1000, user_id=admin)
        await h.services.storage.usage.record(
            guild_id=guild_id, user_id=h.alice.id, input_tokens=2000, output_tokens=0
        )
        refused = await settled(h, "remember", {"file": Upload("handbook.pdf", handbook())}, h.alice)
        assert refused.ephemeral and "budget" in refused.content
        assert h.discord.calls_of("cdn") == []
        assert fake_openai.requests_to("/v1/files") == []
        added = await settled(h, "remember", {"file": Upload("handbook.pdf", handbook())}, h.world.bob)
        assert "to this server's OpenAI vector store as file **F1**" in added.content  # Bob has his
