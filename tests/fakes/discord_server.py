"""A stand-in for Discord, REST API and gateway, on 127.0.0.1, for the real discord.py client.

End-to-end tests and benchmarks build the world they need (guilds, channels, threads, users, denied
permissions), point the bot at ``server.base_url`` through ``bot.discord_endpoint``, play the users'
side (messages, DMs, slash commands, button clicks, modal submits) and assert on what the bot did:
every REST call, each channel's messages with their edits, every interaction callback and how long
after the dispatch it came, every 429.

It copies what discord.py relies on (payload shapes, ``Content-Type: application/json`` exactly, the
``Via`` header without which discord.py takes a 429 for a Cloudflare ban, the rate-limit headers) and
what the bot has to cope with: per-channel buckets and the global limit, Discord's validation errors
and 403s, the 3-second interaction deadline, gateway disconnects and RESUME, intents (MESSAGE_CONTENT
blanks other people's messages; a privileged intent the application may not use closes with 4014).

Usage::

    async with FakeDiscord() as server:
        guild = server.add_guild("Test Guild")
        general = server.add_text_channel(guild.id, "general")
        alice = server.add_user("alice", guilds=[guild.id])
        # The bot: bot.discord_endpoint.use_rest_base(server.base_url) before login, then
        # await use_gateway_of(bot.http, server.base_url) in setup_hook; bot.start(server.token).
        await server.user_message(general.id, alice, "hello", mentions_bot=True)
        reply = await server.wait_for_message(channel_id=general.id)  # the bot's first message there
        assert reply.content == "..."
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import math
import mimetypes
import re
import secrets
import struct
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import discord
from aiohttp import BodyPartReader, WSMsgType, web

__all__ = [
    "CallbackRecord",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "InteractionRecord",
    "RateLimitHit",
    "RateLimitRule",
    "RestCall",
    "StoredMessage",
    "Upload",
]

_log = logging.getLogger(__name__)

Json = dict[str, Any]

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
RESUME_GATEWAY_PATH = "/resume-gateway"
ATTACHMENTS_PATH = "/attachments"

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAw.GfakeT.stand-in-token-not-a-secret"
MAX_MESSAGE_CHARS = 2000
MAX_USER_MESSAGE_CHARS = 4000  # what a Nitro user may type; the bot is held to 2000
MAX_THREAD_NAME_CHARS = 100
MAX_EMBEDS = 10
MAX_EMBED_TOTAL_CHARS = 6000
MAX_FILES_PER_MESSAGE = 10
ATTACHMENT_SIZE_LIMIT_BYTES = 10 * 1024 * 1024
INTERACTION_DEADLINE_S = 3.0
HEARTBEAT_INTERVAL_MS = 41_250
NEW_SESSION_CLOSE_CODES = frozenset({4007, 4009})
"""Closes after which Discord does not resume the session (invalid seq, session timed out): the
client's RESUME is answered with op 9 (not resumable) and it IDENTIFYs again, getting a new READY."""
THREAD_ARCHIVE_MINUTES = (60, 1440, 4320, 10080)
_ARCHIVE_CHOICES_MESSAGE = "Value must be one of {60, 1440, 4320, 10080}."

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12

# Message flags.
FLAG_HAS_THREAD = 1 << 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Interaction and callback types.
INTERACTION_PING = 1
INTERACTION_COMMAND = 2
INTERACTION_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
CALLBACK_PONG = 1
CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE = 8
CALLBACK_MODAL = 9
_CALLBACKS_ALLOWED: dict[int, frozenset[int]] = {
    INTERACTION_PING: frozenset({CALLBACK_PONG}),
    INTERACTION_COMMAND: frozenset({CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE, CALLBACK_MODAL}),
    INTERACTION_COMPONENT: frozenset(
        {
            CALLBACK_MESSAGE,
            CALLBACK_DEFERRED_MESSAGE,
            CALLBACK_DEFERRED_UPDATE,
            CALLBACK_UPDATE_MESSAGE,
            CALLBACK_MODAL,
        }
    ),
    INTERACTION_AUTOCOMPLETE: frozenset({CALLBACK_AUTOCOMPLETE}),
    INTERACTION_MODAL_SUBMIT: frozenset(
        {CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE, CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE_MESSAGE}
    ),
}

# Gateway intents (bits) and the privileged ones an application must be allowed to use.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS: dict[str, int] = {
    "members": INTENT_GUILD_MEMBERS,
    "presences": INTENT_GUILD_PRESENCES,
    "message_content": INTENT_MESSAGE_CONTENT,
}
_ALL_INTENTS = discord.Intents.all().value
# Application flags Discord reports for an unverified bot whose privileged intents are switched on.
_APP_FLAG_FOR_INTENT = {"presences": 1 << 13, "members": 1 << 15, "message_content": 1 << 19}
_APP_FLAG_COMMAND_BADGE = 1 << 23

# Permissions, by discord.py's names (plus "create_threads" for both thread kinds).
_PERMISSION_BITS: dict[str, int] = dict(discord.Permissions.VALID_FLAGS)
_PERMISSION_ALIASES: dict[str, tuple[str, ...]] = {
    "create_threads": ("create_public_threads", "create_private_threads"),
}
ALL_PERMISSIONS = discord.Permissions.all().value
_ADMINISTRATOR = _PERMISSION_BITS["administrator"]


def permission_bits(names: Iterable[str]) -> int:
    """The bit set of permission names; unknown names are a mistake in the test, so they raise."""
    bits = 0
    for name in names:
        for real in _PERMISSION_ALIASES.get(name, (name,)):
            try:
                bits |= _PERMISSION_BITS[real]
            except KeyError:
                raise ValueError(f"unknown permission {name!r}") from None
    return bits


DEFAULT_EVERYONE_PERMISSIONS = permission_bits(
    [
        "view_channel", "send_messages", "send_messages_in_threads", "create_threads", "embed_links",
        "attach_files", "add_reactions", "read_message_history", "use_application_commands",
        "use_external_emojis", "change_nickname", "create_instant_invite", "connect", "speak",
    ]
)  # fmt: skip
DEFAULT_BOT_PERMISSIONS = permission_bits(
    [
        "view_channel", "send_messages", "send_messages_in_threads", "create_threads", "manage_threads",
        "embed_links", "attach_files", "add_reactions", "read_message_history", "use_application_commands",
        "use_external_emojis",
    ]
)  # fmt: skip
_DM_PERMISSIONS = permission_bits(
    ["view_channel", "send_messages", "embed_links", "attach_files", "add_reactions", "read_message_history"]
)

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_MENU_NAME = re.compile(r"^[-_' \w]{1,32}$")  # user/message menus: mixed case, spaces


# --------------------------------------------------------------------------------------------------
# Ids, times and small helpers


class _Snowflakes:
    """Discord ids: milliseconds since the Discord epoch in the top bits, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._last = max((now_ms << 22) | (1 << 17), self._last + 1)
        return self._last


def snowflake_time(snowflake: int) -> dt.datetime:
    """When a snowflake was made, as Discord encodes it."""
    return dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, dt.UTC)


def iso(moment: dt.datetime) -> str:
    """Discord's timestamp format: ISO 8601 with microseconds and +00:00."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


def _json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON exactly as Discord labels it: discord.py only parses bodies typed ``application/json``."""
    response = web.Response(status=status, body=json.dumps(data).encode())
    response.headers["Content-Type"] = "application/json"
    if headers:
        response.headers.update(headers)
    return response


def _no_content() -> web.Response:
    return web.Response(status=204)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _walk_components(components: Iterable[Json] | None) -> Iterator[Json]:
    """Every component, however deeply nested (action rows, labels, containers, sections)."""
    for component in components or ():
        yield component
        yield from _walk_components(component.get("components"))
        for key in ("component", "accessory"):
            inner = component.get(key)
            if isinstance(inner, dict):
                yield from _walk_components([inner])


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


# --------------------------------------------------------------------------------------------------
# Errors shaped like Discord's


class DiscordAPIError(Exception):
    """An error answer: HTTP status, Discord's JSON error code and message, optional field errors."""

    def __init__(self, status: int, code: int, message: str, errors: Json | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: Json = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return _json_response(self.status, body)


class _FormErrors:
    """Collects per-field problems and raises them as one 50035 Invalid Form Body, as Discord does."""

    def __init__(self) -> None:
        self.errors: Json = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.errors
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Sequence[str | int], value: str | None, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.errors:
            raise DiscordAPIError(400, 50035, "Invalid Form Body", self.errors)


def _form_error(field_name: str, code: str, message: str) -> DiscordAPIError:
    """A 50035 Invalid Form Body about one field."""
    return DiscordAPIError(
        400, 50035, "Invalid Form Body", {field_name: {"_errors": [{"code": code, "message": message}]}}
    )


def _missing_access() -> DiscordAPIError:
    return DiscordAPIError(403, 50001, "Missing Access")


def _missing_permissions() -> DiscordAPIError:
    return DiscordAPIError(403, 50013, "Missing Permissions")


def _unknown(what: str, code: int) -> DiscordAPIError:
    return DiscordAPIError(404, code, f"Unknown {what}")


# --------------------------------------------------------------------------------------------------
# The world the test builds


@dataclass(eq=False)
class FakeUser:
    """A Discord user (the bot is one too)."""

    id: int
    name: str
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> Json:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": None if self.bot else (self.global_name or self.name),
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "bot": self.bot,
            "system": False,
            "primary_guild": None,
            "collectibles": None,
        }


