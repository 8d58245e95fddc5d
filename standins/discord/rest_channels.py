"""REST routes of channels: reading and editing channels, listing, posting, editing and deleting
messages, threads (from a message or not, joining), typing and reactions, with Discord's permission
checks and validation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .constants import (
    FLAG_EPHEMERAL,
    FLAG_HAS_THREAD,
    FLAG_LOADING,
    GUILD_TEXT,
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILDS,
    MAX_THREAD_NAME_CHARS,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    THREAD_ARCHIVE_MINUTES,
)
from .errors import DiscordAPIError, FormErrors, form_error, json_response, no_content, unknown
from .gateway import DiscordGateway, GatewaySession
from .models import FakeChannel, Json, StoredMessage, emoji_payload, to_int
from .rest import ApiRequest

_ARCHIVE_CHOICES_MESSAGE = "Value must be one of {60, 1440, 4320, 10080}."


class ChannelRoutes(DiscordGateway):
    """What the bot does in channels and threads; each change is dispatched back to it, as on Discord."""

    async def _h_channel_get(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        return json_response(200, self.channel_payload(channel))

    async def _h_channel_edit(self, req: ApiRequest) -> web.StreamResponse:
        """Thread edits (rename, archive, lock); guild channel edits need Manage Channels."""
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        body = req.json
        if not channel.is_thread:
            self._require_bot(channel, "manage_channels")
        elif channel.owner_id != self.bot_user.id:
            self._require_bot(channel, "manage_threads")
        errors = FormErrors()
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
        return json_response(200, self.channel_payload(channel))

    def _message_in(self, channel: FakeChannel, message_id: int) -> StoredMessage:
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise unknown("Message", 10008)
        return message

    async def _h_messages_list(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        query = req.request.query
        limit = to_int(query.get("limit", "50"))
        if limit is None or not 1 <= limit <= 100:
            raise form_error("limit", "NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")
        if not self.bot_can(channel, "read_message_history"):
            return json_response(200, [])
        visible = self.messages_in(channel.id, include_ephemeral=False)
        before, after, around = (to_int(query.get(k)) for k in ("before", "after", "around"))
        if around is not None:
            older = [m for m in visible if m.id <= around][-((limit + 1) // 2) :]
            newer = [m for m in visible if m.id > around][: limit - len(older)]
            chosen = older + newer
        elif after is not None:
            chosen = [m for m in visible if m.id > after][:limit]
        else:
            chosen = [m for m in visible if before is None or m.id < before][-limit:]
        chosen.sort(key=lambda m: m.id, reverse=True)
        return json_response(200, [self.message_payload(m) for m in chosen])

    async def _h_message_get(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, "read_message_history")
        return json_response(
            200, self.message_payload(self._message_in(channel, req.int_param("message_id")))
        )

    def _send_permission(self, channel: FakeChannel) -> str:
        return "send_messages_in_threads" if channel.is_thread else "send_messages"

    async def _h_message_create(self, req: ApiRequest) -> web.StreamResponse:
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
                    return json_response(200, self.message_payload(earlier))  # Discord dedupes on the nonce
        reference = None
        ref = body.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id") is not None:
            reference = self.messages.get(int(ref["message_id"]))
            if reference is None or reference.deleted:
                if ref.get("fail_if_not_exists", True):
                    raise form_error(
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
        return json_response(200, self.message_payload(message))

    async def _h_message_edit(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        message = self._message_in(channel, req.int_param("message_id"))
        body = req.json
        if message.author_id != self.bot_user.id and set(body) - {"flags"}:
            raise DiscordAPIError(403, 50005, "Cannot edit a message authored by another user")
        self._validate_message(body, req.files, creating=False, existing=message)
        self._edit_message(message, body, req.files)
        await self._dispatch_message_update(message)
        return json_response(200, self.message_payload(message))

    async def _h_message_delete(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        message = self._message_in(channel, req.int_param("message_id"))
        if message.author_id != self.bot_user.id:
            self._require_bot(channel, "manage_messages")
        message.deleted = True
        await self._dispatch_message_delete(message)
        return no_content()

    def _validate_thread_name(self, name: Any) -> str:
        errors = FormErrors()
        if not isinstance(name, str) or not name.strip():
            errors.add(["name"], "BASE_TYPE_REQUIRED", "This field is required")
        else:
            errors.max_length(["name"], name, MAX_THREAD_NAME_CHARS)
        errors.raise_if_any()
        return str(name)

    def _validate_archive_duration(self, body: Json) -> int:
        value = body.get("auto_archive_duration") or 1440
        if value not in THREAD_ARCHIVE_MINUTES:
            raise form_error("auto_archive_duration", "BASE_TYPE_CHOICES", _ARCHIVE_CHOICES_MESSAGE)
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

        def created(_: GatewaySession) -> Json:
            data = self.channel_payload(thread)
            data["newly_created"] = True
            data["member"] = self.thread_member_payload(thread, self.bot_user.id)
            return data

        await self._dispatch("THREAD_CREATE", created, intent=INTENT_GUILDS, channel=thread)
        return thread

    async def _h_thread_from_message(self, req: ApiRequest) -> web.StreamResponse:
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
        return json_response(201, self.channel_payload(thread))

    async def _h_thread_create(self, req: ApiRequest) -> web.StreamResponse:
        parent = self._channel(req.int_param("channel_id"))
        self._require_bot(parent)
        if parent.type != GUILD_TEXT:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        kind = int(req.json.get("type") or PRIVATE_THREAD)
        if kind not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise form_error("type", "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        self._require_bot(
            parent, "create_public_threads" if kind == PUBLIC_THREAD else "create_private_threads"
        )
        name = self._validate_thread_name(req.json.get("name"))
        minutes = self._validate_archive_duration(req.json)
        thread = await self._start_thread(parent, self._ids.next(), kind, name, minutes)
        return json_response(201, self.channel_payload(thread))

    async def _h_thread_join(self, req: ApiRequest) -> web.StreamResponse:
        thread = self._channel(req.int_param("channel_id"))
        self._require_bot(thread)
        if not thread.is_thread:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        thread.member_ids.add(self.bot_user.id)
        return no_content()

    async def _h_typing(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, self._send_permission(channel))
        return no_content()

    async def _h_reaction_add(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel, "read_message_history")
        message = self._message_in(channel, req.int_param("message_id"))
        emoji = req.param("emoji")
        if emoji not in message.reactions:
            self._require_bot(channel, "add_reactions")
        message.reactions.setdefault(emoji, set()).add(self.bot_user.id)
        await self._dispatch_reaction("MESSAGE_REACTION_ADD", message, emoji)
        return no_content()

    async def _h_reaction_remove(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        message = self._message_in(channel, req.int_param("message_id"))
        emoji = req.param("emoji")
        message.reactions.get(emoji, set()).discard(self.bot_user.id)
        await self._dispatch_reaction("MESSAGE_REACTION_REMOVE", message, emoji)
        return no_content()

    async def _dispatch_reaction(self, event: str, message: StoredMessage, emoji: str) -> None:
        data: Json = {
            "user_id": str(self.bot_user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": emoji_payload(emoji),
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
