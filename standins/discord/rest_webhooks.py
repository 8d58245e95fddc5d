"""REST routes of channel webhooks: creating, listing, reading and deleting a channel's webhooks (the
bot, with Manage Webhooks), and executing one by its token (posting, editing and deleting its messages,
in the channel or in one of its threads with ``thread_id``), in Discord's shapes.

The token routes share their paths with interaction followups (``/webhooks/{application_id}/{token}``):
a request whose webhook id is the application's is a followup, any other is a channel webhook's, and
its calls are recorded as ``channel_webhook_*`` kinds with their own rate-limit buckets.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from aiohttp import web

from .constants import GUILD_TEXT, INTENT_GUILD_WEBHOOKS
from .errors import DiscordAPIError, FormErrors, form_error, json_response, no_content, unknown
from .models import FakeChannel, FakeUser, FakeWebhook, Json, StoredMessage, to_int, walk_components
from .rest import ApiRequest
from .rest_interactions import InteractionRoutes

MAX_WEBHOOK_NAME_CHARS = 80
MAX_WEBHOOKS_PER_CHANNEL = 15
FORBIDDEN_NAME_PARTS = ("clyde", "discord")
"""Discord refuses webhook names (and execute usernames) containing these, in any case."""
INTERACTIVE_COMPONENT_TYPES = frozenset({2, 3, 5, 6, 7, 8})
"""Buttons and selects: only webhooks of an application may send them."""
CHANNEL_WEBHOOK_KINDS = {
    "webhook_execute": "channel_webhook_execute",
    "webhook_message_get": "channel_webhook_message_get",
    "webhook_message_edit": "channel_webhook_message_edit",
    "webhook_message_delete": "channel_webhook_message_delete",
}
"""The token routes' kinds when the webhook is a channel's rather than an interaction's."""
_TRUE = ("1", "true", "True")


