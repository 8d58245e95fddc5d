"""Discord's numbers as the stand-in uses them: paths, limits, channel and interaction types, flags,
intents and permission bits (by discord.py's names, so tests name permissions as the bot does)."""

from __future__ import annotations

from collections.abc import Iterable

import discord

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
RESUME_GATEWAY_PATH = "/resume-gateway"
MAX_GUILDS_PER_SHARD = 2500  # Discord closes a session with more with 4011 (sharding required)
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
CALLBACKS_ALLOWED: dict[int, frozenset[int]] = {
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
INTENT_GUILD_WEBHOOKS = 1 << 5
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
ALL_INTENTS = discord.Intents.all().value
# Application flags Discord reports for an unverified bot whose privileged intents are switched on.
APP_FLAG_FOR_INTENT = {"presences": 1 << 13, "members": 1 << 15, "message_content": 1 << 19}
APP_FLAG_COMMAND_BADGE = 1 << 23

# Permissions, by discord.py's names (plus "create_threads" for both thread kinds).
_PERMISSION_BITS: dict[str, int] = dict(discord.Permissions.VALID_FLAGS)
_PERMISSION_ALIASES: dict[str, tuple[str, ...]] = {
    "create_threads": ("create_public_threads", "create_private_threads"),
}
ALL_PERMISSIONS = discord.Permissions.all().value
ADMINISTRATOR = _PERMISSION_BITS["administrator"]


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

DM_PERMISSIONS = permission_bits(
    ["view_channel", "send_messages", "embed_links", "attach_files", "add_reactions", "read_message_history"]
)