@dataclass(eq=False)
class FakeRole:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> Json:
        data: Json = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class FakeMember:
    """A user's membership of a guild."""

    user: FakeUser
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=_now_iso)

    @property
    def id(self) -> int:
        return self.user.id

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> Json:
        data: Json = {
            "roles": [str(role) for role in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "avatar_decoration_data": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class FakeChannel:
    """A text channel, a thread (parent_id is its text channel) or a DM (recipient_id)."""

    id: int
    type: int
    name: str
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    topic: str | None = None
    deny: set[str] = field(default_factory=set)  # permissions the bot is denied here (text channels)
    owner_id: int | None = None
    recipient_id: int | None = None
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created_at: str = field(default_factory=_now_iso)
    last_message_id: int | None = None
    message_count: int = 0
    member_ids: set[int] = field(default_factory=set)

    @property
    def is_thread(self) -> bool:
        return self.type in (PUBLIC_THREAD, PRIVATE_THREAD)

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class FakeGuild:
    """A guild with its roles, members and (ids of) channels."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    joined_at: str = field(default_factory=_now_iso)


@dataclass(frozen=True)
class Upload:
    """A file: one a user attaches, or one the bot uploaded (``files[n]`` of a multipart request)."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class RateLimitRule:
    """A per-route bucket: ``limit`` requests per ``per_s`` seconds per channel (Discord: 5 per 5 s)."""

    limit: int
    per_s: float


DEFAULT_RATE_LIMITS: dict[str, RateLimitRule | None] = {
    "message_create": RateLimitRule(5, 5.0),
    "message_edit": RateLimitRule(5, 5.0),
}


# --------------------------------------------------------------------------------------------------
# Records the tests assert on


@dataclass(eq=False)
class StoredMessage:
    """A message as Discord stores it, with every earlier version so tests can check the edits."""

    data: Json  # the current REST-shaped payload
    channel_id: int
    guild_id: int | None
    author_id: int
    files: list[Upload] = field(default_factory=list)
    allowed_mentions: Json | None = None
    interaction_id: int | None = None
    versions: list[Json] = field(default_factory=list)  # earlier payloads, oldest first
    deleted: bool = False
    nonce: str | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def content(self) -> str:
        return str(self.data["content"])

    @property
    def flags(self) -> int:
        return int(self.data.get("flags", 0))

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    @property
    def components(self) -> list[Json]:
        return list(self.data.get("components", []))

    @property
    def contents(self) -> list[str]:
        """Every content this message has had, first to current."""
        return [str(v["content"]) for v in self.versions] + [self.content]

    @property
    def edit_count(self) -> int:
        return len(self.versions)


@dataclass(eq=False)
class RestCall:
    """One REST request as the server saw it."""

    method: str
    route: str  # the template, as in Discord's docs: "/channels/{channel_id}/messages"
    kind: str  # short name of the route: "message_create", "interaction_callback", ...
    path: str
    channel_id: int | None
    at: float  # the event loop's clock
    json: Any = None
    files: list[Upload] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0

    @property
    def allowed_mentions(self) -> Json | None:
        """The ``allowed_mentions`` the request carried (inside ``data`` for interaction callbacks)."""
        body = self.json
        if not isinstance(body, dict):
            return None
        if self.kind == "interaction_callback":
            body = body.get("data") or {}
        value = body.get("allowed_mentions")
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class RateLimitHit:
    """A 429 the server answered: which route, which scope ("user", "shared" or "global")."""

    kind: str
    route: str
    scope: str
    channel_id: int | None
    retry_after: float
    at: float
    injected: bool = False


@dataclass(frozen=True)
class CallbackRecord:
    """One ``POST /interactions/{id}/{token}/callback``, and how long after the dispatch it came."""

    type: int
    data: Json
    latency_s: float
    ephemeral: bool
    status: int


@dataclass(eq=False)
class InteractionRecord:
    """An interaction the server dispatched and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: Json
    user: FakeUser
    channel_id: int
    guild_id: int | None
    dispatched_at: float = 0.0
    message_id: int | None = None  # the message whose component was used
    callbacks: list[CallbackRecord] = field(default_factory=list)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    modal: Json | None = None
    autocomplete_choices: list[Json] | None = None

    @property
    def acknowledged(self) -> bool:
        return any(c.status < 300 for c in self.callbacks)

    @property
    def response(self) -> CallbackRecord | None:
        """The accepted callback, if any."""
        return next((c for c in self.callbacks if c.status < 300), None)

    @property
    def response_type(self) -> int | None:
        response = self.response
        return None if response is None else response.type

    @property
    def ack_latency_s(self) -> float | None:
        response = self.response
        return None if response is None else response.latency_s

    @property
    def ephemeral(self) -> bool:
        response = self.response
        return bool(response and response.ephemeral)


@dataclass(frozen=True)
class DispatchRecord:
    """A gateway dispatch; ``live`` False means it waited in the session for a RESUME.

    ``at`` is the loop's clock once the frame was handed to the websocket (benchmarks time from it).
    """

    seq: int
    event: str
    data: Json
    live: bool
    at: float = 0.0


@dataclass(frozen=True)
class ResumeRecord:
    session_id: str
    seq: int
    replayed: int


@dataclass(frozen=True)
class GatewayClose:
    """A closed gateway connection: the code, and whether the server closed it."""

    code: int | None
    by_server: bool
    at: float


@dataclass
class _InjectedFailure:
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


# --------------------------------------------------------------------------------------------------
# Gateway sessions


class _GatewayConnection:
    """One websocket: sends JSON text, or zlib-stream binary frames when the client asked for them."""

    def __init__(
        self, ws: web.WebSocketResponse, *, path: str, query: Mapping[str, str], opened_at: float
    ) -> None:
        self.ws = ws
        self.path = path
        self.query = dict(query)
        self.opened_at = opened_at
        self.session: _GatewaySession | None = None
        self.server_close_code: int | None = None
        self._compressor = zlib.compressobj() if query.get("compress") == "zlib-stream" else None
        self._send_lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, payload: Json) -> bool:
        """Send one payload; False if the socket is already gone (the session keeps it for RESUME)."""
        raw = json.dumps(payload)
        async with self._send_lock:
            if self.ws.closed:
                return False
            try:
                if self._compressor is not None:
                    frame = self._compressor.compress(raw.encode()) + self._compressor.flush(
                        zlib.Z_SYNC_FLUSH
                    )
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(raw)
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def close(self, code: int, message: str = "") -> None:
        self.server_close_code = code
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=message.encode())


@dataclass(eq=False)
class _GatewaySession:
    session_id: str
    intents: int
    identify: Json
    seq: int = 0
    log: list[Json] = field(default_factory=list)
    connection: _GatewayConnection | None = None
    resumable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wants(self, intent: int) -> bool:
        return bool(self.intents & intent)


# --------------------------------------------------------------------------------------------------
# The server


@dataclass
class _ApiRequest:
    request: web.Request
    call: RestCall
    body: Any
    files: list[Upload]

    @property
    def json(self) -> Json:
        return self.body if isinstance(self.body, dict) else {}

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    def int_param(self, name: str) -> int:
        value = _int(self.request.match_info[name])
        if value is None:
            raise _form_error(name, "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        return value


_Handler = Callable[[_ApiRequest], Awaitable[web.StreamResponse]]

# Interaction routes: authenticated by the token in the path, and left out of the global limit.
_GLOBAL_EXEMPT_KINDS = frozenset(
    {
        "interaction_callback",
        "webhook_execute",
        "webhook_message_get",
        "webhook_message_edit",
        "webhook_message_delete",
    }
)
_NO_AUTH_KINDS = _GLOBAL_EXEMPT_KINDS | {"gateway"}


class FakeDiscord:
    """The stand-in server: ``async with FakeDiscord(...) as server``, then ``server.base_url``.

    Build the world with ``add_guild`` / ``add_text_channel`` / ``add_thread`` / ``add_user`` (before
    the bot connects: the bot learns it from READY and GUILD_CREATE), act as users with
    ``user_message`` / ``dm_message`` / ``slash_command`` / ``click_button`` / ``submit_modal``, and
    read ``calls``, ``messages_in``, ``interactions``, ``rate_limit_hits``. Wait with ``wait_for``.
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
        unknown = set(privileged_intents) - set(PRIVILEGED_INTENTS)
        if unknown:
            raise ValueError(
                f"unknown privileged intents {sorted(unknown)}; known: {sorted(PRIVILEGED_INTENTS)}"
            )
        self._ids = _Snowflakes()
        self.token = token
        self.privileged_intents = frozenset(privileged_intents)
        self.rate_limits: dict[str, RateLimitRule | None] = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        self.global_limit = global_limit
        self.global_window_s = global_window_s
        self.interaction_deadline_s = interaction_deadline_s
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.bot_permissions = bot_permissions
        self.gateway_compression = gateway_compression

        self.bot_user = FakeUser(self._ids.next(), bot_name, bot=True)
        self.application_id = self.bot_user.id  # as for every application made since 2016
        self.owner = FakeUser(self._ids.next(), "owner")
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self._channel_messages: dict[int, list[StoredMessage]] = {}
        self._dm_by_user: dict[int, FakeChannel] = {}
        self._files: dict[int, Upload] = {}
        self.global_commands: dict[str, Json] = {}
        self.guild_commands: dict[int, dict[str, Json]] = {}

        # Records.
        self.calls: list[RestCall] = []
        self.rate_limit_hits: list[RateLimitHit] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self._interactions_by_token: dict[str, InteractionRecord] = {}
        self.identifies: list[Json] = []
        self.resumes: list[ResumeRecord] = []
        self.gateway_closes: list[GatewayClose] = []
        self.gateway_connections: list[_GatewayConnection] = []
        self.dispatched: list[DispatchRecord] = []

        self._sessions: dict[str, _GatewaySession] = {}
        self._session: _GatewaySession | None = None
        self._buckets: dict[tuple[str, int | None], _Bucket] = {}
        self._global_window: deque[float] = deque()
        self._failures: list[_InjectedFailure] = []
        self._holds: dict[str, asyncio.Event] = {}
        self.held: list[RestCall] = []
        """Requests that waited (or wait) inside ``holding()``, in arrival order."""
        self._changed = asyncio.Condition()
        self._gateway_open = asyncio.Event()
        self._gateway_open.set()
        self._runner: web.AppRunner | None = None
        self._port = 0

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
        self._gateway_open.set()
        for connection in self.gateway_connections:
            if not connection.closed:
                await connection.close(1001, "stand-in shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What DISCORD_API_BASE_URL is set to: REST at ``<base_url>/api/v10``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{GATEWAY_PATH}"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{RESUME_GATEWAY_PATH}"

    # ---------------------------------------------------------------- building the world

    def add_guild(
        self, name: str = "Test Guild", *, everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS
    ) -> FakeGuild:
        """A guild the bot is in, owned by the application's owner, with @everyone and the bot's role."""
        guild = FakeGuild(self._ids.next(), name, owner_id=self.owner.id)
        guild.roles[guild.id] = FakeRole(guild.id, "@everyone", everyone_permissions, position=0)
        bot_role = FakeRole(
            self._ids.next(),
            self.bot_user.name,
            self.bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, roles=[bot_role.id])
        guild.members[self.owner.id] = FakeMember(self.owner)
        self.guilds[guild.id] = guild
        return guild

    def add_role(self, guild_id: int, name: str, *, permissions: Iterable[str] | int = ()) -> FakeRole:
        guild = self.guilds[guild_id]
        bits = permissions if isinstance(permissions, int) else permission_bits(permissions)
        role = FakeRole(self._ids.next(), name, bits, position=len(guild.roles))
        guild.roles[role.id] = role
        return role

    def add_text_channel(
        self, guild_id: int, name: str, *, deny: Iterable[str] = (), topic: str | None = None
    ) -> FakeChannel:
        """A text channel; ``deny`` names permissions the bot lacks there (a member overwrite)."""
        guild = self.guilds[guild_id]
        permission_bits(deny)  # validate names now, not at the first request
        channel = FakeChannel(
            self._ids.next(),
            GUILD_TEXT,
            name,
            guild_id=guild_id,
            position=len(guild.channel_ids),
            topic=topic,
            deny=set(deny),
        )
        guild.channel_ids.append(channel.id)
        self._add_channel(channel)
        return channel

    def add_thread(
        self,
        parent_id: int,
        name: str,
        *,
        owner: FakeUser | int | None = None,
        private: bool = False,
        archived: bool = False,
        locked: bool = False,
        bot_is_member: bool = True,
    ) -> FakeChannel:
        """An existing thread (active ones reach the bot in GUILD_CREATE)."""
        parent = self.channels[parent_id]
        owner_user = self._user(owner) if owner is not None else self.owner
        thread = FakeChannel(
            self._ids.next(),
            PRIVATE_THREAD if private else PUBLIC_THREAD,
            name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner_user.id,
            archived=archived,
            locked=locked,
        )
        thread.member_ids.add(owner_user.id)
        if bot_is_member:
            thread.member_ids.add(self.bot_user.id)
        self._add_channel(thread)
        return thread

    def add_user(
        self, name: str, *, guilds: Iterable[int] = (), roles: Iterable[int] = (), bot: bool = False
    ) -> FakeUser:
        """A user, a member of ``guilds`` (with those of ``roles`` that belong to each guild)."""
        user = FakeUser(self._ids.next(), name, bot=bot)
        self.users[user.id] = user
        role_ids = list(roles)
        for guild_id in guilds:
            guild = self.guilds[guild_id]
            self.add_member(guild_id, user, roles=[r for r in role_ids if r in guild.roles])
        return user

    def add_member(
        self, guild_id: int, user: FakeUser | int, *, roles: Iterable[int] = (), nick: str | None = None
    ) -> FakeMember:
        user = self._user(user)
        member = FakeMember(user, roles=list(roles), nick=nick)
        self.guilds[guild_id].members[user.id] = member
        return member

    def dm_channel(self, user: FakeUser | int) -> FakeChannel:
        """The DM channel between the bot and ``user`` (made on first use, as Discord does)."""
        user = self._user(user)
        channel = self._dm_by_user.get(user.id)
        if channel is None:
            channel = FakeChannel(self._ids.next(), DM, "", recipient_id=user.id)
            self._dm_by_user[user.id] = channel
            self._add_channel(channel)
        return channel

    async def set_denied(self, channel_id: int, deny: Iterable[str]) -> None:
        """Change what the bot is denied in a text channel and tell it (CHANNEL_UPDATE)."""
        channel = self.channels[channel_id]
        permission_bits(deny)
        channel.deny = set(deny)
        await self._dispatch("CHANNEL_UPDATE", self.channel_payload(channel), intent=INTENT_GUILDS)

    def _add_channel(self, channel: FakeChannel) -> None:
        self.channels[channel.id] = channel
        self._channel_messages[channel.id] = []

    def _user(self, user: FakeUser | int) -> FakeUser:
        if isinstance(user, FakeUser):
            return user
        try:
            return self.users[int(user)]
        except KeyError:
            raise ValueError(f"no user {user}") from None

    def _channel(self, channel_id: int) -> FakeChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _unknown("Channel", 10003)
        return channel

    def _guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return None if channel.guild_id is None else self.guilds[channel.guild_id]

    # ---------------------------------------------------------------- permissions

    def member_permissions(self, guild: FakeGuild, user_id: int) -> int:
        """Guild-wide permissions: @everyone plus the member's roles; the owner and admins get all."""
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        bits = guild.roles[guild.id].permissions
        member = guild.members.get(user_id)
        for role_id in member.roles if member else ():
            role = guild.roles.get(role_id)
            if role is not None:
                bits |= role.permissions
        return ALL_PERMISSIONS if bits & _ADMINISTRATOR else bits

    def channel_permissions(self, channel: FakeChannel, user_id: int) -> int:
        """Permissions in a channel; threads use their parent's, the bot loses what ``deny`` names."""
        if channel.is_dm:
            return _DM_PERMISSIONS
        guild = self.guilds[channel.guild_id] if channel.guild_id is not None else None
        if guild is None:
            return 0
        bits = self.member_permissions(guild, user_id)
        if bits & _ADMINISTRATOR:
            return bits
        target = self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
        if user_id == self.bot_user.id:
            bits &= ~permission_bits(target.deny)
        return bits

    def bot_can(self, channel: FakeChannel, permission: str) -> bool:
        return bool(self.channel_permissions(channel, self.bot_user.id) & permission_bits([permission]))

    def _require_bot(self, channel: FakeChannel, *permissions: str) -> None:
        """Answer 403 like Discord: 50001 when the bot cannot see the channel, 50013 otherwise."""
        if not self.bot_can(channel, "view_channel"):
            raise _missing_access()
        for permission in permissions:
            if not self.bot_can(channel, permission):
                raise _missing_permissions()

    # ---------------------------------------------------------------- payloads

    def role_payloads(self, guild: FakeGuild) -> list[Json]:
        return [role.payload() for role in guild.roles.values()]

    def channel_payload(self, channel: FakeChannel) -> Json:
        """A channel object as REST and the gateway give it (text channel, thread or DM)."""
        if channel.is_dm:
            recipient = self.users[channel.recipient_id or 0]
            return {
                "id": str(channel.id),
                "type": DM,
                "last_message_id": _str_or_none(channel.last_message_id),
                "flags": 0,
                "recipients": [recipient.payload()],
            }
        if channel.is_thread:
            metadata: Json = {
                "archived": channel.archived,
                "auto_archive_duration": channel.auto_archive_duration,
                "archive_timestamp": channel.created_at,
                "locked": channel.locked,
                "create_timestamp": channel.created_at,
            }
            if channel.type == PRIVATE_THREAD:
                metadata["invitable"] = True
            return {
                "id": str(channel.id),
                "type": channel.type,
                "guild_id": str(channel.guild_id),
                "parent_id": str(channel.parent_id),
                "owner_id": str(channel.owner_id),
                "name": channel.name,
                "last_message_id": _str_or_none(channel.last_message_id),
                "message_count": channel.message_count,
                "total_message_sent": channel.message_count,
                "member_count": len(channel.member_ids),
                "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": metadata,
            }
        overwrites = []
        if channel.deny:
            overwrites.append(
                {
                    "id": str(self.bot_user.id),
                    "type": 1,
                    "allow": "0",
                    "deny": str(permission_bits(channel.deny)),
                }
            )
        return {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": overwrites,
            "parent_id": None,
            "topic": channel.topic,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": _str_or_none(channel.last_message_id),
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }

    def thread_member_payload(self, thread: FakeChannel, user_id: int) -> Json:
        return {
            "id": str(thread.id),
            "user_id": str(user_id),
            "join_timestamp": thread.created_at,
            "flags": 1,
        }

    def guild_payload(self, guild: FakeGuild) -> Json:
        """The guild object of REST (GET /guilds/{id}); GUILD_CREATE adds channels, members, threads."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": self.role_payloads(guild),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(guild.channel_ids[0]) if guild.channel_ids else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "incidents_data": None,
        }

    def _guild_create_payload(self, guild: FakeGuild, session: _GatewaySession) -> Json:
        data = self.guild_payload(guild)
        # Without the presences intent Discord sends only the bot's own member (the rest come by chunks).
        member_ids = list(guild.members) if session.wants(INTENT_GUILD_PRESENCES) else [self.bot_user.id]
        threads = []
        for channel_id in self._threads_of(guild):
            thread = self.channels[channel_id]
            payload = self.channel_payload(thread)
            if self.bot_user.id in thread.member_ids:
                payload["member"] = self.thread_member_payload(thread, self.bot_user.id)
            threads.append(payload)
        data.update(
            joined_at=guild.joined_at,
            large=False,
            unavailable=False,
            member_count=len(guild.members),
            members=[guild.members[m].payload() for m in member_ids],
            channels=[_without_guild_id(self.channel_payload(self.channels[c])) for c in guild.channel_ids],
            threads=threads,
            voice_states=[],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            lazy=True,
        )
        return data

    def _threads_of(self, guild: FakeGuild) -> list[int]:
        return [
            c.id for c in self.channels.values() if c.is_thread and c.guild_id == guild.id and not c.archived
        ]

    def _client_user_payload(self) -> Json:
        data = self.bot_user.payload()
        data.update(verified=True, mfa_enabled=False, locale="en-US", email=None, premium_type=0)
        return data

    def _application_flags(self) -> int:
        flags = _APP_FLAG_COMMAND_BADGE
        for name in self.privileged_intents:
            flags |= _APP_FLAG_FOR_INTENT[name]
        return flags

    def application_payload(self) -> Json:
        return {
            "id": str(self.application_id),
            "name": self.bot_user.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": self._application_flags(),
            "owner": self.owner.payload(),
            "team": None,
            "bot": self.bot_user.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
            "is_monetized": False,
            "storefront_available": False,
        }

    def message_payload(self, message: StoredMessage, *, for_gateway: bool = False) -> Json:
        """The stored message; the gateway's copy adds guild_id and the author's and mentions' members."""
        data = json.loads(json.dumps(message.data))
        data["reactions"] = [
            {
                "emoji": _emoji_payload(emoji),
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": self.bot_user.id in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in message.reactions.items()
            if users
        ]
        if not data["reactions"]:
            del data["reactions"]
        if for_gateway and message.guild_id is not None:
            guild = self.guilds[message.guild_id]
            data["guild_id"] = str(guild.id)
            author = guild.members.get(message.author_id)
            if author is not None and data.get("webhook_id") is None:
                data["member"] = author.payload(with_user=False)
            for mention in data.get("mentions", []):
                member = guild.members.get(int(mention["id"]))
                if member is not None:
                    mention["member"] = member.payload(with_user=False)
        return data

    # ---------------------------------------------------------------- storing messages

    def messages_in(
        self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = True
    ) -> list[StoredMessage]:
        """A channel's messages, oldest first."""
        return [
            m
            for m in self._channel_messages.get(channel_id, [])
            if (include_deleted or not m.deleted) and (include_ephemeral or not m.ephemeral)
        ]

    def messages_by(self, user: FakeUser | int, *, include_deleted: bool = False) -> list[StoredMessage]:
        author_id = self._user(user).id
        return [
            m
            for m in self.messages.values()
            if m.author_id == author_id and (include_deleted or not m.deleted)
        ]

    def message(self, message_id: int) -> StoredMessage:
        return self.messages[message_id]

    def file_bytes(self, attachment_id: int) -> bytes:
        return self._files[attachment_id].data

    def _attachment(self, channel_id: int, upload: Upload) -> Json:
        """Store an upload where the stand-in's CDN serves it and describe it as Discord would."""
        attachment_id = self._ids.next()
        self._files[attachment_id] = upload
        content_type = upload.content_type
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        url = f"{self.base_url}{ATTACHMENTS_PATH}/{channel_id}/{attachment_id}/{quote(upload.filename)}"
        data: Json = {
            "id": str(attachment_id),
            "filename": upload.filename,
            "size": len(upload.data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if upload.description:
            data["description"] = upload.description
        size = _png_size(upload.data)
        if size is not None:
            data["width"], data["height"] = size
        return data

    def _mentions(
        self, content: str, guild_id: int | None, allowed: Json | None, replied_user_id: int | None
    ) -> tuple[list[FakeUser], list[int], bool]:
        """Who a message pings, from its content and ``allowed_mentions``, as Discord computes it."""
        user_ids = [int(m) for m in _USER_MENTION.findall(content)]
        role_ids = [int(m) for m in _ROLE_MENTION.findall(content)]
        everyone = "@everyone" in content or "@here" in content
        replied = True
        if allowed is not None:
            parse = set(allowed.get("parse") or [])
            allowed_users = {int(u) for u in allowed.get("users") or []}
            allowed_roles = {int(r) for r in allowed.get("roles") or []}
            user_ids = [u for u in user_ids if "users" in parse or u in allowed_users]
            role_ids = [r for r in role_ids if "roles" in parse or r in allowed_roles]
            everyone = everyone and "everyone" in parse
            replied = bool(allowed.get("replied_user", False))
        if replied_user_id is not None and replied:
            user_ids.append(replied_user_id)
        users: list[FakeUser] = []
        for user_id in dict.fromkeys(user_ids):
            user = self.users.get(user_id)
            if user is not None:
                users.append(user)
        guild = self.guilds.get(guild_id) if guild_id is not None else None
        roles = [r for r in dict.fromkeys(role_ids) if guild is not None and r in guild.roles]
        return users, roles, everyone

    def _store_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        *,
        content: str = "",
        embeds: list[Json] | None = None,
        components: list[Json] | None = None,
        uploads: Sequence[Upload] = (),
        kept_attachments: Sequence[Json] = (),
        flags: int = 0,
        message_type: int = 0,
        reference: StoredMessage | None = None,
        allowed_mentions: Json | None = None,
        nonce: str | None = None,
        webhook_id: int | None = None,
        interaction: InteractionRecord | None = None,
        tts: bool = False,
    ) -> StoredMessage:
        message_id = self._ids.next()
        replied_user = reference.author_id if reference is not None else None
        mentions, role_mentions, everyone = self._mentions(
            content, channel.guild_id, allowed_mentions, replied_user
        )
        data: Json = {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": iso(snowflake_time(message_id)),
            "edited_timestamp": None,
            "tts": tts,
            "mention_everyone": everyone,
            "mentions": [u.payload() for u in mentions],
            "mention_roles": [str(r) for r in role_mentions],
            "attachments": [*kept_attachments, *(self._attachment(channel.id, u) for u in uploads)],
            "embeds": embeds or [],
            "pinned": False,
            "type": message_type,
            "flags": flags,
            "components": components or [],
        }
        if nonce is not None:
            data["nonce"] = nonce
        if webhook_id is not None:
            data["webhook_id"] = str(webhook_id)
            data["application_id"] = str(self.application_id)
        if interaction is not None:
            data["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user.payload(),
                "authorizing_integration_owners": interaction.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
            if interaction.type == INTERACTION_COMMAND:
                data["interaction_metadata"]["name"] = interaction.payload["data"]["name"]
        if reference is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(reference.id),
                "channel_id": str(reference.channel_id),
                **({"guild_id": str(reference.guild_id)} if reference.guild_id is not None else {}),
            }
            data["referenced_message"] = self.message_payload(reference)
        if channel.is_thread:
            data["position"] = channel.message_count
        message = StoredMessage(
            data=data,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=author.id,
            files=list(uploads),
            allowed_mentions=allowed_mentions,
            interaction_id=interaction.id if interaction else None,
            nonce=nonce,
        )
        self.messages[message_id] = message
        self._channel_messages[channel.id].append(message)
        if not message.ephemeral:
            channel.last_message_id = message_id
            channel.message_count += 1
        return message

    def _edit_message(
        self, message: StoredMessage, body: Json, uploads: Sequence[Upload], *, mark_edited: bool = True
    ) -> None:
        """Apply a PATCH-style body, keeping the previous version."""
        message.versions.append(json.loads(json.dumps(message.data)))
        data = message.data
        if "content" in body:
            data["content"] = body["content"] or ""
            allowed = body.get("allowed_mentions", message.allowed_mentions)
            mentions, roles, everyone = self._mentions(data["content"], message.guild_id, allowed, None)
            data["mentions"] = [u.payload() for u in mentions]
            data["mention_roles"] = [str(r) for r in roles]
            data["mention_everyone"] = everyone
        if "embeds" in body:
            data["embeds"] = body["embeds"] or []
        if "components" in body:
            data["components"] = body["components"] or []
        if "flags" in body and body["flags"] is not None:
            keep = data.get("flags", 0) & (FLAG_EPHEMERAL | FLAG_HAS_THREAD)
            data["flags"] = keep | (int(body["flags"]) & ~(FLAG_EPHEMERAL | FLAG_LOADING))
        if "attachments" in body or uploads:
            kept_ids = {str(a.get("id")) for a in body.get("attachments") or []}
            kept = (
                [a for a in data["attachments"] if a["id"] in kept_ids]
                if "attachments" in body
                else data["attachments"]
            )
            data["attachments"] = [*kept, *(self._attachment(message.channel_id, u) for u in uploads)]
            message.files.extend(uploads)
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if data.get("flags", 0) & FLAG_LOADING:
            data["flags"] &= ~FLAG_LOADING  # the deferred "thinking" message becomes the answer
        elif mark_edited:
            data["edited_timestamp"] = _now_iso()

    # ---------------------------------------------------------------- validation like Discord's

    def _validate_message(
        self, body: Json, uploads: Sequence[Upload], *, creating: bool, existing: StoredMessage | None = None
    ) -> None:
        errors = _FormErrors()
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            errors.add(["content"], "STRING_TYPE_CONVERT", "Could not interpret value as string.")
        elif isinstance(content, str):
            errors.max_length(["content"], content, MAX_MESSAGE_CHARS)
        embeds = body.get("embeds") or []
        if len(embeds) > MAX_EMBEDS:
            errors.add(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
        total = 0
        for index, embed in enumerate(embeds):
            limits = {"title": 256, "description": 4096}
            for key, limit in limits.items():
                errors.max_length(["embeds", index, key], embed.get(key), limit)
                total += len(embed.get(key) or "")
            for f_index, embed_field in enumerate(embed.get("fields") or []):
                errors.max_length(["embeds", index, "fields", f_index, "name"], embed_field.get("name"), 256)
                errors.max_length(
                    ["embeds", index, "fields", f_index, "value"], embed_field.get("value"), 1024
                )
                total += len(embed_field.get("name") or "") + len(embed_field.get("value") or "")
            total += len((embed.get("footer") or {}).get("text") or "") + len(
                (embed.get("author") or {}).get("name") or ""
            )
        if total > MAX_EMBED_TOTAL_CHARS:
            errors.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        if len(uploads) > MAX_FILES_PER_MESSAGE:
            errors.add(
                ["files"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES_PER_MESSAGE} or fewer in length."
            )
        errors.raise_if_any()
        if any(len(u.data) > ATTACHMENT_SIZE_LIMIT_BYTES for u in uploads):
            raise DiscordAPIError(413, 40005, "Request entity too large")
        if creating:
            has_body = bool(
                (content or "").strip()
                or embeds
                or uploads
                or body.get("sticker_ids")
                or body.get("components")
                or body.get("poll")
            )
            if not has_body:
                raise DiscordAPIError(400, 50006, "Cannot send an empty message")
        elif existing is not None:
            after_content = body.get("content", existing.content)
            after_embeds = body["embeds"] if "embeds" in body else existing.data["embeds"]
            after_components = body.get("components", existing.components)
            after_files = (
                body.get("attachments") if "attachments" in body else existing.data["attachments"]
            ) or uploads
            if not ((after_content or "").strip() or after_embeds or after_components or after_files):
                raise DiscordAPIError(400, 50006, "Cannot send an empty message")

    # ---------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        """One gateway connection: HELLO, then IDENTIFY or RESUME, heartbeats, member requests."""
        await self._gateway_open.wait()  # held during gateway_outage(), like a gateway that is down
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0, timeout=5.0)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        query = dict(request.query)
        if not self.gateway_compression:
            query.pop("compress", None)
        connection = _GatewayConnection(ws, path=request.path, query=query, opened_at=loop.time())
        self.gateway_connections.append(connection)
        try:
            if request.query.get("v", "10") != "10":
                await connection.close(4012, "Invalid API version")
                return ws
            if request.query.get("encoding", "json") != "json":
                await connection.close(4002, "Decode error")
                return ws
            await connection.send(
                {
                    "op": 10,
                    "d": {
                        "heartbeat_interval": self.heartbeat_interval_ms,
                        "_trace": ['["gateway-stand-in",{"micros":0}]'],
                    },
                    "s": None,
                    "t": None,
                }
            )
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(frame.data)
                except ValueError:
                    await connection.close(4002, "Decode error")
                    break
                await self._gateway_op(connection, payload)
        finally:
            session = connection.session
            by_server = connection.server_close_code is not None
            code = connection.server_close_code if by_server else ws.close_code
            if session is not None and session.connection is connection:
                session.connection = None
                if not by_server and code in (1000, 1001):
                    session.resumable = False  # a clean close ends the session, as on Discord
                    if self._session is session:
                        self._session = None
            self.gateway_closes.append(GatewayClose(code, by_server, loop.time()))
            await self._notify()
        return ws

    async def _gateway_op(self, connection: _GatewayConnection, payload: Json) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:  # heartbeat
            await connection.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(connection, data or {})
        elif op == 6:
            await self._resume(connection, data or {})
        elif op == 8:
            await self._request_members(connection, data or {})
        elif op in (3, 4):  # presence and voice state updates: accepted, not modelled
            return
        elif connection.session is None:
            await connection.close(4003, "Not authenticated.")
        else:
            await connection.close(4001, "Unknown opcode.")

    async def _identify(self, connection: _GatewayConnection, data: Json) -> None:
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~_ALL_INTENTS:
            await connection.close(4013, "Invalid intent(s).")
            return
        disallowed = [
            n for n, bit in PRIVILEGED_INTENTS.items() if intents & bit and n not in self.privileged_intents
        ]
        if disallowed:
            self.identifies.append({k: v for k, v in data.items() if k != "token"})
            await connection.close(4014, "Disallowed intent(s).")
            return
        if self._session is not None:
            self._session.resumable = False
        session = _GatewaySession(
            session_id=secrets.token_hex(16),
            intents=intents,
            identify={k: v for k, v in data.items() if k != "token"},
        )
        self._sessions[session.session_id] = session
        self._session = session
        self.identifies.append(session.identify)
        async with session.lock:
            session.connection = connection
            connection.session = session
            ready = {
                "v": 10,
                "user": self._client_user_payload(),
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "session_id": session.session_id,
                "resume_gateway_url": self.resume_gateway_url,
                "session_type": "normal",
                "application": {"id": str(self.application_id), "flags": self._application_flags()},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
                "_trace": ['["gateway-stand-in",{"micros":0}]'],
            }
            await self._send_dispatch(session, "READY", ready)
            if session.wants(INTENT_GUILDS):
                for guild in self.guilds.values():
                    await self._send_dispatch(
                        session, "GUILD_CREATE", self._guild_create_payload(guild, session)
                    )
        await self._notify()

    async def _resume(self, connection: _GatewayConnection, data: Json) -> None:
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not session.resumable or session is not self._session:
            await connection.send({"op": 9, "d": False, "s": None, "t": None})
            return
        seq = int(data.get("seq") or 0)
        async with session.lock:
            old = session.connection
            if old is not None and old is not connection and not old.closed:
                await old.close(4000, "Session resumed elsewhere")
            session.connection = connection
            connection.session = session
            missed = [p for p in session.log if p["s"] > seq]
            for payload in missed:
                await connection.send(payload)
            await self._send_dispatch(session, "RESUMED", {"_trace": ['["gateway-stand-in",{"micros":0}]']})
        self.resumes.append(ResumeRecord(session.session_id, seq, len(missed)))
        await self._notify()

    async def _request_members(self, connection: _GatewayConnection, data: Json) -> None:
        """Answer REQUEST_GUILD_MEMBERS with one GUILD_MEMBERS_CHUNK (needs the members intent)."""
        session = connection.session
        guild = self.guilds.get(_int(data.get("guild_id")) or 0)
        if session is None or guild is None or not session.wants(INTENT_GUILD_MEMBERS):
            return
        query = str(data.get("query") or "").lower()
        wanted = {int(u) for u in data.get("user_ids") or []}
        members = [
            m
            for m in guild.members.values()
            if (not wanted or m.id in wanted) and m.user.name.lower().startswith(query)
        ]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: Json = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        async with session.lock:
            await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _send_dispatch(self, session: _GatewaySession, event: str, data: Json) -> None:
        """Number, log and (if connected) send one dispatch. The caller holds ``session.lock``."""
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(payload)
        connection = session.connection
        live = connection is not None and await connection.send(payload)
        at = asyncio.get_running_loop().time()
        self.dispatched.append(DispatchRecord(session.seq, event, data, live, at))

    async def _dispatch(
        self,
        event: str,
        data: Json | Callable[[_GatewaySession], Json],
        *,
        intent: int | None = None,
        channel: FakeChannel | None = None,
    ) -> bool:
        """Dispatch to the bot's session if its intents and permissions let Discord send it."""
        session = self._session
        if session is None or not session.resumable:
            return False
        if intent is not None and not session.wants(intent):
            return False
        if channel is not None and not channel.is_dm and not self.bot_can(channel, "view_channel"):
            return False
        payload = data(session) if callable(data) else data
        async with session.lock:
            await self._send_dispatch(session, event, payload)
        await self._notify()
        return True

    def _message_intent(self, message: StoredMessage) -> int:
        return INTENT_DIRECT_MESSAGES if message.guild_id is None else INTENT_GUILD_MESSAGES

    def _gateway_message(self, message: StoredMessage, session: _GatewaySession) -> Json:
        """The MESSAGE_CREATE/UPDATE body; without MESSAGE_CONTENT, others' guild messages come blank."""
        data = self.message_payload(message, for_gateway=True)
        if not session.wants(INTENT_MESSAGE_CONTENT) and message.guild_id is not None:
            mentioned = any(int(u["id"]) == self.bot_user.id for u in data.get("mentions", []))
            if message.author_id != self.bot_user.id and not mentioned:
                data.update(content="", embeds=[], attachments=[], components=[])
                data.pop("poll", None)
        return data

    async def _dispatch_message_create(self, message: StoredMessage) -> None:
        await self._dispatch_message("MESSAGE_CREATE", message)

    async def _dispatch_message_update(self, message: StoredMessage) -> None:
        await self._dispatch_message("MESSAGE_UPDATE", message)

    async def _dispatch_message(self, event: str, message: StoredMessage) -> None:
        if message.ephemeral:
            return  # ephemeral messages exist only for their user, never on the gateway
        await self._dispatch(
            event,
            lambda s: self._gateway_message(message, s),
            intent=self._message_intent(message),
            channel=self.channels[message.channel_id],
        )

    async def _dispatch_message_delete(self, message: StoredMessage) -> None:
        if message.ephemeral:
            return
        data: Json = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self._dispatch(
            "MESSAGE_DELETE",
            data,
            intent=self._message_intent(message),
            channel=self.channels[message.channel_id],
        )

    # ---------------------------------------------------------------- controlling the gateway

    @property
    def connected(self) -> bool:
        """True while the bot's session has a live websocket."""
        session = self._session
        return session is not None and session.connection is not None and not session.connection.closed

    async def disconnect_gateway(self, code: int = 4000, reason: str = "stand-in disconnect") -> None:
        """Close the bot's websocket with ``code``; 4000 and the like are resumable, as on Discord,
        4007 and 4009 end the session (``NEW_SESSION_CLOSE_CODES``): the bot gets a new READY."""
        session = self._session
        connection = session.connection if session else None
        if connection is None or connection.closed:
            raise RuntimeError("the bot has no live gateway connection to close")
        if session is not None and code in NEW_SESSION_CLOSE_CODES:
            session.resumable = False
        await connection.close(code, reason)
        await self.wait_for(lambda: session is not None and session.connection is not connection)

    @contextlib.asynccontextmanager
    async def gateway_outage(self, code: int = 4000) -> AsyncIterator[None]:
        """Disconnect the bot and hold its reconnection until the block ends; dispatches made inside
        wait in the session and reach the bot through RESUME."""
        self._gateway_open.clear()
        try:
            await self.disconnect_gateway(code)
            yield
        finally:
            self._gateway_open.set()

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT, which makes discord.py close and RESUME."""
        session = self._session
        if session is None or session.connection is None:
            raise RuntimeError("the bot has no live gateway connection")
        await session.connection.send({"op": 7, "d": None, "s": None, "t": None})

    # ---------------------------------------------------------------- acting as users

    async def user_message(
        self,
        channel_id: int,
        author: FakeUser | int,
        content: str = "",
        *,
        mentions_bot: bool = False,
        attachments: Sequence[Upload] = (),
        reply_to: int | None = None,
        embeds: list[Json] | None = None,
    ) -> Json:
        """A user posts in a channel, thread or DM; MESSAGE_CREATE goes to the bot. Returns the message."""
        channel = self.channels[channel_id]
        user = self._user(author)
        guild = self._guild_of(channel)
        if guild is not None and user.id not in guild.members:
            raise ValueError(f"{user.name} is not a member of {guild.name}")
        if channel.is_dm and channel.recipient_id != user.id:
            raise ValueError(f"{user.name} is not in DM channel {channel.id}")
        if mentions_bot and not re.search(rf"<@!?{self.bot_user.id}>", content):
            content = f"{self.bot_user.mention} {content}".rstrip()
        if len(content) > MAX_USER_MESSAGE_CHARS:
            raise ValueError(f"users cannot send more than {MAX_USER_MESSAGE_CHARS} characters")
        reference = self.messages[reply_to] if reply_to is not None else None
        message = self._store_message(
            channel,
            user,
            content=content,
            uploads=attachments,
            embeds=embeds,
            reference=reference,
            message_type=19 if reference else 0,
        )
        await self._dispatch_message_create(message)
        await self._notify()
        return self.message_payload(message)

    async def dm_message(self, author: FakeUser | int, content: str = "", **kwargs: Any) -> Json:
        """A user writes to the bot in DMs (the DM channel is made on first use)."""
        channel = self.dm_channel(author)
        return await self.user_message(channel.id, author, content, **kwargs)

    async def user_edits_message(self, message_id: int, content: str) -> Json:
        """A user edits their message; MESSAGE_UPDATE goes to the bot."""
        message = self.messages[message_id]
        self._edit_message(message, {"content": content}, ())
        await self._dispatch_message_update(message)
        await self._notify()
        return self.message_payload(message)

    async def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | int,
        channel_id: int,
    ) -> InteractionRecord:
        """A user runs ``/name`` (``"group sub"`` for subcommands) with ``options`` by option name.

        The command must have been registered (synced) by the bot, as on Discord. Option values are
        plain values; users, channels and roles may be given as their fakes or ids, attachments as
        ``Upload``s. The interaction's guild is the channel's.
        """
        channel = self.channels[channel_id]
        data = self._command_data(name, options or {}, channel, focused=None)
        return await self._dispatch_interaction(INTERACTION_COMMAND, data, self._user(user), channel)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: FakeUser | int,
        channel_id: int,
    ) -> InteractionRecord:
        """A user is typing option ``focused`` of ``/name``; the bot's choices land in
        ``record.autocomplete_choices``. Required options may still be missing, as while typing."""
        channel = self.channels[channel_id]
        data = self._command_data(name, options, channel, focused=focused)
        return await self._dispatch_interaction(INTERACTION_AUTOCOMPLETE, data, self._user(user), channel)

    def _command_data(
        self, name: str, options: Mapping[str, Any], channel: FakeChannel, *, focused: str | None
    ) -> Json:
        parts = name.split()
        command = None
        if channel.guild_id is not None:
            command = self.guild_commands.get(channel.guild_id, {}).get(parts[0])
        command = command or self.global_commands.get(parts[0])
        if command is None or command.get("type", 1) != 1:
            raise LookupError(f"/{parts[0]} is not a registered slash command (did the bot sync its tree?)")
        resolved: Json = {}
        schema: list[Json] = command.get("options") or []
        top: list[Json] = []
        leaf = top
        for part in parts[1:]:
            sub = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"/{name}: no subcommand {part!r}")
            node: Json = {"name": part, "type": sub["type"], "options": []}
            leaf.append(node)
            leaf = node["options"]
            schema = sub.get("options") or []
        leaf.extend(self._command_options(schema, options, channel, resolved, focused=focused))
        data: Json = {"id": command["id"], "name": parts[0], "type": 1, "options": top}
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    def _command_options(
        self,
        schema: list[Json],
        values: Mapping[str, Any],
        channel: FakeChannel,
        resolved: Json,
        *,
        focused: str | None,
    ) -> list[Json]:
        by_name = {o["name"]: o for o in schema}
        unknown = set(values) - set(by_name)
        if focused is not None and focused not in values:
            raise ValueError(f"give the focused option {focused!r} the text typed so far")
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; the command has {sorted(by_name)}")
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing and focused is None:
            raise ValueError(f"required options missing: {missing}")
        guild = self._guild_of(channel)
        built = []
        for option_name, value in values.items():
            kind = by_name[option_name]["type"]
            if option_name == focused:  # what has been typed so far, always a string
                built.append({"name": option_name, "type": kind, "value": str(value), "focused": True})
                continue
            if (
                kind in (6, 9)
                and isinstance(value, FakeUser | int)
                and (isinstance(value, FakeUser) or value in self.users)
            ):
                user = self._user(value)
                resolved.setdefault("users", {})[str(user.id)] = user.payload()
                if guild is not None and user.id in guild.members:
                    member = guild.members[user.id].payload(
                        with_user=False, permissions=self.channel_permissions(channel, user.id)
                    )
                    resolved.setdefault("members", {})[str(user.id)] = member
                value = str(user.id)
            elif kind == 7:
                target = value if isinstance(value, FakeChannel) else self.channels[int(value)]
                entry = self.channel_payload(target)
                entry["permissions"] = str(self.channel_permissions(target, self.bot_user.id))
                resolved.setdefault("channels", {})[str(target.id)] = entry
                value = str(target.id)
            elif kind in (8, 9):
                role = value if isinstance(value, FakeRole) else guild.roles[int(value)] if guild else None
                if role is None:
                    raise ValueError(f"option {option_name}: no such role {value!r}")
                resolved.setdefault("roles", {})[str(role.id)] = role.payload()
                value = str(role.id)
            elif kind == 11:
                if not isinstance(value, Upload):
                    raise ValueError(f"option {option_name} is an attachment: pass an Upload")
                attachment = self._attachment(channel.id, value)
                resolved.setdefault("attachments", {})[attachment["id"]] = attachment
                value = attachment["id"]
            built.append({"name": option_name, "type": kind, "value": value})
        return built

    async def click_button(
        self, message_id: int, custom_id: str, *, user: FakeUser | int
    ) -> InteractionRecord:
        """A user clicks an enabled button of a message; INTERACTION_CREATE (type 3) goes to the bot."""
        message = self.messages[message_id]
        button = self._find_component(message, custom_id)
        if button.get("type") != 2:
            raise ValueError(f"component {custom_id!r} is not a button")
        data = {"custom_id": custom_id, "component_type": 2}
        if "id" in button:
            data["id"] = button["id"]
        return await self._dispatch_interaction(
            INTERACTION_COMPONENT, data, self._user(user), self.channels[message.channel_id], message=message
        )

    async def choose(
        self, message_id: int, custom_id: str, values: Sequence[str], *, user: FakeUser | int
    ) -> InteractionRecord:
        """A user picks ``values`` in a select menu of a message."""
        message = self.messages[message_id]
        select = self._find_component(message, custom_id)
        kind = int(select.get("type", 0))
        if kind not in (3, 5, 6, 7, 8):
            raise ValueError(f"component {custom_id!r} is not a select menu")
        if kind == 3:
            offered = {o["value"] for o in select.get("options", [])}
            if not set(values) <= offered:
                raise ValueError(f"{sorted(set(values) - offered)} are not options of {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": kind, "values": list(values)}
        return await self._dispatch_interaction(
            INTERACTION_COMPONENT, data, self._user(user), self.channels[message.channel_id], message=message
        )

    def _find_component(self, message: StoredMessage, custom_id: str) -> Json:
        for component in _walk_components(message.components):
            if component.get("custom_id") == custom_id:
                if component.get("disabled"):
                    raise ValueError(
                        f"component {custom_id!r} is disabled; Discord would not let a user use it"
                    )
                return component
        raise ValueError(f"message {message.id} has no component {custom_id!r}")

    async def submit_modal(
        self,
        shown_by: InteractionRecord,
        values: Mapping[str, str | Sequence[str]],
        *,
        user: FakeUser | int | None = None,
    ) -> InteractionRecord:
        """Submit the modal the bot answered ``shown_by`` with (callback type 9), fields by custom_id."""
        modal = shown_by.modal
        if modal is None:
            raise ValueError(f"interaction {shown_by.id} was not answered with a modal")
        inputs = [c for c in _walk_components(modal.get("components")) if c.get("custom_id")]
        unknown = set(values) - {c["custom_id"] for c in inputs}
        if unknown:
            raise ValueError(f"the modal has no fields {sorted(unknown)}")
        for component in inputs:
            if (
                component.get("type") == 4
                and component.get("required", True)
                and not values.get(component["custom_id"])
            ):
                raise ValueError(f"field {component['custom_id']!r} is required")

        def submitted(component: Json) -> Json:
            custom_id = component["custom_id"]
            if component.get("type") == 4:
                return {"type": 4, "custom_id": custom_id, "value": str(values.get(custom_id, ""))}
            chosen = values.get(custom_id, [])
            return {
                "type": component.get("type"),
                "custom_id": custom_id,
                "values": [chosen] if isinstance(chosen, str) else list(chosen),
            }

        rows = []
        for row in modal.get("components", []):
            if row.get("type") == 1:
                rows.append({"type": 1, "components": [submitted(c) for c in row.get("components", [])]})
            elif row.get("type") == 18 and isinstance(row.get("component"), dict):
                rows.append({"type": 18, "component": submitted(row["component"])})
        data = {"custom_id": modal["custom_id"], "components": rows}
        message = self.messages.get(shown_by.message_id) if shown_by.message_id else None
        return await self._dispatch_interaction(
            INTERACTION_MODAL_SUBMIT,
            data,
            self._user(user or shown_by.user),
            self.channels[shown_by.channel_id],
            message=message,
        )

    async def _dispatch_interaction(
        self,
        kind: int,
        data: Json,
        user: FakeUser,
        channel: FakeChannel,
        *,
        message: StoredMessage | None = None,
    ) -> InteractionRecord:
        if self._session is None:
            raise RuntimeError("the bot is not connected to the gateway")
        guild = self._guild_of(channel)
        if guild is not None and user.id not in guild.members:
            raise ValueError(f"{user.name} is not a member of {guild.name}")
        interaction_id = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        channel_data = self.channel_payload(channel)
        channel_data["permissions"] = str(self.channel_permissions(channel, user.id))
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel.id),
            "channel": channel_data,
            "token": token,
            "version": 1,
            "app_permissions": str(self.channel_permissions(channel, self.bot_user.id)),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT_BYTES,
        }
        if guild is not None:
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=guild.members[user.id].payload(permissions=self.channel_permissions(channel, user.id)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=user.payload(), authorizing_integration_owners={"0": str(self.owner.id)}, context=1
            )
        if message is not None:
            payload["message"] = self.message_payload(message)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            payload=payload,
            user=user,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            message_id=message.id if message else None,
        )
        self.interactions[interaction_id] = record
        self._interactions_by_token[token] = record
        record.dispatched_at = asyncio.get_running_loop().time()
        await self._dispatch("INTERACTION_CREATE", payload)
        return record

    # ---------------------------------------------------------------- rate limits and faults

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
        self._failures.append(_InjectedFailure(kind, status, count, retry_after, scope, applied))

    @contextlib.asynccontextmanager
    async def holding(self, kind: str) -> AsyncIterator[None]:
        """Requests of route ``kind`` wait unanswered until the block ends (Discord being slow there);
        each is recorded in ``held`` as it arrives, and then handled as usual."""
        gate = self._holds[kind] = asyncio.Event()
        try:
            yield
        finally:
            del self._holds[kind]
            gate.set()

    def use_up_bucket(self, kind: str, channel_id: int) -> None:
        """Empty a per-channel bucket, as if another process with the same token (the bot's previous
        run) had just used it; discord.py cannot know, so its next request meets a 429."""
        rule = self.rate_limits.get(kind)
        if rule is None:
            raise ValueError(f"route {kind!r} has no rate limit")
        bucket = self._bucket(kind, channel_id, rule)
        now = asyncio.get_running_loop().time()
        if now >= bucket.reset_at:
            bucket.reset_at = now + rule.per_s
        bucket.count = rule.limit

    def rate_limit_hits_of(self, scope: str | None = None, kind: str | None = None) -> list[RateLimitHit]:
        return [
            h
            for h in self.rate_limit_hits
            if (scope is None or h.scope == scope) and (kind is None or h.kind == kind)
        ]

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
        return _json_response(
            429,
            {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": scope == "global",
            },
            all_headers,
        )

    # ---------------------------------------------------------------- REST plumbing

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, str, _Handler]] = [
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
        app.router.add_get(ATTACHMENTS_PATH + "/{channel_id}/{attachment_id}/{filename}", self._cdn)

    def _endpoint(
        self, method: str, route: str, kind: str, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, route, kind, handler)

        return endpoint

    async def _serve(
        self, request: web.Request, route: str, kind: str, handler: _Handler
    ) -> web.StreamResponse:
        """Authenticate, apply the global limit, injected faults and per-route buckets, run, record."""
        loop = asyncio.get_running_loop()
        call = RestCall(
            request.method,
            route,
            kind,
            request.path,
            _int(request.match_info.get("channel_id")),
            at=loop.time(),
            query=dict(request.query),
        )
        try:
            call.json, call.files = await self._read_body(request)
            response = await self._answer(_ApiRequest(request, call, call.json, call.files), handler)
        except DiscordAPIError as exc:
            response = exc.response()
        response.headers["Via"] = "1.1 google"
        call.status = response.status
        self.calls.append(call)
        await self._notify()
        return response

    async def _answer(self, req: _ApiRequest, handler: _Handler) -> web.StreamResponse:
        call = req.call
        now = call.at
        if (
            call.kind not in _NO_AUTH_KINDS
            and req.request.headers.get("Authorization") != f"Bot {self.token}"
        ):
            return _json_response(401, {"message": "401: Unauthorized", "code": 0})
        if self.global_limit is not None and call.kind not in _GLOBAL_EXEMPT_KINDS:
            window = self._global_window
            while window and window[0] <= now - self.global_window_s:
                window.popleft()
            if len(window) >= self.global_limit:
                retry_after = window[0] + self.global_window_s - now
                self.rate_limit_hits.append(
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
        rule = self.rate_limits.get(call.kind)
        if rule is not None:
            major = call.channel_id or _int(req.request.match_info.get("guild_id"))
            bucket = self._bucket(call.kind, major, rule)
            if now >= bucket.reset_at:
                bucket.count, bucket.reset_at = 0, now + rule.per_s
            if bucket.count >= rule.limit:
                retry_after = bucket.reset_at - now
                self.rate_limit_hits.append(
                    RateLimitHit(call.kind, call.route, "user", call.channel_id, retry_after, now)
                )
                return self._too_many(retry_after, scope="user", headers=self._bucket_headers(bucket, now))
            bucket.count += 1
            headers = self._bucket_headers(bucket, now)
        gate = self._holds.get(call.kind)
        if gate is not None:
            self.held.append(call)
            await self._notify()
            await gate.wait()
        try:
            response = await handler(req)
        except DiscordAPIError as exc:
            response = exc.response()
        if failure is not None:
            response = self._injected(failure, call, now)
        response.headers.update(headers)
        return response

    def _injected(self, failure: _InjectedFailure, call: RestCall, now: float) -> web.Response:
        if failure.status == 429:
            self.rate_limit_hits.append(
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
        return _json_response(failure.status, {"message": f"{failure.status}: Server Error", "code": 0})

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        """JSON, or multipart with ``payload_json`` and ``files[n]`` as discord.py sends attachments."""
        if request.content_type == "multipart/form-data":
            payload: Any = None
            indexed: list[tuple[int, Upload]] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                if name == "payload_json":
                    payload = json.loads(await part.text())
                elif name.startswith("files["):
                    index = _int(name[6:-1]) or 0
                    indexed.append(
                        (
                            index,
                            Upload(
                                part.filename or "file",
                                bytes(await part.read()),
                                part.headers.get("Content-Type"),
                            ),
                        )
                    )
            descriptions = {}
            if isinstance(payload, dict):
                body = payload.get("data", payload) if isinstance(payload.get("data"), dict) else payload
                descriptions = {
                    _int(a.get("id")): a.get("description") for a in body.get("attachments") or []
                }
            uploads = [
                Upload(u.filename, u.data, u.content_type, descriptions.get(i))
                for i, u in sorted(indexed, key=lambda p: p[0])
            ]
            return payload, uploads
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise DiscordAPIError(400, 50109, "The request body contains invalid JSON.") from None

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        """The attachment URLs: serves stored bytes (recorded as REST calls of kind "cdn")."""
        loop = asyncio.get_running_loop()
        attachment_id = _int(request.match_info["attachment_id"]) or 0
        upload = self._files.get(attachment_id)
        call = RestCall(
            "GET",
            ATTACHMENTS_PATH + "/{channel_id}/{attachment_id}/{filename}",
            "cdn",
            request.path,
            _int(request.match_info["channel_id"]),
            at=loop.time(),
        )
        if upload is None:
            response = web.Response(status=404, text="Not Found")
        else:
            content_type = (
                mimetypes.guess_type(upload.filename)[0] or upload.content_type or "application/octet-stream"
            )
            response = web.Response(status=200, body=upload.data, headers={"Content-Type": content_type})
        call.status = response.status
        self.calls.append(call)
        await self._notify()
        return response

    def calls_of(self, kind: str, *, status: int | None = None) -> list[RestCall]:
        return [c for c in self.calls if c.kind == kind and (status is None or c.status == status)]

    # ---------------------------------------------------------------- REST handlers

    async def _h_unknown(self, req: _ApiRequest) -> web.StreamResponse:
        return _json_response(404, {"message": "404: Not Found", "code": 0})

    async def _h_gateway(self, req: _ApiRequest) -> web.StreamResponse:
        return _json_response(200, {"url": self.gateway_url})

    async def _h_gateway_bot(self, req: _ApiRequest) -> web.StreamResponse:
        return _json_response(
            200,
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            },
        )

    async def _h_user_me(self, req: _ApiRequest) -> web.StreamResponse:
        return _json_response(200, self._client_user_payload())

    async def _h_user_get(self, req: _ApiRequest) -> web.StreamResponse:
        user = self.users.get(req.int_param("user_id"))
        if user is None:
            raise _unknown("User", 10013)
        return _json_response(200, user.payload())

    async def _h_dm_create(self, req: _ApiRequest) -> web.StreamResponse:
        recipient = _int(req.json.get("recipient_id"))
        if recipient is None or recipient not in self.users or recipient == self.bot_user.id:
            raise _unknown("User", 10013)
        return _json_response(200, self.channel_payload(self.dm_channel(recipient)))

    async def _h_application_me(self, req: _ApiRequest) -> web.StreamResponse:
        return _json_response(200, self.application_payload())

    def _command_store(self, req: _ApiRequest) -> tuple[dict[str, Json], int | None]:
        if req.int_param("application_id") != self.application_id:
            raise DiscordAPIError(403, 50001, "Missing Access")
        guild_id = _int(req.request.match_info.get("guild_id"))
        if guild_id is None:
            return self.global_commands, None
        if guild_id not in self.guilds:
            raise DiscordAPIError(403, 50001, "Missing Access")
        return self.guild_commands.setdefault(guild_id, {}), guild_id

    async def _h_commands_get(self, req: _ApiRequest) -> web.StreamResponse:
        store, _ = self._command_store(req)
        return _json_response(200, list(store.values()))

    async def _h_commands_put(self, req: _ApiRequest) -> web.StreamResponse:
        """Bulk overwrite: the new list replaces the old; a command keeps its id if its name stays."""
        store, guild_id = self._command_store(req)
        body = req.body if isinstance(req.body, list) else None
        if body is None:
            raise DiscordAPIError(
                400,
                50035,
                "Invalid Form Body",
                {"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Must be an array."}]},
            )
        errors = _FormErrors()
        seen: set[tuple[int, str]] = set()
        for index, command in enumerate(body):
            self._validate_command(errors, [index], command)
            key = (int(command.get("type", 1)), str(command.get("name")))
            if key in seen:
                errors.add(
                    [index, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add(key)
        errors.raise_if_any()
        previous = dict(store)
        store.clear()
        for command in body:
            stored = self._stored_command(command, guild_id, previous.get(command["name"]))
            store[stored["name"]] = stored
        return _json_response(200, list(store.values()))

    async def _h_command_create(self, req: _ApiRequest) -> web.StreamResponse:
        store, guild_id = self._command_store(req)
        errors = _FormErrors()
        self._validate_command(errors, [], req.json)
        errors.raise_if_any()
        existing = store.get(req.json["name"])
        stored = self._stored_command(req.json, guild_id, existing)
        store[stored["name"]] = stored
        return _json_response(200 if existing else 201, stored)

    async def _h_command_delete(self, req: _ApiRequest) -> web.StreamResponse:
        store, _ = self._command_store(req)
        command_id = req.param("command_id")
        for name, command in list(store.items()):
            if command["id"] == command_id:
                del store[name]
                return _no_content()
        raise _unknown("application command", 10063)

    def _validate_command(self, errors: _FormErrors, path: list[str | int], command: Json) -> None:
        kind = int(command.get("type", 1))
        name = command.get("name")
        pattern = _COMMAND_NAME if kind == 1 else _MENU_NAME
        if not isinstance(name, str) or not pattern.match(name) or (kind == 1 and name != name.lower()):
            errors.add([*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if kind == 1:
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                errors.add(
                    [*path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            self._validate_options(errors, [*path, "options"], command.get("options") or [])

    def _validate_options(self, errors: _FormErrors, path: list[str | int], options: list[Json]) -> None:
        if len(options) > 25:
            errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        optional_seen = False
        for index, option in enumerate(options):
            name = option.get("name")
            if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
                errors.add(
                    [*path, index, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            description = option.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                errors.add(
                    [*path, index, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            if option.get("type") in (1, 2):
                self._validate_options(errors, [*path, index, "options"], option.get("options") or [])
            elif option.get("required"):
                if optional_seen:
                    errors.add(
                        [*path, index, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                optional_seen = True
            if len(option.get("choices") or []) > 25:
                errors.add(
                    [*path, index, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )

    def _stored_command(self, command: Json, guild_id: int | None, previous: Json | None) -> Json:
        stored: Json = {
            "id": previous["id"] if previous else str(self._ids.next()),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "type": int(command.get("type", 1)),
            "name": command["name"],
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description", ""),
            "description_localizations": command.get("description_localizations"),
            "default_member_permissions": command.get("default_member_permissions"),
            "dm_permission": command.get("dm_permission", True),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types") or [0],
            "nsfw": bool(command.get("nsfw", False)),
        }
        if command.get("options"):
            stored["options"] = command["options"]
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored

    async def _h_guild_get(self, req: _ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise _unknown("Guild", 10004)
        return _json_response(200, self.guild_payload(guild))

    async def _h_guild_channels(self, req: _ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise _unknown("Guild", 10004)
        return _json_response(200, [self.channel_payload(self.channels[c]) for c in guild.channel_ids])

    async def _h_member_get(self, req: _ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise _unknown("Guild", 10004)
        member = guild.members.get(req.int_param("user_id"))
        if member is None:
            raise _unknown("Member", 10007)
        return _json_response(200, member.payload())

    async def _h_threads_active(self, req: _ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise _unknown("Guild", 10004)
        threads = [self.channels[t] for t in self._threads_of(guild)]
        members = [
            self.thread_member_payload(t, self.bot_user.id)
            for t in threads
            if self.bot_user.id in t.member_ids
        ]
        return _json_response(
            200, {"threads": [self.channel_payload(t) for t in threads], "members": members}
        )

    async def _h_channel_get(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        return _json_response(200, self.channel_payload(channel))

    async def _h_channel_edit(self, req: _ApiRequest) -> web.StreamResponse:
        """Thread edits (rename, archive, lock); guild channel edits need Manage Channels."""
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        body = req.json
        if not channel.is_thread:
            self._require_bot(channel, "manage_channels")
        elif channel.owner_id != self.bot_user.id:
            self._require_bot(channel, "manage_threads")
        errors = _FormErrors()
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not name.strip():
                errors.add(["name"], "BASE_TYPE_REQUIRED", "This field is required")
            else:
                errors.max_length(["name"], name, MAX_THREAD_NAME_CHARS)
        if "auto_archive_duration" in body and body["auto_archive_duration"] not in THREAD_ARCHIVE_MINUTES:
            errors.add(["auto_archive_duration"], "BASE_TYPE_CHOICES", _ARCHIVE_CHOICES_MESSAGE)
        errors.raise_if_any()
        if "name" in body:
            channel.name = body["name"]
        if "topic" in body and not channel.is_thread:
            channel.topic = body["topic"]
        if channel.is_thread:
            channel.archived = bool(body.get("archived", channel.archived))
            channel.locked = bool(body.get("locked", channel.locked))
            channel.auto_archive_duration = int(
                body.get("auto_archive_duration", channel.auto_archive_duration)
            )
        event = "THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE"
        await self._dispatch(event, self.channel_payload(channel), intent=INTENT_GUILDS, channel=channel)
        return _json_response(200, self.channel_payload(channel))

    def _message_in(self, channel: FakeChannel, message_id: int) -> StoredMessage:
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise _unknown("Message", 10008)
        return message

    async def _h_messages_list(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        query = req.request.query
        limit = _int(query.get("limit", "50"))
        if limit is None or not 1 <= limit <= 100:
            raise _form_error("limit", "NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")
        if not self.bot_can(channel, "read_message_history"):
            return _json_response(200, [])
        visible = self.messages_in(channel.id, include_ephemeral=False)
        before, after, around = (_int(query.get(k)) for k in ("before", "after", "around"))
        if around is not None:
            older = [m for m in visible if m.id <= around][-((limit + 1) // 2) :]
            newer = [m for m in visible if m.id > around][: limit - len(older)]
            chosen = older + newer
        elif after is not None:
            chosen = [m for m in visible if m.id > after][:limit]
        else:
            chosen = [m for m in visible if before is None or m.id < before][-limit:]
        chosen.sort(key=lambda m: m.id, reverse=True)
        return _json_response(200, [self.message_payload(m) for m in chosen])

    async def _h_message_get(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, "read_message_history")
        return _json_response(
            200, self.message_payload(self._message_in(channel, req.int_param("message_id")))
        )

    def _send_permission(self, channel: FakeChannel) -> str:
        return "send_messages_in_threads" if channel.is_thread else "send_messages"

    async def _h_message_create(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, self._send_permission(channel))
        body = req.json
        if req.files:
            self._require_bot(channel, "attach_files")
        if channel.is_thread and channel.archived:
            if channel.locked:
                raise DiscordAPIError(400, 50083, "Thread is archived")
            channel.archived = False
        self._validate_message(body, req.files, creating=True)
        nonce = body.get("nonce")
        nonce = None if nonce is None else str(nonce)
        if nonce is not None and body.get("enforce_nonce"):
            for earlier in self.messages_in(channel.id):
                if earlier.nonce == nonce and earlier.author_id == self.bot_user.id:
                    return _json_response(200, self.message_payload(earlier))  # Discord dedupes on the nonce
        reference = None
        ref = body.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id") is not None:
            reference = self.messages.get(int(ref["message_id"]))
            if reference is None or reference.deleted:
                if ref.get("fail_if_not_exists", True):
                    raise _form_error(
                        "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                    )
                reference = None
        message = self._store_message(
            channel,
            self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            uploads=req.files,
            flags=int(body.get("flags") or 0) & ~(FLAG_EPHEMERAL | FLAG_LOADING),
            message_type=19 if reference else 0,
            reference=reference,
            allowed_mentions=body.get("allowed_mentions"),
            nonce=nonce,
            tts=bool(body.get("tts", False)),
        )
        await self._dispatch_message_create(message)
        return _json_response(200, self.message_payload(message))

    async def _h_message_edit(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        message = self._message_in(channel, req.int_param("message_id"))
        body = req.json
        if message.author_id != self.bot_user.id and set(body) - {"flags"}:
            raise DiscordAPIError(403, 50005, "Cannot edit a message authored by another user")
        self._validate_message(body, req.files, creating=False, existing=message)
        self._edit_message(message, body, req.files)
        await self._dispatch_message_update(message)
        return _json_response(200, self.message_payload(message))

    async def _h_message_delete(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        message = self._message_in(channel, req.int_param("message_id"))
        if message.author_id != self.bot_user.id:
            self._require_bot(channel, "manage_messages")
        message.deleted = True
        await self._dispatch_message_delete(message)
        return _no_content()

    def _validate_thread_name(self, name: Any) -> str:
        errors = _FormErrors()
        if not isinstance(name, str) or not name.strip():
            errors.add(["name"], "BASE_TYPE_REQUIRED", "This field is required")
        else:
            errors.max_length(["name"], name, MAX_THREAD_NAME_CHARS)
        errors.raise_if_any()
        return str(name)

    def _validate_archive_duration(self, body: Json) -> int:
        value = body.get("auto_archive_duration") or 1440
        if value not in THREAD_ARCHIVE_MINUTES:
            raise _form_error("auto_archive_duration", "BASE_TYPE_CHOICES", _ARCHIVE_CHOICES_MESSAGE)
        return int(value)

    async def _start_thread(
        self, parent: FakeChannel, thread_id: int, kind: int, name: str, archive_minutes: int
    ) -> FakeChannel:
        thread = FakeChannel(
            thread_id,
            kind,
            name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=self.bot_user.id,
            auto_archive_duration=archive_minutes,
        )
        thread.member_ids.add(self.bot_user.id)
        self._add_channel(thread)

        def created(_: _GatewaySession) -> Json:
            data = self.channel_payload(thread)
            data["newly_created"] = True
            data["member"] = self.thread_member_payload(thread, self.bot_user.id)
            return data

        await self._dispatch("THREAD_CREATE", created, intent=INTENT_GUILDS, channel=thread)
        return thread

    async def _h_thread_from_message(self, req: _ApiRequest) -> web.StreamResponse:
        parent = self._channel(req.int_param("channel_id"))
        self._require_bot(parent)
        if parent.type != GUILD_TEXT:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        self._require_bot(parent, "create_public_threads")
        message = self._message_in(parent, req.int_param("message_id"))
        if message.data.get("thread") is not None:
            raise DiscordAPIError(400, 160004, "A thread has already been created for this message")
        name = self._validate_thread_name(req.json.get("name"))
        minutes = self._validate_archive_duration(req.json)
        # A thread started from a message has the message's id, as on Discord.
        thread = await self._start_thread(parent, message.id, PUBLIC_THREAD, name, minutes)
        message.data["thread"] = self.channel_payload(thread)
        message.data["flags"] = message.flags | FLAG_HAS_THREAD
        return _json_response(201, self.channel_payload(thread))

    async def _h_thread_create(self, req: _ApiRequest) -> web.StreamResponse:
        parent = self._channel(req.int_param("channel_id"))
        self._require_bot(parent)
        if parent.type != GUILD_TEXT:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        kind = int(req.json.get("type") or PRIVATE_THREAD)
        if kind not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise _form_error("type", "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        self._require_bot(
            parent, "create_public_threads" if kind == PUBLIC_THREAD else "create_private_threads"
        )
        name = self._validate_thread_name(req.json.get("name"))
        minutes = self._validate_archive_duration(req.json)
        thread = await self._start_thread(parent, self._ids.next(), kind, name, minutes)
        return _json_response(201, self.channel_payload(thread))

    async def _h_thread_join(self, req: _ApiRequest) -> web.StreamResponse:
        thread = self._channel(req.int_param("channel_id"))
        self._require_bot(thread)
        if not thread.is_thread:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        thread.member_ids.add(self.bot_user.id)
        return _no_content()

    async def _h_typing(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, self._send_permission(channel))
        return _no_content()

    async def _h_reaction_add(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, "read_message_history")
        message = self._message_in(channel, req.int_param("message_id"))
        emoji = req.param("emoji")
        if emoji not in message.reactions:
            self._require_bot(channel, "add_reactions")
        message.reactions.setdefault(emoji, set()).add(self.bot_user.id)
        await self._dispatch_reaction("MESSAGE_REACTION_ADD", message, emoji)
        return _no_content()

    async def _h_reaction_remove(self, req: _ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        message = self._message_in(channel, req.int_param("message_id"))
        emoji = req.param("emoji")
        message.reactions.get(emoji, set()).discard(self.bot_user.id)
        await self._dispatch_reaction("MESSAGE_REACTION_REMOVE", message, emoji)
        return _no_content()

    async def _dispatch_reaction(self, event: str, message: StoredMessage, emoji: str) -> None:
        data: Json = {
            "user_id": str(self.bot_user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": _emoji_payload(emoji),
            "burst": False,
            "type": 0,
        }
        intent = INTENT_DIRECT_MESSAGE_REACTIONS
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            intent = INTENT_GUILD_MESSAGE_REACTIONS
            if event.endswith("ADD"):
                data["member"] = self.guilds[message.guild_id].members[self.bot_user.id].payload()
        await self._dispatch(event, data, intent=intent, channel=self.channels[message.channel_id])

    # ---------------------------------------------------------------- interactions over REST

    async def _h_interaction_callback(self, req: _ApiRequest) -> web.StreamResponse:
        """The initial response; 404 10062 after the deadline, 400 40060 when already answered."""
        record = self.interactions.get(req.int_param("interaction_id"))
        if record is None or record.token != req.param("token"):
            raise _unknown("interaction", 10062)
        latency = req.call.at - record.dispatched_at
        body = req.json
        kind = _int(body.get("type"))
        data: Json = body.get("data") or {}
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)

        def reject(error: DiscordAPIError) -> DiscordAPIError:
            record.callbacks.append(CallbackRecord(kind or 0, data, latency, ephemeral, error.status))
            return error

        if record.acknowledged:
            raise reject(DiscordAPIError(400, 40060, "Interaction has already been acknowledged."))
        if latency > self.interaction_deadline_s:
            raise reject(_unknown("interaction", 10062))
        if kind not in _CALLBACKS_ALLOWED.get(record.type, frozenset()):
            raise reject(
                _form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
            )
        channel = self.channels[record.channel_id]
        message: StoredMessage | None = None
        message_type = 20 if record.type == INTERACTION_COMMAND else 0
        try:
            if kind == CALLBACK_MESSAGE:
                self._validate_message(data, req.files, creating=True)
                message = self._store_message(
                    channel,
                    self.bot_user,
                    content=data.get("content") or "",
                    embeds=data.get("embeds"),
                    components=data.get("components"),
                    uploads=req.files,
                    flags=int(data.get("flags") or 0) & ~FLAG_LOADING,
                    message_type=message_type,
                    allowed_mentions=data.get("allowed_mentions"),
                    webhook_id=self.application_id,
                    interaction=record,
                    tts=bool(data.get("tts", False)),
                )
                record.original_message_id = message.id
            elif kind == CALLBACK_DEFERRED_MESSAGE:
                flags = FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0)
                message = self._store_message(
                    channel,
                    self.bot_user,
                    flags=flags,
                    message_type=message_type,
                    webhook_id=self.application_id,
                    interaction=record,
                )
                record.original_message_id = message.id
            elif kind == CALLBACK_UPDATE_MESSAGE:
                if record.message_id is None:
                    raise DiscordAPIError(400, 50035, "Invalid Form Body")
                message = self.messages[record.message_id]
                self._validate_message(data, req.files, creating=False, existing=message)
                self._edit_message(message, data, req.files)
            elif kind == CALLBACK_MODAL:
                self._validate_modal(data)
                record.modal = data
            elif kind == CALLBACK_AUTOCOMPLETE:
                record.autocomplete_choices = list(data.get("choices") or [])
        except DiscordAPIError as exc:
            raise reject(exc) from None
        record.callbacks.append(CallbackRecord(kind, data, latency, ephemeral, 200))
        if message is not None:
            if kind == CALLBACK_UPDATE_MESSAGE:
                await self._dispatch_message_update(message)
            else:
                await self._dispatch_message_create(message)
        if req.request.query.get("with_response") not in ("1", "true", "True"):
            return _no_content()
        response: Json = {
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "response_message_loading": kind == CALLBACK_DEFERRED_MESSAGE,
                "response_message_ephemeral": ephemeral,
            }
        }
        if message is not None:
            response["interaction"]["response_message_id"] = str(message.id)
            response["resource"] = {"type": kind, "message": self.message_payload(message)}
        else:
            response["resource"] = {"type": kind}
        return _json_response(200, response)

    def _validate_modal(self, data: Json) -> None:
        errors = _FormErrors()
        if not data.get("custom_id"):
            errors.add(["data", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
        title = data.get("title")
        if not isinstance(title, str) or not title:
            errors.add(["data", "title"], "BASE_TYPE_REQUIRED", "This field is required")
        else:
            errors.max_length(["data", "title"], title, 45)
        rows = data.get("components") or []
        if not 1 <= len(rows) <= 5:
            errors.add(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        errors.raise_if_any()

    def _interaction_of_webhook(self, req: _ApiRequest) -> InteractionRecord:
        record = self._interactions_by_token.get(req.param("token"))
        if record is None or req.int_param("webhook_id") != self.application_id:
            raise _unknown("Webhook", 10015)
        return record

    def _interaction_message(self, record: InteractionRecord, message_ref: str) -> StoredMessage:
        if message_ref == "@original":
            message_id = record.original_message_id
            # After a (deferred) update, @original is the message whose component was used.
            if message_id is None and record.response_type in (
                CALLBACK_DEFERRED_UPDATE,
                CALLBACK_UPDATE_MESSAGE,
            ):
                message_id = record.message_id
        else:
            message_id = _int(message_ref)
            if message_id not in (record.original_message_id, record.message_id, *record.followup_ids):
                message_id = None
        message = self.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise _unknown("Message", 10008)
        return message

    async def _h_webhook_execute(self, req: _ApiRequest) -> web.StreamResponse:
        """A followup: needs the interaction acknowledged first, as on Discord.

        The first followup after a deferred ("thinking") response replaces the loading message rather
        than posting a new one, and keeps the deferral's visibility: its own ephemeral flag is ignored.
        """
        record = self._interaction_of_webhook(req)
        if not record.acknowledged:
            raise _unknown("Webhook", 10015)
        body = req.json
        self._validate_message(body, req.files, creating=True)
        channel = self.channels[record.channel_id]
        loading = self.messages.get(record.original_message_id or 0)
        if loading is not None and loading.loading and not loading.deleted:
            self._edit_message(loading, {"embeds": [], "components": [], **body}, req.files)
            record.followup_ids.append(loading.id)
            await self._dispatch_message_update(loading)
            message = loading
        else:
            message = await self._post_followup(record, channel, body, req.files)
        if req.request.query.get("wait") in ("1", "true", "True"):
            return _json_response(200, self.message_payload(message))
        return _no_content()

    async def _post_followup(
        self, record: InteractionRecord, channel: FakeChannel, body: Json, uploads: Sequence[Upload]
    ) -> StoredMessage:
        message = self._store_message(
            channel,
            self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            uploads=uploads,
            flags=int(body.get("flags") or 0) & ~FLAG_LOADING,
            message_type=20 if record.type == INTERACTION_COMMAND else 0,
            allowed_mentions=body.get("allowed_mentions"),
            webhook_id=self.application_id,
            interaction=record,
            tts=bool(body.get("tts", False)),
        )
        record.followup_ids.append(message.id)
        await self._dispatch_message_create(message)
        return message

    async def _h_webhook_message_get(self, req: _ApiRequest) -> web.StreamResponse:
        record = self._interaction_of_webhook(req)
        return _json_response(
            200, self.message_payload(self._interaction_message(record, req.param("message_id")))
        )

    async def _h_webhook_message_edit(self, req: _ApiRequest) -> web.StreamResponse:
        record = self._interaction_of_webhook(req)
        message = self._interaction_message(record, req.param("message_id"))
        self._validate_message(req.json, req.files, creating=False, existing=message)
        self._edit_message(message, req.json, req.files)
        await self._dispatch_message_update(message)
        return _json_response(200, self.message_payload(message))

    async def _h_webhook_message_delete(self, req: _ApiRequest) -> web.StreamResponse:
        record = self._interaction_of_webhook(req)
        message = self._interaction_message(record, req.param("message_id"))
        message.deleted = True
        await self._dispatch_message_delete(message)
        return _no_content()

    # ---------------------------------------------------------------- waiting

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` holds; it is re-checked whenever the server's state changes."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                recent = ", ".join(f"{c.method} {c.route} {c.status}" for c in self.calls[-8:])
                raise TimeoutError(
                    f"condition not met within {timeout}s; last REST calls: {recent}"
                ) from None

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool] = lambda _: True,
        *,
        channel_id: int | None = None,
        from_bot: bool = True,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The first stored message (by default the bot's) matching ``predicate``, waiting if needed."""

        def find() -> StoredMessage | None:
            for message in self.messages.values():
                if message.deleted or (channel_id is not None and message.channel_id != channel_id):
                    continue
                if from_bot and message.author_id != self.bot_user.id:
                    continue
                if predicate(message):
                    return message
            return None

        await self.wait_for(lambda: find() is not None, timeout)
        found = find()
        assert found is not None
        return found

    async def wait_for_call(
        self,
        kind: str,
        *,
        status: int | None = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> RestCall:
        """Wait for the ``count``-th finished REST call of ``kind`` (optionally with ``status``)."""
        await self.wait_for(lambda: len(self.calls_of(kind, status=status)) >= count, timeout)
        return self.calls_of(kind, status=status)[count - 1]

    async def wait_for_response(self, interaction: InteractionRecord, timeout: float = 5.0) -> CallbackRecord:  # noqa: ASYNC109
        """Wait for the bot's first callback (accepted or not) to an interaction."""
        await self.wait_for(lambda: bool(interaction.callbacks), timeout)
        return interaction.callbacks[0]

    async def wait_until_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has identified (READY and GUILD_CREATEs sent) and is connected."""
        await self.wait_for(lambda: self.connected, timeout)


def _str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


def _without_guild_id(channel: Json) -> Json:
    channel.pop("guild_id", None)
    return channel


def _emoji_payload(emoji: str) -> Json:
    """``name:id`` for custom emoji, the character itself for unicode ones."""
    if ":" in emoji:
        name, _, emoji_id = emoji.partition(":")
        return {"id": emoji_id, "name": name, "animated": False}
    return {"id": None, "name": emoji}
