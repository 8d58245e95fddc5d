"""The OpenAI-hosted tools a guild can switch on: code interpreter, web search and image generation.

Unlike function tools (`bot/tooling.py`), these run at OpenAI: the bot only declares them in the
Responses request and shows what they did. They exist on the `responses` backend only (the `chat`
backend never sends them, and `GuildSettings` refuses them there) and cost money, so they are off
by default. `image_generation` is the one name that works on both backends: hosted here on
`responses`, a function tool over the Images API on `chat` (`tools/images/`); either is offered only
where the guild has images enabled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import IMAGE_TOOL, GuildSettings


@dataclass(frozen=True, slots=True)
class HostedTool:
    """One hosted tool: its name in `enabled_tools`, its output item type and its activity line."""

    name: str
    item_type: str
    activity: str
    include: tuple[str, ...] = ()
    """Extra response fields to ask for (`include=`), e.g. the code interpreter's logs and images."""

    def definition(
        self,
        *,
        file_ids: Sequence[str] = (),
        image_model: str | None = None,
        vector_store_ids: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The tool as the Responses API takes it (a fresh dict: the SDK may keep a reference).

        `file_ids`: the conversation's uploaded files, given to the code interpreter's container;
        `image_model`: the model the image generation tool draws with; `vector_store_ids`: the stores
        file search searches (the guild's).
        """
        if self.name == "file_search":
            return {"type": "file_search", "vector_store_ids": list(vector_store_ids)}
        if self.name == "code_interpreter":
            container: dict[str, Any] = {"type": "auto"}
            if file_ids:
                container["file_ids"] = list(file_ids)
            return {"type": "code_interpreter", "container": container}
        if self.name == IMAGE_TOOL and image_model is not None:
            return {"type": IMAGE_TOOL, "model": image_model}
        return {"type": self.name}


CODE_INTERPRETER = HostedTool(
    name="code_interpreter",
    item_type="code_interpreter_call",
    activity="Running code…",
    include=("code_interpreter_call.outputs",),
)
WEB_SEARCH = HostedTool(name="web_search", item_type="web_search_call", activity="Searching the web…")
FILE_SEARCH = HostedTool(
    name="file_search",
    item_type="file_search_call",
    activity="Searching the knowledge base…",
    include=("file_search_call.results",),
)
"""Not a name in `enabled_tools`: it serves `knowledge` for a guild whose `knowledge_store` is `openai`."""

IMAGE_GENERATION = HostedTool(
    name=IMAGE_TOOL, item_type="image_generation_call", activity="Drawing an image…"
)

ALL_HOSTED_TOOLS: tuple[HostedTool, ...] = (CODE_INTERPRETER, WEB_SEARCH)
"""In the order of `bot.config.HOSTED_TOOLS`, the names a guild's `enabled_tools` accepts."""


def offered_tools(settings: GuildSettings) -> tuple[str, ...]:
    """The guild's enabled tools that are offered: image generation only where images are enabled."""
    if settings.images_enabled:
        return settings.enabled_tools
    return tuple(name for name in settings.enabled_tools if name != IMAGE_TOOL)


def enabled_hosted_tools(enabled: Iterable[str]) -> list[HostedTool]:
    """The hosted tools among a guild's enabled tools, in a stable order (image generation last)."""
    wanted = set(enabled)
    return [tool for tool in (*ALL_HOSTED_TOOLS, IMAGE_GENERATION) if tool.name in wanted]


def hosted_tool_for_item(item_type: str) -> HostedTool | None:
    """Which hosted tool an output item (`code_interpreter_call`, `web_search_call`...) belongs to."""
    return next(
        (tool for tool in (*ALL_HOSTED_TOOLS, IMAGE_GENERATION, FILE_SEARCH) if tool.item_type == item_type),
        None,
    )
