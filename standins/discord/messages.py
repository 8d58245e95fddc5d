"""Messages as Discord stores them: creating, editing (every version kept), who a message pings, the
REST and gateway payloads, and Discord's validation of what the bot sends."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from .constants import (
    ATTACHMENT_SIZE_LIMIT_BYTES,
    FLAG_EPHEMERAL,
    FLAG_HAS_THREAD,
    FLAG_LOADING,
    INTERACTION_COMMAND,
    MAX_EMBED_TOTAL_CHARS,
    MAX_EMBEDS,
    MAX_FILES_PER_MESSAGE,
    MAX_MESSAGE_CHARS,
)
from .errors import DiscordAPIError, FormErrors
from .models import (
    FakeChannel,
    FakeUser,
    InteractionRecord,
    Json,
    StoredMessage,
    Upload,
    emoji_payload,
    iso,
    now_iso,
    snowflake_time,
)
from .world import DiscordWorld

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class MessageStore(DiscordWorld):
    """Every message of every channel, deleted and ephemeral ones included, for the tests to read."""

    def message_payload(self, message: StoredMessage, *, for_gateway: bool = False) -> Json:
        """The stored message; the gateway's copy adds guild_id and the author's and mentions' members."""
        data: Json = json.loads(json.dumps(message.data))
        data["reactions"] = [
            {
                "emoji": emoji_payload(emoji),
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

    def messages_in(
        self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = True
    ) -> list[StoredMessage]:
        """A channel's messages, oldest first."""
        return [
            m
            for m in self._channel_messages.get(channel_id, [])
            if (include_deleted or not m.deleted) and (include_ephemeral or not m.ephemeral)
        ]

    def bot_messages(self, channel_id: int) -> list[StoredMessage]:
        """The bot's messages everyone sees in a channel, oldest first (deleted and ephemeral left out)."""
        return [
            m
            for m in self.messages_in(channel_id, include_ephemeral=False)
            if m.author_id == self.bot_user.id
        ]

    def threads_in(self, parent_id: int) -> list[FakeChannel]:
        """The threads opened in a channel, oldest first."""
        return [c for c in self.channels.values() if c.is_thread and c.parent_id == parent_id]

    def messages_by(self, user: FakeUser | int, *, include_deleted: bool = False) -> list[StoredMessage]:
        author_id = self._user(user).id
        return [
            m
            for m in self.messages.values()
            if m.author_id == author_id and (include_deleted or not m.deleted)
        ]

    def message(self, message_id: int) -> StoredMessage:
        return self.messages[message_id]

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
            data["edited_timestamp"] = now_iso()

    def _validate_message(
        self, body: Json, uploads: Sequence[Upload], *, creating: bool, existing: StoredMessage | None = None
    ) -> None:
        errors = FormErrors()
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
