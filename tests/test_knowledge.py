"""Knowledge: the chunker, the vector index, and remember/search/forget against the stand-in OpenAI."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine import TurnContext, UserTurn
from bot.engine.events import Completed, ToolFinished
from bot.errors import UserFacingError
from bot.knowledge import (
    EMBEDDING_BATCH_SIZE,
    KnowledgeBase,
    KnowledgeIndexes,
    KnowledgeSpaceMismatchError,
    chunk_text,
    load_index,
    title_of,
)
from bot.services import Services
from bot.tooling import ToolContext
from bot.vector_index import DimensionMismatchError, VectorIndex
from standins.discord import CALLBACK_MESSAGE, FakeUser, StoredMessage, Upload
from standins.openai import FakeOpenAI, FunctionCall, HttpError, Reply, fake_embedding
from tests.conftest import ServicesFactory
from tests.conftest import settings as guild_settings
from tests.harness import Harness, running_bot
from tools import register_builtin_tools
from tools.knowledge import search_knowledge_tool

GUILD = 42
ALICE, BOB = 7, 8
SMALL, LARGE = "text-embedding-3-small", "text-embedding-3-large"

NOTES = {
    "wifi": "The office wifi network is called Hedgehog and the password is printed under the router.",
    "lunch": "Team lunch happens every Friday at noon in the park, weather permitting.",
    "deploy": "To deploy the website run make release from the main branch after the tests pass.",
}


def knowledge_of(services: Services, *, batch_size: int = EMBEDDING_BATCH_SIZE) -> KnowledgeBase:
    return KnowledgeBase(services.openai, services.storage, services.state.knowledge, batch_size=batch_size)


# ------------------------------------------------------------------------------------------ chunker

separators = st.sampled_from([" ", " ", " ", "\n", "\n\n", ".  ", "\n \n"])


@st.composite
def documents(draw: st.DrawFn, max_word: int = 12) -> str:
    tokens = draw(st.lists(st.text(alphabet="abcdefghij.,!?", min_size=1, max_size=max_word), max_size=300))
    text = ""
    for token in tokens:
        text += token + draw(separators)
    return draw(st.sampled_from(["", " ", "\n"])) + text


def non_blank_positions(text: str) -> set[int]:
    return {i for i, char in enumerate(text) if not char.isspace()}


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(documents(), documents(max_word=400), st.text(max_size=3000)),
    max_chars=st.integers(min_value=20, max_value=400),
    overlap_ratio=st.floats(min_value=0, max_value=0.5),
)
def test_chunks_lose_nothing_stay_within_the_bound_and_are_slices(
    text: str, max_chars: int, overlap_ratio: float
) -> None:
    overlap = int(max_chars * overlap_ratio)
    chunks = chunk_text(text, max_chars=max_chars, overlap_chars=overlap)
    covered: set[int] = set()
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert 0 < len(chunk.text) <= max_chars
        assert chunk.text == chunk.text.strip()
        covered.update(range(chunk.start, chunk.end))
    assert non_blank_positions(text) <= covered
    assert [c.start for c in chunks] == sorted({c.start for c in chunks})  # strictly increasing
    if not text.strip():
        assert chunks == []


@settings(max_examples=300, deadline=None)
@given(
    text=documents(),
    max_chars=st.integers(min_value=100, max_value=400),
    overlap=st.integers(min_value=30, max_value=50),
)
def test_each_chunk_starts_with_the_last_words_of_the_previous_one(
    text: str, max_chars: int, overlap: int
) -> None:
    chunks = chunk_text(text, max_chars=max_chars, overlap_chars=overlap)
    for previous, current in itertools.pairwise(chunks):
        repeated = previous.end - current.start
        assert 0 < repeated <= overlap  # words are at most 12 characters: one always fits
        assert current.start == 0 or text[current.start - 1].isspace()  # whole words
        assert current.text.startswith(text[current.start : previous.end])


def test_paragraphs_that_fit_stay_whole_and_are_not_split_mid_sentence() -> None:
    paragraphs = [" ".join(f"p{n}w{i}" for i in range(20)) + "." for n in range(6)]  # ~100 chars each
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, max_chars=300, overlap_chars=40)
    for chunk in chunks:
        body = chunk.text
        assert body.endswith("."), body  # every chunk ends at a paragraph end
    assert all(any(p in c.text for c in chunks) for p in paragraphs)  # each paragraph whole somewhere


def test_a_word_longer_than_a_chunk_is_cut() -> None:
    text = "start " + "x" * 1000 + " end"
    chunks = chunk_text(text, max_chars=200, overlap_chars=50)
    assert max(len(c.text) for c in chunks) <= 200
    assert "".join(c.text for c in chunks).count("x") >= 1000


def test_invalid_chunk_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("hello", max_chars=100, overlap_chars=60)


def test_title_is_the_first_line_cut_at_a_word() -> None:
    assert title_of("\n# Wifi\nThe password") == "Wifi"
    long = title_of("word " * 40)
    assert len(long) <= 80 and long.endswith("…") and "wor…" not in long


# ------------------------------------------------------------------------------------- vector index


def random_unit_vectors(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((rows, dims)).astype(np.float32)
    unit: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


def test_exact_search_ranks_by_cosine() -> None:
    vectors = random_unit_vectors(300, 64)
    index = VectorIndex(64)
    index.add(list(range(300)), [n // 10 for n in range(300)], vectors * 3)  # not unit length
    query = vectors[17] + 0.05 * vectors[18]
    matches = index.search(query, 3)
    expected = np.argsort(-(vectors @ (query / np.linalg.norm(query))))[:3]
    assert [m.chunk_id for m in matches] == expected.tolist()
    assert matches[0].entry_id == 1
    assert matches[0].score == pytest.approx(float(vectors[17] @ query / np.linalg.norm(query)), abs=1e-5)


def test_sign_bit_prefilter_finds_what_exact_search_finds() -> None:
    centroids = random_unit_vectors(100, 256, seed=1)
    noise = random_unit_vectors(5000, 256, seed=2)
    vectors = np.repeat(centroids, 50, axis=0) + 0.8 * noise  # 100 topics of 50 passages
    exact = VectorIndex(256)
    prefiltered = VectorIndex(256, exact_max_rows=0, candidates=100)
    for index in (exact, prefiltered):
        index.add(list(range(5000)), list(range(5000)), vectors)
    queries = centroids[:20] + 0.8 * random_unit_vectors(20, 256, seed=3)
    found = 0
    for query in queries:
        want = exact.search(query, 5)
        got = prefiltered.search(query, 5)
        found += len({m.chunk_id for m in want} & {m.chunk_id for m in got})
        assert got[0] == want[0]  # same row, same exact score
        assert [m.score for m in got] == sorted((m.score for m in got), reverse=True)
    assert found >= 0.95 * 5 * len(queries)
    assert len(exact.snapshot().codes) == 5000


def test_vectors_of_another_dimension_are_refused() -> None:
    index = VectorIndex(8)
    index.add([1], [1], np.ones((1, 8)))
    with pytest.raises(DimensionMismatchError):
        index.add([2], [2], np.ones((1, 4)))
    with pytest.raises(DimensionMismatchError):
        index.search(np.ones(16), 1)
    with pytest.raises(DimensionMismatchError):
        VectorIndex.from_blobs(8, [1], [1], [np.ones(4, dtype="<f4").tobytes()])


def test_removal_and_growth_leave_a_taken_snapshot_alone() -> None:
    vectors = random_unit_vectors(100, 16)
    index = VectorIndex(16)
    index.add(list(range(50)), [n % 5 for n in range(50)], vectors[:50])
    before = index.snapshot()
    assert index.remove_entry(3) == 10
    index.add(list(range(50, 100)), [9] * 50, vectors[50:])
    assert len(index) == 90 and len(before.chunk_ids) == 50
    assert before.search(vectors[3], 1)[0].chunk_id == 3  # entry 3's row, gone from the index
    assert index.search(vectors[3], 1)[0].chunk_id != 3
    assert index.search(vectors[77], 1)[0].chunk_id == 77


# ---------------------------------------------------------------------- remember, search, forget


async def remember_notes(knowledge: KnowledgeBase, model: str = SMALL) -> dict[str, int]:
    ids = {}
    for name, text in NOTES.items():
        remembered = await knowledge.remember(guild_id=GUILD, author_id=ALICE, text=text, model=model)
        ids[name] = remembered.entry.id
    return ids


async def test_remember_then_search_finds_the_right_chunk_then_forget_removes_it(
    make_services: ServicesFactory,
) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    ids = await remember_notes(knowledge)

    query = "what is the wifi password"
    results = await knowledge.search(guild_id=GUILD, query=query, count=3, model=SMALL)
    top = results.hits[0]
    assert top.entry.id == ids["wifi"] and top.text == NOTES["wifi"]
    expected = float(np.dot(fake_embedding(query), fake_embedding(NOTES["wifi"])))
    assert top.score == pytest.approx(expected, abs=1e-5)
    assert [h.score for h in results.hits] == sorted((h.score for h in results.hits), reverse=True)
    assert (results.model, results.dims) == (SMALL, 1536)

    removed = await knowledge.forget(guild_id=GUILD, entry_id=ids["wifi"], user_id=ALICE, is_admin=False)
    assert removed.id == ids["wifi"]
    after = await knowledge.search(guild_id=GUILD, query=query, count=3, model=SMALL)
    assert ids["wifi"] not in {h.entry.id for h in after.hits}
    assert await services.storage.knowledge.chunks([top.chunk_id]) == {}
    assert await services.storage.knowledge.get(GUILD, ids["wifi"]) is None


async def test_long_text_is_embedded_in_batches_and_every_chunk_is_stored(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    knowledge = knowledge_of(services, batch_size=4)
    paragraphs = [f"Paragraph {n} talks about topic{n} " + "filler words here. " * 60 for n in range(10)]
    remembered = await knowledge.remember(
        guild_id=GUILD, author_id=ALICE, text="\n\n".join(paragraphs), model=SMALL
    )
    requests = fake_openai.requests_to("/v1/embeddings")
    sizes = [len(r.json["input"]) for r in requests]
    assert remembered.entry.chunk_count == sum(sizes) >= 10
    assert sizes[:-1] == [4] * (len(sizes) - 1) and 1 <= sizes[-1] <= 4
    assert all(r.json["model"] == SMALL for r in requests)
    hits = (await knowledge.search(guild_id=GUILD, query="topic7", count=1, model=SMALL)).hits
    assert "topic7" in hits[0].text
    usage = await services.storage.usage.user_total(GUILD, ALICE, since_day="2000-01-01")
    assert usage.input_tokens == remembered.tokens > 0


async def test_the_loaded_index_is_written_through_and_rebuilt_after_a_restart(
    make_services: ServicesFactory,
) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    assert (await knowledge.search(guild_id=GUILD, query="lunch", count=5, model=SMALL)).hits == []
    index = services.state.knowledge.get((GUILD, SMALL, 1536))
    assert index is not None and len(index) == 0
    ids = await remember_notes(knowledge)
    assert services.state.knowledge.get((GUILD, SMALL, 1536)) is index and len(index) == 3
    hits = (await knowledge.search(guild_id=GUILD, query="friday lunch", count=1, model=SMALL)).hits
    assert hits[0].entry.id == ids["lunch"]
    await services.close()

    restarted = await make_services()
    again = knowledge_of(restarted)
    hits = (await again.search(guild_id=GUILD, query="friday lunch", count=1, model=SMALL)).hits
    assert hits[0].entry.id == ids["lunch"]
    assert (await again.search(guild_id=GUILD + 1, query="lunch", count=5, model=SMALL)).hits == []


async def test_search_refuses_knowledge_embedded_with_another_model(make_services: ServicesFactory) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    await remember_notes(knowledge, model=LARGE)
    with pytest.raises(KnowledgeSpaceMismatchError) as refused:
        await knowledge.search(guild_id=GUILD, query="wifi password", count=3, model=SMALL)
    message = str(refused.value)
    assert LARGE in message and "3072" in message and SMALL in message and "1536" in message
    assert services.state.knowledge.get((GUILD, LARGE, 3072)) is None  # never loaded to compare


async def test_entries_of_another_model_are_skipped_not_mixed(make_services: ServicesFactory) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    old = await knowledge.remember(guild_id=GUILD, author_id=ALICE, text=NOTES["wifi"], model=LARGE)
    new = await knowledge.remember(guild_id=GUILD, author_id=ALICE, text=NOTES["lunch"], model=SMALL)
    results = await knowledge.search(guild_id=GUILD, query="wifi password", count=5, model=SMALL)
    assert [h.entry.id for h in results.hits] == [new.entry.id]
    assert results.skipped_entries == 1 and results.other_spaces[0].model == LARGE
    assert old.entry.dims == 3072 and new.entry.dims == 1536


async def test_only_the_author_or_an_admin_may_forget(make_services: ServicesFactory) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    ids = await remember_notes(knowledge)
    with pytest.raises(UserFacingError, match="someone else"):
        await knowledge.forget(guild_id=GUILD, entry_id=ids["lunch"], user_id=BOB, is_admin=False)
    removed = await knowledge.forget(guild_id=GUILD, entry_id=ids["lunch"], user_id=BOB, is_admin=True)
    assert removed.id == ids["lunch"]
    with pytest.raises(UserFacingError, match="no knowledge entry"):
        await knowledge.forget(guild_id=GUILD, entry_id=ids["lunch"], user_id=ALICE, is_admin=True)
    with pytest.raises(UserFacingError, match="no knowledge entry"):
        await knowledge.forget(guild_id=GUILD + 1, entry_id=ids["wifi"], user_id=ALICE, is_admin=True)


async def test_embedding_errors_become_one_clear_sentence(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services(openai={"max_retries": 0})
    knowledge = knowledge_of(services)
    fake_openai.embeddings.push(HttpError(429, "Slow down", code="rate_limit_exceeded"))
    with pytest.raises(UserFacingError, match="rate-limiting"):
        await knowledge.remember(guild_id=GUILD, author_id=ALICE, text="hello", model=SMALL)
    with pytest.raises(UserFacingError, match="embedding model `dall-e-3` is not available"):
        await knowledge.remember(guild_id=GUILD, author_id=ALICE, text="hello", model="dall-e-3")
    with pytest.raises(UserFacingError, match="empty"):
        await knowledge.remember(guild_id=GUILD, author_id=ALICE, text="  \n ", model=SMALL)
    assert await services.storage.knowledge.entries(GUILD) == []


# ----------------------------------------------------------------------------- search_knowledge tool


def tool_context(call_id: str, guild_id: int | None = GUILD) -> ToolContext:
    return ToolContext(
        user_id=BOB,
        user_name="Bob",
        guild_id=guild_id,
        channel_id=1001,
        conversation_key="channel:1001",
        call_id=call_id,
        settings=guild_settings(enabled_tools=("knowledge",)),
    )


async def test_search_knowledge_tool_returns_citable_passages(make_services: ServicesFactory) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    ids = await remember_notes(knowledge)
    await knowledge.link(ids["deploy"], "https://discord.com/channels/42/1001/555")
    tool = search_knowledge_tool(knowledge)
    services.tools.add(tool)

    result = await services.tools.call(
        "search_knowledge",
        json.dumps({"query": "how to deploy the website", "count": 2}),
        tool_context("call_1"),
        None,
    )
    assert result.ok
    output = json.loads(result.to_output())
    top = output["results"][0]
    assert top["entry_id"] == ids["deploy"] and top["url"] == "https://discord.com/channels/42/1001/555"
    assert top["text"] == NOTES["deploy"] and 0 < top["score"] <= 1
    assert len(output["results"]) == 2
    assert "strict" in tool.responses_schema() and tool.responses_schema()["parameters"]["required"] == [
        "query",
        "count",
    ]

    in_dm = await services.tools.call(
        "search_knowledge", json.dumps({"query": "x", "count": None}), tool_context("call_2", None), None
    )
    assert not in_dm.ok and in_dm.error_code == "unavailable"


async def test_the_model_draws_on_knowledge_in_a_conversation(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    ids = await remember_notes(knowledge)
    services.tools.add(search_knowledge_tool(knowledge))
    fake_openai.responses.push(
        Reply(calls=[FunctionCall("search_knowledge", {"query": "wifi password", "count": 1})]),
        Reply("The network is Hedgehog; the password is under the router (entry #1)."),
    )
    context = TurnContext(
        guild_id=GUILD, channel_id=1001, settings=guild_settings(enabled_tools=("knowledge",))
    )
    events = [e async for e in services.engine.reply("channel:1001", UserTurn("wifi?", BOB, "Bob"), context)]
    assert isinstance(events[-1], Completed)
    assert [e.ok for e in events if isinstance(e, ToolFinished)] == [True]
    second = fake_openai.requests_to("/v1/responses")[1].json
    outputs = [item for item in second["input"] if item.get("type") == "function_call_output"]
    passage = json.loads(outputs[0]["output"])["results"][0]
    assert passage["entry_id"] == ids["wifi"] and re.search("Hedgehog", passage["text"])


# ------------------------------------------------------------------- /remember, /search, /forget on Discord

COGS = ("cogs.knowledge",)


async def command(h: Harness, name: str, options: dict[str, object], user: FakeUser) -> StoredMessage:
    """Run a slash command and return the message that answers it (the last one, once it settled)."""
    record = await h.discord.slash_command(name, options, user=user, channel_id=h.general.id)

    def answered() -> bool:  # a followup, an immediate answer, or the placeholder edited into one
        original = h.discord.messages.get(record.original_message_id or 0)
        return (
            bool(record.followup_ids)
            or (record.acknowledged and record.response_type == CALLBACK_MESSAGE)
            or (original is not None and not original.deleted and not original.loading)
        )

    await h.discord.wait_for(answered)
    assert record.ack_latency_s is not None and record.ack_latency_s < 3
    return h.discord.message(
        record.followup_ids[-1] if record.followup_ids else record.original_message_id or 0
    )


async def test_remember_search_and_forget_through_discord(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        alice, bob = h.alice, h.world.bob
        acknowledged_first: list[bool] = []
        fake_openai.embeddings.default = lambda body: acknowledged_first.append(
            all(r.acknowledged for r in h.discord.interactions.values())
        )
        saved = await command(h, "remember", {"text": NOTES["wifi"]}, alice)
        assert not saved.ephemeral and "Remembered entry **#1**" in saved.content
        await command(h, "remember", {"text": NOTES["lunch"]}, bob)
        upload = Upload("deploy.md", NOTES["deploy"].encode())
        from_file = await command(h, "remember", {"file": upload}, alice)
        assert "#3" in from_file.content and "deploy.md" in from_file.content
        entry = await h.services.storage.knowledge.get(h.general.guild_id or 0, 1)
        assert entry is not None and entry.jump_url is not None
        assert entry.jump_url.endswith(f"/channels/{h.general.guild_id}/{h.general.id}/{saved.id}")

        found = await command(h, "search", {"query": "wifi password", "count": 2}, bob)
        embed = found.data["embeds"][0]
        assert not found.ephemeral and found.allowed_mentions == {"parse": []}
        assert len(embed["fields"]) == 2
        assert embed["fields"][0]["name"].startswith("1. #1 · ")
        assert NOTES["wifi"] in embed["fields"][0]["value"] and entry.jump_url in embed["fields"][0]["value"]

        typing = await h.discord.autocomplete(
            "forget", {"entry": ""}, focused="entry", user=alice, channel_id=h.general.id
        )
        await h.discord.wait_for(lambda: typing.acknowledged)
        assert [c["value"] for c in typing.autocomplete_choices or []] == [
            "3",
            "1",
        ]  # alice's own, newest first
        typing = await h.discord.autocomplete(
            "forget", {"entry": "dep"}, focused="entry", user=h.world.admin, channel_id=h.general.id
        )
        await h.discord.wait_for(lambda: typing.acknowledged)
        assert [c["name"] for c in typing.autocomplete_choices or []] == ["#3 · deploy.md (Markdown file)"]

        refused = await command(h, "forget", {"entry": 1}, bob)
        assert refused.ephemeral and "only they or an admin" in refused.content
        forgotten = await command(h, "forget", {"entry": 1}, alice)
        assert forgotten.ephemeral and forgotten.content.startswith("Forgot entry #1")
        by_admin = await command(h, "forget", {"entry": 2}, h.world.admin)
        assert by_admin.ephemeral and by_admin.content.startswith("Forgot entry #2")

        assert acknowledged_first == [True] * 4  # three /remember, one /search: each acknowledged first
        after = await command(h, "search", {"query": "wifi password", "count": 5}, bob)
        assert [f["name"].split(" · ")[0] for f in after.data["embeds"][0]["fields"]] == ["1. #3"]


async def test_knowledge_commands_refuse_clearly_and_privately(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=COGS) as h:
        alice = h.alice
        pdf = await command(h, "remember", {"file": Upload("notes.pdf", b"%PDF-1.7")}, alice)
        assert pdf.ephemeral and "notes.pdf is not a valid PDF" in pdf.content
        nothing = await command(h, "remember", {}, alice)
        assert nothing.ephemeral and "Give either some text or a file" in nothing.content
        empty = await command(h, "search", {"query": "anything"}, alice)
        assert empty.ephemeral and "Nothing in this server's knowledge matches" in empty.content
        assert fake_openai.requests_to("/v1/embeddings")  # the query was embedded, after acknowledging

        await command(h, "remember", {"text": NOTES["lunch"]}, alice)
        guild_id = h.general.guild_id or 0
        await h.services.settings.set(guild_id, "embedding_model", LARGE, user_id=h.world.admin.id)
        mismatch = await command(h, "search", {"query": "lunch"}, alice)
        assert mismatch.ephemeral and "cannot be compared" in mismatch.content
        missing = await command(h, "forget", {"entry": 99}, alice)
        assert missing.ephemeral and "no knowledge entry #99" in missing.content


async def test_builtin_tools_offer_search_knowledge_when_given_the_knowledge_base(
    make_services: ServicesFactory,
) -> None:
    services = await make_services()
    register_builtin_tools(
        services.tools,
        storage=services.storage,
        config=services.config,
        secrets_env={},
        knowledge=knowledge_of(services),
    )
    names = [schema["name"] for schema in services.tools.schemas(["knowledge"], "responses")]
    assert names == ["search_knowledge"]


async def test_loading_in_pages_gives_the_same_index(make_services: ServicesFactory) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    await remember_notes(knowledge)
    await knowledge.remember(guild_id=GUILD, author_id=BOB, text=NOTES["wifi"], model=LARGE)  # another space
    paged = await load_index(services.storage.knowledge, GUILD, SMALL, 1536, page_entries=2)
    whole = await load_index(services.storage.knowledge, GUILD, SMALL, 1536)
    assert len(paged) == len(whole) == 3
    assert paged.snapshot().chunk_ids.tolist() == whole.snapshot().chunk_ids.tolist()
    assert np.array_equal(paged.snapshot().vectors, whole.snapshot().vectors)


def test_indexes_over_the_memory_budget_drop_the_least_recently_used() -> None:
    def index_of(rows: int) -> VectorIndex:
        index = VectorIndex(8)
        index.add(list(range(rows)), [1] * rows, np.ones((rows, 8), dtype=np.float32))
        return index

    one = index_of(10).nbytes
    indexes = KnowledgeIndexes(max_bytes=3 * one)
    a, b, c = (GUILD, SMALL, 8), (GUILD + 1, SMALL, 8), (GUILD + 2, SMALL, 8)
    for key in (a, b, c):
        indexes.put(key, index_of(10))
    assert indexes.nbytes == 3 * one and all(key in indexes for key in (a, b, c))
    assert indexes.get(a) is not None  # a is now the most recently used; b the least
    indexes.put((GUILD + 3, SMALL, 8), index_of(10))
    assert b not in indexes and a in indexes and c in indexes
    assert indexes.nbytes <= indexes.max_bytes

    huge = index_of(1000)
    assert huge.nbytes > indexes.max_bytes
    indexes.put((GUILD + 4, SMALL, 8), huge)  # alone over budget: it stays, every other one goes
    assert indexes.get((GUILD + 4, SMALL, 8)) is huge and indexes.nbytes == huge.nbytes


async def test_a_dropped_index_loads_again_when_searched(make_services: ServicesFactory) -> None:
    services = await make_services()
    knowledge = knowledge_of(services)
    ids = await remember_notes(knowledge)
    other = await knowledge.remember(
        guild_id=GUILD + 1, author_id=BOB, text="Bob's notes on lunch.", model=SMALL
    )
    indexes = services.state.knowledge
    await knowledge.search(guild_id=GUILD, query="lunch", count=1, model=SMALL)
    first = indexes.get((GUILD, SMALL, 1536))
    assert first is not None
    indexes.max_bytes = first.nbytes  # room for one index only

    hits = (await knowledge.search(guild_id=GUILD + 1, query="lunch", count=1, model=SMALL)).hits
    assert hits[0].entry.id == other.entry.id
    assert (GUILD, SMALL, 1536) not in indexes and (GUILD + 1, SMALL, 1536) in indexes

    hits = (await knowledge.search(guild_id=GUILD, query="friday lunch", count=3, model=SMALL)).hits
    assert hits[0].entry.id == ids["lunch"] and len(hits) == 3  # loaded again, whole
    assert (GUILD + 1, SMALL, 1536) not in indexes
