"""Discord's rate limits as the stand-in applies them: per-route buckets per channel (or guild) with
Discord's headers, the global limit, 429s and 5xx a test injects, and routes a test holds."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from .errors import json_response
from .models import CHANNEL_RATE_LIMITS, DEFAULT_RATE_LIMITS, RateLimitHit, RateLimitRule, RestCall

# Interaction and webhook routes: authenticated by the token in the path, and left out of the bot's
# global limit (Discord does not count a webhook's token requests against the bot).
GLOBAL_EXEMPT_KINDS = frozenset(
    {
        "interaction_callback",
        "webhook_execute",
        "webhook_message_get",
        "webhook_message_edit",
        "webhook_message_delete",
        "channel_webhook_execute",
        "channel_webhook_message_get",
        "channel_webhook_message_edit",
        "channel_webhook_message_delete",
    }
)


@dataclass
class InjectedFailure:
    """The next ``remaining`` requests of route ``kind`` answered ``status`` (``applied``: after running)."""

    kind: str
    status: int
    remaining: int
    retry_after: float
    scope: str
    applied: bool


@dataclass
class _Bucket:
    rule: RateLimitRule
    bucket_hash: str
    count: int = 0
    reset_at: float = 0.0  # loop time


class RateLimits:
    """What Discord answers before (and instead of) a route's handler: 429s of every scope, injected
    failures, held requests. Records every 429 in ``hits`` and every held request in ``held``."""

    def __init__(
        self,
        rules: Mapping[str, RateLimitRule | None] | None,
        *,
        global_limit: int | None,
        global_window_s: float,
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self.rules: dict[str, RateLimitRule | None] = {**DEFAULT_RATE_LIMITS, **(rules or {})}
        self.channel_rules: dict[str, RateLimitRule | None] = dict(CHANNEL_RATE_LIMITS)
        """Limits per channel on top of a route's bucket, by route kind (webhooks' 30 a minute)."""
        self.global_limit = global_limit
        self.global_window_s = global_window_s
        self.hits: list[RateLimitHit] = []
        self.held: list[RestCall] = []
        """Requests that waited (or wait) inside ``holding()``, in arrival order."""
        self._notify = notify
        self._buckets: dict[tuple[str, int | None], _Bucket] = {}
        self._global_window: deque[float] = deque()
        self._failures: list[InjectedFailure] = []
        self._holds: dict[str, asyncio.Event] = {}

    def inject(self, failure: InjectedFailure) -> None:
        """Fail requests as ``failure`` says (see ``FakeDiscord.fail_next``)."""
        self._failures.append(failure)

    @contextlib.asynccontextmanager
    async def holding(self, kind: str) -> AsyncIterator[None]:
        """Hold requests of route ``kind`` until the block ends (see ``FakeDiscord.holding``)."""
        gate = self._holds[kind] = asyncio.Event()
        try:
            yield
        finally:
            del self._holds[kind]
            gate.set()

    def use_up_bucket(self, kind: str, channel_id: int) -> None:
        """Empty a per-channel bucket (see ``FakeDiscord.use_up_bucket``)."""
        rule = self.rules.get(kind)
        if rule is None:
            raise ValueError(f"route {kind!r} has no rate limit")
        bucket = self._bucket(kind, channel_id, rule)
        now = asyncio.get_running_loop().time()
        if now >= bucket.reset_at:
            bucket.reset_at = now + rule.per_s
        bucket.count = rule.limit

    def hits_of(self, scope: str | None = None, kind: str | None = None) -> list[RateLimitHit]:
        return [
            h for h in self.hits if (scope is None or h.scope == scope) and (kind is None or h.kind == kind)
        ]

    async def apply(
        self, call: RestCall, major: int | None, handle: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Answer ``call`` as Discord would: a 429 (global, then per bucket) or an injected failure
        instead of ``handle()``, or ``handle()``'s answer with the bucket's headers."""
        now = call.at
        if self.global_limit is not None and call.kind not in GLOBAL_EXEMPT_KINDS:
            window = self._global_window
            while window and window[0] <= now - self.global_window_s:
                window.popleft()
            if len(window) >= self.global_limit:
                retry_after = window[0] + self.global_window_s - now
                self.hits.append(
                    RateLimitHit(call.kind, call.route, "global", call.channel_id, retry_after, now)
                )
                return self._too_many(retry_after, scope="global")
            window.append(now)
        failure = next((f for f in self._failures if f.kind == call.kind and f.remaining > 0), None)
        if failure is not None:
            failure.remaining -= 1
            if not failure.applied:
                return self._injected(failure, call, now)
        headers: dict[str, str] = {}
        buckets: list[_Bucket] = []
        rule = self.rules.get(call.kind)
        if rule is not None:
            buckets.append(self._bucket(call.kind, major, rule))
        channel_rule = self.channel_rules.get(call.kind)
        if channel_rule is not None and call.channel_id is not None:
            buckets.append(self._bucket(f"{call.kind}@channel", call.channel_id, channel_rule))
        for bucket in buckets:
            if now >= bucket.reset_at:
                bucket.count, bucket.reset_at = 0, now + bucket.rule.per_s
            if bucket.count >= bucket.rule.limit:
                retry_after = bucket.reset_at - now
                self.hits.append(
                    RateLimitHit(call.kind, call.route, "user", call.channel_id, retry_after, now)
                )
                return self._too_many(retry_after, scope="user", headers=self._bucket_headers(bucket, now))
        for bucket in buckets:
            bucket.count += 1
        if buckets:
            headers = self._bucket_headers(buckets[0], now)
        gate = self._holds.get(call.kind)
        if gate is not None:
            self.held.append(call)
            await self._notify()
            await gate.wait()
        response = await handle()
        if failure is not None:
            response = self._injected(failure, call, now)
        response.headers.update(headers)
        return response

    def _bucket(self, kind: str, major: int | None, rule: RateLimitRule) -> _Bucket:
        key = (kind, major)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rule != rule:
            bucket_hash = zlib.crc32(kind.encode()).to_bytes(4, "big").hex() * 4
            bucket = self._buckets[key] = _Bucket(rule, bucket_hash)
        return bucket

    def _bucket_headers(self, bucket: _Bucket, now: float) -> dict[str, str]:
        reset_after = max(0.0, math.ceil((bucket.reset_at - now) * 1000) / 1000)
        return {
            "X-RateLimit-Limit": str(bucket.rule.limit),
            "X-RateLimit-Remaining": str(max(0, bucket.rule.limit - bucket.count)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket.bucket_hash,
        }

    def _too_many(
        self, retry_after: float, *, scope: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        retry_after = max(0.0, math.ceil(retry_after * 1000) / 1000)
        all_headers = {
            **(headers or {}),
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": scope,
        }
        if scope == "global":
            all_headers["X-RateLimit-Global"] = "true"
        return json_response(
            429,
            {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": scope == "global",
            },
            all_headers,
        )

    def _injected(self, failure: InjectedFailure, call: RestCall, now: float) -> web.Response:
        if failure.status == 429:
            self.hits.append(
                RateLimitHit(
                    call.kind,
                    call.route,
                    failure.scope,
                    call.channel_id,
                    failure.retry_after,
                    now,
                    injected=True,
                )
            )
            return self._too_many(failure.retry_after, scope=failure.scope)
        return json_response(failure.status, {"message": f"{failure.status}: Server Error", "code": 0})
