"""Input items and chat messages: Responses input normalised into conversation items (ids, status,
typed parts), OpenAI's function-call pairing rules, and the default echo responders."""

from __future__ import annotations

import json
from typing import Any

from .script import Reply
from .tokens import Json, message_text, new_id
from .wire import BadRequest

_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


def _content_part(part: Any, role: str, where: str) -> Json:
    if isinstance(part, str):
        part = {"type": "output_text" if role == "assistant" else "input_text", "text": part}
    if not isinstance(part, dict) or "type" not in part:
        raise BadRequest(f"Invalid value for '{where}': expected a content part object.", param=where)
    kind = part["type"]
    if kind in ("input_text", "output_text") and not isinstance(part.get("text"), str):
        raise BadRequest(f"Missing required parameter: '{where}.text'.", param=f"{where}.text")
    if kind == "output_text":
        return {"type": "output_text", "text": part["text"], "annotations": part.get("annotations") or []}
    if kind == "input_text":
        return {"type": "input_text", "text": part["text"]}
    if kind == "input_image":
        return {
            "type": "input_image",
            "detail": part.get("detail") or "auto",
            "image_url": part.get("image_url"),
            "file_id": part.get("file_id"),
        }
    return dict(part)


def _to_item(raw: Any, index: int) -> Json:
    """Turn one Responses input item into the stored conversation item (ids, status, typed parts)."""
    where = f"input[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"Invalid type for '{where}': expected an object.", param=where)
    kind = raw.get("type") or ("message" if "role" in raw else None)
    if kind == "message":
        role = raw.get("role")
        if role not in _MESSAGE_ROLES:
            raise BadRequest(
                f"Invalid value: '{role}'. Supported values are: {sorted(_MESSAGE_ROLES)}.", param=where
            )
        content = raw.get("content")
        parts = [content] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise BadRequest(f"Missing required parameter: '{where}.content'.", param=f"{where}.content")
        item: Json = {
            "id": raw.get("id") or new_id("msg"),
            "type": "message",
            "role": role,
            "status": "completed",
            "content": [_content_part(part, role, f"{where}.content[{n}]") for n, part in enumerate(parts)],
        }
        if raw.get("phase"):
            item["phase"] = raw["phase"]
        return item
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(raw.get(name), str):
                raise BadRequest(f"Missing required parameter: '{where}.{name}'.", param=f"{where}.{name}")
        return {**raw, "id": raw.get("id") or new_id("fc"), "status": raw.get("status") or "completed"}
    if kind == "function_call_output":
        if not isinstance(raw.get("call_id"), str):
            raise BadRequest(f"Missing required parameter: '{where}.call_id'.", param=f"{where}.call_id")
        if "output" not in raw:
            raise BadRequest(f"Missing required parameter: '{where}.output'.", param=f"{where}.output")
        return {**raw, "id": raw.get("id") or new_id("fco"), "status": raw.get("status") or "completed"}
    if kind is None:
        raise BadRequest(f"Missing required parameter: '{where}.type'.", param=f"{where}.type")
    return {**raw, "id": raw.get("id") or new_id("item")}


def input_items(raw_input: Any) -> list[Json]:
    if raw_input is None:
        return []
    if isinstance(raw_input, str):
        raw_input = [{"type": "message", "role": "user", "content": raw_input}]
    if not isinstance(raw_input, list):
        raise BadRequest("Invalid type for 'input': expected a string or an array of items.", param="input")
    return [_to_item(raw, index) for index, raw in enumerate(raw_input)]


def check_tool_pairs(context: list[Json]) -> None:
    """OpenAI's 400s for a function call left unanswered or an output answering no call."""
    called = [item["call_id"] for item in context if item.get("type") == "function_call"]
    answered = {item["call_id"] for item in context if item.get("type") == "function_call_output"}
    for call_id in called:
        if call_id not in answered:
            raise BadRequest(f"No tool output found for function call {call_id}.", param="input")
    for call_id in answered - set(called):
        raise BadRequest(
            f"No tool call found for function call output with call_id {call_id}.", param="input"
        )


def _last_user_input(items: list[Json]) -> str:
    """What the default responder echoes: the last user text, or the outputs of a tool round."""
    outputs: list[str] = []
    for item in reversed(items):
        if item.get("type") == "function_call_output":
            output = item.get("output")
            outputs.insert(0, output if isinstance(output, str) else json.dumps(output))
            continue
        if outputs:
            break
        if item.get("type") == "message" and item.get("role") == "user":
            return message_text(item)
    return "\n".join(outputs)


def echo_response(body: Json) -> Reply:
    """Default Responses behaviour: "echo: <last user text>"."""
    try:
        items = input_items(body.get("input"))
    except BadRequest:
        items = []
    return Reply(f"echo: {_last_user_input(items)}")


def echo_chat(body: Json) -> Reply:
    """Default Chat Completions behaviour: "echo: <last user or tool message text>"."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return Reply(f"echo: {message_text(message)}")
    return Reply("echo: ")
