"""``FakeDiscord``: the parts of the stand-in put together behind one aiohttp app, with the REST
route table, authentication and the rate limits in front of every handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

from aiohttp import web

from .constants import (
    API_PREFIX,
    ATTACHMENTS_PATH,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_TOKEN,
    GATEWAY_PATH,
    HEARTBEAT_INTERVAL_MS,
    INTERACTION_DEADLINE_S,
    RESUME_GATEWAY_PATH,
)
from .errors import DiscordAPIError, json_response
from .models import RateLimitHit, RateLimitRule, RestCall, to_int
from .ratelimits import GLOBAL_EXEMPT_KINDS, InjectedFailure, RateLimits
from .rest import ApiRequest, Handler, read_body
from .rest_channels import ChannelRoutes
from .rest_commands import CommandRoutes
from .rest_guilds import GuildRoutes
from .rest_webhooks import CHANNEL_WEBHOOK_KINDS, WebhookRoutes
from .users import UserActivity

_log = logging.getLogger(__name__)

# Interaction routes are authenticated by the token in their path; the gateway's address needs none.
_NO_AUTH_KINDS = GLOBAL_EXEMPT_KINDS | {"gateway"}


class FakeDiscord(UserActivity, WebhookRoutes, ChannelRoutes, CommandRoutes, GuildRoutes):
    """The stand-in server: ``async with FakeDiscord(...) as server``, then ``server.base_url``.

    Build the world with ``add_guild`` / ``add_text_channel`` / ``add_thread`` / ``add_user`` (before
    the bot connects: the bot learns it from READY and GUILD_CREATE), act as users with
    ``user_message`` / ``dm_message`` / ``slash_command`` / ``click_button`` / ``submit_modal``, and
    read ``calls``, ``messages_in``, ``interactions``, ``rate_limit_hits``. Wait with ``wait_for``.
    Channel webhooks: ``webhooks_in``, ``webhook_messages`` (each with its ``author_name``), and
    ``add_webhook`` / ``delete_webhook`` as a person would in the server's settings.
    """

    def __init__(
        self,
        *,
        bot_name: str = "Assistant",
        token: str = DEFAULT_TOKEN,
        privileged_intents: Iterable[str] = ("message_content", "members", "presences"),
        rate_limits: Mapping[str, RateLimitRule | None] | None = None,
        global_limit: int | None = None,
        global_window_s: float = 1.0,
        interaction_deadline_s: float = INTERACTION_DEADLINE_S,
        heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        gateway_compression: bool = True,
    ) -> None:
        super().__init__(
            bot_name=bot_name,
            token=token,
            privileged_intents=privileged_intents,
            bot_permissions=bot_permissions,
            heartbeat_interval_ms=heartbeat_interval_ms,
            gateway_compression=gateway_compression,
            interaction_deadline_s=interaction_deadline_s,
        )
        self.limits = RateLimits(
            rate_limits, global_limit=global_limit, global_window_s=global_window_s, notify=self._notify
        )
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self, port: int = 0) -> None:
        """Listen on a loopback port: a free one, or `port` (Discord coming up where the bot looks)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._port = int(port)
        _log.debug("stand-in Discord on %s:%s", host, port)

    async def close(self) -> None:
        """Close every gateway connection (1001, going away) and stop listening."""
        await self._close_gateway()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- rate limits and faults

    @property
    def rate_limits(self) -> dict[str, RateLimitRule | None]:
        """Per-route buckets by route kind (None: unlimited); change them at any time."""
        return self.limits.rules

    @property
    def global_limit(self) -> int | None:
        return self.limits.global_limit

    @global_limit.setter
    def global_limit(self, value: int | None) -> None:
        self.limits.global_limit = value

    @property
    def global_window_s(self) -> float:
        return self.limits.global_window_s

    @global_window_s.setter
    def global_window_s(self, value: float) -> None:
        self.limits.global_window_s = value

    @property
    def rate_limit_hits(self) -> list[RateLimitHit]:
        """Every 429 answered, in order."""
        return self.limits.hits

    @property
    def held(self) -> list[RestCall]:
        """Requests that waited (or wait) inside ``holding()``, in arrival order."""
        return self.limits.held

    def fail_next(
        self,
        kind: str,
        status: int = 429,
        count: int = 1,
        *,
        retry_after: float = 1.0,
        scope: str = "user",
        applied: bool = False,
    ) -> None:
        """Answer the next ``count`` requests of route ``kind`` with ``status`` (429 or 5xx).

        ``applied=True`` performs the request first and then fails it, like a 502 arriving after
        Discord had already stored the message (the case nonces exist for).
        """
        self.limits.inject(InjectedFailure(kind, status, count, retry_after, scope, applied))

    @contextlib.asynccontextmanager
    async def holding(self, kind: str) -> AsyncIterator[None]:
        """Requests of route ``kind`` wait unanswered until the block ends (Discord being slow there);
        each is recorded in ``held`` as it arrives, and then handled as usual."""
        async with self.limits.holding(kind):
            yield

    def use_up_bucket(self, kind: str, channel_id: int) -> None:
        """Empty a per-channel bucket, as if another process with the same token (the bot's previous
        run) had just used it; discord.py cannot know, so its next request meets a 429."""
        self.limits.use_up_bucket(kind, channel_id)

    def rate_limit_hits_of(self, scope: str | None = None, kind: str | None = None) -> list[RateLimitHit]:
        return self.limits.hits_of(scope, kind)

    # ---------------------------------------------------------------- REST plumbing

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, str, Handler]] = [
            ("GET", "/gateway", "gateway", self._h_gateway),
            ("GET", "/gateway/bot", "gateway_bot", self._h_gateway_bot),
            ("GET", "/users/@me", "user_me", self._h_user_me),
            ("POST", "/users/@me/channels", "dm_create", self._h_dm_create),
            ("GET", "/users/{user_id}", "user_get", self._h_user_get),
            ("GET", "/oauth2/applications/@me", "application_me", self._h_application_me),
            ("GET", "/applications/@me", "application_me", self._h_application_me),
            ("GET", "/applications/{application_id}/commands", "commands_get", self._h_commands_get),
            ("PUT", "/applications/{application_id}/commands", "commands_put", self._h_commands_put),
            ("POST", "/applications/{application_id}/commands", "command_create", self._h_command_create),
            (
                "DELETE",
                "/applications/{application_id}/commands/{command_id}",
                "command_delete",
                self._h_command_delete,
            ),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "guild_commands_get",
                self._h_commands_get,
            ),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "guild_commands_put",
                self._h_commands_put,
            ),
            (
                "POST",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "guild_command_create",
                self._h_command_create,
            ),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                "guild_command_delete",
                self._h_command_delete,
            ),
            ("GET", "/guilds/{guild_id}", "guild_get", self._h_guild_get),
            ("GET", "/guilds/{guild_id}/channels", "guild_channels", self._h_guild_channels),
            ("GET", "/guilds/{guild_id}/members/{user_id}", "member_get", self._h_member_get),
            ("GET", "/guilds/{guild_id}/threads/active", "threads_active", self._h_threads_active),
            ("GET", "/channels/{channel_id}", "channel_get", self._h_channel_get),
            ("PATCH", "/channels/{channel_id}", "channel_edit", self._h_channel_edit),
            ("GET", "/channels/{channel_id}/messages", "messages_list", self._h_messages_list),
            ("POST", "/channels/{channel_id}/messages", "message_create", self._h_message_create),
            ("GET", "/channels/{channel_id}/messages/{message_id}", "message_get", self._h_message_get),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", "message_edit", self._h_message_edit),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                "message_delete",
                self._h_message_delete,
            ),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                "thread_create_from_message",
                self._h_thread_from_message,
            ),
            ("POST", "/channels/{channel_id}/threads", "thread_create", self._h_thread_create),
            ("PUT", "/channels/{channel_id}/thread-members/@me", "thread_join", self._h_thread_join),
            ("POST", "/channels/{channel_id}/typing", "typing", self._h_typing),
            ("POST", "/channels/{channel_id}/webhooks", "webhook_create", self._h_channel_webhook_create),
            ("GET", "/channels/{channel_id}/webhooks", "webhooks_list", self._h_channel_webhooks),
            ("GET", "/webhooks/{webhook_id}", "webhook_get", self._h_webhook_get),
            ("DELETE", "/webhooks/{webhook_id}", "webhook_delete", self._h_webhook_delete),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                "reaction_add",
                self._h_reaction_add,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                "reaction_remove",
                self._h_reaction_remove,
            ),
            (
                "POST",
                "/interactions/{interaction_id}/{token}/callback",
                "interaction_callback",
                self._h_interaction_callback,
            ),
            ("POST", "/webhooks/{webhook_id}/{token}", "webhook_execute", self._h_webhook_execute),
            (
                "GET",
                "/webhooks/{webhook_id}/{token}/messages/{message_id}",
                "webhook_message_get",
                self._h_webhook_message_get,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{token}/messages/{message_id}",
                "webhook_message_edit",
                self._h_webhook_message_edit,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{token}/messages/{message_id}",
                "webhook_message_delete",
                self._h_webhook_message_delete,
            ),
        ]
        for method, path, kind, handler in routes:
            app.router.add_route(method, API_PREFIX + path, self._endpoint(method, path, kind, handler))
        app.router.add_route(
            "*", API_PREFIX + "/{tail:.*}", self._endpoint("*", "/{tail}", "unknown", self._h_unknown)
        )
        app.router.add_get(GATEWAY_PATH, self._gateway)
        app.router.add_get(RESUME_GATEWAY_PATH, self._gateway)
        app.router.add_get(ATTACHMENTS_PATH + "/{channel_id}/{attachment_id}/{filename}", self.cdn.serve)

    def _endpoint(
        self, method: str, route: str, kind: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, route, kind, handler)

        return endpoint

    async def _serve(
        self, request: web.Request, route: str, kind: str, handler: Handler
    ) -> web.StreamResponse:
        """Authenticate, apply the global limit, injected faults and per-route buckets, run, record."""
        loop = asyncio.get_running_loop()
        kind = self._route_kind(kind, request)
        call = RestCall(
            request.method,
            route,
            kind,
            request.path,
            to_int(request.match_info.get("channel_id")),
            at=loop.time(),
            query=dict(request.query),
        )
        try:
            call.json, call.files = await read_body(request)
            response = await self._answer(ApiRequest(request, call, call.json, call.files), handler)
        except DiscordAPIError as exc:
            response = exc.response()
        response.headers["Via"] = "1.1 google"
        call.status = response.status
        await self._record_call(call)
        return response

    async def _answer(self, req: ApiRequest, handler: Handler) -> web.StreamResponse:
        """Authenticate, then let the rate limits (and injected faults) decide whether the handler runs."""
        call = req.call
        if (
            call.kind not in _NO_AUTH_KINDS
            and req.request.headers.get("Authorization") != f"Bot {self.token}"
        ):
            return json_response(401, {"message": "401: Unauthorized", "code": 0})
        major = call.channel_id or to_int(req.request.match_info.get("guild_id"))
        if call.kind in CHANNEL_WEBHOOK_KINDS.values():
            # A webhook's buckets are its own; the channel it writes in counts for the per-channel limit.
            major = to_int(req.request.match_info.get("webhook_id"))
            call.channel_id = self._webhook_target_id(req.request)

        async def handle() -> web.StreamResponse:
            try:
                return await handler(req)
            except DiscordAPIError as exc:
                return exc.response()

        return await self.limits.apply(call, major, handle)

    async def _h_unknown(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(404, {"message": "404: Not Found", "code": 0})
