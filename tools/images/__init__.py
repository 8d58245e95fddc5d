"""`generate_image`: a picture drawn in conversation on the chat backend, over the Images API.

On `responses` OpenAI's hosted image generation tool does this inside the model call; a Chat
Completions server has nothing of the kind, so here the model calls a function that asks the image
server (or OpenAI) through `bot.images`, the core `/imagine` uses. The image goes to the reply as an
attachment (`ToolFiles`), never to the model; its tokens are counted in the guild's usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from bot.config import IMAGE_TOOL, GuildSettings
from bot.conversation_files import ToolFiles
from bot.engine.events import GeneratedFile
from bot.engine.hosted_outputs import drawing_note
from bot.errors import UserFacingError
from bot.images import MAX_PROMPT_CHARS, generate_images
from bot.limits import budget_problem
from bot.services import Services
from bot.storage.usage import UsageStore
from bot.tooling import Tool, ToolContext, ToolError, ToolResult

__all__ = ["ImageTool", "register_image_tools"]

DESCRIPTION = (
    "Draw one picture from a description and attach it to your reply (the user sees it; you do not). "
    "Use it when the user asks you to draw, sketch, illustrate or picture something. Describe the "
    "picture fully in `prompt` (subject, style, composition, any text in it). Then say in a sentence "
    "what you drew."
)


class GenerateImageArgs(BaseModel):
    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="The full description of the picture."
    )
    shape: Literal["square", "landscape", "portrait"] = Field(
        description="The picture's shape: square, landscape (wide) or portrait (tall)."
    )


@dataclass(frozen=True, slots=True)
class ImageTool:
    """What the tool draws with: the image client, the model for a guild, and where usage and files go."""

    client: AsyncOpenAI
    usage: UsageStore
    files: ToolFiles
    served_model: str | None = None
    """The image server's model for every guild, or None: each guild's `image_model`."""

    def model_for(self, settings: GuildSettings) -> str:
        return self.served_model or settings.image_model

    async def draw(self, args: GenerateImageArgs, context: ToolContext) -> ToolResult:
        if not context.settings.images_enabled:
            raise ToolError("unavailable", "Image generation is turned off in this server.")
        # The turn was admitted within the budgets; a drawing costs more than most turns, so look again.
        spent = await budget_problem(
            self.usage, context.settings, guild_id=context.guild_id, user_id=context.user_id
        )
        if spent is not None:
            raise ToolError("budget", spent)
        try:
            result = await generate_images(
                self.client,
                model=self.model_for(context.settings),
                prompt=args.prompt,
                size=args.shape,
                count=1,
            )
        except UserFacingError as exc:
            raise ToolError("image_failed", str(exc)) from exc
        await self.usage.record(
            guild_id=context.guild_id,
            user_id=context.user_id,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        key = context.conversation_key
        drawing = GeneratedFile(f"drawing-{self.files.count(key) + 1}.png", result.images[0])
        revised = result.revised_prompt
        self.files.put(key, drawing, drawing_note(revised) if revised else None)
        data: dict[str, object] = {"attached": True, "size": result.size}
        if result.revised_prompt:
            data["drawn_from"] = result.revised_prompt
        return ToolResult.success(data, "Drew an image")

    def tool(self) -> Tool[GenerateImageArgs]:
        return Tool(
            name="generate_image",
            family=IMAGE_TOOL,
            description=DESCRIPTION,
            arguments=GenerateImageArgs,
            handler=self.draw,
            activity="Drawing an image…",
        )


def register_image_tools(services: Services) -> None:
    """Add `generate_image` when this bot has image generation (it is offered where a guild enables
    `image_generation` and images; on `responses` the hosted tool is offered instead)."""
    if services.image_client is None:
        return
    drawing = ImageTool(
        services.image_client,
        services.storage.usage,
        services.state.tool_files,
        served_model=services.features.image_model,
    )
    services.tools.add(drawing.tool())
