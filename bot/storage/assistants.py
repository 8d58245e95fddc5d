"""Named assistants per guild, which channel, thread or DM uses which, and the audit of every change.

Profiles are stored as JSON validated by `bot.assistants.AssistantProfile` (this store never judges
them); `name_key` (the name case-folded) keeps names unique per guild. A choice points at an
assistant by id, so a rename keeps it; a conversation's choice may be NULL: the thread started on (or
was switched to) the guild's default and keeps it. Changes hold the guild's `lock_key`, so the
uniqueness check and the audit's old value hold across processes sharing PostgreSQL.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from bot.storage.database import Connection, Database, Row

AssistantAction = Literal["create", "edit", "delete", "use"]


class ChoiceScope(enum.StrEnum):
    CHANNEL = "channel"  # target: a channel id; new threads there start with it
    CONVERSATION = "conversation"  # target: a thread's id (its conversation)
    DM = "dm"  # target: a user id; the assistant may be of any guild they share with the bot


@dataclass(frozen=True, slots=True)
class StoredAssistant:
    id: int
    guild_id: int
    name: str
    profile: dict[str, Any]
    created_by: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class StoredChoice:
    """A channel's, thread's or person's assistant; `assistant` None: the guild's default."""

    scope: ChoiceScope
    target_id: int
    guild_id: int
    assistant: StoredAssistant | None
    started_by: int | None = None
    """A conversation's starter: whose message began it (None: not known, e.g. recorded by `use`)."""


@dataclass(frozen=True, slots=True)
class AssistantChange:
    """One audited change: who, what, and the JSON before and after.

    For `use`, old/new are `{"scope", "target", "assistant"}` (the assistant's name, None: default).
    """

    guild_id: int
    user_id: int
    assistant_id: int | None
    action: AssistantAction
    name: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    at: float


@dataclass(frozen=True, slots=True)
class Deletion:
    change: AssistantChange
    channels: int
    """Channels that used it (now on the default)."""
    threads: int
    """Threads that used it (now on the default)."""


_SELECT_ASSISTANT = (
    "SELECT a.id AS a_id, a.guild_id AS a_guild_id, a.name AS a_name, a.profile AS a_profile,"
    " a.created_by AS a_created_by, a.created_at AS a_created_at, a.updated_at AS a_updated_at"
)


