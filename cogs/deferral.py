"""Acknowledging an interaction before slow work, without making its errors public.

A public "thinking…" placeholder is replaced by the first followup, whatever that followup's ephemeral
flag says. So when the work fails, the placeholder is deleted first: the error handler's followup then
arrives as a new, private message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import discord

log = logging.getLogger(__name__)


@asynccontextmanager
async def public_thinking(interaction: discord.Interaction) -> AsyncIterator[None]:
    """Defer at once with a public placeholder; remove it if the block raises."""
    await interaction.response.defer(thinking=True)
    try:
        yield
    except Exception:
        try:
            await interaction.delete_original_response()
        except discord.HTTPException:
            log.warning("Could not remove the thinking placeholder", exc_info=True)
        raise
