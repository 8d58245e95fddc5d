"""REST routes about who and where: the gateway's address, users and DMs, the application, guilds,
members and active threads."""

from __future__ import annotations

from aiohttp import web

from .errors import json_response, unknown
from .models import to_int
from .rest import ApiRequest
from .world import DiscordWorld


class GuildRoutes(DiscordWorld):
    """Read-only routes over the world (and opening a DM)."""

    async def _h_gateway(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(200, {"url": self.gateway_url})

    async def _h_gateway_bot(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(
            200,
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": self.max_concurrency,
                },
            },
        )

    async def _h_user_me(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(200, self._client_user_payload())

    async def _h_user_get(self, req: ApiRequest) -> web.StreamResponse:
        user = self.users.get(req.int_param("user_id"))
        if user is None:
            raise unknown("User", 10013)
        return json_response(200, user.payload())

    async def _h_dm_create(self, req: ApiRequest) -> web.StreamResponse:
        recipient = to_int(req.json.get("recipient_id"))
        if recipient is None or recipient not in self.users or recipient == self.bot_user.id:
            raise unknown("User", 10013)
        return json_response(200, self.channel_payload(self.dm_channel(recipient)))

    async def _h_application_me(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(200, self.application_payload())

    async def _h_guild_get(self, req: ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise unknown("Guild", 10004)
        return json_response(200, self.guild_payload(guild))

    async def _h_guild_channels(self, req: ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise unknown("Guild", 10004)
        return json_response(200, [self.channel_payload(self.channels[c]) for c in guild.channel_ids])

    async def _h_member_get(self, req: ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise unknown("Guild", 10004)
        member = guild.members.get(req.int_param("user_id"))
        if member is None:
            raise unknown("Member", 10007)
        return json_response(200, member.payload())

    async def _h_threads_active(self, req: ApiRequest) -> web.StreamResponse:
        guild = self.guilds.get(req.int_param("guild_id"))
        if guild is None:
            raise unknown("Guild", 10004)
        threads = [self.channels[t] for t in self._threads_of(guild)]
        members = [
            self.thread_member_payload(t, self.bot_user.id)
            for t in threads
            if self.bot_user.id in t.member_ids
        ]
        return json_response(200, {"threads": [self.channel_payload(t) for t in threads], "members": members})
