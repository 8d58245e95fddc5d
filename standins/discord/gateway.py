"""The gateway: HELLO, IDENTIFY (intents and shard checked like Discord's), RESUME with the missed
dispatches, heartbeats, member requests, dispatches numbered per session, and the controls tests use
to close, hold or reconnect the bot's websockets.

Sharding is Discord's: a session identifies as shard ``[id, count]`` (no ``shard`` is ``[0, 1]``), is
told only of the guilds with ``(guild_id >> 22) % count == id`` and gets only their events; DMs go to
shard 0. Several sessions (one per shard) are live at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .constants import (
    ALL_INTENTS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    MAX_GUILDS_PER_SHARD,
    NEW_SESSION_CLOSE_CODES,
    PRIVILEGED_INTENTS,
)
from .messages import MessageStore
from .models import (
    DispatchRecord,
    FakeChannel,
    FakeGuild,
    GatewayClose,
    Json,
    ResumeRecord,
    StoredMessage,
    to_int,
    without_guild_id,
)


class GatewayConnection:
    """One websocket: sends JSON text, or zlib-stream binary frames when the client asked for them."""

    def __init__(
        self, ws: web.WebSocketResponse, *, path: str, query: Mapping[str, str], opened_at: float
    ) -> None:
        self.ws = ws
        self.path = path
        self.query = dict(query)
        self.opened_at = opened_at
        self.session: GatewaySession | None = None
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
class GatewaySession:
    session_id: str
    intents: int
    identify: Json
    seq: int = 0
    log: list[Json] = field(default_factory=list)
    connection: GatewayConnection | None = None
    resumable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shard_id: int = 0
    shard_count: int = 1

    @property
    def shard(self) -> tuple[int, int]:
        return (self.shard_id, self.shard_count)

    def wants(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def owns(self, guild_id: int | None) -> bool:
        """Whether Discord sends this session a guild's events (None: a DM, shard 0's)."""
        return shard_of(guild_id, self.shard_count) == self.shard_id


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard a guild's events go to, as Discord computes it; DMs are shard 0's."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def parse_shard(value: object) -> tuple[int, int] | None:
    """IDENTIFY's ``shard``: ``[id, count]`` with ``0 <= id < count``; None if Discord would refuse it."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    shard_id, count = value
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (shard_id, count)):
        return None
    if count < 1 or not 0 <= shard_id < count:
        return None
    return (shard_id, count)


