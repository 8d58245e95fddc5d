"""What the stores of records a user owns (reservations, rides) share: cancelling one's own, once.

Only the owner may cancel, whoever asks the model; the check and the update are one transaction,
under the row's `lock_key` (several processes may share one PostgreSQL database).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from bot.storage.database import Connection


class OwnedRow(Protocol):
    @property
    def user_id(self) -> int: ...

    @property
    def status(self) -> str: ...


Row = TypeVar("Row", bound=OwnedRow)
CancelOutcome = Literal["cancelled", "not_found", "not_yours", "already_cancelled"]


@dataclass(frozen=True, slots=True)
class CancelResult(Generic[Row]):
    """What cancelling did, and the row as it now stands (none when not found or not the user's)."""

    outcome: CancelOutcome
    record: Row | None = None


async def cancel_owned(
    connection: Connection,
    *,
    table: Literal["reservations", "rides"],
    record_id: int,
    user_id: int,
    read: Callable[[Connection, int], Awaitable[Row | None]],
) -> CancelResult[Row]:
    """Cancel `user_id`'s row `record_id` of `table` inside the caller's transaction.

    The row's key is held to commit, so of two processes cancelling it one cancels and the other
    finds it already cancelled.
    """
    await connection.lock_key(f"{table}:{record_id}")
    found = await read(connection, record_id)
    if found is None:
        return CancelResult("not_found")
    if found.user_id != user_id:
        return CancelResult("not_yours")
    if found.status == "cancelled":
        return CancelResult("already_cancelled", found)
    await connection.execute(
        f"UPDATE {table} SET status = 'cancelled', cancelled_at = ? WHERE id = ?", (time.time(), record_id)
    )
    return CancelResult("cancelled", await read(connection, record_id))
