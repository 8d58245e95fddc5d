"""Knowledge in an OpenAI vector store: the `knowledge_store` setting, files added to the guild's store
(created once), the hosted `file_search` tool in conversations with its file citations shown as
sources, and /search and /forget over the store.

Everything runs against the stand-in OpenAI server, which keeps vector stores and files in the real
shapes; the storage tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import GuildSettings, load_config
from bot.discord.render.final_text import DEFAULT_MAX_FILE_BYTES, FinalTextLimits, completed_reply
from bot.engine.events import Citation, Completed, ToolFinished, ToolStarted, Usage
from bot.engine.responses_backend import LOST_VECTOR_STORE_NOTE
from bot.errors import ConfigError, UserFacingError
from bot.features import OPENAI_KNOWLEDGE_STORE_OFF, Features
from bot.guild_settings import InvalidSettingError, SettingsCache, SettingsService
from bot.knowledge import EntryReference, parse_entry_reference
from bot.services import Services
from bot.storage import Storage
from bot.vector_knowledge import VectorKnowledge, VectorStoreGoneError, file_label
from standins.discord import FakeUser, StoredMessage, Upload
from standins.openai import FakeOpenAI, FileSearchCall, HttpError, RecordedRequest, Reply
from tests import conftest
from tests.conftest import ServicesFactory, fake_secrets, make_config
from tests.harness import Harness, running_bot
from tests.test_hosted_tools import ask_in_a_thread
from tests.tool_support import Clock, run_turn, turn_context
from tools import register_builtin_tools

DATABASE_ENGINES = conftest.DATABASE_ENGINES
GUILD = 42  # tests.tool_support's
ADMIN = 7


# ------------------------------------------------------------------------------ the setting


def settings_service(storage: Storage) -> SettingsService:
    return SettingsService(storage, SettingsCache(), GuildSettings())


async def test_the_openai_store_is_refused_on_the_chat_backend_both_ways(storage: Storage) -> None:
    service = settings_service(storage)
    await service.set(GUILD, "knowledge_store", "openai", user_id=ADMIN)
    with pytest.raises(InvalidSettingError, match=r"Set `knowledge_store` back to `local` first"):
        await service.set(GUILD, "backend", "chat", user_id=ADMIN)
    await service.set(GUILD, "knowledge_store", "local", user_id=ADMIN)
    await service.set(GUILD, "backend", "chat", user_id=ADMIN)
    with pytest.raises(InvalidSettingError) as refused:
        await service.set(GUILD, "knowledge_store", "openai", user_id=ADMIN)
    assert str(refused.value) == (
        "An OpenAI vector store is searched by OpenAI's hosted file_search, which only works with the"
        " `responses` backend; this server uses `chat`."
    )
    assert (await service.effective(GUILD)).knowledge_store == "local"


def test_the_openai_store_is_refused_without_an_openai_key(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    without_key = Features.of(config, fake_secrets(openai_api_key=None))
    assert without_key.setting_refusal("knowledge_store", "openai") == OPENAI_KNOWLEDGE_STORE_OFF
    assert without_key.setting_refusal("knowledge_store", "local") is None
    with_key = Features.of(config, fake_secrets())
    assert with_key.setting_refusal("knowledge_store", "openai") is None


def test_a_config_file_with_the_openai_store_on_the_chat_backend_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[defaults]\nbackend = "chat"\nknowledge_store = "openai"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, required=True, env={})
    assert str(info.value) == (
        f'{path}: defaults.knowledge_store is "openai", a vector store searched by OpenAI\'s hosted'
        ' file_search, which needs backend = "responses" (not "chat")'
    )


# ------------------------------------------------------------------------------ files in the store

HANDBOOK = b"Staff handbook\n\nHoliday leave is 25 days a year.\n\nThe office opens at 9 am."
MENU = b"Canteen menu\n\nSoup on Mondays, fish on Fridays."
MEMBER = 31
SMALL_EMBEDDER = "text-embedding-3-small"
OTHER = 32


@pytest.fixture
async def vector_knowledge(
    storage: Storage, fake_openai: FakeOpenAI
) -> AsyncIterator[tuple[VectorKnowledge, FakeOpenAI]]:
    async with fake_openai.client() as client:
        yield VectorKnowledge(client, storage.vector_stores), fake_openai


async def test_a_file_goes_to_a_store_made_once_and_kept_in_the_database(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI], storage: Storage
) -> None:
    knowledge, fake = vector_knowledge
    assert await knowledge.store_id(GUILD) is None
    added = await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK)
    await knowledge.add_file(guild_id=GUILD, user_id=OTHER, filename="menu.txt", data=MENU)

    [store] = fake.vector_stores.values()
    assert store.metadata == {"guild_id": str(GUILD)}
    assert await storage.vector_stores.store_id(GUILD) == store.id
    assert len(fake.requests_to("/v1/vector_stores", "POST")) == 1 + 2  # one store, two attachments
    assert [fake.files[file_id].filename for file_id in store.files] == ["handbook.txt", "menu.txt"]
    assert all(fake.files[file_id].purpose == "assistants" for file_id in store.files)
    assert all(attached.status == "completed" for attached in store.files.values())

    entry = added.entry
    assert (entry.filename, entry.size_bytes, entry.author_id, entry.status) == (
        "handbook.txt",
        len(HANDBOOK),
        MEMBER,
        "completed",
    )
    assert added.message == (
        f"Added **handbook.txt** (75 B) to this server's OpenAI vector store as file **F{entry.id}**;"
        f" conversations can search it now. Find it with /search; remove it with /forget entry:F{entry.id}."
    )
    listed = await knowledge.files(GUILD)
    assert [(e.filename, e.status) for e in listed] == [
        ("menu.txt", "completed"),
        ("handbook.txt", "completed"),
    ]
    assert [e.filename for e in await knowledge.files(GUILD, author_id=MEMBER)] == ["handbook.txt"]
    assert [e.filename for e in await knowledge.files(GUILD, matching="MEN")] == ["menu.txt"]


async def test_files_added_at_once_to_a_new_guild_share_one_store(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI],
) -> None:
    knowledge, fake = vector_knowledge
    await asyncio.gather(
        *(
            knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename=f"part-{n}.txt", data=MENU)
            for n in range(4)
        )
    )
    [store] = fake.vector_stores.values()
    assert len(store.files) == 4 and len(await knowledge.files(GUILD)) == 4


async def test_the_first_process_to_record_a_store_keeps_it(storage: Storage) -> None:
    """Two processes that each made a store for the guild: the second learns the first's (and deletes
    its own at OpenAI)."""
    assert await storage.vector_stores.claim_store(GUILD, "vs_first") == "vs_first"
    assert await storage.vector_stores.claim_store(GUILD, "vs_second") == "vs_first"
    assert await storage.vector_stores.store_id(GUILD) == "vs_first"
    assert await storage.vector_stores.store_id(GUILD + 1) is None


async def test_a_store_marked_lost_leaves_its_files_for_the_next_store_to_name(storage: Storage) -> None:
    registry = storage.vector_stores
    await registry.claim_store(GUILD, "vs_old")
    kept = await registry.add_file(
        guild_id=GUILD, store_id="vs_old", file_id="file-a", filename="a.txt", size_bytes=1, author_id=MEMBER
    )
    assert not await registry.mark_lost(GUILD, "vs_other")  # not the guild's store: nothing changes
    assert await registry.store_id(GUILD) == "vs_old"
    assert await registry.mark_lost(GUILD, "vs_old")
    assert await registry.store_id(GUILD) is None and await registry.file_count(GUILD) == 1
    assert await registry.claim_store(GUILD, "vs_new") == "vs_new"
    added = await registry.add_file(
        guild_id=GUILD, store_id="vs_new", file_id="file-b", filename="b.txt", size_bytes=1, author_id=MEMBER
    )
    assert await registry.take_files_of_other_stores(GUILD, "vs_new") == [kept]
    assert [e.id for e in await registry.files(GUILD)] == [added.id]


async def test_a_file_openai_cannot_process_is_one_sentence_and_leaves_nothing(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI],
) -> None:
    knowledge, fake = vector_knowledge
    fake.unprocessable_files["scan.pdf"] = "The file has no text to extract."
    with pytest.raises(UserFacingError) as refused:
        await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="scan.pdf", data=b"%PDF-1.7")
    assert str(refused.value) == "OpenAI could not read scan.pdf: The file has no text to extract."
    [store] = fake.vector_stores.values()
    assert store.files == {} and fake.files == {}
    assert await knowledge.files(GUILD) == []


@pytest.mark.parametrize(
    ("filename", "data", "sentence"),
    [
        ("photo.png", b"\x89PNG", "OpenAI's file search cannot read .png (photo.png); it takes .c, .cpp"),
        ("notes.txt", b"", "notes.txt is empty."),
    ],
)
async def test_files_openai_would_not_take_are_refused_before_any_upload(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI], filename: str, data: bytes, sentence: str
) -> None:
    knowledge, fake = vector_knowledge
    with pytest.raises(UserFacingError) as refused:
        await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename=filename, data=data)
    assert str(refused.value).startswith(sentence)
    assert fake.requests == []


async def test_a_file_the_files_api_refuses_is_one_sentence(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI],
) -> None:
    knowledge, fake = vector_knowledge
    fake.max_file_bytes = 10
    with pytest.raises(UserFacingError) as refused:
        await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK)
    assert str(refused.value).startswith("OpenAI refused handbook.txt: File is too large")
    assert await knowledge.files(GUILD) == []


async def test_forget_removes_the_file_from_the_store_and_openai(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI],
) -> None:
    knowledge, fake = vector_knowledge
    added = await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK)
    with pytest.raises(UserFacingError, match="added by someone else"):
        await knowledge.forget(guild_id=GUILD, entry_id=added.entry.id, user_id=OTHER, is_admin=False)
    removed = await knowledge.forget(guild_id=GUILD, entry_id=added.entry.id, user_id=MEMBER, is_admin=False)
    assert removed.filename == "handbook.txt"
    [store] = fake.vector_stores.values()
    assert store.files == {} and fake.files == {}
    assert await knowledge.files(GUILD) == []
    with pytest.raises(UserFacingError, match=f"no file F{added.entry.id} in"):
        await knowledge.forget(guild_id=GUILD, entry_id=added.entry.id, user_id=MEMBER, is_admin=True)


async def test_search_returns_the_stores_passages_with_their_entries(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI],
) -> None:
    knowledge, fake = vector_knowledge
    assert await knowledge.search(guild_id=GUILD, query="holiday", count=5) == []  # no store yet
    added = await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK)
    await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="menu.txt", data=MENU)
    [hit] = await knowledge.search(guild_id=GUILD, query="how many holiday days", count=1)
    assert (hit.filename, hit.text, hit.entry) == (
        "handbook.txt",
        "Holiday leave is 25 days a year.",
        dataclasses.replace(added.entry),
    )
    [search] = fake.requests_to("/v1/vector_stores/", "POST")[-1:]
    assert search.path.endswith("/search") and search.json["max_num_results"] == 1


async def test_a_store_deleted_at_openai_is_made_again_and_the_lost_files_named(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI], storage: Storage
) -> None:
    knowledge, fake = vector_knowledge
    await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK)
    old_store = await storage.vector_stores.store_id(GUILD)
    assert old_store is not None
    del fake.vector_stores[old_store]  # someone deleted it in OpenAI's dashboard

    with pytest.raises(VectorStoreGoneError):
        await knowledge.search(guild_id=GUILD, query="holiday", count=3)
    added = await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="menu.txt", data=MENU)
    new_store = await storage.vector_stores.store_id(GUILD)
    assert new_store is not None and new_store != old_store
    assert list(fake.vector_stores) == [new_store]
    assert [fake.files[f].filename for f in fake.vector_stores[new_store].files] == ["menu.txt"]
    assert [e.filename for e in added.lost] == ["handbook.txt"]
    assert added.message.endswith(
        "\nThis server's vector store had been deleted at OpenAI, so a new one was made: the 1 file added"
        " before (handbook.txt) must be added again."
    )
    assert [e.filename for e in await knowledge.files(GUILD)] == ["menu.txt"]
    assert [stored.filename for stored in fake.files.values()] == ["menu.txt"]


async def test_a_file_added_while_a_turn_marks_the_store_lost_gets_a_new_store(
    vector_knowledge: tuple[VectorKnowledge, FakeOpenAI], storage: Storage
) -> None:
    """The file read the old store's id, then a conversation found the store gone and marked it lost
    before the file's attach failed: the file still gets a store of its own, and the lost files named."""
    knowledge, fake = vector_knowledge
    await knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK)
    old_store = await storage.vector_stores.store_id(GUILD)
    assert old_store is not None
    del fake.vector_stores[old_store]
    adding = await storage.vector_stores.add_file(
        guild_id=GUILD,
        store_id=old_store,
        file_id="file-new",
        filename="menu.txt",
        size_bytes=1,
        author_id=MEMBER,
    )
    assert await storage.vector_stores.mark_lost(GUILD, old_store)  # the turn, meanwhile
    async with fake.client() as client:
        new_store, lost = await knowledge._replace_store(client, GUILD, old_store, adding)
    assert await storage.vector_stores.store_id(GUILD) == new_store and new_store in fake.vector_stores
    assert [e.filename for e in lost] == ["handbook.txt"]
    assert await knowledge.files(GUILD) == []  # the caller records the file again, in the new store