def _assistant(row: Row) -> StoredAssistant:
    return StoredAssistant(
        id=row["a_id"],
        guild_id=row["a_guild_id"],
        name=row["a_name"],
        profile=json.loads(row["a_profile"]),
        created_by=row["a_created_by"],
        created_at=row["a_created_at"],
        updated_at=row["a_updated_at"],
    )


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loaded(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def _like_escaped(fragment: str) -> str:
    return fragment.replace("!", "!!").replace("%", "!%").replace("_", "!_")


class AssistantStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- assistants ------------------------------------------------------------------------------

    async def in_guild(self, guild_id: int) -> list[StoredAssistant]:
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                f"{_SELECT_ASSISTANT} FROM assistants a WHERE a.guild_id = ? ORDER BY a.name_key",
                (guild_id,),
            )
        return [_assistant(row) for row in rows]

    async def get(self, guild_id: int, key: str) -> StoredAssistant | None:
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                f"{_SELECT_ASSISTANT} FROM assistants a WHERE a.guild_id = ? AND a.name_key = ?",
                (guild_id, key),
            )
        return next((_assistant(row) for row in rows), None)

    async def named(self, key: str) -> list[StoredAssistant]:
        """Every guild's assistant with this name key."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                f"{_SELECT_ASSISTANT} FROM assistants a WHERE a.name_key = ? ORDER BY a.guild_id", (key,)
            )
        return [_assistant(row) for row in rows]

    async def matching(self, fragment: str, *, limit: int) -> list[StoredAssistant]:
        """Assistants of any guild whose name key contains `fragment`."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                f"{_SELECT_ASSISTANT} FROM assistants a WHERE a.name_key LIKE ? ESCAPE '!'"
                " ORDER BY a.name_key, a.guild_id LIMIT ?",
                (f"%{_like_escaped(fragment)}%", limit),
            )
        return [_assistant(row) for row in rows]

    async def create(self, guild_id: int, key: str, profile: dict[str, Any], *, user_id: int) -> int | None:
        """Insert an assistant, audited; its id, or None if the guild already has one with this name key."""
        now = time.time()
        name = str(profile["name"])
        async with self._db.transaction() as connection:
            await connection.lock_key(f"assistants:guild:{guild_id}")
            if await _taken(connection, guild_id, key, None):
                return None
            assistant_id = await connection.execute_insert(
                "INSERT INTO assistants (guild_id, name, name_key, profile, created_by, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (guild_id, name, key, _json(profile), user_id, now, now),
            )
            change = AssistantChange(guild_id, user_id, assistant_id, "create", name, None, profile, now)
            await _audit(connection, change)
        return assistant_id

    async def update(
        self, guild_id: int, assistant_id: int, key: str, profile: dict[str, Any], *, user_id: int
    ) -> AssistantChange | None:
        """Replace an assistant's profile, audited; None if it is gone or the new name is taken."""
        now = time.time()
        name = str(profile["name"])
        async with self._db.transaction() as connection:
            await connection.lock_key(f"assistants:guild:{guild_id}")
            old = await _profile_of(connection, guild_id, assistant_id)
            if old is None or await _taken(connection, guild_id, key, assistant_id):
                return None
            await connection.execute(
                "UPDATE assistants SET name = ?, name_key = ?, profile = ?, updated_at = ? WHERE id = ?",
                (name, key, _json(profile), now, assistant_id),
            )
            change = AssistantChange(guild_id, user_id, assistant_id, "edit", name, old, profile, now)
            await _audit(connection, change)
        return change

    async def delete(self, guild_id: int, assistant_id: int, *, user_id: int) -> Deletion | None:
        """Delete an assistant: channels and DMs on it forget it, threads on it go to the default."""
        now = time.time()
        async with self._db.transaction() as connection:
            await connection.lock_key(f"assistants:guild:{guild_id}")
            old = await _profile_of(connection, guild_id, assistant_id)
            if old is None:
                return None
            counts = {
                scope: await _count_choices(connection, scope, assistant_id)
                for scope in (ChoiceScope.CHANNEL, ChoiceScope.CONVERSATION)
            }
            await connection.execute(
                "DELETE FROM assistant_choices WHERE assistant_id = ? AND scope IN (?, ?)",
                (assistant_id, ChoiceScope.CHANNEL.value, ChoiceScope.DM.value),
            )
            await connection.execute(
                "UPDATE assistant_choices SET assistant_id = NULL WHERE assistant_id = ?", (assistant_id,)
            )
            await connection.execute("DELETE FROM assistants WHERE id = ?", (assistant_id,))
            change = AssistantChange(
                guild_id, user_id, assistant_id, "delete", str(old["name"]), old, None, now
            )
            await _audit(connection, change)
        return Deletion(change, counts[ChoiceScope.CHANNEL], counts[ChoiceScope.CONVERSATION])

    async def audit(self, guild_id: int, *, limit: int = 20) -> list[AssistantChange]:
        """The guild's latest changes, newest first."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT * FROM assistant_audit WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit)
            )
        return [
            AssistantChange(
                guild_id=row["guild_id"],
                user_id=row["user_id"],
                assistant_id=row["assistant_id"],
                action=row["action"],
                name=row["name"],
                old=_loaded(row["old_value"]),
                new=_loaded(row["new_value"]),
                at=row["at"],
            )
            for row in rows
        ]

    # -- choices ---------------------------------------------------------------------------------

    async def choice(self, scope: ChoiceScope, target_id: int) -> StoredChoice | None:
        """One indexed read: the choice and its assistant (every message asks)."""
        async with self._db.read() as connection:
            return await _choice(connection, scope, target_id)

    async def choose(
        self,
        scope: ChoiceScope,
        target_id: int,
        guild_id: int,
        assistant_id: int | None,
        *,
        user_id: int,
        audited: bool,
    ) -> None:
        """Set a choice (None: the default; a channel or DM then simply has none), audited if asked."""
        now = time.time()
        async with self._db.transaction() as connection:
            await connection.lock_key(f"assistants:guild:{guild_id}")
            before = await _choice(connection, scope, target_id)
            new_name = None
            if assistant_id is not None:
                rows = await connection.execute_fetchall(
                    "SELECT name FROM assistants WHERE id = ? AND guild_id = ?", (assistant_id, guild_id)
                )
                if not rows:  # deleted meanwhile: the default instead
                    assistant_id = None
                else:
                    new_name = str(rows[0]["name"])
            if assistant_id is None and scope is not ChoiceScope.CONVERSATION:
                await connection.execute(
                    "DELETE FROM assistant_choices WHERE scope = ? AND target_id = ?",
                    (scope.value, target_id),
                )
            else:
                await connection.execute(
                    "INSERT INTO assistant_choices (scope, target_id, guild_id, assistant_id, chosen_by,"
                    " chosen_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, target_id) DO UPDATE SET"
                    " guild_id = excluded.guild_id, assistant_id = excluded.assistant_id,"
                    " chosen_by = excluded.chosen_by, chosen_at = excluded.chosen_at",
                    (scope.value, target_id, guild_id, assistant_id, user_id, now),
                )
            if audited:
                old_name = None if before is None or before.assistant is None else before.assistant.name
                where = {"scope": scope.value, "target": target_id}
                change = AssistantChange(
                    guild_id,
                    user_id,
                    assistant_id,
                    "use",
                    new_name or "default",
                    {**where, "assistant": old_name},
                    {**where, "assistant": new_name},
                    now,
                )
                await _audit(connection, change)

    async def start_conversation(
        self, thread_id: int, guild_id: int, parent_id: int | None, *, started_by: int | None = None
    ) -> StoredChoice:
        """Record a thread's assistant at its first turn: its channel's (or the default), and whose
        message began it; if it has one already (another message came first), that one.

        The channel's choice is read and the thread's row written in one transaction under the
        guild's lock, as `choose` and `delete` do: a deletion in between would leave the row pointing
        at an assistant that is gone (a foreign key error on the message's turn)."""
        async with self._db.transaction() as connection:
            await connection.lock_key(f"assistants:guild:{guild_id}")
            existing = await _choice(connection, ChoiceScope.CONVERSATION, thread_id)
            if existing is not None:
                return existing
            parent = None if parent_id is None else await _choice(connection, ChoiceScope.CHANNEL, parent_id)
            assistant = None if parent is None else parent.assistant
            await connection.execute(
                "INSERT INTO assistant_choices (scope, target_id, guild_id, assistant_id, chosen_by,"
                " chosen_at, started_by) VALUES (?, ?, ?, ?, 0, ?, ?)",
                (
                    ChoiceScope.CONVERSATION.value,
                    thread_id,
                    guild_id,
                    None if assistant is None else assistant.id,
                    time.time(),
                    started_by,
                ),
            )
        return StoredChoice(ChoiceScope.CONVERSATION, thread_id, guild_id, assistant, started_by)

    async def forget_dm_pick(self, user_id: int, assistant_id: int) -> bool:
        """Drop a person's DM pick if it is still `assistant_id` (not a newer pick); whether it was."""
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "DELETE FROM assistant_choices WHERE scope = ? AND target_id = ? AND assistant_id = ?",
                (ChoiceScope.DM.value, user_id, assistant_id),
            )
            return cursor.rowcount == 1

    async def channels_using(self, guild_id: int) -> dict[int, str]:
        """The guild's channels with an assistant, and its name."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT c.target_id, a.name FROM assistant_choices c JOIN assistants a"
                " ON a.id = c.assistant_id WHERE c.guild_id = ? AND c.scope = ? ORDER BY c.target_id",
                (guild_id, ChoiceScope.CHANNEL.value),
            )
        return {int(row["target_id"]): str(row["name"]) for row in rows}


async def _taken(connection: Connection, guild_id: int, key: str, other_than: int | None) -> bool:
    rows = await connection.execute_fetchall(
        "SELECT id FROM assistants WHERE guild_id = ? AND name_key = ?", (guild_id, key)
    )
    return any(row["id"] != other_than for row in rows)


async def _profile_of(connection: Connection, guild_id: int, assistant_id: int) -> dict[str, Any] | None:
    rows = await connection.execute_fetchall(
        "SELECT profile FROM assistants WHERE id = ? AND guild_id = ?", (assistant_id, guild_id)
    )
    return _loaded(rows[0]["profile"]) if rows else None


async def _count_choices(connection: Connection, scope: ChoiceScope, assistant_id: int) -> int:
    rows = await connection.execute_fetchall(
        "SELECT COUNT(*) AS n FROM assistant_choices WHERE scope = ? AND assistant_id = ?",
        (scope.value, assistant_id),
    )
    return int(rows[0]["n"])


async def _choice(connection: Connection, scope: ChoiceScope, target_id: int) -> StoredChoice | None:
    rows = await connection.execute_fetchall(
        f"{_SELECT_ASSISTANT}, c.guild_id AS c_guild_id, c.started_by AS c_started_by"
        " FROM assistant_choices c"
        " LEFT JOIN assistants a ON a.id = c.assistant_id WHERE c.scope = ? AND c.target_id = ?",
        (scope.value, target_id),
    )
    if not rows:
        return None
    row = rows[0]
    assistant = None if row["a_id"] is None else _assistant(row)
    return StoredChoice(scope, target_id, row["c_guild_id"], assistant, row["c_started_by"])


async def _audit(connection: Connection, change: AssistantChange) -> None:
    await connection.execute(
        "INSERT INTO assistant_audit (guild_id, user_id, assistant_id, action, name, old_value, new_value,"
        " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            change.guild_id,
            change.user_id,
            change.assistant_id,
            change.action,
            change.name,
            _json(change.old),
            _json(change.new),
            change.at,
        ),
    )
