"""The storage layer: migrations, and each store's guarantees."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from bot.errors import SchemaTooNewError
from bot.storage import HistoryMessage, Storage, utc_day
from bot.storage.database import display_location, inspect_database, is_postgres_url
from bot.storage.dialect import postgres_query
from bot.storage.migrations import LATEST_VERSION
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES


def write_schema_version(database_location: str, version: int) -> None:
    """Stamp a database with a schema version as a newer bot would have (outside the bot's code)."""
    if is_postgres_url(database_location):
        with psycopg.connect(database_location, autocommit=True) as raw:
            raw.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            raw.execute("DELETE FROM schema_version")
            raw.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    else:
        with sqlite3.connect(database_location) as raw:
            raw.execute(f"PRAGMA user_version = {version}")


async def test_new_database_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bot.db"
    storage = await Storage.open(path)
    assert await storage.db.schema_version() == LATEST_VERSION
    await storage.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_new_database_is_migrated_on_either_engine(storage: Storage) -> None:
    assert await storage.db.schema_version() == LATEST_VERSION
    assert (await inspect_database(storage.db.path)).version == LATEST_VERSION


async def test_reopening_keeps_data_and_does_not_migrate_twice(database_location: str) -> None:
    path = database_location
    first = await Storage.open(path)
    await first.conversations.get_or_create("channel:1", backend="responses", guild_id=5, channel_id=1)
    await first.close()
    second = await Storage.open(path)
    assert (await second.conversations.get("channel:1")) is not None
    await second.close()


async def test_newer_schema_is_refused(database_location: str) -> None:
    path = database_location
    write_schema_version(path, LATEST_VERSION + 1)
    with pytest.raises(SchemaTooNewError, match="newer than this bot knows"):
        await Storage.open(path)
    with pytest.raises(SchemaTooNewError, match="newer than this bot knows"):
        await inspect_database(path)  # what `--check` says, changing nothing


async def test_discord_ids_and_times_keep_their_precision(storage: Storage) -> None:
    """Snowflakes need 64 bits and times sub-second precision (PostgreSQL's INTEGER and REAL lack them)."""
    snowflake = 1_234_567_890_123_456_789
    record = await storage.conversations.get_or_create(
        "channel:big", backend="chat", guild_id=snowflake, channel_id=snowflake + 1
    )
    stored = await storage.conversations.get("channel:big")
    assert stored is not None and (stored.guild_id, stored.channel_id) == (snowflake, snowflake + 1)
    assert stored.created_at == record.created_at


async def test_knowledge_vectors_are_stored_as_given_bytes(storage: Storage) -> None:
    vectors = [bytes(range(8)), b"\x00\xff" * 4]
    entry, chunk_ids = await storage.knowledge.add(
        guild_id=1,
        author_id=2,
        title="100% sure",
        source="text",
        jump_url=None,
        model="m",
        dims=2,
        chunks=[("first", vectors[0]), ("second", vectors[1])],
    )
    page = await storage.knowledge.vectors(1, "m", 2)
    assert page.chunk_ids == chunk_ids and page.vectors == vectors
    assert [e.id for e in await storage.knowledge.entries(1, matching="100% SURE")] == [entry.id]
    assert await storage.knowledge.entries(1, matching="1%s") == []  # % is a character, not a wildcard


def test_postgres_statements_are_translated_once_in_one_place() -> None:
    assert postgres_query("SELECT '?', '%' FROM t WHERE a = ? AND b LIKE ? AND c IS ?") == (
        "SELECT '?', '%%' FROM t WHERE a = %s AND b ILIKE %s AND c IS NOT DISTINCT FROM %s"
    )
    assert postgres_query("UPDATE t SET x = 1 WHERE run_id IS NOT ?") == (
        "UPDATE t SET x = 1 WHERE run_id IS DISTINCT FROM %s"
    )


def test_a_database_url_is_shown_without_its_password() -> None:
    assert display_location("postgresql://bot:s3cret@db:5432/bot") == "postgresql://bot:***@db:5432/bot"
    assert display_location("data/bot.db") == "data/bot.db"


async def test_conversation_id_survives_and_reset_starts_a_new_generation(storage: Storage) -> None:
    record = await storage.conversations.get_or_create(
        "channel:1", backend="responses", guild_id=5, channel_id=1
    )
    assert record.conversation_id is None and record.generation == 1
    assert await storage.conversations.set_conversation_id("channel:1", 1, "conv_a")
    again = await storage.conversations.get_or_create(
        "channel:1", backend="responses", guild_id=5, channel_id=1
    )
    assert again.conversation_id == "conv_a"
    assert await storage.conversations.reset("channel:1")
    fresh = await storage.conversations.get("channel:1")
    assert fresh is not None and fresh.conversation_id is None and fresh.generation == 2
    # An id learned by a turn that started before the reset is not attached to the new conversation.
    assert not await storage.conversations.set_conversation_id("channel:1", 1, "conv_stale")


async def test_switching_backend_starts_fresh(storage: Storage) -> None:
    await storage.conversations.get_or_create("channel:1", backend="responses", guild_id=5, channel_id=1)
    await storage.conversations.set_conversation_id("channel:1", 1, "conv_a")
    switched = await storage.conversations.get_or_create(
        "channel:1", backend="chat", guild_id=5, channel_id=1
    )
    assert switched.backend == "chat" and switched.conversation_id is None and switched.generation == 2


async def test_history_is_trimmed_to_budget_and_starts_at_a_user_message(storage: Storage) -> None:
    def message(role: str, text: str, tokens: int) -> HistoryMessage:
        return HistoryMessage({"role": role, "content": text}, tokens)

    await storage.history.append_turn("k", 1, 1, [message("user", "q1", 10), message("assistant", "a1", 10)])
    await storage.history.append_turn(
        "k",
        1,
        2,
        [
            message("user", "q2", 10),
            HistoryMessage({"role": "assistant", "content": None, "tool_calls": []}, 10),
            message("tool", "t", 10),
            message("assistant", "a2", 10),
        ],
    )
    everything = await storage.history.recent("k", 1, token_budget=1000)
    assert [m.payload["content"] for m in everything] == ["q1", "a1", "q2", None, "t", "a2"]
    # 50 tokens would reach back into the middle of turn 1: it starts at turn 2's user message.
    trimmed = await storage.history.recent("k", 1, token_budget=50)
    assert [m.payload["role"] for m in trimmed] == ["user", "assistant", "tool", "assistant"]
    assert await storage.history.recent("k", 2, token_budget=1000) == []


async def test_usage_adds_up_per_day_user_and_guild(storage: Storage) -> None:
    day = utc_day()
    await storage.usage.record(guild_id=1, user_id=10, input_tokens=100, output_tokens=20)
    await storage.usage.record(guild_id=1, user_id=10, input_tokens=5, output_tokens=5)
    await storage.usage.record(guild_id=1, user_id=11, input_tokens=1, output_tokens=1)
    await storage.usage.record(guild_id=None, user_id=10, input_tokens=7, output_tokens=0)
    mine = await storage.usage.user_total(1, 10, since_day=day)
    assert (mine.input_tokens, mine.output_tokens, mine.turns) == (105, 25, 2)
    assert (await storage.usage.guild_total(1, since_day=day)).total_tokens == 132
    assert (await storage.usage.user_total(None, 10, since_day=day)).total_tokens == 7
    top = await storage.usage.top_users(1, since_day=day)
    assert [user for user, _ in top] == [10, 11]


async def test_settings_changes_are_audited(storage: Storage) -> None:
    await storage.settings.set(1, "model", "m1", user_id=7)
    await storage.settings.set(1, "model", "m2", user_id=8)
    await storage.settings.reset(1, "model", user_id=9)
    assert await storage.settings.overrides(1) == {}
    audit = await storage.settings.audit(1)
    assert [(c.user_id, c.old_value, c.new_value) for c in audit] == [
        (9, "m2", None),
        (8, "m1", "m2"),
        (7, None, "m1"),
    ]


async def test_turn_journal_reports_interrupted_turns_once(storage: Storage) -> None:
    await storage.conversations.get_or_create("channel:1", backend="chat", guild_id=1, channel_id=1)
    done = await storage.turns.start(
        conversation_key="channel:1", guild_id=1, channel_id=1, user_id=3, message_id=9, run_id="run-1"
    )
    await storage.turns.finish(done, "completed", input_tokens=4, output_tokens=6)
    running = await storage.turns.start(
        conversation_key="channel:1", guild_id=1, channel_id=1, user_id=3, message_id=10, run_id="run-1"
    )
    interrupted = await storage.turns.take_interrupted(current_run="run-2")
    assert [t.turn_id for t in interrupted] == [running]
    assert interrupted[0].message_id == 10
    assert await storage.turns.take_interrupted() == []
    assert await storage.turns.status(running) == "interrupted"
    assert (await storage.usage.user_total(1, 3, since_day=utc_day())).total_tokens == 10


async def test_tool_call_runs_once(storage: Storage) -> None:
    first = await storage.tool_calls.claim("call_1", conversation_key="k", name="book")
    assert first.state == "new"
    assert (await storage.tool_calls.claim("call_1", conversation_key="k", name="book")).state == "running"
    await storage.tool_calls.complete("call_1", '{"ok":true}')
    again = await storage.tool_calls.claim("call_1", conversation_key="k", name="book")
    assert again.state == "done" and again.output == '{"ok":true}'
