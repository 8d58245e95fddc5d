"""The time the bot itself adds to a turn (issue 7), with the stand-ins answering at once.

    .venv/bin/python -m bench.bench_overhead [--messages 1000] [--threads 100] [--runs 3]

One message at a time, round-robin over threads the bot already owns (a warm-up turn each first), at
most ``RATE_PER_S`` a second so the write scheduler never has to hold a reply back for the global
budget (that wait is the budget's, not the bot's overhead). For each message, on the stand-ins' clock:

- intake: the MESSAGE_CREATE leaving the gateway -> the model request arriving at the model;
- finish: the model's last byte -> the reply's final write arriving at Discord.

Both include one loopback hop (the gateway frame, the HTTP request). Prints p50/p99/max per run.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.rig import (
    BotStats,
    Deployment,
    answer_text,
    bot_text,
    now,
    percentile,
    rate_limit_counts,
    repeated,
    send_all,
    stage,
    threads_world,
    wait_for_replies,
)
from standins.discord import FakeDiscord

RATE_PER_S = 40.0
"""Messages per second: under the bot's 45 writes a second, so no reply waits for the budget."""
WORDS = 12
DELTAS = 4
WAIT_S = 10.0


def shows(server: FakeDiscord, channel_id: int, text: str) -> Callable[[], bool]:
    """Whether the bot's messages in the channel read exactly ``text``."""
    return lambda: bot_text(server, channel_id) == text


@dataclass
class OverheadFigures:
    messages: int
    intake_p50_ms: float
    intake_p99_ms: float
    intake_max_ms: float
    finish_p50_ms: float
    finish_p99_ms: float
    finish_max_ms: float
    writes_per_reply: float
    rate_limited: int
    peak_rss_mb: float
    bot_cpu_ms_per_turn: float


async def run_once(
    messages: int, threads: int, profile: Path | None = None, deployment: Deployment | None = None
) -> tuple[OverheadFigures, BotStats]:
    async with stage(lambda s: threads_world(s, threads), profile=profile, deployment=deployment) as st:
        server, conversations = st.server, st.world.conversations
        st.script.words, st.script.deltas, st.script.delta_delay_s = WORDS, DELTAS, 0.0
        await send_all(st.world, conversations, "Hello")
        await wait_for_replies(
            server, {c.reply_channel_id or 0: answer_text(c.index, WORDS) for c in conversations}, 60.0
        )
        await asyncio.sleep(1.5)  # the warm-up's writes leave the global window
        since = now()
        intake_ms: list[float] = []
        finish_ms: list[float] = []
        writes = 0
        for number in range(messages):
            await asyncio.sleep(max(0.0, since + number / RATE_PER_S - now()))
            conversation = conversations[number % len(conversations)]
            channel_id = conversation.reply_channel_id or 0
            expected = bot_text(server, channel_id) + "\n" + answer_text(conversation.index, WORDS)
            calls_before = len(server.calls)
            requests_before = len(st.openai.requests)
            await send_all(st.world, [conversation], f"Message {number}")
            await server.wait_for(shows(server, channel_id, expected), timeout=WAIT_S)
            request = next(r for r in st.openai.requests[requests_before:] if r.path == "/v1/responses")
            replies = [
                c
                for c in server.calls[calls_before:]
                if c.channel_id == channel_id and c.kind in {"message_create", "message_edit"}
            ]
            assert request.finished_at is not None and replies
            writes += len(replies)
            intake_ms.append((request.time - conversation.sent_at) * 1000)
            finish_ms.append((replies[-1].at - request.finished_at) * 1000)
        await asyncio.sleep(0.3)
        stats = await st.bot.stop()
        global_429, channel_429 = rate_limit_counts(server, since)
        figures = OverheadFigures(
            messages=messages,
            intake_p50_ms=percentile(intake_ms, 50),
            intake_p99_ms=percentile(intake_ms, 99),
            intake_max_ms=max(intake_ms),
            finish_p50_ms=percentile(finish_ms, 50),
            finish_p99_ms=percentile(finish_ms, 99),
            finish_max_ms=max(finish_ms),
            writes_per_reply=writes / messages,
            rate_limited=global_429 + channel_429,
            peak_rss_mb=stats.peak_rss_bytes / 2**20,
            bot_cpu_ms_per_turn=stats.cpu_s * 1000 / (messages + threads),
        )
        return figures, stats


HEADER = (
    f"{'run':<10} {'msgs':>5} {'intake p50':>10} {'p99':>6} {'max':>6} {'finish p50':>10} {'p99':>6} "
    f"{'max':>6} {'writes':>6} {'429':>4} {'RSS MB':>6} {'cpu ms/turn':>11}"
)


def row(name: str, f: OverheadFigures) -> str:
    return (
        f"{name:<10} {f.messages:5.0f} {f.intake_p50_ms:10.2f} {f.intake_p99_ms:6.2f} {f.intake_max_ms:6.2f} "
        f"{f.finish_p50_ms:10.2f} {f.finish_p99_ms:6.2f} {f.finish_max_ms:6.2f} {f.writes_per_reply:6.2f} "
        f"{f.rate_limited:4.0f} {f.peak_rss_mb:6.1f} {f.bot_cpu_ms_per_turn:11.2f}"
    )


async def run(messages: int, threads: int, runs: int, profile: Path | None = None) -> OverheadFigures:
    print("overhead, ms (intake: MESSAGE_CREATE -> model request; finish: model's last byte -> final write)")
    print(HEADER)
    return await repeated(runs, lambda: run_once(messages, threads, profile), row)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write the bot's cProfile stats here")
    args = parser.parse_args(argv)
    asyncio.run(run(args.messages, args.threads, args.runs, args.profile))


if __name__ == "__main__":
    main()