class DiscordGateway(MessageStore):
    """The bot's gateway sessions and what they were sent; ``_dispatch`` is how every other part tells
    the bot of a change, subject to its intents and permissions."""

    def __init__(self, *, heartbeat_interval_ms: int, gateway_compression: bool, **options: Any) -> None:
        super().__init__(**options)
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.gateway_compression = gateway_compression
        self.identifies: list[Json] = []
        self.resumes: list[ResumeRecord] = []
        self.gateway_closes: list[GatewayClose] = []
        self.gateway_connections: list[GatewayConnection] = []
        self.dispatched: list[DispatchRecord] = []
        self.max_guilds_per_shard = MAX_GUILDS_PER_SHARD
        """More guilds than this on one session is refused with 4011 (sharding required)."""
        self._sessions: dict[str, GatewaySession] = {}
        self._live_sessions: dict[tuple[int, int], GatewaySession] = {}
        """The current session of each ``(shard_id, shard_count)``: what dispatches go to."""
        self.concurrent_sessions = False
        """True: a second IDENTIFY of a shard whose session is still connected leaves that session
        live too, and both get the shard's events, as Discord does for two copies of a bot running
        the same shard (the tests of overlapping shard ids). False: the new session replaces it."""
        self._concurrent: list[GatewaySession] = []
        self._gateway_open = asyncio.Event()
        self._gateway_open.set()

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        """One gateway connection: HELLO, then IDENTIFY or RESUME, heartbeats, member requests."""
        await self._gateway_open.wait()  # held during gateway_outage(), like a gateway that is down
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0, timeout=5.0)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        query = dict(request.query)
        if not self.gateway_compression:
            query.pop("compress", None)
        connection = GatewayConnection(ws, path=request.path, query=query, opened_at=loop.time())
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
                    if self._live_sessions.get(session.shard) is session:
                        del self._live_sessions[session.shard]
            self.gateway_closes.append(GatewayClose(code, by_server, loop.time()))
            await self._notify()
        return ws

    async def _gateway_op(self, connection: GatewayConnection, payload: Json) -> None:
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

    async def _identify(self, connection: GatewayConnection, data: Json) -> None:
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~ALL_INTENTS:
            await connection.close(4013, "Invalid intent(s).")
            return
        disallowed = [
            n for n, bit in PRIVILEGED_INTENTS.items() if intents & bit and n not in self.privileged_intents
        ]
        if disallowed:
            self.identifies.append({k: v for k, v in data.items() if k != "token"})
            await connection.close(4014, "Disallowed intent(s).")
            return
        identify = {k: v for k, v in data.items() if k != "token"}
        shard = parse_shard(data["shard"]) if "shard" in data else (0, 1)
        if shard is None:
            self.identifies.append(identify)
            await connection.close(4010, "Invalid shard.")
            return
        if sum(shard_of(g, shard[1]) == shard[0] for g in self.guilds) > self.max_guilds_per_shard:
            self.identifies.append(identify)
            await connection.close(4011, "Sharding required.")
            return
        previous = self._live_sessions.get(shard)
        if previous is not None and self.concurrent_sessions and previous.connection is not None:
            self._concurrent.append(previous)
        elif previous is not None:
            previous.resumable = False
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            intents=intents,
            identify=identify,
            shard_id=shard[0],
            shard_count=shard[1],
        )
        self._sessions[session.session_id] = session
        self._live_sessions[shard] = session
        self.identifies.append(session.identify)
        guilds = [g for g in self.guilds.values() if session.owns(g.id)]
        async with session.lock:
            session.connection = connection
            connection.session = session
            ready = {
                "v": 10,
                "user": self._client_user_payload(),
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
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
            if "shard" in data:
                ready["shard"] = list(shard)
            await self._send_dispatch(session, "READY", ready)
            if session.wants(INTENT_GUILDS):
                for guild in guilds:
                    await self._send_dispatch(
                        session, "GUILD_CREATE", self._guild_create_payload(guild, session)
                    )
        await self._notify()

    async def _resume(self, connection: GatewayConnection, data: Json) -> None:
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not session.resumable or self._live_sessions.get(session.shard) is not session:
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

    async def _request_members(self, connection: GatewayConnection, data: Json) -> None:
        """Answer REQUEST_GUILD_MEMBERS with one GUILD_MEMBERS_CHUNK (needs the members intent)."""
        session = connection.session
        guild = self.guilds.get(to_int(data.get("guild_id")) or 0)
        if (
            session is None
            or guild is None
            or not session.wants(INTENT_GUILD_MEMBERS)
            or not session.owns(guild.id)
        ):
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

    def _guild_create_payload(self, guild: FakeGuild, session: GatewaySession) -> Json:
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
            channels=[without_guild_id(self.channel_payload(self.channels[c])) for c in guild.channel_ids],
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

    async def _send_dispatch(self, session: GatewaySession, event: str, data: Json) -> None:
        """Number, log and (if connected) send one dispatch. The caller holds ``session.lock``."""
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(payload)
        connection = session.connection
        live = connection is not None and await connection.send(payload)
        at = asyncio.get_running_loop().time()
        self.dispatched.append(DispatchRecord(session.seq, event, data, live, at, session.shard))

    async def _dispatch(
        self,
        event: str,
        data: Json | Callable[[GatewaySession], Json],
        *,
        intent: int | None = None,
        channel: FakeChannel | None = None,
        guild_id: int | None = None,
    ) -> bool:
        """Dispatch to the session of the guild's shard (``channel``'s guild, else ``guild_id``; shard 0
        for DMs) if its intents and permissions let Discord send it. True if a session got it."""
        if channel is not None:
            guild_id = channel.guild_id
        if channel is not None and not channel.is_dm and not self.bot_can(channel, "view_channel"):
            return False
        sent = False
        self._concurrent = [s for s in self._concurrent if s.connection is not None]
        for session in [*self._live_sessions.values(), *self._concurrent]:
            if not session.resumable or not session.owns(guild_id):
                continue
            if intent is not None and not session.wants(intent):
                continue
            payload = data(session) if callable(data) else data
            async with session.lock:
                await self._send_dispatch(session, event, payload)
            sent = True
        if sent:
            await self._notify()
        return sent

    def _message_intent(self, message: StoredMessage) -> int:
        return INTENT_DIRECT_MESSAGES if message.guild_id is None else INTENT_GUILD_MESSAGES

    def _gateway_message(self, message: StoredMessage, session: GatewaySession) -> Json:
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
        """True while the bot has a session and every one of its sessions has a live websocket."""
        return bool(self._live_sessions) and all(
            s.connection is not None and not s.connection.closed for s in self._live_sessions.values()
        )

    @property
    def connected_shards(self) -> set[tuple[int, int]]:
        """The ``(shard_id, shard_count)`` of every session with a live websocket."""
        return {
            shard
            for shard, s in self._live_sessions.items()
            if s.connection is not None and not s.connection.closed
        }

    def _shard_session(self, shard_id: int) -> GatewaySession | None:
        return next((s for s in self._live_sessions.values() if s.shard_id == shard_id), None)

    async def disconnect_gateway(
        self, code: int = 4000, reason: str = "stand-in disconnect", *, shard_id: int = 0
    ) -> None:
        """Close the websocket of the bot's shard ``shard_id`` with ``code``; 4000 and the like are
        resumable, as on Discord, 4007 and 4009 end the session (``NEW_SESSION_CLOSE_CODES``): the bot
        gets a new READY."""
        session = self._shard_session(shard_id)
        connection = session.connection if session else None
        if connection is None or connection.closed:
            raise RuntimeError("the bot has no live gateway connection to close")
        if session is not None and code in NEW_SESSION_CLOSE_CODES:
            session.resumable = False
        await connection.close(code, reason)
        await self.wait_for(lambda: session is not None and session.connection is not connection)

    @contextlib.asynccontextmanager
    async def gateway_outage(self, code: int = 4000, *, shard_id: int = 0) -> AsyncIterator[None]:
        """Disconnect the bot's shard ``shard_id`` and hold its reconnection (every new gateway
        connection) until the block ends; dispatches made inside wait in the session and reach the
        bot through RESUME."""
        self._gateway_open.clear()
        try:
            await self.disconnect_gateway(code, shard_id=shard_id)
            yield
        finally:
            self._gateway_open.set()

    async def request_reconnect(self, *, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT to shard ``shard_id``, which makes discord.py close and RESUME."""
        session = self._shard_session(shard_id)
        if session is None or session.connection is None:
            raise RuntimeError("the bot has no live gateway connection")
        await session.connection.send({"op": 7, "d": None, "s": None, "t": None})

    async def wait_until_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has identified (READY and GUILD_CREATEs sent) and is connected."""
        await self.wait_for(lambda: self.connected, timeout)

    async def _close_gateway(self) -> None:
        """Close every gateway connection (1001, going away), letting held reconnections through."""
        self._gateway_open.set()
        for connection in self.gateway_connections:
            if not connection.closed:
                await connection.close(1001, "stand-in shutting down")
