"""What the bot counts for Prometheus: turns, latency, Discord writes and 429s, tokens.

One `BotMetrics` per bot, with its own `CollectorRegistry` (never prometheus_client's global one), so
two bots in one process (tests) count apart. The engine, the write scheduler and the chat cog are
handed it and record into it; the Discord side serves `registry` on `/metrics` (`[metrics] port`).

Labels come from small fixed sets only (outcomes, failure kinds, write kinds and routes, 429 scopes,
token directions): never a guild, channel or user id, which would make a series per id. Children
are bound once here, so recording on a hot path is one increment with no allocation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:  # only a type: the engine package imports this module
    from bot.engine.events import FailureKind

TurnOutcome = Literal["completed", "failed", "busy", "cancelled", "interrupted"]
TURN_OUTCOMES: tuple[TurnOutcome, ...] = get_args(TurnOutcome)
RateLimitScope = Literal["global", "route"]
RATE_LIMIT_SCOPES: tuple[RateLimitScope, ...] = get_args(RateLimitScope)
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds: a fast first token is well under a second, a long tool-using answer takes minutes."""
NO_FAILURE = "none"
"""The `kind` label of a turn that did not fail."""


class BotMetrics:
    """The bot's metric objects and the registry `/metrics` serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.turns_started = Counter(
            "bot_turns_started", "Turns that took their place in a conversation and began.", registry=registry
        )
        self.turns_ended = Counter(
            "bot_turns_ended",
            "Turns that ended, by outcome (and by failure kind for failed ones; 'none' otherwise).",
            ["outcome", "kind"],
            registry=registry,
        )
        self.time_to_first_token_s = Histogram(
            "bot_time_to_first_token_seconds",
            "From a turn's start to the first text of its answer.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.time_to_final_write_s = Histogram(
            "bot_time_to_final_write_seconds",
            "From a message being taken to its reply's final Discord write being done.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.discord_writes = Counter(
            "bot_discord_writes",
            "Discord writes sent by the write scheduler, by kind (final, first, refresh, typing) and route.",
            ["kind", "route"],
            registry=registry,
        )
        self.discord_rate_limited = Counter(
            "bot_discord_rate_limited",
            "Discord 429 answers, by scope: the whole bot ('global') or one route's bucket ('route').",
            ["scope"],
            registry=registry,
        )
        self.write_queue_depth = Gauge(
            "bot_write_queue_depth", "Discord writes waiting in the write scheduler.", registry=registry
        )
        self.discord_budget_shared = Gauge(
            "bot_discord_budget_shared",
            "1 while this process draws Discord writes from the budget shared in Redis, 0 while it keeps"
            " to its own share (no Redis configured, or Redis lost).",
            registry=registry,
        )
        self.redis_failures = Counter(
            "bot_redis_failures", "Redis commands of the shared write budget that failed.", registry=registry
        )
        self.tokens = Counter(
            "bot_tokens", "Model tokens used by turns, by direction.", ["direction"], registry=registry
        )
        self._completed = self.turns_ended.labels("completed", NO_FAILURE)
        self._failed: dict[str, Counter] = {}
        """Bound on a kind's first failure: failures are rare, and their kinds a fixed Literal."""
        self._other_endings = {
            outcome: self.turns_ended.labels(outcome, NO_FAILURE)
            for outcome in TURN_OUTCOMES
            if outcome not in ("completed", "failed")
        }
        self._input_tokens = self.tokens.labels("input")
        self._output_tokens = self.tokens.labels("output")
        self._rate_limited = {scope: self.discord_rate_limited.labels(scope) for scope in RATE_LIMIT_SCOPES}
        self._writes: dict[tuple[str, str], Counter] = {}

    def turn_completed(self, input_tokens: int, output_tokens: int) -> None:
        self._completed.inc()
        self.count_tokens(input_tokens, output_tokens)

    def turn_failed(self, kind: FailureKind, input_tokens: int, output_tokens: int) -> None:
        child = self._failed.get(kind)
        if child is None:
            child = self._failed[kind] = self.turns_ended.labels("failed", kind)
        child.inc()
        self.count_tokens(input_tokens, output_tokens)

    def turn_ended_otherwise(self, outcome: TurnOutcome) -> None:
        """A turn that neither completed nor failed: busy, cancelled (/stop) or interrupted (shutdown)."""
        self._other_endings[outcome].inc()

    def count_tokens(self, input_tokens: int, output_tokens: int) -> None:
        if input_tokens:
            self._input_tokens.inc(input_tokens)
        if output_tokens:
            self._output_tokens.inc(output_tokens)

    def discord_write(self, kind: str, route: str) -> None:
        """One write Discord took; `kind` and `route` come from the scheduler's small fixed sets."""
        child = self._writes.get((kind, route))
        if child is None:
            child = self._writes[(kind, route)] = self.discord_writes.labels(kind, route)
        child.inc()

    def discord_rate_limited_once(self, scope: RateLimitScope) -> None:
        self._rate_limited[scope].inc()

    def measure_write_queue(self, depth: Callable[[], int]) -> None:
        """The queue's depth is read at each scrape (nothing to keep up to date on the hot path)."""
        self.write_queue_depth.set_function(depth)

    def discord_budget_mode(self, shared: bool) -> None:
        self.discord_budget_shared.set(1 if shared else 0)

    def redis_failed(self) -> None:
        self.redis_failures.inc()
