"""The world a test builds and the bot sees: guilds, roles, members, channels, threads, DMs, users, the
application and its commands; who may do what where; the payloads Discord describes them with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from .cdn import AttachmentCdn
from .constants import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    APP_FLAG_COMMAND_BADGE,
    APP_FLAG_FOR_INTENT,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM,
    DM_PERMISSIONS,
    GATEWAY_PATH,
    GUILD_TEXT,
    PRIVATE_THREAD,
    PRIVILEGED_INTENTS,
    PUBLIC_THREAD,
    RESUME_GATEWAY_PATH,
    permission_bits,
)
from .errors import missing_access, missing_permissions, unknown
from .models import (
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    Json,
    RestCall,
    Snowflakes,
    StoredMessage,
    Upload,
    str_or_none,
)


class DiscordWorld:
    """The state every part of the stand-in shares, and the building blocks tests call before the bot
    connects (the bot learns the world from READY and GUILD_CREATE)."""

    def __init__(
        self, *, bot_name: str, token: str, privileged_intents: Iterable[str], bot_permissions: int
    ) -> None:
        unknown_intents = set(privileged_intents) - set(PRIVILEGED_INTENTS)
        if unknown_intents:
            raise ValueError(
                f"unknown privileged intents {sorted(unknown_intents)}; known: {sorted(PRIVILEGED_INTENTS)}"
            )
        self._ids = Snowflakes()
        self.token = token
        self.privileged_intents = frozenset(privileged_intents)
        self.bot_permissions = bot_permissions

        self.bot_user = FakeUser(self._ids.next(), bot_name, bot=True)
        self.application_id = self.bot_user.id  # as for every application made since 2016
        self.owner = FakeUser(self._ids.next(), "owner")
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self._channel_messages: dict[int, list[StoredMessage]] = {}
        self._dm_by_user: dict[int, FakeChannel] = {}
        self.global_commands: dict[str, Json] = {}
        self.guild_commands: dict[int, dict[str, Json]] = {}
        self.cdn = AttachmentCdn(self._ids, self._record_call)
        self.calls: list[RestCall] = []
        """Every REST call (and CDN fetch) once answered, in order."""
        self.recommended_shards = 1
        """The shard count ``GET /gateway/bot`` recommends (tests set it to make the bot shard)."""
        self.max_concurrency = 1
        """``GET /gateway/bot``'s ``session_start_limit.max_concurrency``: IDENTIFYs per 5 s (not
        enforced); tests raise it so several shards start without waiting, as large bots' do."""
        self._changed = asyncio.Condition()
        self._port = 0

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
        self,
        name: str = "Test Guild",
        *,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        on_shard: tuple[int, int] | None = None,
    ) -> FakeGuild:
        """A guild the bot is in, owned by the application's owner, with @everyone and the bot's role.

        ``on_shard=(shard_id, shard_count)`` picks an id that Discord maps to that shard.
        """
        guild_id = self._ids.next() if on_shard is None else self._ids.next_on_shard(*on_shard)
        guild = FakeGuild(guild_id, name, owner_id=self.owner.id)
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
            raise unknown("Channel", 10003)
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
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def channel_permissions(self, channel: FakeChannel, user_id: int) -> int:
        """Permissions in a channel; threads use their parent's, the bot loses what ``deny`` names."""
        if channel.is_dm:
            return DM_PERMISSIONS
        guild = self.guilds[channel.guild_id] if channel.guild_id is not None else None
        if guild is None:
            return 0
        bits = self.member_permissions(guild, user_id)
        if bits & ADMINISTRATOR:
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
            raise missing_access()
        for permission in permissions:
            if not self.bot_can(channel, permission):
                raise missing_permissions()

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
                "last_message_id": str_or_none(channel.last_message_id),
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
                "last_message_id": str_or_none(channel.last_message_id),
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
            "last_message_id": str_or_none(channel.last_message_id),
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

    def _threads_of(self, guild: FakeGuild) -> list[int]:
        return [
            c.id for c in self.channels.values() if c.is_thread and c.guild_id == guild.id and not c.archived
        ]

    def _client_user_payload(self) -> Json:
        data = self.bot_user.payload()
        data.update(verified=True, mfa_enabled=False, locale="en-US", email=None, premium_type=0)
        return data

    def _application_flags(self) -> int:
        flags = APP_FLAG_COMMAND_BADGE
        for name in self.privileged_intents:
            flags |= APP_FLAG_FOR_INTENT[name]
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

    # ---------------------------------------------------------------- files and records

    def file_bytes(self, attachment_id: int) -> bytes:
        return self.cdn.file_bytes(attachment_id)

    def _attachment(self, channel_id: int, upload: Upload) -> Json:
        return self.cdn.attach(self.base_url, channel_id, upload)

    async def _record_call(self, call: RestCall) -> None:
        self.calls.append(call)
        await self._notify()

    def calls_of(self, kind: str, *, status: int | None = None) -> list[RestCall]:
        return [c for c in self.calls if c.kind == kind and (status is None or c.status == status)]

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
