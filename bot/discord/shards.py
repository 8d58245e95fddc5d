"""Starting several shards as fast as Discord allows: `max_concurrency` IDENTIFYs per 5 seconds.

Discord puts each shard in the identify bucket `shard_id % max_concurrency` and lets each bucket
identify once per 5 s. discord.py's own hook waits 5 s before every shard but the first, whatever
`max_concurrency` says, which makes a large bot start needlessly slowly.
"""

from __future__ import annotations

import asyncio

IDENTIFY_WINDOW_S = 5.0


class IdentifyPacing:
    """When each identify bucket may next IDENTIFY; `wait_turn` holds a shard until its bucket may."""

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self._next_allowed_at: dict[int, float] = {}

    def bucket(self, shard_id: int) -> int:
        return shard_id % self.max_concurrency

    async def wait_turn(self, shard_id: int) -> None:
        """Return once `shard_id`'s bucket may identify, and book the bucket's next window."""
        loop = asyncio.get_running_loop()
        bucket = self.bucket(shard_id)
        allowed_at = self._next_allowed_at.get(bucket, 0.0)
        # Booked before waiting, so a second shard of the same bucket queues behind this one.
        self._next_allowed_at[bucket] = max(allowed_at, loop.time()) + IDENTIFY_WINDOW_S
        delay_s = allowed_at - loop.time()
        if delay_s > 0:
            await asyncio.sleep(delay_s)  # Discord's identify rate limit, not waiting for an event
