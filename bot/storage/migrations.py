"""The database schema, as an ordered list of migrations applied at start-up.

Append only: a migration that has shipped is never edited. Each runs in one transaction with the
`user_version` bump, so a crash leaves the schema at a known version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "core: conversations, chat history, usage, guild settings, turn journal, tool call ledger",
        """
        CREATE TABLE conversations (
            key              TEXT PRIMARY KEY,          -- e.g. 'channel:123' (a thread or a DM channel)
            backend          TEXT NOT NULL,             -- 'responses' | 'chat'
            conversation_id  TEXT,                      -- OpenAI conv_... (responses backend)
            generation       INTEGER NOT NULL DEFAULT 1,-- bumped by /reset; chat history is per generation
            guild_id         INTEGER,
            channel_id       INTEGER NOT NULL,
            created_at       REAL NOT NULL,
            last_active_at   REAL NOT NULL
        );

        CREATE TABLE chat_messages (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_key TEXT NOT NULL,
            generation       INTEGER NOT NULL,
            turn_id          INTEGER NOT NULL,
            role             TEXT NOT NULL,             -- 'user' | 'assistant' | 'tool'
            payload          TEXT NOT NULL,             -- the Chat Completions message, as JSON
            token_estimate   INTEGER NOT NULL,
            created_at       REAL NOT NULL
        );
        CREATE INDEX chat_messages_by_conversation ON chat_messages (conversation_key, generation, id);

        CREATE TABLE usage_daily (
            day              TEXT NOT NULL,             -- UTC date, YYYY-MM-DD
            guild_id         INTEGER NOT NULL,          -- 0 for direct messages
            user_id          INTEGER NOT NULL,
            input_tokens     INTEGER NOT NULL DEFAULT 0,
            output_tokens    INTEGER NOT NULL DEFAULT 0,
            turns            INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, guild_id, user_id)
        );
        CREATE INDEX usage_daily_by_guild ON usage_daily (guild_id, day);

        CREATE TABLE guild_settings (
            guild_id         INTEGER NOT NULL,
            name             TEXT NOT NULL,
            value            TEXT NOT NULL,             -- JSON
            updated_by       INTEGER NOT NULL,
            updated_at       REAL NOT NULL,
            PRIMARY KEY (guild_id, name)
        );

        CREATE TABLE guild_settings_audit (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id         INTEGER NOT NULL,
            user_id          INTEGER NOT NULL,
            name             TEXT NOT NULL,
            old_value        TEXT,                      -- JSON, NULL = was the default
            new_value        TEXT,                      -- JSON, NULL = reset to the default
            at               REAL NOT NULL
        );
        CREATE INDEX guild_settings_audit_by_guild ON guild_settings_audit (guild_id, id);

        CREATE TABLE turns (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_key TEXT NOT NULL,
            guild_id         INTEGER,
            channel_id       INTEGER NOT NULL,
            user_id          INTEGER NOT NULL,
            message_id       INTEGER,
            status           TEXT NOT NULL,  -- running | completed | failed | cancelled | interrupted
            started_at       REAL NOT NULL,
            finished_at      REAL
        );
        CREATE INDEX turns_running ON turns (status) WHERE status = 'running';

        CREATE TABLE tool_calls (
            call_id          TEXT PRIMARY KEY,          -- the model's call id: a call never runs twice
            conversation_key TEXT NOT NULL,
            name             TEXT NOT NULL,
            status           TEXT NOT NULL,             -- running | done
            output           TEXT,
            created_at       REAL NOT NULL,
            finished_at      REAL
        );
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
