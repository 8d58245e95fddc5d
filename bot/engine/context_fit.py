"""Fitting a request into a chat server's context window: its size, known or learned, and what fits.

Every Chat Completions request carries the instructions, the tool schemas, the stored history and the
new turn, and the server needs room left for the answer. Local servers often run small windows
(llama-cpp-python's default is 2,048 tokens, less than the bot's nine tool schemas), so the window is
taken from `[chat_backend] context_tokens`, else from the server's model list where it says (vLLM's
`max_model_len`, LM Studio's and gateways' `context_length`), else learned from the server's first
context-length error; the tools then get at most half of what is left (the rest of them are left
out for that request, logged once), and the history the remainder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
ANSWER_RESERVE_TOKENS = 1024
"""Room kept for the answer (at most a quarter of a small window)."""
TOOLS_SHARE = 2
"""The tool schemas get at most 1/TOOLS_SHARE of the room left after the instructions, turn and answer."""
WINDOW_FIELDS = ("max_model_len", "context_length", "context_window", "loaded_context_length")
"""Where servers' model lists say a model's window (vLLM, LM Studio and gateways, others)."""


def schema_tokens(tools: Iterable[dict[str, Any]]) -> int:
    """The estimated tokens of tool schemas as sent (compact JSON, about 4 characters a token)."""
    listed = list(tools)
    return len(json.dumps(listed, separators=(",", ":"))) // CHARS_PER_TOKEN if listed else 0


def answer_reserve(window: int) -> int:
    return min(ANSWER_RESERVE_TOKENS, window // 4)


@dataclass(frozen=True, slots=True)
class Fit:
    """What one request may carry: these tools, and this many tokens of history."""

    tools: list[dict[str, Any]]
    history_budget: int
    left_out: tuple[str, ...] = ()


def fit_request(
    *, window: int | None, history_budget: int, fixed_tokens: int, tools: list[dict[str, Any]]
) -> Fit:
    """Tools (in their order) and a history budget that fit `window` beside `fixed_tokens` (the
    instructions and the new turn) and the answer's reserve; without a known window, all the tools."""
    if window is None:
        return Fit(tools, max(0, history_budget - schema_tokens(tools)))
    room = max(0, window - answer_reserve(window) - fixed_tokens)
    kept: list[dict[str, Any]] = []
    left_out: list[str] = []
    kept_chars = 1  # the list's "[" and "]" once it has a tool; each tool adds itself and a ","
    for tool in tools:  # each schema serialised once, as `schema_tokens` would count the list
        chars = kept_chars + len(json.dumps(tool, separators=(",", ":"))) + 1
        if chars // CHARS_PER_TOKEN <= room // TOOLS_SHARE:
            kept.append(tool)
            kept_chars = chars
        else:
            left_out.append(_name(tool))
    return Fit(kept, max(0, min(history_budget, room - schema_tokens(kept))), tuple(left_out))


def _name(tool: dict[str, Any]) -> str:
    function = tool.get("function")
    return str(function.get("name")) if isinstance(function, dict) else str(tool.get("name", "?"))


class ContextSizes:
    """Each model's window on one server: the setting, else what the server said (asked once)."""

    def __init__(self, client: AsyncOpenAI, configured: int | None) -> None:
        self._client = client
        self._configured = configured
        self._known: dict[str, int | None] = {}
        self._warned: set[tuple[str, int, tuple[str, ...]]] = set()

    async def window(self, model: str) -> int | None:
        if self._configured is not None:
            return self._configured
        if model not in self._known:
            self._known[model] = await self._ask_server(model)
        return self._known[model]

    def learn(self, model: str, window: int) -> None:
        """The window a context-length error named (a configured size stays: it is the operator's)."""
        if self._configured is None and self._known.get(model) != window:
            log.info("The chat server's context window for %s is %d tokens (from its error)", model, window)
            self._known[model] = window

    def note_left_out(self, model: str, window: int, left_out: tuple[str, ...]) -> None:
        """Say once per model and window which tools did not fit, and what to change."""
        key = (model, window, left_out)
        if left_out and key not in self._warned:
            self._warned.add(key)
            log.warning(
                "%s's context window (%d tokens) cannot hold every tool schema beside the instructions"
                " and an answer: left out %s. Give the server a larger context (llama.cpp: -c / --n_ctx)"
                " or enable fewer tools (/config set tools)",
                model,
                window,
                ", ".join(left_out),
            )

    async def _ask_server(self, model: str) -> int | None:
        try:
            page = await self._client.models.list()
        except (openai.APIError, ValueError) as exc:
            log.debug("The chat server's model list is unavailable (%s); its window is unknown", exc)
            return None
        for entry in page.data:
            if entry.id != model and len(page.data) > 1:
                continue
            extra = entry.model_extra or {}
            for field in WINDOW_FIELDS:
                value = extra.get(field)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    log.info(
                        "The chat server says %s's context window is %d tokens (%s)", model, value, field
                    )
                    return value
        return None
