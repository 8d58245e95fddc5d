"""Per-guild setting overrides and their audit trail (validation lives in `bot.config`).

A change holds the guild's `lock_key` (so the audit's old value is right when processes share one
PostgreSQL database) and, on PostgreSQL, tells the other processes (`settings_events`) at commit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from bot.storage.database import Database
from bot.storage.settings_events import notify_settings_changed, tells_other_processes


@dataclass(frozen=True, slots=True)
class SettingChange:
    guild_id: int
    user_id: int
    name: str
    old_value: Any | None  # None: it was the default
    new_value: Any | None  # None: reset to the default
    at: float


class GuildSettingsStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._tell_others = tells_other_processes(db)

    async def overrides(self, guild_id: int) -> dict[str, Any]:
        """The settings this guild changed from the defaults, by name (JSON-decoded values)."""
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT name, value FROM guild_settings WHERE guild_id = ?", (guild_id,)
            )
            rows = await cursor.fetchall()
        return {row["name"]: json.loads(row["value"]) for row in rows}

    async def set(self, guild_id: int, name: str, value: Any, *, user_id: int) -> SettingChange:
        """Override a setting and record who changed it, in one transaction."""
        return await self._change(guild_id, name, value, user_id)

    async def reset(self, guild_id: int, name: str, *, user_id: int) -> SettingChange:
        """Back to the default (audited like any change)."""
        return await self._change(guild_id, name, None, user_id)

    async def audit(self, guild_id: int, *, limit: int = 20) -> list[SettingChange]:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT * FROM guild_settings_audit WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
                (guild_id, limit),
            )
            rows = await cursor.fetchall()
        return [
            SettingChange(
                guild_id=row["guild_id"],
                user_id=row["user_id"],
                name=row["name"],
                old_value=None if row["old_value"] is None else json.loads(row["old_value"]),
                new_value=None if row["new_value"] is None else json.loads(row["new_value"]),
                at=row["at"],
            )
            for row in rows
        ]

    async def _change(self, guild_id: int, name: str, value: Any | None, user_id: int) -> SettingChange:
        now = time.time()
        new_json = None if value is None else json.dumps(value)
        async with self._db.transaction() as connection:
            await connection.lock_key(f"guild_settings:{guild_id}")
            cursor = await connection.execute(
                "SELECT value FROM guild_settings WHERE guild_id = ? AND name = ?", (guild_id, name)
            )
            row = await cursor.fetchone()
            old_json = row["value"] if row else None
            if new_json is None:
                await connection.execute(
                    "DELETE FROM guild_settings WHERE guild_id = ? AND name = ?", (guild_id, name)
                )
            else:
                await connection.execute(
                    "INSERT INTO guild_settings (guild_id, name, value, updated_by, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, name) DO UPDATE SET"
                    " value = excluded.value, updated_by = excluded.updated_by,"
                    " updated_at = excluded.updated_at",
                    (guild_id, name, new_json, user_id, now),
                )
            await connection.execute(
                "INSERT INTO guild_settings_audit (guild_id, user_id, name, old_value, new_value, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (guild_id, user_id, name, old_json, new_json, now),
            )
            if self._tell_others:
                await notify_settings_changed(connection, guild_id)
        return SettingChange(
            guild_id=guild_id,
            user_id=user_id,
            name=name,
            old_value=None if old_json is None else json.loads(old_json),
            new_value=value,
            at=now,
        )
