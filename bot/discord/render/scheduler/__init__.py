"""The one gate every outgoing Discord message write passes through.

Discord allows a bot about 50 requests a second in total and 5 writes per 5 seconds in each channel;
past either it answers 429, and a bot that keeps hitting limits gets banned at the edge for a while.
discord.py only reacts to a global 429 after the fact, so the bot plans its own writes:

- ``core.SchedulerCore`` is the decision: pure and synchronous, every method takes ``now``, so it is
  tested on a fake clock. It holds queued writes, decides which may start, and learns from responses.
- ``driver.WriteScheduler`` is the thin asyncio driver: it runs each released write's job as its own
  task (jobs run concurrently; the scheduler only gates start times) and sleeps until the next may go.
- ``discord_headers`` reads Discord's ``X-RateLimit-*`` headers into observations for the core.
- ``shared_budget`` makes the global budget one for every process of the bot token: a Lua script in
  Redis (``[redis] url``) grants the driver its slots before each release; without Redis, or while it
  is lost, each of the K processes keeps to 1/K (``SchedulerCore.set_global_cap``), switching so that
  the processes together never pass the budget (the reasoning is in that module's docstring).

Decisions, in order:
- priority: FINAL (a finished reply's writes, error notes) > FIRST (a reply's first post, thread
  creation) > REFRESH (edits of a visible, growing reply) > TYPING;
- at most one queued write per target (a message): a newer write replaces the queued one's job, keeps
  its place and takes the more urgent kind, so a final drops the refresh that was waiting;
- one write per target in flight at a time (edits never overtake each other);
- a REFRESH starts at most once per ``edit_interval_s`` per target; FINAL and FIRST go at once;
- REFRESH order is fair: fewest refreshes so far for the reply first, then the longest waiting;
- global budget: at most ``global_per_s`` writes in any rolling ``global_window_s`` as Discord counts
  them: like a channel bucket's, a slot is taken from the write's start until ``global_window_s``
  after its response (a request a busy event loop sent late still counts where Discord counts it,
  so a burst can never spill into the next window). REFRESH and TYPING leave ``urgent_reserve`` of
  it to FINAL and FIRST, plus (``adaptive_reserve``) a share of the slots FINAL and FIRST took in the
  current window: answers started together finish together, and refreshes should yield before those
  finals have to queue. TYPING only starts while the bot is nearly idle (``typing_max_per_s``);
- pacing: REFRESH and TYPING starts are spaced evenly (their share of the window divided by their
  cap), so the log never fills in one burst and a final arriving under load waits at most one gap
  (about 25 ms by default) for a slot, instead of up to a whole window;
- per-channel buckets: a sliding log per (channel, bucket) (each route has its own bucket unless
  ``shared_buckets`` merges them; ``post`` and ``edit`` are separate, as on Discord; a reply through a
  webhook uses the ``webhook_*`` routes keyed by the webhook's id, Discord's buckets for it) where a write
  occupies its slot from its start until ``window_s`` after its response came back (so latency can
  never let Discord's window see more than the limit); ``final_reserve`` slots of each bucket of a
  reply's messages (``FINAL_ROUTES``) are kept for FINAL writes;
- learning: ``observe`` takes Discord's ``X-RateLimit-*`` headers and 429s (global or not) and pauses
  or narrows the bucket accordingly; ``rate_limit_trace_config`` feeds it from discord.py's HTTP client.
"""

from __future__ import annotations

from bot.discord.render.scheduler.core import (
    CHANNEL_LIMIT,
    CHANNEL_WINDOW_S,
    DELETE_ROUTE,
    EDIT_INTERVAL_S,
    EDIT_ROUTE,
    FINAL_ROUTES,
    GLOBAL_PER_S,
    GLOBAL_WINDOW_S,
    POST_ROUTE,
    SKIPPED,
    THREAD_ROUTE,
    TYPING_ROUTE,
    WEBHOOK_DELETE_ROUTE,
    WEBHOOK_EDIT_ROUTE,
    WEBHOOK_POST_ROUTE,
    Observation,
    RouteLimit,
    SchedulerConfig,
    SchedulerCore,
    SchedulerStats,
    SubmitResult,
    Write,
    WriteKind,
)
from bot.discord.render.scheduler.discord_headers import parse_rate_limit, rate_limit_trace_config
from bot.discord.render.scheduler.driver import WriteScheduler

__all__ = [
    "CHANNEL_LIMIT",
    "CHANNEL_WINDOW_S",
    "DELETE_ROUTE",
    "EDIT_INTERVAL_S",
    "EDIT_ROUTE",
    "FINAL_ROUTES",
    "GLOBAL_PER_S",
    "GLOBAL_WINDOW_S",
    "POST_ROUTE",
    "SKIPPED",
    "THREAD_ROUTE",
    "TYPING_ROUTE",
    "WEBHOOK_DELETE_ROUTE",
    "WEBHOOK_EDIT_ROUTE",
    "WEBHOOK_POST_ROUTE",
    "Observation",
    "RouteLimit",
    "SchedulerConfig",
    "SchedulerCore",
    "SchedulerStats",
    "SubmitResult",
    "Write",
    "WriteKind",
    "WriteScheduler",
    "parse_rate_limit",
    "rate_limit_trace_config",
]
