"""/imagine: images from a prompt, answered as PNG attachments."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError
from bot.images import MAX_IMAGES, MAX_PROMPT_CHARS, QUALITY_CHOICES, SIZE_CHOICES, generate_images
from cogs.deferral import public_thinking

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

MAX_CONTENT_CHARS = 2000
SIZE_LABELS = {
    "square": "Square",
    "landscape": "Landscape (wide)",
    "portrait": "Portrait (tall)",
    "auto": "Let the model choose",
}
QUALITY_LABELS = {
    "auto": "Let the model choose",
    "low": "Low (fastest, cheapest)",
    "medium": "Medium",
    "high": "High (slowest, costs the most)",
}


class ImagineCog(commands.Cog):
    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Create images from a description")
    @app_commands.describe(
        prompt="What the image should show",
        size="The shape of the image",
        count=f"How many images (1-{MAX_IMAGES})",
        quality="More detail takes longer and uses more of the server's budget",
    )
    @app_commands.choices(
        size=[app_commands.Choice(name=SIZE_LABELS[choice], value=choice) for choice in SIZE_CHOICES],
        quality=[app_commands.Choice(name=QUALITY_LABELS[q], value=q) for q in QUALITY_CHOICES],
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        size: str = "square",
        count: app_commands.Range[int, 1, MAX_IMAGES] = 1,
        quality: str = "auto",
    ) -> None:
        services = self.bot.services
        client = services.image_generation()  # off: one private sentence at once, nothing public
        async with public_thinking(interaction):
            settings = await services.settings.effective(interaction.guild_id)
            if not settings.images_enabled:
                raise UserFacingError("Image generation is turned off in this server.")
            choice = next((c for c in SIZE_CHOICES if c == size), None)
            if choice is None:
                raise UserFacingError(f"Unknown size {size!r}; choose {', '.join(SIZE_CHOICES)}.")
            level = next((q for q in QUALITY_CHOICES if q == quality), None)
            if level is None:
                raise UserFacingError(f"Unknown quality {quality!r}; choose {', '.join(QUALITY_CHOICES)}.")
            model = services.features.image_model_for(settings)
            result = await services.metered.call(
                settings,
                lambda: generate_images(
                    client, model=model, prompt=prompt, size=choice, count=count, quality=level
                ),
                guild_id=interaction.guild_id,
                user_id=interaction.user.id,
            )
        files = [
            discord.File(io.BytesIO(image), filename=f"imagine-{number}.png")
            for number, image in enumerate(result.images, start=1)
        ]
        caption = f"**Prompt:** {discord.utils.escape_markdown(prompt)}"
        if result.revised_prompt is not None:
            caption += f"\n**Drawn from:** {discord.utils.escape_markdown(result.revised_prompt)}"
        if result.quality is not None and level != "auto":
            caption += f"\n-# Quality: {result.quality}"
        if len(caption) > MAX_CONTENT_CHARS:
            caption = caption[: MAX_CONTENT_CHARS - 1] + "…"
        await interaction.followup.send(caption, files=files, allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(ImagineCog(bot))