# ------------------------------------------------------------------------------ in conversations


async def knowledge_services(make_services: ServicesFactory) -> Services:
    """The core with the knowledge function tool registered, as the bot does."""
    services = await make_services()
    register_builtin_tools(
        services.tools,
        storage=services.storage,
        config=services.config,
        secrets_env={},
        clock=Clock(),
        knowledge=services.knowledge,
    )
    return services


def function_names(request: RecordedRequest) -> set[str]:
    return {tool["name"] for tool in request.json.get("tools", []) if tool.get("type") == "function"}


async def test_a_guild_with_the_openai_store_searches_it_with_file_search_and_cites_the_file(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await knowledge_services(make_services)
    local = await run_turn(services, "hello", turn_context(families=("knowledge",)))
    assert isinstance(local[-1], Completed)
    knowledge_functions = function_names(fake_openai.requests_to("/v1/responses")[-1])
    assert knowledge_functions, "the local store offers the knowledge function tool"

    openai_store = turn_context(families=("knowledge",), knowledge_store="openai")
    await run_turn(services, "before any file", openai_store)
    empty = fake_openai.requests_to("/v1/responses")[-1].json
    assert "tools" not in empty, "no store yet: nothing to search, and not the local knowledge either"

    added = await services.vector_knowledge.add_file(
        guild_id=GUILD, user_id=MEMBER, filename="handbook.pdf", data=HANDBOOK
    )
    store_id = await services.vector_knowledge.store_id(GUILD)
    fake_openai.responses.push(
        Reply("You get 25 days of holiday.", hosted=[FileSearchCall(["holiday days"])])
    )
    events = await run_turn(services, "How much holiday do I get?", openai_store)

    sent = fake_openai.requests_to("/v1/responses")[-1].json
    assert sent["tools"] == [{"type": "file_search", "vector_store_ids": [store_id]}]
    assert sent["include"] == ["file_search_call.results"]
    [started] = [e for e in events if isinstance(e, ToolStarted)]
    assert (started.name, started.label) == ("file_search", "Searching the knowledge base…")
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert (
        finished.ok and finished.summary == "Searched the knowledge base for “holiday days”; 1 passages found"
    )
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert completed.citations == (Citation("handbook.pdf", file_id=added.entry.file_id),)
    reply = completed_reply(completed, FinalTextLimits(), max_file_bytes=DEFAULT_MAX_FILE_BYTES)
    assert reply.text == "You get 25 days of holiday."
    assert reply.appendix == "-# Sources\n-# 1. handbook.pdf"


def test_file_sources_are_numbered_with_web_sources_and_web_links_stay_unembedded() -> None:
    completed = Completed(
        text="See https://example.com/a for more.",
        usage=Usage(),
        citations=(
            Citation("Example", "https://example.com/a"),
            Citation("handbook.pdf", file_id="file-1"),
            Citation("handbook.pdf", file_id="file-1"),
            Citation("handbook.pdf", file_id="file-2"),
        ),
    )
    reply = completed_reply(completed, FinalTextLimits(), max_file_bytes=DEFAULT_MAX_FILE_BYTES)
    assert reply.text == "See <https://example.com/a> for more."
    assert reply.appendix == (
        "-# Sources\n-# 1. [Example](<https://example.com/a>)\n-# 2. handbook.pdf\n-# 3. handbook.pdf"
    )


# ------------------------------------------------------------------------------ /search and /forget


async def slash(h: Harness, name: str, options: dict[str, object], user: FakeUser) -> StoredMessage:
    """Run a slash command and return the message that answers it."""
    record = await h.discord.slash_command(name, options, user=user, channel_id=h.general.id)
    await h.discord.wait_for(lambda: bool(record.followup_ids))
    return h.discord.message(record.followup_ids[-1])


async def test_search_and_forget_use_the_guilds_vector_store(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=("cogs.knowledge",)) as h:
        alice, bob, admin = h.alice, h.world.bob, h.world.admin
        guild_id = h.general.guild_id or 0
        await h.services.settings.set(guild_id, "knowledge_store", "openai", user_id=admin.id)
        knowledge = h.services.vector_knowledge
        handbook = await knowledge.add_file(
            guild_id=guild_id, user_id=alice.id, filename="handbook.pdf", data=HANDBOOK
        )
        await knowledge.add_file(guild_id=guild_id, user_id=bob.id, filename="menu.txt", data=MENU)

        found = await slash(h, "search", {"query": "holiday leave days", "count": 2}, bob)
        [field] = found.data["embeds"][0]["fields"]  # the menu shares no word with the query
        assert field["name"] == f"1. F{handbook.entry.id} · 1.00 · handbook.pdf"
        assert field["value"] == "Holiday leave is 25 days a year."
        assert not fake_openai.requests_to("/v1/embeddings"), "the store searches; nothing is embedded here"

        typing = await h.discord.autocomplete(
            "forget", {"entry": ""}, focused="entry", user=alice, channel_id=h.general.id
        )
        await h.discord.wait_for(lambda: typing.acknowledged)
        assert [c["name"] for c in typing.autocomplete_choices or []] == [
            f"F{handbook.entry.id} · handbook.pdf (OpenAI vector store)"
        ]

        refused = await slash(h, "forget", {"entry": f"F{handbook.entry.id}"}, bob)
        assert refused.ephemeral and "only they or an admin" in refused.content
        forgotten = await slash(h, "forget", {"entry": f"F{handbook.entry.id}"}, alice)
        assert forgotten.ephemeral
        assert forgotten.content == (
            f"Forgot file F{handbook.entry.id} (handbook.pdf): it is out of this server's OpenAI"
            " vector store."
        )
        [store] = fake_openai.vector_stores.values()
        assert [fake_openai.files[f].filename for f in store.files] == ["menu.txt"]
        assert handbook.entry.file_id not in fake_openai.files
        nothing = await slash(h, "search", {"query": "holiday leave"}, bob)
        assert (
            nothing.ephemeral
            and "Nothing in this server's OpenAI vector store matches that" in nothing.content
        )


@given(entry_id=st.integers(1, (1 << 63) - 1), in_store=st.booleans(), hash_mark=st.booleans())
def test_an_entry_reference_names_its_store_by_its_prefix(
    entry_id: int, in_store: bool, hash_mark: bool
) -> None:
    label = file_label(entry_id) if in_store else str(entry_id)
    typed = f"#{label}" if hash_mark else label
    assert parse_entry_reference(f" {typed.lower()} ") == EntryReference(entry_id, in_store)


@given(typed=st.text(max_size=30))
def test_anything_else_typed_as_an_entry_is_one_sentence(typed: str) -> None:
    try:
        reference = parse_entry_reference(typed)
    except UserFacingError as exc:
        assert str(exc).startswith("Give the entry's number")
    else:
        assert reference.entry_id >= 1


async def test_both_stores_entries_stay_reachable_whatever_the_guild_uses_now(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Both numberings start at 1: /forget goes by the reference (3 or F3), never by the setting."""
    async with running_bot(tmp_path, fake_openai, extensions=("cogs.knowledge",)) as h:
        alice, admin = h.alice, h.world.admin
        guild_id = h.general.guild_id or 0
        note = await h.services.knowledge.remember(
            guild_id=guild_id, author_id=alice.id, text="The canteen soup is leek.", model=SMALL_EMBEDDER
        )
        await h.services.settings.set(guild_id, "knowledge_store", "openai", user_id=admin.id)
        first = await h.services.vector_knowledge.add_file(
            guild_id=guild_id, user_id=alice.id, filename="handbook.pdf", data=HANDBOOK
        )
        second = await h.services.vector_knowledge.add_file(
            guild_id=guild_id, user_id=alice.id, filename="menu.txt", data=MENU
        )
        assert note.entry.id == first.entry.id == 1  # the ambiguity the labels resolve

        typing = await h.discord.autocomplete(
            "forget", {"entry": ""}, focused="entry", user=alice, channel_id=h.general.id
        )
        await h.discord.wait_for(lambda: typing.acknowledged)
        assert [c["value"] for c in typing.autocomplete_choices or []] == ["F2", "F1", "1"]

        found = await slash(h, "search", {"query": "holiday leave days", "count": 1}, alice)
        footer = found.data["embeds"][0]["footer"]["text"]
        assert footer == (
            "Searched this server's OpenAI vector store · 1 entry of this server's own knowledge not searched"
        )

        # On the vector store, a bare number is still the local entry, not the store's file #1.
        forgotten = await slash(h, "forget", {"entry": "1"}, alice)
        assert forgotten.content.startswith("Forgot entry #1 (The canteen soup is leek.)")
        assert [f.id for f in await h.services.vector_knowledge.files(guild_id)] == [2, 1]
        assert await h.services.knowledge.entries(guild_id) == []

        await h.services.settings.set(guild_id, "knowledge_store", "local", user_id=admin.id)
        forgotten = await slash(h, "forget", {"entry": f"F{second.entry.id}"}, alice)
        assert forgotten.content.startswith("Forgot file F2 (menu.txt)")
        [store] = fake_openai.vector_stores.values()
        assert [fake_openai.files[f].filename for f in store.files] == ["handbook.pdf"]
        empty = await slash(h, "search", {"query": "holiday"}, alice)
        assert empty.ephemeral and empty.content == (
            "Nothing in this server's knowledge matches that (add some with /remember). 1 file in this"
            " server's OpenAI vector store was not searched."
        )


# ------------------------------------------------------------------------------ end to end


async def test_a_remembered_file_is_searched_in_a_conversation_and_cited(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    defaults = {"enabled_tools": ["knowledge"], "knowledge_store": "openai"}
    async with running_bot(tmp_path, fake_openai, defaults=defaults) as h:
        added = await slash(h, "remember", {"file": Upload("handbook.pdf", HANDBOOK)}, h.alice)
        assert added.content.startswith("Added **handbook.pdf** (75 B) to this server's OpenAI vector store")
        [store] = fake_openai.vector_stores.values()
        assert store.metadata == {"guild_id": str(h.general.guild_id)}

        fake_openai.responses.push(
            Reply(
                "You get 25 days of holiday a year.",
                hosted=[FileSearchCall(["holiday days"])],
                delta_delay_s=0.02,
            )
        )
        [message] = await ask_in_a_thread(h, "how much holiday do I get?", until="-# 1.")
        assert message.content == "You get 25 days of holiday a year.\n\n-# Sources\n-# 1. handbook.pdf"
        first_post = h.discord.calls_of("message_create")[-1].json["content"]
        assert "Searching the knowledge base…" in first_post
        sent = fake_openai.requests_to("/v1/responses")[-1].json
        assert {"type": "file_search", "vector_store_ids": [store.id]} in sent["tools"]
        assert not function_names(fake_openai.requests_to("/v1/responses")[-1]) & {"search_knowledge"}


@pytest.mark.parametrize("refused_with", [400, 404])
async def test_a_store_deleted_at_openai_leaves_conversations_answering_with_a_note(
    make_services: ServicesFactory, fake_openai: FakeOpenAI, refused_with: int
) -> None:
    services = await knowledge_services(make_services)
    await services.vector_knowledge.add_file(guild_id=GUILD, user_id=MEMBER, filename="menu.txt", data=MENU)
    store_id = await services.vector_knowledge.store_id(GUILD)
    assert store_id is not None

    def deleted_in_the_dashboard(body: dict[str, object]) -> HttpError:
        """OpenAI may answer a missing store with a 404 rather than the stand-in's 400."""
        del fake_openai.vector_stores[store_id]
        return HttpError(404, f"Vector store with id '{store_id}' not found.", type="invalid_request_error")

    if refused_with == 400:
        del fake_openai.vector_stores[store_id]  # the stand-in refuses the unknown store itself
    else:
        fake_openai.responses.push(deleted_in_the_dashboard)
    fake_openai.responses.push(Reply("I could not look that up."))
    context = turn_context(families=("knowledge",), knowledge_store="openai")
    events = await run_turn(services, "what is on Friday?", context)
    completed = events[-1]
    assert isinstance(completed, Completed), completed
    assert completed.text == "I could not look that up."
    assert completed.notes == (LOST_VECTOR_STORE_NOTE,)
    refused, answered = fake_openai.requests_to("/v1/responses")
    assert refused.status == refused_with and answered.status == 200
    assert "tools" not in answered.json and "include" not in answered.json

    def store_checks() -> int:
        return sum(r.path == f"/v1/vector_stores/{store_id}" for r in fake_openai.requests_to("/v1/", "GET"))

    assert store_checks() == 1  # confirmed gone

    # Marked lost: the next turn neither names the store nor pays for a refusal and a check again.
    assert await services.storage.vector_stores.store_id(GUILD) is None
    fake_openai.responses.push(Reply("Soup on Mondays."))
    events = await run_turn(services, "and on Monday?", context)
    assert isinstance(events[-1], Completed) and events[-1].notes == ()
    [later] = fake_openai.requests_to("/v1/responses")[2:]
    assert later.status == 200 and "tools" not in later.json
    assert store_checks() == 1
    with pytest.raises(VectorStoreGoneError):  # /search says so too, without asking OpenAI
        await services.vector_knowledge.search(guild_id=GUILD, query="soup", count=3)

    # The next file makes a new store and names the files that were lost with the old one.
    added = await services.vector_knowledge.add_file(
        guild_id=GUILD, user_id=MEMBER, filename="handbook.txt", data=HANDBOOK
    )
    assert [e.filename for e in added.lost] == ["menu.txt"]
    assert "the 1 file added before (menu.txt) must be added again" in added.message
    new_store = await services.storage.vector_stores.store_id(GUILD)
    assert new_store is not None and new_store != store_id
    assert [e.filename for e in await services.vector_knowledge.files(GUILD)] == ["handbook.txt"]
    assert [stored.filename for stored in fake_openai.files.values()] == ["handbook.txt"]