class WebhookRoutes(InteractionRoutes):
    """Channel webhooks as the bot manages and executes them; each message is dispatched to the bot
    with its ``webhook_id`` (the author is the webhook, under the username the request gave)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.webhooks: dict[int, FakeWebhook] = {}

    # ---------------------------------------------------------------- for tests

    def add_webhook(
        self, channel_id: int, name: str, *, creator: FakeUser | int | None = None
    ) -> FakeWebhook:
        """A webhook a person made in the channel's settings (not the bot's application's)."""
        channel = self.channels[channel_id]
        if channel.guild_id is None or channel.is_thread:
            raise ValueError("webhooks belong to a guild's text channel")
        user = self._user(creator) if creator is not None else self.owner
        return self._new_webhook(channel, name, user, application_id=None)

    def delete_webhook(self, webhook_id: int) -> None:
        """Someone deletes the webhook in the server's settings: its token stops working (404 10015)."""
        self.webhooks[webhook_id].deleted = True

    def webhooks_in(self, channel_id: int) -> list[FakeWebhook]:
        """A channel's webhooks that still exist, oldest first."""
        return [w for w in self.webhooks.values() if w.channel_id == channel_id and not w.deleted]

    def webhook_messages(self, channel_id: int) -> list[StoredMessage]:
        """Messages webhooks posted in a channel or thread everyone sees, oldest first (interaction
        followups left out); ``message.author_name`` is the name each shows under."""
        return [
            m
            for m in self.messages_in(channel_id, include_ephemeral=False)
            if m.webhook_id is not None and m.webhook_id in self.webhooks
        ]

    # ---------------------------------------------------------------- routing

    def _route_kind(self, kind: str, request: web.Request) -> str:
        """A token route's kind: a followup's, or (any other webhook id) a channel webhook's."""
        if (
            kind in CHANNEL_WEBHOOK_KINDS
            and to_int(request.match_info.get("webhook_id")) != self.application_id
        ):
            return CHANNEL_WEBHOOK_KINDS[kind]
        return kind

    def _webhook_target_id(self, request: web.Request) -> int | None:
        """The channel a token request writes in (its thread, else the webhook's channel), for the
        per-channel limit and the record; None when the webhook is unknown."""
        webhook = self.webhooks.get(to_int(request.match_info.get("webhook_id")) or 0)
        if webhook is None:
            return None
        return to_int(request.query.get("thread_id")) or webhook.channel_id

    # ---------------------------------------------------------------- management (bot token)

    def _new_webhook(
        self, channel: FakeChannel, name: str, creator: FakeUser, *, application_id: int | None
    ) -> FakeWebhook:
        assert channel.guild_id is not None
        webhook = FakeWebhook(
            self._ids.next(),
            channel.id,
            channel.guild_id,
            name,
            secrets.token_urlsafe(48),
            creator,
            application_id=application_id,
        )
        self.webhooks[webhook.id] = webhook
        return webhook

    def webhook_payload(self, webhook: FakeWebhook, *, with_token: bool = True) -> Json:
        """A webhook object; the token only to whoever may see it (its creator application)."""
        data: Json = {
            "id": str(webhook.id),
            "type": 1,
            "guild_id": str(webhook.guild_id),
            "channel_id": str(webhook.channel_id),
            "user": webhook.creator.payload(),
            "name": webhook.name,
            "avatar": None,
            "application_id": None if webhook.application_id is None else str(webhook.application_id),
        }
        if with_token:
            data["token"] = webhook.token
            data["url"] = f"{self.base_url}/api/webhooks/{webhook.id}/{webhook.token}"
        return data

    def _token_visible(self, webhook: FakeWebhook) -> bool:
        return webhook.application_id is None or webhook.application_id == self.application_id

    def _webhook_of_bot(self, webhook_id: int) -> FakeWebhook:
        """A webhook the bot asks about by id: 404 10015 if gone, 403 without Manage Webhooks there."""
        webhook = self.webhooks.get(webhook_id)
        if webhook is None or webhook.deleted:
            raise unknown("Webhook", 10015)
        self._require_bot(self._channel(webhook.channel_id), "manage_webhooks")
        return webhook

    def _validate_webhook_name(self, errors: FormErrors, field_name: str, name: object) -> None:
        if not isinstance(name, str) or not name.strip():
            errors.add([field_name], "BASE_TYPE_REQUIRED", "This field is required")
            return
        if len(name) > MAX_WEBHOOK_NAME_CHARS:
            errors.add(
                [field_name],
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {MAX_WEBHOOK_NAME_CHARS} in length.",
            )
        lowered = name.lower()
        for part in FORBIDDEN_NAME_PARTS:
            if part in lowered:
                errors.add([field_name], "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{part}"')

    async def _h_channel_webhook_create(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        if channel.type != GUILD_TEXT:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        self._require_bot(channel, "manage_webhooks")
        errors = FormErrors()
        self._validate_webhook_name(errors, "name", req.json.get("name"))
        errors.raise_if_any()
        if len(self.webhooks_in(channel.id)) >= MAX_WEBHOOKS_PER_CHANNEL:
            raise DiscordAPIError(400, 30007, "Maximum number of webhooks reached (15)")
        webhook = self._new_webhook(
            channel, str(req.json["name"]), self.bot_user, application_id=self.application_id
        )
        await self._dispatch_webhooks_update(channel)
        return json_response(200, self.webhook_payload(webhook))

    async def _h_channel_webhooks(self, req: ApiRequest) -> web.StreamResponse:
        channel = self._channel(req.int_param("channel_id"))
        self._require_bot(channel)
        if channel.type != GUILD_TEXT:
            raise DiscordAPIError(400, 50024, "Cannot execute action on this channel type")
        self._require_bot(channel, "manage_webhooks")
        return json_response(
            200,
            [
                self.webhook_payload(w, with_token=self._token_visible(w))
                for w in self.webhooks_in(channel.id)
            ],
        )

    async def _h_webhook_get(self, req: ApiRequest) -> web.StreamResponse:
        webhook = self._webhook_of_bot(req.int_param("webhook_id"))
        return json_response(200, self.webhook_payload(webhook, with_token=self._token_visible(webhook)))

    async def _h_webhook_delete(self, req: ApiRequest) -> web.StreamResponse:
        webhook = self._webhook_of_bot(req.int_param("webhook_id"))
        webhook.deleted = True
        await self._dispatch_webhooks_update(self.channels[webhook.channel_id])
        return no_content()

    async def _dispatch_webhooks_update(self, channel: FakeChannel) -> None:
        data: Json = {"guild_id": str(channel.guild_id), "channel_id": str(channel.id)}
        await self._dispatch("WEBHOOKS_UPDATE", data, intent=INTENT_GUILD_WEBHOOKS, channel=channel)

    # ---------------------------------------------------------------- executing (webhook token)

    def _webhook_of_token(self, req: ApiRequest) -> FakeWebhook:
        webhook = self.webhooks.get(req.int_param("webhook_id"))
        if (
            webhook is None
            or webhook.deleted
            or not secrets.compare_digest(webhook.token, req.param("token"))
        ):
            raise unknown("Webhook", 10015)
        return webhook

    def _webhook_channel(self, webhook: FakeWebhook, req: ApiRequest) -> FakeChannel:
        """The webhook's channel, or the thread of it that ``thread_id`` names (400 otherwise)."""
        thread_id = req.request.query.get("thread_id")
        if thread_id is None:
            return self.channels[webhook.channel_id]
        thread = self.channels.get(to_int(thread_id) or 0)
        if thread is None or not thread.is_thread or thread.parent_id != webhook.channel_id:
            raise form_error(
                "thread_id", "CHANNEL_PARENT_INVALID", "Thread is not a child of the webhook's channel."
            )
        return thread

    def _webhook_components(self, webhook: FakeWebhook, body: Json, req: ApiRequest) -> list[Json] | None:
        """The components kept: all for an application's webhook; else none that are interactive, and
        the others only with ``with_components`` (Discord ignores them without it)."""
        components = body.get("components")
        if components is None or webhook.application_id is not None:
            return components
        if any(c.get("type") in INTERACTIVE_COMPONENT_TYPES for c in walk_components(components)):
            raise form_error(
                "components", "COMPONENT_INVALID", "Interactive components cannot be sent by this webhook."
            )
        return components if req.request.query.get("with_components") in _TRUE else []

    async def _h_channel_webhook_execute(self, req: ApiRequest) -> web.StreamResponse:
        webhook = self._webhook_of_token(req)
        channel = self._webhook_channel(webhook, req)
        body = req.json
        errors = FormErrors()
        if body.get("username") is not None:
            self._validate_webhook_name(errors, "username", body["username"])
        if body.get("avatar_url") is not None and not isinstance(body["avatar_url"], str):
            errors.add(["avatar_url"], "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        errors.raise_if_any()
        components = self._webhook_components(webhook, body, req)
        self._validate_message({**body, "components": components}, req.files, creating=True)
        if channel.is_thread and channel.archived:
            if channel.locked:
                raise DiscordAPIError(400, 50083, "Thread is archived")
            channel.archived = False  # a webhook's message unarchives the thread, as on Discord
        message = self._store_message(
            channel,
            webhook.author(body.get("username")),
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=components,
            uploads=req.files,
            flags=int(body.get("flags") or 0) & (1 << 2 | 1 << 12),  # suppress embeds, silent
            allowed_mentions=body.get("allowed_mentions"),
            webhook_id=webhook.id,
            tts=bool(body.get("tts", False)),
        )
        if webhook.application_id is None:
            message.data.pop("application_id", None)  # a person's webhook: no application behind it
        avatar_url = body.get("avatar_url")
        if avatar_url:
            # Discord fetches the image and shows it under an avatar hash of its own.
            message.data["author"]["avatar"] = hashlib.md5(str(avatar_url).encode()).hexdigest()
            message.avatar_url = str(avatar_url)
        await self._dispatch_message_create(message)
        if req.request.query.get("wait") in _TRUE:
            return json_response(200, self.message_payload(message))
        return no_content()

    def _webhook_message(self, webhook: FakeWebhook, req: ApiRequest) -> StoredMessage:
        """One of the webhook's messages, in the channel (or ``thread_id``'s thread) it was posted in."""
        channel = self._webhook_channel(webhook, req)
        message = self.messages.get(to_int(req.param("message_id")) or 0)
        if (
            message is None
            or message.deleted
            or message.channel_id != channel.id
            or message.webhook_id != webhook.id
        ):
            raise unknown("Message", 10008)
        return message

    async def _h_channel_webhook_message_get(self, req: ApiRequest) -> web.StreamResponse:
        webhook = self._webhook_of_token(req)
        return json_response(200, self.message_payload(self._webhook_message(webhook, req)))

    async def _h_channel_webhook_message_edit(self, req: ApiRequest) -> web.StreamResponse:
        webhook = self._webhook_of_token(req)
        message = self._webhook_message(webhook, req)
        body = dict(req.json)
        if "components" in body:
            body["components"] = self._webhook_components(webhook, body, req)
        self._validate_message(body, req.files, creating=False, existing=message)
        self._edit_message(message, body, req.files)
        await self._dispatch_message_update(message)
        return json_response(200, self.message_payload(message))

    async def _h_channel_webhook_message_delete(self, req: ApiRequest) -> web.StreamResponse:
        webhook = self._webhook_of_token(req)
        message = self._webhook_message(webhook, req)
        message.deleted = True
        await self._dispatch_message_delete(message)
        return no_content()

    # The token routes: a channel webhook's, else an interaction's followup (the parent's handlers).

    async def _h_webhook_execute(self, req: ApiRequest) -> web.StreamResponse:
        if req.call.kind == CHANNEL_WEBHOOK_KINDS["webhook_execute"]:
            return await self._h_channel_webhook_execute(req)
        return await super()._h_webhook_execute(req)

    async def _h_webhook_message_get(self, req: ApiRequest) -> web.StreamResponse:
        if req.call.kind == CHANNEL_WEBHOOK_KINDS["webhook_message_get"]:
            return await self._h_channel_webhook_message_get(req)
        return await super()._h_webhook_message_get(req)

    async def _h_webhook_message_edit(self, req: ApiRequest) -> web.StreamResponse:
        if req.call.kind == CHANNEL_WEBHOOK_KINDS["webhook_message_edit"]:
            return await self._h_channel_webhook_message_edit(req)
        return await super()._h_webhook_message_edit(req)

    async def _h_webhook_message_delete(self, req: ApiRequest) -> web.StreamResponse:
        if req.call.kind == CHANNEL_WEBHOOK_KINDS["webhook_message_delete"]:
            return await self._h_channel_webhook_message_delete(req)
        return await super()._h_webhook_message_delete(req)
