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
    Migration(
        2,
        "bookings and rides: restaurant catalog (with a demo catalog), reservations, ride orders",
        """
        CREATE TABLE restaurants (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            name             TEXT NOT NULL,
            cuisine          TEXT NOT NULL,             -- lower case, e.g. 'italian'
            area             TEXT NOT NULL,
            opening_hours    TEXT NOT NULL,             -- e.g. 'mon-fri 12:00-14:30,18:00-23:00; sat closed'
            tables_per_slot  INTEGER NOT NULL CHECK (tables_per_slot >= 0),
            timezone         TEXT,                      -- IANA name; NULL = the guild's time zone
            active           INTEGER NOT NULL DEFAULT 1,-- 0: kept for old reservations, not bookable
            created_at       REAL NOT NULL
        );
        CREATE UNIQUE INDEX restaurants_active_name ON restaurants (name COLLATE NOCASE) WHERE active = 1;

        CREATE TABLE reservations (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id          TEXT UNIQUE,               -- the tool call that made it: never booked twice
            restaurant_id    INTEGER NOT NULL REFERENCES restaurants (id),
            user_id          INTEGER NOT NULL,
            user_name        TEXT NOT NULL,
            guild_id         INTEGER,                   -- NULL: booked in a DM
            starts_at        INTEGER NOT NULL,          -- unix seconds (UTC), on a half-hour slot
            party_size       INTEGER NOT NULL CHECK (party_size BETWEEN 1 AND 20),
            tables           INTEGER NOT NULL CHECK (tables >= 1),
            notes            TEXT NOT NULL DEFAULT '',
            status           TEXT NOT NULL,             -- confirmed | cancelled
            created_at       REAL NOT NULL,
            cancelled_at     REAL
        );
        CREATE INDEX reservations_by_slot
            ON reservations (restaurant_id, starts_at) WHERE status = 'confirmed';
        CREATE INDEX reservations_by_user ON reservations (user_id, guild_id, starts_at);
        CREATE UNIQUE INDEX reservations_one_per_user_and_slot
            ON reservations (restaurant_id, user_id, starts_at) WHERE status = 'confirmed';

        CREATE TABLE rides (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id          TEXT UNIQUE,               -- the tool call that ordered it
            user_id          INTEGER NOT NULL,
            user_name        TEXT NOT NULL,
            guild_id         INTEGER,
            pickup           TEXT NOT NULL,
            dropoff          TEXT NOT NULL,
            ride_type        TEXT NOT NULL,             -- standard | comfort | xl
            pickup_at        INTEGER NOT NULL,          -- unix seconds (UTC)
            distance_km      REAL NOT NULL,
            duration_min     INTEGER NOT NULL,
            fare_cents       INTEGER NOT NULL,          -- as quoted when ordered
            currency         TEXT NOT NULL,
            status           TEXT NOT NULL,             -- requested | scheduled | cancelled
            created_at       REAL NOT NULL,
            cancelled_at     REAL
        );
        CREATE INDEX rides_by_user ON rides (user_id, guild_id, pickup_at);

        -- The demo catalog, seeded once on first start; edit it freely (BookingStore.update_restaurant).
        INSERT INTO restaurants (name, cuisine, area, opening_hours, tables_per_slot, created_at)
        SELECT column1, column2, column3, column4, column5, strftime('%s', 'now') FROM (VALUES
            ('Trattoria Roma', 'italian', 'Old Town', 'tue-sun 12:00-14:30,18:00-23:00', 6),
            ('Pizzeria Napoli', 'italian', 'Harbour', 'daily 11:30-23:00', 8),
            ('Osteria del Ponte', 'italian', 'University', 'mon-sat 18:00-23:30', 3),
            ('Sakura Sushi', 'japanese', 'City Centre', 'mon-sat 12:00-14:00,17:30-22:30', 5),
            ('Le Petit Bistro', 'french', 'Old Town', 'wed-sun 18:00-23:00', 4),
            ('Taj Mahal', 'indian', 'University', 'daily 12:00-15:00,17:00-23:00', 7),
            ('El Camino', 'mexican', 'Harbour', 'tue-sun 17:00-24:00', 6),
            ('Golden Dragon', 'chinese', 'City Centre', 'daily 11:00-22:00', 10),
            ('The Green Table', 'vegetarian', 'North Park', 'mon-fri 08:00-16:00; sat-sun 09:00-15:00', 5),
            ('Olive & Thyme', 'greek', 'University', 'mon-sat 12:00-22:00', 6),
            ('Smokehouse 51', 'barbecue', 'Stadium', 'thu-sun 17:00-23:30', 8),
            ('Seoul Kitchen', 'korean', 'City Centre', 'tue-sun 11:30-14:30,17:30-22:00', 5));
        """,
    ),
    Migration(
        3,
        "knowledge: entries and their chunks with float32 embedding vectors, per guild",
        """
        CREATE TABLE knowledge_entries (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id         INTEGER NOT NULL,
            author_id        INTEGER NOT NULL,
            title            TEXT NOT NULL,             -- a short label: the first words or the file name
            source           TEXT NOT NULL,             -- 'text' or the attachment's file name
            jump_url         TEXT,                      -- the Discord message that recorded it
            model            TEXT NOT NULL,             -- embedding model of every chunk's vector
            dims             INTEGER NOT NULL,          -- and their dimensions: searched only with both
            chunk_count      INTEGER NOT NULL,
            created_at       REAL NOT NULL
        );
        CREATE INDEX knowledge_entries_by_space ON knowledge_entries (guild_id, model, dims);

        CREATE TABLE knowledge_chunks (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            entry_id         INTEGER NOT NULL REFERENCES knowledge_entries (id) ON DELETE CASCADE,
            ordinal          INTEGER NOT NULL,
            text             TEXT NOT NULL,
            vector           BLOB NOT NULL,             -- dims little-endian float32, as the model gave them
            UNIQUE (entry_id, ordinal)
        );
        """,
    ),
    Migration(
        4,
        "turn journal: the run (process start) that began each turn",
        """
        -- NULL on turns journalled before this version: an earlier process began them all.
        ALTER TABLE turns ADD COLUMN run_id TEXT;
        """,
    ),
    Migration(
        5,
        "several processes on one database: the runs and their shards, and who answers each message",
        """
        CREATE TABLE runs (
            run_id           TEXT PRIMARY KEY,          -- ProcessState.run_id
            shard_ids        TEXT NOT NULL,             -- the shards it connects, e.g. '0,1'
            shard_count      INTEGER NOT NULL,          -- of how many in all
            started_at       REAL NOT NULL,
            heartbeat_at     REAL NOT NULL,             -- alive while recent (RunRegistry)
            stopped_at       REAL                       -- set on a clean close
        );

        CREATE TABLE message_claims (
            message_id       INTEGER PRIMARY KEY,       -- the Discord message; its first claimer answers it
            run_id           TEXT NOT NULL,
            claimed_at       REAL NOT NULL
        );
        CREATE INDEX message_claims_by_time ON message_claims (claimed_at);
        """,
    ),
    Migration(
        6,
        "restaurants per guild: each guild's own catalog (the demo one until it has one) and its audit",
        """
        -- NULL: the shared demo catalog (and every row from before), which a guild sees until it has
        -- restaurants of its own; DMs always see it. Reservations keep their restaurant_id.
        ALTER TABLE restaurants ADD COLUMN guild_id INTEGER;
        DROP INDEX restaurants_active_name;
        CREATE UNIQUE INDEX restaurants_active_name
            ON restaurants (COALESCE(guild_id, 0), name COLLATE NOCASE) WHERE active = 1;
        CREATE INDEX restaurants_by_guild ON restaurants (guild_id);

        CREATE TABLE restaurant_audit (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id         INTEGER NOT NULL,
            user_id          INTEGER NOT NULL,
            restaurant_id    INTEGER NOT NULL,
            action           TEXT NOT NULL,             -- add | edit | remove
            name             TEXT NOT NULL,             -- the restaurant's name after the change
            old_value        TEXT,                      -- JSON of the entry's fields; NULL for add
            new_value        TEXT,                      -- JSON of the entry's fields; NULL for remove
            at               REAL NOT NULL
        );
        CREATE INDEX restaurant_audit_by_guild ON restaurant_audit (guild_id, id);
        """,
    ),
    Migration(
        7,
        "rides between real addresses: the geocoder's answers cached, and rides with a metered fare",
        """
        CREATE TABLE geocode_cache (
            query            TEXT PRIMARY KEY,          -- the normalised text that was looked up
            places           TEXT NOT NULL,             -- JSON [{name, lat, lon, importance}]; [] = not found
            fetched_at       REAL NOT NULL              -- unix seconds; older than the expiry is asked again
        );

        -- 1: no estimate was possible (a place the service could not locate); the driver's meter sets
        -- the fare, and distance_km, duration_min and fare_cents are 0 and mean nothing.
        ALTER TABLE rides ADD COLUMN metered INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        8,
        "named assistants per guild, which channel, thread or DM uses which, and their audit",
        """
        CREATE TABLE assistants (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id         INTEGER NOT NULL,
            name             TEXT NOT NULL,
            name_key         TEXT NOT NULL,             -- the name case-folded: unique per guild
            profile          TEXT NOT NULL,             -- JSON of bot.assistants.AssistantProfile
            created_by       INTEGER NOT NULL,
            created_at       REAL NOT NULL,
            updated_at       REAL NOT NULL,
            UNIQUE (guild_id, name_key)
        );
        CREATE INDEX assistants_by_name ON assistants (name_key);

        CREATE TABLE assistant_choices (
            scope            TEXT NOT NULL,             -- channel | conversation | dm
            target_id        INTEGER NOT NULL,          -- the channel, the thread, or the DM's user
            guild_id         INTEGER NOT NULL,          -- the assistant's guild (0: a DM on the default)
            assistant_id     INTEGER REFERENCES assistants (id), -- NULL: the guild's default
            chosen_by        INTEGER NOT NULL,          -- 0: recorded at a thread's first turn
            chosen_at        REAL NOT NULL,
            started_by       INTEGER,                   -- a conversation's starter (NULL: not known)
            PRIMARY KEY (scope, target_id)
        );
        CREATE INDEX assistant_choices_by_assistant ON assistant_choices (assistant_id);
        CREATE INDEX assistant_choices_by_guild ON assistant_choices (guild_id, scope);

        CREATE TABLE assistant_audit (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id         INTEGER NOT NULL,
            user_id          INTEGER NOT NULL,
            assistant_id     INTEGER,                   -- NULL: a switch to the default
            action           TEXT NOT NULL,             -- create | edit | delete | use
            name             TEXT NOT NULL,             -- the assistant's name after the change
            old_value        TEXT,                      -- JSON; NULL for create
            new_value        TEXT,                      -- JSON; NULL for delete
            at               REAL NOT NULL
        );
        CREATE INDEX assistant_audit_by_guild ON assistant_audit (guild_id, id);
        """,
    ),
    Migration(
        9,
        "documents as knowledge: an entry's file (type, size, pages), each chunk's page and headings",
        """
        -- NULL on notes remembered as text (and on entries from before): no file, no pages, no headings.
        ALTER TABLE knowledge_entries ADD COLUMN file_type TEXT;        -- pdf | docx | markdown | html | text
        ALTER TABLE knowledge_entries ADD COLUMN file_bytes INTEGER;
        ALTER TABLE knowledge_entries ADD COLUMN page_count INTEGER;
        ALTER TABLE knowledge_chunks ADD COLUMN page INTEGER;           -- 1-based; a chunk never spans two
        ALTER TABLE knowledge_chunks ADD COLUMN headings TEXT;          -- JSON list, outermost first
        ALTER TABLE knowledge_chunks ADD COLUMN page_label TEXT;        -- printed ("viii"); NULL: cite `page`
        """,
    ),
    Migration(
        10,
        "conversation files: attachments uploaded to OpenAI for a conversation's code interpreter",
        """
        CREATE TABLE conversation_files (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_key TEXT NOT NULL,
            generation       INTEGER NOT NULL,          -- /reset starts a new one: older files are forgotten
            file_id          TEXT NOT NULL,             -- OpenAI file-...
            filename         TEXT NOT NULL,
            size_bytes       INTEGER NOT NULL,
            uploaded_at      REAL NOT NULL
        );
        CREATE INDEX conversation_files_by_key ON conversation_files (conversation_key, generation, id);
        """,
    ),
    Migration(
        11,
        "run steps: the tools each turn ran, in order, for the reply's Steps button",
        """
        CREATE TABLE turn_steps (
            turn_id          INTEGER NOT NULL,          -- turns.id
            ordinal          INTEGER NOT NULL,          -- 0, 1, ... in the order the turn ran them
            kind             TEXT NOT NULL,             -- function | hosted
            name             TEXT NOT NULL,             -- the tool's name
            arguments        TEXT NOT NULL,             -- in brief: clipped JSON, the code, the query
            outcome          TEXT NOT NULL,             -- ok | error | declined | cancelled
            result           TEXT NOT NULL,             -- the result or the error, in brief
            started_at       REAL NOT NULL,             -- unix seconds
            duration_s       REAL,                      -- NULL: not known
            PRIMARY KEY (turn_id, ordinal)
        );
        CREATE INDEX turn_steps_by_time ON turn_steps (started_at);
        """,
    ),
    Migration(
        12,
        "knowledge in an OpenAI vector store: each guild's store and the files added to it",
        """
        CREATE TABLE vector_stores (
            guild_id         INTEGER PRIMARY KEY,
            store_id         TEXT NOT NULL,             -- OpenAI vs_...
            created_at       REAL NOT NULL
        );

        CREATE TABLE vector_store_files (
            id               INTEGER PRIMARY KEY AUTOINCREMENT, -- the entry number /forget takes
            guild_id         INTEGER NOT NULL,
            store_id         TEXT NOT NULL,             -- the store it was added to
            file_id          TEXT NOT NULL,             -- OpenAI file-... (Files API and store alike)
            filename         TEXT NOT NULL,
            size_bytes       INTEGER NOT NULL,
            author_id        INTEGER NOT NULL,
            added_at         REAL NOT NULL,
            status           TEXT NOT NULL              -- in_progress | completed
        );
        CREATE INDEX vector_store_files_by_guild ON vector_store_files (guild_id, id);
        CREATE INDEX vector_store_files_by_file ON vector_store_files (file_id);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
