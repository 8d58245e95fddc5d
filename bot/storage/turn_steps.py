"""Each turn's steps: the tools it ran, in order, each with its arguments and result in brief.

Kept so a person can see what a reply did (the Steps button), also after a restart. A step is written
as soon as its call ended, so a turn cut short keeps the steps it got through. Arguments and results
are clipped here, the one place that writes them: a step is a glance, not an audit log.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Literal

from bot.storage.database import Database

StepKind = Literal["function", "hosted"]
StepOutcome = Literal["ok", "error", "declined", "cancelled"]

ARGUMENTS_CHARS = 200
RESULT_CHARS = 300
STEPS_KEPT_S = 90 * 24 * 3600
"""Steps older than this are pruned at start: a reply's Steps button is for a glance, not for ever."""


@dataclass(frozen=True, slots=True)
class TurnStep:
    """One tool call of a turn: `arguments` and `result` in brief; `duration_s` None when unknown."""

    kind: StepKind
    name: str
    arguments: str
    outcome: StepOutcome
    result: str
    started_at: float
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class RecordedSteps:
    """A turn's steps in the order it ran them, with where the turn happened (who may see them)."""

    turn_id: int
    guild_id: int | None
    channel_id: int
    steps: tuple[TurnStep, ...]


_UNSTORABLE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff]")
"""Control characters that are not whitespace (which becomes one space), and lone surrogates: unreadable
in a glance, and PostgreSQL refuses a NUL."""


def clip(text: str, limit: int) -> str:
    """`text` on one line without control characters, at most `limit` characters (an ellipsis marks
    a cut)."""
    text = " ".join(_UNSTORABLE.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TurnStepStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, turn_id: int, ordinal: int, step: TurnStep) -> None:
        """Record the turn's step number `ordinal` (0, 1, ... in the order they ran)."""
        async with self._db.autocommit() as connection:
            await connection.execute(
                "INSERT INTO turn_steps (turn_id, ordinal, kind, name, arguments, outcome, result,"
                " started_at, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn_id,
                    ordinal,
                    step.kind,
                    step.name,
                    clip(step.arguments, ARGUMENTS_CHARS),
                    step.outcome,
                    clip(step.result, RESULT_CHARS),
                    step.started_at,
                    step.duration_s,
                ),
            )

    async def of_turn(self, turn_id: int) -> RecordedSteps | None:
        """The turn's steps; None if it recorded none (no tools, an unknown turn, or pruned)."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT turns.guild_id, turns.channel_id, turn_steps.* FROM turn_steps"
                " JOIN turns ON turns.id = turn_steps.turn_id"
                " WHERE turn_steps.turn_id = ? ORDER BY turn_steps.ordinal",
                (turn_id,),
            )
        if not rows:
            return None
        steps = tuple(
            TurnStep(
                kind=row["kind"],
                name=row["name"],
                arguments=row["arguments"],
                outcome=row["outcome"],
                result=row["result"],
                started_at=row["started_at"],
                duration_s=row["duration_s"],
            )
            for row in rows
        )
        return RecordedSteps(turn_id, rows[0]["guild_id"], rows[0]["channel_id"], steps)

    async def prune(self, *, older_than_s: float = STEPS_KEPT_S) -> int:
        """Forget steps older than `older_than_s`; returns how many."""
        async with self._db.autocommit() as connection:
            cursor = await connection.execute(
                "DELETE FROM turn_steps WHERE started_at < ?", (time.time() - older_than_s,)
            )
            return cursor.rowcount
