"""The Conversations API: conversations with metadata, and their items (list with paging, add, get,
delete)."""

from __future__ import annotations

import copy
import time
from typing import Any

from aiohttp import web

from .items import input_items
from .records import FakeConversation
from .state import OpenAIState
from .tokens import Json, new_id
from .wire import BadRequest, Call, json_response


def item_page(items: list[Json], *, has_more: bool) -> Json:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def check_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise BadRequest("Invalid type for 'metadata': expected an object of strings.", param="metadata")
    if len(raw) > 16:
        raise BadRequest("Invalid 'metadata': too many properties. Expected at most 16.", param="metadata")
    for key, value in raw.items():
        if len(key) > 64 or len(value) > 512:
            raise BadRequest(
                "Invalid 'metadata': keys are at most 64 and values 512 characters.", param="metadata"
            )
    return dict(raw)


class ConversationsApi(OpenAIState):
    """/v1/conversations and /v1/conversations/{id}/items."""

    async def _create_conversation(self, call: Call) -> web.StreamResponse:
        metadata = check_metadata(call.body.get("metadata"))
        raw_items = call.body.get("items") or []
        if len(raw_items) > 20:
            raise BadRequest("Invalid 'items': array too long. Expected at most 20 items.", param="items")
        items = input_items(raw_items)
        conversation = FakeConversation(
            id=new_id("conv"), created_at=int(time.time()), metadata=metadata, items=items
        )
        self.conversations[conversation.id] = conversation
        return json_response(conversation.as_json())

    async def _get_conversation(self, call: Call) -> web.StreamResponse:
        return json_response(self._conversation(call.params["cid"]).as_json())

    async def _update_conversation(self, call: Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        if "metadata" not in call.body:
            raise BadRequest("Missing required parameter: 'metadata'.", param="metadata")
        conversation.metadata = check_metadata(call.body["metadata"])
        return json_response(conversation.as_json())

    async def _delete_conversation(self, call: Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        del self.conversations[conversation.id]
        return json_response({"id": conversation.id, "object": "conversation.deleted", "deleted": True})

    async def _list_items(self, call: Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        query = call.request.query
        order = query.get("order", "desc")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise BadRequest("Invalid 'limit': expected an integer.", param="limit") from None
        if not 1 <= limit <= 100 or order not in ("asc", "desc"):
            raise BadRequest("Invalid 'limit' or 'order'.", param="limit")
        items = list(conversation.items) if order == "asc" else list(reversed(conversation.items))
        after = query.get("after")
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise BadRequest(f"Item with id '{after}' not found.", param="after", status=404)
            items = items[ids.index(after) + 1 :]
        return json_response(item_page(items[:limit], has_more=len(items) > limit))

    async def _create_items(self, call: Call) -> web.StreamResponse:
        conversation = self._conversation(call.params["cid"])
        raw_items = call.body.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise BadRequest("Missing required parameter: 'items'.", param="items")
        if len(raw_items) > 20:
            raise BadRequest("Invalid 'items': array too long. Expected at most 20 items.", param="items")
        items = input_items(raw_items)
        conversation.items.extend(items)
        return json_response(item_page(copy.deepcopy(items), has_more=False))

    def _find_item(self, call: Call) -> tuple[FakeConversation, Json]:
        conversation = self._conversation(call.params["cid"])
        for item in conversation.items:
            if item.get("id") == call.params["iid"]:
                return conversation, item
        raise BadRequest(f"Item with id '{call.params['iid']}' not found.", status=404)

    async def _get_item(self, call: Call) -> web.StreamResponse:
        return json_response(self._find_item(call)[1])

    async def _delete_item(self, call: Call) -> web.StreamResponse:
        conversation, item = self._find_item(call)
        conversation.items.remove(item)
        return json_response(conversation.as_json())
