"""Whether a person is in a server, asked of Discord's REST API (`bot.assistants.MemberLookup`).

DMs reach shard 0 only, and with several processes this one's cache knows only its own servers: a
DM pick of a server's assistant is checked by one REST call, never by the local cache.
"""

from __future__ import annotations

import logging

import aiohttp
import discord

from bot.assistants import MemberLookup

log = logging.getLogger(__name__)


def member_lookup(client: discord.Client) -> MemberLookup:
    """`GET /guilds/{guild}/members/{user}`: 404 (unknown member or server) or 403 (the bot is not
    in it) is "not a member"; anything else is "could not tell"."""

    async def is_member(guild_id: int, user_id: int) -> bool | None:
        try:
            await client.http.get_member(guild_id, user_id)
        except (discord.NotFound, discord.Forbidden):
            return False
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError):
            log.info("Could not ask Discord whether %s is in server %s", user_id, guild_id, exc_info=True)
            return None
        return True

    return is_member
