"""The Discord side of the house: the bot object, its extensions, and the one error handler.

`AssistantBot` builds the core (`Services`) in `setup_hook`, loads one extension per feature from
`cogs/`, and closes everything in `close()`. Cogs reach the core through `bot.services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.config import AppConfig, Secrets
from bot.conversation_files import FILE_LIFETIME_S as CONVERSATION_FILE_LIFETIME_S
from bot.discord.confirmation import AnswerButton
from bot.discord.endpoint import gateway_advice, use_gateway_of, use_rest_base
from bot.discord.health import HealthServer
from bot.discord.render import (
    MAX_MESSAGE_CHARS,
    SchedulerConfig,
    StreamConfig,
    WriteScheduler,
    rate_limit_trace_config,
)
from bot.discord.render.scheduler.shared_budget import process_share, shared_write_budget
from bot.discord.shards import IdentifyPacing
from bot.discord.steps import StepsButton
from bot.discord.writes import ChannelWrites
from bot.engine.engine import RESTARTING
from bot.errors import ConfigError, DatabaseUnavailableError, DiscordRefusedError, UserFacingError
from bot.metrics import BotMetrics
from bot.services import Services
from bot.storage import ShardSet, TurnStepStore
from bot.tooling import OpenQuestions
from tools import register_builtin_tools
from tools.geocoding import CACHE_TTL_S as GEOCODE_CACHE_TTL_S
from tools.images import register_image_tools

log = logging.getLogger(__name__)

WRAP_UP_S = 1.5
"""Of the shutdown grace (`discord.shutdown_grace_s`), the end kept for the answers cut short to write
their closing note; at most half of it."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""docker stop, systemctl stop and Kubernetes send SIGTERM; Ctrl-C is SIGINT: both stop gracefully."""
COMMANDS_WHILE_STOPPING = frozenset({"stop"})
"""Slash commands still taken during a shutdown's grace (/stop only ends an answer sooner)."""
EXTENSIONS: tuple[str, ...] = (
    "cogs.chat",
    "cogs.imagine",
    "cogs.knowledge",
    "cogs.extract",
    "cogs.config",
    "cogs.assistants",
    "cogs.restaurants",
    "cogs.usage",
    "cogs.help",
)


