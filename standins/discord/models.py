"""The world's objects (users, roles, members, channels, guilds, messages, files) and the records tests
assert on (REST calls, 429s, interactions and their callbacks, gateway dispatches, resumes, closes)."""

from __future__ import annotations

import datetime as dt
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .constants import DISCORD_EPOCH_MS, DM, FLAG_EPHEMERAL, FLAG_LOADING, PRIVATE_THREAD, PUBLIC_THREAD

Json = dict[str, Any]


class Snowflakes:
    """Discord ids: milliseconds since the Discord epoch in the top bits, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._last = max((now_ms << 22) | (1 << 17), self._last + 1)
        return self._last

    def next_on_shard(self, shard_id: int, shard_count: int) -> int:
        """The next id whose guild Discord puts on ``shard_id`` of ``shard_count``: ``(id >> 22) %
        shard_count``, so at most ``shard_count - 1`` milliseconds later than ``next()``."""
        if not 0 <= shard_id < shard_count:
            raise ValueError(f"shard {shard_id} is not one of {shard_count} shards")
        candidate = self.next()
        while (candidate >> 22) % shard_count != shard_id:
            candidate += 1 << 22
        self._last = candidate
        return candidate


def snowflake_time(snowflake: int) -> dt.datetime:
    """When a snowflake was made, as Discord encodes it."""
    return dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, dt.UTC)


def iso(moment: dt.datetime) -> str:
    """Discord's timestamp format: ISO 8601 with microseconds and +00:00."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


def to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


def walk_components(components: Iterable[Json] | None) -> Iterator[Json]:
    """Every component, however deeply nested (action rows, labels, containers, sections)."""
    for component in components or ():
        yield component
        yield from walk_components(component.get("components"))
        for key in ("component", "accessory"):
            inner = component.get(key)
            if isinstance(inner, dict):
                yield from walk_components([inner])


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def without_guild_id(channel: Json) -> Json:
    channel.pop("guild_id", None)
    return channel


def emoji_payload(emoji: str) -> Json:
    """``name:id`` for custom emoji, the character itself for unicode ones."""
    if ":" in emoji:
        name, _, emoji_id = emoji.partition(":")
        return {"id": emoji_id, "name": name, "animated": False}
    return {"id": None, "name": emoji}


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
    joined_at: str = field(default_factory=now_iso)

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
    created_at: str = field(default_factory=now_iso)
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
    joined_at: str = field(default_factory=now_iso)


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
    # A channel webhook's own buckets (major parameter: the webhook's id), as Discord counts them.
    "channel_webhook_execute": RateLimitRule(5, 2.0),
    "channel_webhook_message_edit": RateLimitRule(5, 2.0),
    "channel_webhook_message_delete": RateLimitRule(5, 2.0),
}

CHANNEL_RATE_LIMITS: dict[str, RateLimitRule] = {
    "channel_webhook_execute": RateLimitRule(30, 60.0),
}
"""Limits counted per channel (where the message lands) on top of a route's own bucket: webhooks may
post 30 messages a minute in one channel, whichever webhook posts them."""


@dataclass(eq=False)
class FakeWebhook:
    """A channel's incoming webhook: made by the bot's application (``application_id`` set) or by a
    person in the server's settings (None)."""

    id: int
    channel_id: int
    guild_id: int
    name: str
    token: str = field(repr=False)
    creator: FakeUser
    application_id: int | None = None
    deleted: bool = False

    def author(self, username: str | None) -> FakeUser:
        """Who its messages show as: the webhook's id, under the request's username if it gave one."""
        return FakeUser(self.id, username or self.name, bot=True)


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
    avatar_url: str | None = None
    """The avatar a webhook's message was posted with (``avatar_url`` of the request), if any."""

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
    def webhook_id(self) -> int | None:
        """The webhook that posted it (an interaction's application for followups), or None."""
        value = self.data.get("webhook_id")
        return None if value is None else int(value)

    @property
    def author_name(self) -> str:
        """The name people see on it: a webhook message's username override, else the user's name."""
        return str(self.data["author"]["username"])

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

    ``at`` is the loop's clock once the frame was handed to the websocket (benchmarks time from it);
    ``shard`` is the ``(shard_id, shard_count)`` of the session it went to.
    """

    seq: int
    event: str
    data: Json
    live: bool
    at: float = 0.0
    shard: tuple[int, int] = (0, 1)


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
