"""The bot under measurement, in a process of its own: `python -m bench.bot_process SPEC.json`.

The benchmarks run the stand-ins (Discord and OpenAI) and the driver in their own process and start
the bot here, so the bot's figures (CPU, RSS, latency) are not inflated by the stand-ins' work. It is
the production path: `AssistantBot` with `cogs.chat`, connected through DISCORD_API_BASE_URL, its
configuration read as `python -m bot` reads it: the spec's config.toml, then the environment the
benchmark gave the process (the token and URLs, and for several processes BOT_SHARD_COUNT,
BOT_SHARD_IDS, BOT_PROCESS_COUNT, BOT_REDIS_URL).

Protocol on stdout, one line each: `READY` once the bot is connected, then (after a line `STOP` on
stdin, or stdin closing) `STATS {json}` with the bot's own figures, and the process exits.
The only instrumentation is a wrapper around `engine.reply` that notes when each turn's terminal
event came out of the engine (time.monotonic(), the clock the stand-ins use too).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import resource
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from bot.config import load_config, load_secrets
from bot.discord.app import AssistantBot
from bot.discord.endpoint import use_rest_base
from bot.engine.events import TERMINAL_EVENTS, TurnEvent


class _ErrorCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _record_terminal_times(bot: AssistantBot, ended: list[tuple[str, float]]) -> None:
    """Note when each turn's terminal event leaves the engine (the model's answer is complete)."""
    engine = bot.services.engine
    reply = engine.reply

    async def timed_reply(key: str, *args: Any, **kwargs: Any) -> AsyncGenerator[TurnEvent, None]:
        events = reply(key, *args, **kwargs)
        try:
            async for event in events:
                if isinstance(event, TERMINAL_EVENTS):
                    ended.append((key, time.monotonic()))
                yield event
        finally:
            await events.aclose()

    engine.reply = timed_reply  # type: ignore[method-assign]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    config = load_config(Path(spec["config_path"]), required=True)
    secrets = load_secrets(config)
    use_rest_base(spec["discord_base_url"])
    bot = AssistantBot(
        config,
        secrets,
        extensions=("cogs.chat",),
        openai_base_url=spec["openai_base_url"],
        guild_ready_timeout=0.05,
    )
    ended: list[tuple[str, float]] = []
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    bot.add_listener(on_ready, "on_ready")
    started = asyncio.create_task(bot.start(spec["token"]))
    waiting = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({started, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        raise RuntimeError("the bot did not become ready")
    _record_terminal_times(bot, ended)
    profiler = cProfile.Profile() if spec.get("profile") else None
    print("READY", flush=True)
    if profiler is not None:
        profiler.enable()
    cpu_started = time.process_time()
    await asyncio.to_thread(sys.stdin.readline)  # "STOP", or EOF
    cpu_s = time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    stats = bot.writes.stats
    await bot.close()
    await asyncio.gather(started, return_exceptions=True)
    return {
        "turn_ends": ended,
        "cpu_s": cpu_s,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "writes_started": {kind.name: count for kind, count in stats.started.items()},
        "rate_limited_seen": stats.rate_limited,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="bot: %(levelname)s %(name)s: %(message)s"
    )
    errors = _ErrorCount()
    logging.getLogger().addHandler(errors)
    result = asyncio.run(run(spec))
    result["errors_logged"] = errors.count
    print("STATS " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
