"""A stand-in for Discord, REST API and gateway, on 127.0.0.1, for the real discord.py client.

End-to-end tests and benchmarks build the world they need (guilds, channels, threads, users, denied
permissions), point the bot at ``server.base_url`` through ``bot.discord.endpoint``, play the users'
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
        # The bot: bot.discord.endpoint.use_rest_base(server.base_url) before login, then
        # await use_gateway_of(bot.http, server.base_url) in setup_hook; bot.start(server.token).
        await server.user_message(general.id, alice, "hello", mentions_bot=True)
        reply = await server.wait_for_message(channel_id=general.id)  # the bot's first message there
        assert reply.content == "..."

Layout, one concern a module: ``world`` (guilds, channels, users, members, permissions, payloads),
``messages`` (storing, editing, validating messages), ``gateway`` (sessions, IDENTIFY/RESUME,
dispatch), ``users`` and ``interactions`` (what users do), ``rest_*`` (the REST routes by resource),
``rest_webhooks`` (channel webhooks: managing and executing them), ``ratelimits`` (buckets, 429s,
injected failures, held routes), ``cdn`` (attachments), ``server``
(``FakeDiscord``: the app, the route table, the rate limits in front of every handler).
"""

from __future__ import annotations

from .constants import (
    CALLBACK_AUTOCOMPLETE,
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_PONG,
    CALLBACK_UPDATE_MESSAGE,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_COMMAND,
    INTERACTION_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
    INTERACTION_PING,
    permission_bits,
)
from .errors import DiscordAPIError
from .models import (
    CallbackRecord,
    DispatchRecord,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    FakeWebhook,
    GatewayClose,
    InteractionRecord,
    RateLimitHit,
    RateLimitRule,
    RestCall,
    ResumeRecord,
    StoredMessage,
    Upload,
)
from .server import FakeDiscord

__all__ = [
    "CALLBACK_AUTOCOMPLETE",
    "CALLBACK_DEFERRED_MESSAGE",
    "CALLBACK_DEFERRED_UPDATE",
    "CALLBACK_MESSAGE",
    "CALLBACK_MODAL",
    "CALLBACK_PONG",
    "CALLBACK_UPDATE_MESSAGE",
    "INTERACTION_AUTOCOMPLETE",
    "INTERACTION_COMMAND",
    "INTERACTION_COMPONENT",
    "INTERACTION_MODAL_SUBMIT",
    "INTERACTION_PING",
    "CallbackRecord",
    "DiscordAPIError",
    "DispatchRecord",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "FakeWebhook",
    "GatewayClose",
    "InteractionRecord",
    "RateLimitHit",
    "RateLimitRule",
    "RestCall",
    "ResumeRecord",
    "StoredMessage",
    "Upload",
    "permission_bits",
]