def intents() -> discord.Intents:
    """Guilds, guild and DM messages, and message content (a privileged intent, enabled in the portal)."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


class AssistantBot(commands.AutoShardedBot):
    """The bot: discord.py's sharded client, connecting `[discord] shard_ids` of `shard_count` (unset:
    every shard `GET /gateway/bot` recommends), so one process or several can share the guilds."""

    services: Services

    def __init__(
        self,
        config: AppConfig,
        secrets: Secrets,
        *,
        extensions: Sequence[str] = EXTENSIONS,
        openai_base_url: str | None = None,
        **client_options: Any,
    ) -> None:
        """`client_options` go to discord.py (tests shorten `guild_ready_timeout`)."""
        shard_ids = config.discord.shard_ids
        client_options = {
            "shard_count": config.discord.shard_count,
            "shard_ids": list(shard_ids) if shard_ids is not None else None,
            **client_options,
        }
        self.metrics = BotMetrics()
        """This bot's counters (its own registry), served on `/metrics` when `[metrics] port` is set."""
        self.health_server: HealthServer | None = None
        # Every message write goes through one scheduler that keeps the bot under Discord's limits;
        # it learns the real buckets from the rate-limit headers of discord.py's responses.
        # With several processes on one token, they share Discord's global budget through Redis (or
        # each keeps to its 1/K share without it).
        self.write_budget = shared_write_budget(config, secrets, self.metrics)
        self.writes = WriteScheduler(
            SchedulerConfig(
                global_per_s=config.streaming.global_writes_per_s,
                edit_interval_s=config.streaming.edit_interval_s,
            ),
            metrics=self.metrics,
            shared_budget=self.write_budget,
        )
        if self.write_budget is None:
            share = process_share(config.streaming.global_writes_per_s, config.discord.processes)
            self.writes.core.set_global_cap(share)
        self.channel_writes = ChannelWrites(self.writes)
        """The bot's own writes outside streamed replies: threads, notes, confirmation questions."""
        self.stream_config = StreamConfig()
        self.accepting_messages = True
        self._closing: asyncio.Future[None] | None = None
        self._services_closed = False
        self._stopping = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self._identify_pacing = IdentifyPacing(max_concurrency=1)  # until /gateway/bot says more
        super().__init__(
            command_prefix=commands.when_mentioned,  # unused: the bot has slash commands only
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=AssistantTree,
            http_trace=rate_limit_trace_config(self.writes),
            **client_options,
        )
        self.config = config
        self.secrets = secrets
        self._extensions = tuple(extensions)
        self._openai_base_url = openai_base_url
        self.tree.error(self.on_app_command_error)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Shards identify as fast as Discord's `max_concurrency` allows (discord.py: 5 s apart)."""
        await self._identify_pacing.wait_turn(shard_id or 0)

    @property
    def questions(self) -> OpenQuestions:
        """The confirmations waiting for a click (`AnswerButton` finds its question here)."""
        return self.services.state.questions

    @property
    def turn_steps(self) -> TurnStepStore:
        """The turns' recorded steps (`StepsButton` reads a reply's here)."""
        return self.services.storage.turn_steps

    async def setup_hook(self) -> None:
        # One GET /gateway/bot for the gateway, the shard count (discord.py would ask again) and the limits.
        advice = await use_gateway_of(self.http, self.secrets.discord_api_base_url)
        advice = advice or await gateway_advice(self.http)
        if self.shard_count is None:
            self.shard_count = advice.recommended_shards
        self._identify_pacing = IdentifyPacing(advice.max_concurrency)
        self.services = await Services.start(
            self.config, self.secrets, openai_base_url=self._openai_base_url, metrics=self.metrics
        )
        await self._register_run()
        await self._start_health_server()
        register_builtin_tools(
            self.services.tools,
            storage=self.services.storage,
            config=self.config,
            # Without an embedding server the tool would only say it is off, at the cost of its schema.
            knowledge=self.services.knowledge if self.services.features.knowledge.on else None,
        )
        register_image_tools(self.services)
        # Every confirmation and Steps click is answered, also on messages from before a restart.
        self.add_dynamic_items(AnswerButton, StepsButton)
        for extension in self._extensions:
            await self.load_extension(extension)
        if self.config.discord.sync_commands:
            await self._sync_commands()

    async def _register_run(self) -> None:
        """This process in the database's runs, with its shards (a warning if another live process
        runs any of them), kept alive by a heartbeat until the bot stops; old message claims, expired
        geocoder answers, old turns' steps and conversation files expired at OpenAI go."""
        storage, run_id = self.services.storage, self.services.state.run_id
        await storage.runs.register(run_id, ShardSet.of(self.shard_ids, self.shard_count or 1))
        await storage.message_claims.prune()
        await storage.geocode_cache.prune(fetched_before=time.time() - GEOCODE_CACHE_TTL_S)
        await storage.turn_steps.prune()
        await storage.conversation_files.prune(older_than_s=CONVERSATION_FILE_LIFETIME_S)
        self._heartbeat = asyncio.create_task(storage.runs.beat_until(run_id, self._stopping))

    async def _start_health_server(self) -> None:
        """`/healthz` and `/metrics` when `[metrics] port` is set: 503 until every shard is connected.

        Started once the core is built, so that a port already taken is one line for the owner (not
        an unreachable Discord to retry).
        """
        settings = self.config.metrics
        if settings.port is None:
            return
        server = HealthServer(
            self,
            self.metrics.registry,
            host=settings.host,
            port=settings.port,
            stopping=self._stopping.is_set,
        )
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(
                "metrics", "port", f"{settings.port} on {settings.host} cannot be listened on: {exc.strerror}"
            ) from None
        self.health_server = server

    async def _sync_commands(self) -> None:
        """To each of `command_guild_ids` (instant there), then globally. A guild the bot is not in
        (Discord answers 403) is a typo or a guild it left: skipped with one warning, not a failed start.
        """
        for guild_id in self.config.discord.command_guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            try:
                await self.tree.sync(guild=guild)
            except discord.Forbidden as exc:
                self.tree.clear_commands(guild=guild)
                log.warning(
                    "command_guild_ids: the bot is not in guild %d (Discord answered %d %s); skipped",
                    guild_id,
                    exc.status,
                    exc.text,
                )
        synced = await self.tree.sync()
        log.info("Synced %d slash commands", len(synced))

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the chat extension listens to messages itself."""

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("Logged in as %s (%s) in %d servers", self.user, self.user.id, len(self.guilds))

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """The one place slash-command errors become messages: known ones plainly, the rest logged."""
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, UserFacingError):
            message = str(original)
        elif isinstance(original, app_commands.MissingPermissions):
            message = "You need the Manage Server permission for this."
        elif isinstance(original, app_commands.CommandOnCooldown):
            message = f"Slow down: try again in {original.retry_after:.0f} s."
        elif isinstance(original, app_commands.NoPrivateMessage):
            message = "This command only works in a server."
        elif isinstance(original, app_commands.CheckFailure):
            message = "You cannot use this command here."
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("Command /%s failed", command, exc_info=original)
            message = "Something went wrong on the bot's side; the error was logged."
        await send_ephemeral(interaction, message)

    def request_stop(self) -> None:
        """A stop signal: the first starts the graceful close, a second cuts its grace short."""
        if self._closing is None:
            self.accepting_messages = False  # at once: not even one loop turn later
            self._stopping.set()
            log.info(
                "Stopping: no new messages; up to %.1f s for the answers in progress",
                self.config.discord.shutdown_grace_s,
            )
            self._closing = asyncio.ensure_future(self._close_gracefully())
            return
        services: Services | None = getattr(self, "services", None)
        if services is not None:
            log.info("Stopping now: the answers still running end with a note")
            services.engine.end_grace()

    async def close(self) -> None:
        """Stop taking messages, let answers in progress finish within the grace, then disconnect.

        Done once: a stop signal, discord.py and `async with bot` may each ask, and all wait for it.
        """
        self._stopping.set()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_gracefully())
        await asyncio.shield(self._closing)
        # A stop signal during start-up closes before `setup_hook` has built the core: close it too.
        await self._close_services()
        await self._close_health_server()

    async def _close_health_server(self) -> None:
        """Last: until then `/healthz` says 503 (stopping) rather than refusing the connection."""
        server, self.health_server = self.health_server, None
        if server is not None:
            await server.close()

    async def stop_requested_within(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a stop (signal or close); True if one came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._stopping.wait()
        return self._stopping.is_set()

    async def _close_gracefully(self) -> None:
        """Refuse new work at once; answers still running after the grace end with a note (and are
        journalled interrupted) whose writes go out before the scheduler, Discord and the database close.
        """
        self.accepting_messages = False
        services: Services | None = getattr(self, "services", None)
        if services is not None:
            grace_s = self.config.discord.shutdown_grace_s
            wrap_up_s = min(WRAP_UP_S, grace_s / 2)
            await services.engine.shut_down(grace_s=grace_s - wrap_up_s, wrap_up_s=wrap_up_s)
        await self.writes.close()
        if self.write_budget is not None:
            await self.write_budget.close()
        await super().close()
        await self._close_services()
        await self._close_health_server()

    async def _close_services(self) -> None:
        """The OpenAI clients and the database, once."""
        services: Services | None = getattr(self, "services", None)
        if services is None or self._services_closed:
            return
        self._services_closed = True
        if self._heartbeat is not None:
            self._stopping.set()
            await asyncio.gather(self._heartbeat, return_exceptions=True)  # a failed beat ended it early
            with contextlib.suppress(DatabaseUnavailableError):
                await services.storage.runs.stop(services.state.run_id)
        await services.close()


class AssistantTree(app_commands.CommandTree[AssistantBot]):
    """Which commands this process answers: none once it is stopping (but /stop; the others get a
    word), and only those it claims first when another process received them too."""

    async def interaction_check(self, interaction: discord.Interaction[AssistantBot], /) -> bool:
        if not self.client.accepting_messages:
            command = interaction.command
            if command is not None and command.name in COMMANDS_WHILE_STOPPING:
                return await self._claim(interaction)
            if interaction.type is discord.InteractionType.application_command:
                await send_ephemeral(interaction, RESTARTING)
            return False
        return await self._claim(interaction)

    async def _claim(self, interaction: discord.Interaction[AssistantBot]) -> bool:
        """Two processes on overlapping shards (a deployment mistake) both receive each command; the
        first to claim it answers (the other's answer would fail: "already acknowledged"). With the
        database unreachable the command goes on: it says so itself, and one answer is better than none."""
        services = self.client.services
        try:
            if await services.storage.message_claims.claim(interaction.id, services.state.run_id):
                return True
        except DatabaseUnavailableError:
            return True
        log.debug("Interaction %s is answered by another process", interaction.id)
        return False


async def send_ephemeral(interaction: discord.Interaction, message: str) -> None:
    """Answer the invoking user privately, whether or not the interaction was acknowledged yet.

    Cut to Discord's 2,000 characters: a refusal may quote what was typed, and a 400 would lose it."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException:
        log.warning("Could not tell the user about an error (interaction expired?)", exc_info=True)


RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
DISCORD_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, name not resolved (aiohttp's connection errors are OSErrors too)
    aiohttp.ClientError,
    TimeoutError,
    discord.DiscordServerError,  # 5xx after discord.py's own retries
    discord.GatewayNotFound,  # GET /gateway/bot failed
)
"""What a later login may not meet again: no connection, a timeout, Discord failing on its side."""


class Backoff:
    """Waits that double from `first_s` up to `max_s` (1, 2, 4 ... 60 s), each jittered into the
    upper half of its step so that many bots restarted together do not retry in step."""

    def __init__(
        self, first_s: float = RETRY_FIRST_S, max_s: float = RETRY_MAX_S, rng: random.Random | None = None
    ) -> None:
        self._step_s = first_s
        self._max_s = max_s
        self._rng = rng or random.Random()

    def next_delay_s(self) -> float:
        step_s = self._step_s
        self._step_s = min(step_s * 2, self._max_s)
        return self._rng.uniform(step_s / 2, step_s)


async def login_with_retry(bot: AssistantBot, token: str, *, backoff: Backoff | None = None) -> bool:
    """`bot.login`, tried again with backoff while Discord cannot be reached, one warning per attempt.

    It never gives up: a supervisor (systemd, Docker, Kubernetes) expects the process to stay up, and
    exiting would only make it restart the bot into the same outage. A stop signal ends the wait at
    once (False: not logged in). A rejected token or a failure once the set-up has built the core
    (`setup_hook` is not repeatable) is raised, not retried.
    """
    backoff = backoff or Backoff()
    attempt = 0
    while not bot.is_closed():
        attempt += 1
        try:
            await bot.login(token)
            return True
        except DISCORD_UNREACHABLE as exc:
            if getattr(bot, "services", None) is not None:
                raise
            delay_s = backoff.next_delay_s()
            log.warning(
                "Discord is unreachable (%s); attempt %d failed, trying again in %.1f s",
                str(exc) or type(exc).__name__,
                attempt,
                delay_s,
            )
        # The attempt's HTTP session closes its connector too; the next login makes new ones.
        await bot.http.close()
        bot.http.connector = discord.utils.MISSING
        if await bot.stop_requested_within(delay_s):
            log.info("Stopped while waiting for Discord")
            return False
    return False


async def connect_with_retry(bot: AssistantBot, token: str) -> None:
    """`bot.start` with the login retried while Discord is unreachable (discord.py itself reconnects
    the gateway once logged in)."""
    if await login_with_retry(bot, token):
        await bot.connect()


async def run_until_stopped(config: AppConfig, secrets: Secrets) -> None:
    """Connect to Discord (or the server DISCORD_API_BASE_URL names) and run until stopped.

    Raises `DiscordRefusedError` (one line for the owner) when Discord refuses the token or the intent.
    """
    use_rest_base(secrets.discord_api_base_url)
    bot = AssistantBot(config, secrets)
    try:
        async with bot:
            try:
                with stop_on_signals(bot.request_stop):
                    await connect_with_retry(bot, secrets.discord_token.get_secret_value())
            finally:
                # A stop signal's close ends the connection half-way through: wait for the rest (OpenAI,
                # the database) here, since `async with` skips a bot whose connection is already closed.
                await bot.close()
    except discord.PrivilegedIntentsRequired:
        raise DiscordRefusedError(
            "Discord refused the Message Content intent. Enable it for this bot in the Developer Portal "
            "(Bot -> Privileged Gateway Intents -> MESSAGE CONTENT INTENT), then start again."
        ) from None
    except discord.LoginFailure:
        raise DiscordRefusedError(
            "Discord rejected DISCORD_TOKEN; copy the bot token again from the Developer Portal."
        ) from None


@contextlib.contextmanager
def stop_on_signals(on_stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT both call `on_stop` (one graceful path), until the block ends.

    Where the loop takes no signal handlers (Windows), Ctrl-C keeps asyncio.run's own handling: the
    main task is cancelled, and `async with bot` then closes the bot just as gracefully.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for stop_signal in STOP_SIGNALS:
        try:
            loop.add_signal_handler(stop_signal, on_stop)
        except (NotImplementedError, RuntimeError):
            log.debug("No handler for %s on this platform", stop_signal.name)
        else:
            installed.append(stop_signal)
    try:
        yield
    finally:
        for stop_signal in installed:
            loop.remove_signal_handler(stop_signal)
