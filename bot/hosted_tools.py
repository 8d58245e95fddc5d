"""The OpenAI-hosted tools a guild can switch on: code interpreter and web search.

Unlike function tools (`bot/tooling.py`), these run at OpenAI: the bot only declares them in the
Responses request and shows what they did. They exist on the `responses` backend only (the `chat`
backend never sends them, and `GuildSettings` refuses them there) and cost money, so they are off
by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class HostedTool:
    """One hosted tool: its name in `enabled_tools`, its output item type and its activity line."""

    name: str
    item_type: str
    activity: str
    include: tuple[str, ...] = ()
    """Extra response fields to ask for (`include=`), e.g. the code interpreter's logs and images."""

    def definition(self) -> dict[str, Any]:
        """The tool as the Responses API takes it (a fresh dict: the SDK may keep a reference)."""
        if self.name == "code_interpreter":
            return {"type": "code_interpreter", "container": {"type": "auto"}}
        return {"type": self.name}


CODE_INTERPRETER = HostedTool(
    name="code_interpreter",
    item_type="code_interpreter_call",
    activity="Running code…",
    include=("code_interpreter_call.outputs",),
)
WEB_SEARCH = HostedTool(name="web_search", item_type="web_search_call", activity="Searching the web…")

ALL_HOSTED_TOOLS: tuple[HostedTool, ...] = (CODE_INTERPRETER, WEB_SEARCH)
"""In the order of `bot.config.HOSTED_TOOLS`, the names a guild's `enabled_tools` accepts."""


def enabled_hosted_tools(enabled: Iterable[str]) -> list[HostedTool]:
    """The hosted tools among a guild's enabled tools, in a stable order."""
    wanted = set(enabled)
    return [tool for tool in ALL_HOSTED_TOOLS if tool.name in wanted]


def hosted_tool_for_item(item_type: str) -> HostedTool | None:
    """Which hosted tool an output item (`code_interpreter_call`, `web_search_call`) belongs to."""
    return next((tool for tool in ALL_HOSTED_TOOLS if tool.item_type == item_type), None)
