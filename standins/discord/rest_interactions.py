"""REST routes of interactions: the initial callback (3-second deadline, one answer, types allowed per
interaction type, modals, autocomplete choices) and the webhook routes of followups and the original
response."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from .constants import (
    CALLBACK_AUTOCOMPLETE,
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    CALLBACKS_ALLOWED,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTERACTION_COMMAND,
)
from .errors import DiscordAPIError, FormErrors, form_error, json_response, no_content, unknown
from .interactions import UserInteractions
from .models import CallbackRecord, FakeChannel, InteractionRecord, Json, StoredMessage, Upload, to_int
from .rest import ApiRequest


class InteractionRoutes(UserInteractions):
    """How the bot answers interactions; every callback is recorded on its ``InteractionRecord``."""

    async def _h_interaction_callback(self, req: ApiRequest) -> web.StreamResponse:
        """The initial response; 404 10062 after the deadline, 400 40060 when already answered."""
        record = self.interactions.get(req.int_param("interaction_id"))
        if record is None or record.token != req.param("token"):
            raise unknown("interaction", 10062)
        latency = req.call.at - record.dispatched_at
        body = req.json
        kind = to_int(body.get("type"))
        data: Json = body.get("data") or {}
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)

        def reject(error: DiscordAPIError) -> DiscordAPIError:
            record.callbacks.append(CallbackRecord(kind or 0, data, latency, ephemeral, error.status))
            return error

        if record.acknowledged:
            raise reject(DiscordAPIError(400, 40060, "Interaction has already been acknowledged."))
        if latency > self.interaction_deadline_s:
            raise reject(unknown("interaction", 10062))
        if kind not in CALLBACKS_ALLOWED.get(record.type, frozenset()):
            raise reject(
                form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
            )
        channel = self.channels[record.channel_id]
        message: StoredMessage | None = None
        message_type = 20 if record.type == INTERACTION_COMMAND else 0
        try:
            if kind == CALLBACK_MESSAGE:
                self._validate_message(data, req.files, creating=True)
                message = self._store_message(
                    channel,
                    self.bot_user,
                    content=data.get("content") or "",
                    embeds=data.get("embeds"),
                    components=data.get("components"),
                    uploads=req.files,
                    flags=int(data.get("flags") or 0) & ~FLAG_LOADING,
                    message_type=message_type,
                    allowed_mentions=data.get("allowed_mentions"),
                    webhook_id=self.application_id,
                    interaction=record,
                    tts=bool(data.get("tts", False)),
                )
                record.original_message_id = message.id
            elif kind == CALLBACK_DEFERRED_MESSAGE:
                flags = FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0)
                message = self._store_message(
                    channel,
                    self.bot_user,
                    flags=flags,
                    message_type=message_type,
                    webhook_id=self.application_id,
                    interaction=record,
                )
                record.original_message_id = message.id
            elif kind == CALLBACK_UPDATE_MESSAGE:
                if record.message_id is None:
                    raise DiscordAPIError(400, 50035, "Invalid Form Body")
                message = self.messages[record.message_id]
                self._validate_message(data, req.files, creating=False, existing=message)
                self._edit_message(message, data, req.files)
            elif kind == CALLBACK_MODAL:
                self._validate_modal(data)
                record.modal = data
            elif kind == CALLBACK_AUTOCOMPLETE:
                record.autocomplete_choices = list(data.get("choices") or [])
        except DiscordAPIError as exc:
            raise reject(exc) from None
        record.callbacks.append(CallbackRecord(kind, data, latency, ephemeral, 200))
        if message is not None:
            if kind == CALLBACK_UPDATE_MESSAGE:
                await self._dispatch_message_update(message)
            else:
                await self._dispatch_message_create(message)
        if req.request.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        response: Json = {
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "response_message_loading": kind == CALLBACK_DEFERRED_MESSAGE,
                "response_message_ephemeral": ephemeral,
            }
        }
        if message is not None:
            response["interaction"]["response_message_id"] = str(message.id)
            response["resource"] = {"type": kind, "message": self.message_payload(message)}
        else:
            response["resource"] = {"type": kind}
        return json_response(200, response)

    def _validate_modal(self, data: Json) -> None:
        errors = FormErrors()
        if not data.get("custom_id"):
            errors.add(["data", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
        title = data.get("title")
        if not isinstance(title, str) or not title:
            errors.add(["data", "title"], "BASE_TYPE_REQUIRED", "This field is required")
        else:
            errors.max_length(["data", "title"], title, 45)
        rows = data.get("components") or []
        if not 1 <= len(rows) <= 5:
            errors.add(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        errors.raise_if_any()

    def _interaction_of_webhook(self, req: ApiRequest) -> InteractionRecord:
        record = self._interactions_by_token.get(req.param("token"))
        if record is None or req.int_param("webhook_id") != self.application_id:
            raise unknown("Webhook", 10015)
        return record

    def _interaction_message(self, record: InteractionRecord, message_ref: str) -> StoredMessage:
        if message_ref == "@original":
            message_id = record.original_message_id
            # After a (deferred) update, @original is the message whose component was used.
            if message_id is None and record.response_type in (
                CALLBACK_DEFERRED_UPDATE,
                CALLBACK_UPDATE_MESSAGE,
            ):
                message_id = record.message_id
        else:
            message_id = to_int(message_ref)
            if message_id not in (record.original_message_id, record.message_id, *record.followup_ids):
                message_id = None
        message = self.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise unknown("Message", 10008)
        return message

    async def _h_webhook_execute(self, req: ApiRequest) -> web.StreamResponse:
        """A followup: needs the interaction acknowledged first, as on Discord.

        The first followup after a deferred ("thinking") response replaces the loading message rather
        than posting a new one, and keeps the deferral's visibility: its own ephemeral flag is ignored.
        """
        record = self._interaction_of_webhook(req)
        if not record.acknowledged:
            raise unknown("Webhook", 10015)
        body = req.json
        self._validate_message(body, req.files, creating=True)
        channel = self.channels[record.channel_id]
        loading = self.messages.get(record.original_message_id or 0)
        if loading is not None and loading.loading and not loading.deleted:
            self._edit_message(loading, {"embeds": [], "components": [], **body}, req.files)
            record.followup_ids.append(loading.id)
            await self._dispatch_message_update(loading)
            message = loading
        else:
            message = await self._post_followup(record, channel, body, req.files)
        if req.request.query.get("wait") in ("1", "true", "True"):
            return json_response(200, self.message_payload(message))
        return no_content()

    async def _post_followup(
        self, record: InteractionRecord, channel: FakeChannel, body: Json, uploads: Sequence[Upload]
    ) -> StoredMessage:
        message = self._store_message(
            channel,
            self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            uploads=uploads,
            flags=int(body.get("flags") or 0) & ~FLAG_LOADING,
            message_type=20 if record.type == INTERACTION_COMMAND else 0,
            allowed_mentions=body.get("allowed_mentions"),
            webhook_id=self.application_id,
            interaction=record,
            tts=bool(body.get("tts", False)),
        )
        record.followup_ids.append(message.id)
        await self._dispatch_message_create(message)
        return message

    async def _h_webhook_message_get(self, req: ApiRequest) -> web.StreamResponse:
        record = self._interaction_of_webhook(req)
        return json_response(
            200, self.message_payload(self._interaction_message(record, req.param("message_id")))
        )

    async def _h_webhook_message_edit(self, req: ApiRequest) -> web.StreamResponse:
        record = self._interaction_of_webhook(req)
        message = self._interaction_message(record, req.param("message_id"))
        self._validate_message(req.json, req.files, creating=False, existing=message)
        self._edit_message(message, req.json, req.files)
        await self._dispatch_message_update(message)
        return json_response(200, self.message_payload(message))

    async def _h_webhook_message_delete(self, req: ApiRequest) -> web.StreamResponse:
        record = self._interaction_of_webhook(req)
        message = self._interaction_message(record, req.param("message_id"))
        message.deleted = True
        await self._dispatch_message_delete(message)
        return no_content()
