"""How a streamed answer becomes Discord messages, and the one gate all message writes go through.

- ``split``: cutting text into Discord-sized parts (code fences kept balanced), also while it grows;
- ``scheduler``: the write scheduler (global budget, per-channel buckets, priorities, fairness);
- ``stream``: ``ReplyStreamer``, one reply's events rendered through a ``MessageSink``;
- ``discord_sink``: the discord.py ``MessageSink`` (import it from there: it pulls in discord.py);
- ``webhook_sink``: the same through the channel's webhook, under a named assistant's name and avatar.
"""

from __future__ import annotations

from bot.discord.render.scheduler import (
    Observation,
    RouteLimit,
    SchedulerConfig,
    SchedulerCore,
    SchedulerStats,
    WriteKind,
    WriteScheduler,
    parse_rate_limit,
    rate_limit_trace_config,
)
from bot.discord.render.split import MAX_MESSAGE_CHARS, SplitView, StreamSplitter, split_message, split_parts
from bot.discord.render.stream import (
    MessageSink,
    PostResult,
    ReplyStreamer,
    SentMessage,
    StreamConfig,
    StreamResult,
    WriteOutcome,
    speaker_header,
)

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MessageSink",
    "Observation",
    "PostResult",
    "ReplyStreamer",
    "RouteLimit",
    "SchedulerConfig",
    "SchedulerCore",
    "SchedulerStats",
    "SentMessage",
    "SplitView",
    "StreamConfig",
    "StreamResult",
    "StreamSplitter",
    "WriteKind",
    "WriteOutcome",
    "WriteScheduler",
    "parse_rate_limit",
    "rate_limit_trace_config",
    "speaker_header",
    "split_message",
    "split_parts",
]
