"""Users' side of the conversation: posting (in channels, threads and DMs) and editing messages, and
an admin changing what the bot may do in a channel; each reaches the bot as a gateway dispatch."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .constants import INTENT_GUILDS, MAX_USER_MESSAGE_CHARS, permission_bits
from .gateway import DiscordGateway
from .models import FakeUser, Json, Upload


class UserActivity(DiscordGateway):
    """Messages and edits as users make them."""

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

    async def set_denied(self, channel_id: int, deny: Iterable[str]) -> None:
        """Change what the bot is denied in a text channel and tell it (CHANNEL_UPDATE)."""
        channel = self.channels[channel_id]
        permission_bits(deny)
        channel.deny = set(deny)
        await self._dispatch(
            "CHANNEL_UPDATE", self.channel_payload(channel), intent=INTENT_GUILDS, guild_id=channel.guild_id
        )
