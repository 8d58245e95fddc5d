"""Tokens used per guild, user and UTC day: what budgets and `/usage` read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.storage.database import Database

DM_GUILD_ID = 0  # direct messages are accounted under guild 0

# Parameters: day, guild_id, user_id, input_tokens, output_tokens. (The turn journal counts a turn's
# tokens in the transaction that closes the turn, with the same upsert: `turns.ADD_TURN_USAGE_SQL`.)
ADD_USAGE_SQL = (
    "INSERT INTO usage_daily (day, guild_id, user_id, input_tokens, output_tokens, turns)"
    " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (day, guild_id, user_id) DO UPDATE SET"
    " input_tokens = usage_daily.input_tokens + excluded.input_tokens,"
    " output_tokens = usage_daily.output_tokens + excluded.output_tokens, turns = usage_daily.turns + 1"
)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def utc_day(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")


class UsageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        *,
        guild_id: int | None,
        user_id: int,
        input_tokens: int,
        output_tokens: int,
        day: str | None = None,
    ) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(
                ADD_USAGE_SQL,
                (day or utc_day(), guild_id or DM_GUILD_ID, user_id, input_tokens, output_tokens),
            )

    async def user_total(self, guild_id: int | None, user_id: int, *, since_day: str) -> UsageTotals:
        """A member's tokens in one guild from `since_day` (inclusive) to today."""
        return await self._sum(
            "guild_id = ? AND user_id = ? AND day >= ?", (guild_id or DM_GUILD_ID, user_id, since_day)
        )

    async def guild_total(self, guild_id: int | None, *, since_day: str) -> UsageTotals:
        return await self._sum("guild_id = ? AND day >= ?", (guild_id or DM_GUILD_ID, since_day))

    async def top_users(
        self, guild_id: int, *, since_day: str, limit: int = 5
    ) -> list[tuple[int, UsageTotals]]:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT user_id, CAST(SUM(input_tokens) AS BIGINT) AS i,"
                " CAST(SUM(output_tokens) AS BIGINT) AS o, CAST(SUM(turns) AS BIGINT) AS t"
                " FROM usage_daily WHERE guild_id = ? AND day >= ? GROUP BY user_id"
                " ORDER BY SUM(input_tokens + output_tokens) DESC LIMIT ?",
                (guild_id, since_day, limit),
            )
            rows = await cursor.fetchall()
        return [(row["user_id"], UsageTotals(row["i"], row["o"], row["t"])) for row in rows]

    async def _sum(self, where: str, params: tuple[object, ...]) -> UsageTotals:
        async with self._db.read() as connection:
            cursor = await connection.execute(
                "SELECT CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT),"
                " CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT),"
                f" CAST(COALESCE(SUM(turns), 0) AS BIGINT) FROM usage_daily WHERE {where}",
                params,
            )
            row = await cursor.fetchone()
        return UsageTotals(*row) if row else UsageTotals()
