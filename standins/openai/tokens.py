"""The fake's tokenizer (words and punctuation marks) and what counts against a context window, ids,
and how text is cut into stream deltas."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, TypeAlias

Json: TypeAlias = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


_TOKEN_COUNT_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(_TOKEN_COUNT_RE.findall(text))


ITEM_OVERHEAD_TOKENS = 4

IMAGE_INPUT_TOKENS = 85


def item_tokens(item: Json) -> int:
    """Tokens of one Responses item or Chat Completions message (text, call arguments, outputs)."""
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        content = item.get("content")
        images = sum(
            1
            for part in (content if isinstance(content, list) else [])
            if isinstance(part, dict) and part.get("type") in ("input_image", "image_url")
        )
        calls = "".join(
            f"{call['function'].get('name', '')} {call['function'].get('arguments', '')}"
            for call in item.get("tool_calls") or []
            if isinstance(call, dict) and isinstance(call.get("function"), dict)
        )
        spoken = count_tokens(message_text(item) + " " + calls)
        return ITEM_OVERHEAD_TOKENS + spoken + images * IMAGE_INPUT_TOKENS
    if kind == "function_call":
        return ITEM_OVERHEAD_TOKENS + count_tokens(f"{item.get('name', '')} {item.get('arguments', '')}")
    if kind == "function_call_output":
        output = item.get("output")
        return ITEM_OVERHEAD_TOKENS + count_tokens(output if isinstance(output, str) else json.dumps(output))
    return ITEM_OVERHEAD_TOKENS + count_tokens(json.dumps(item))


def estimate_context_tokens(items: list[Json], instructions: Any = None, tools: Any = None) -> int:
    """What the fake counts against a context window: the items (or chat messages), the instructions
    and the tool definitions, each a few tokens of overhead plus its words and punctuation marks."""
    total = sum(item_tokens(item) for item in items)
    if isinstance(instructions, str):
        total += count_tokens(instructions)
    if tools:
        total += count_tokens(json.dumps(tools))
    return total


def message_text(item: Json) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content or []:
        if isinstance(part, dict):
            text = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


DELTA_CHARS = 16


def split_words(text: str) -> list[str]:
    """Streaming pieces, one per word (leading whitespace attached), covering the text exactly."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces.append(rest)
    return pieces


def split_n(text: str, count: int) -> list[str]:
    """`count` nearly equal pieces (fewer if the text is shorter)."""
    if not text:
        return []
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def split_every(text: str, size: int) -> list[str]:
    return [text[index : index + size] for index in range(0, len(text), size)] or [""]
