"""Discord's limits on an embed's text (and on autocomplete choices), applied in one place.

Discord refuses a whole message (400) when its embed's title, description, field names and values and
footer add up to more than 6000 characters, even though each part is within its own limit: ten long
search passages or six long contact fields are enough. Fields are added last, sharing what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import discord
from discord import app_commands

MAX_EMBED_CHARS = 6000
MAX_FIELD_NAME_CHARS = 256
MAX_FIELD_VALUE_CHARS = 1024
MAX_FIELDS = 25
MAX_CHOICES = 25
MAX_CHOICE_CHARS = 100  # a choice's name and its value alike


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def field_share(embed: discord.Embed, names: Sequence[str]) -> int:
    """How many characters each of these fields' values may have, the embed being otherwise complete."""
    used = len(embed) + sum(len(cut(name, MAX_FIELD_NAME_CHARS)) for name in names)
    return max(1, min(MAX_FIELD_VALUE_CHARS, (MAX_EMBED_CHARS - used) // max(1, len(names))))


def add_fields(embed: discord.Embed, fields: Sequence[tuple[str, str, bool]]) -> discord.Embed:
    """Add (name, value, inline) fields after everything else is set, values cut to fit the total."""
    fields = [(cut(name, MAX_FIELD_NAME_CHARS), value, inline) for name, value, inline in fields[:MAX_FIELDS]]
    budget = MAX_EMBED_CHARS - len(embed) - sum(len(name) for name, _, _ in fields)
    for index, (name, value, inline) in enumerate(fields):
        share = max(1, min(MAX_FIELD_VALUE_CHARS, budget // (len(fields) - index)))
        shown = cut(value, share) or "—"
        budget -= len(shown)
        embed.add_field(name=name, value=shown, inline=inline)
    return embed


def choices_containing(names: Iterable[str], typed: str) -> list[app_commands.Choice[str]]:
    """Autocomplete: the names that contain what was typed (any case), as many as Discord shows. A
    name longer than a choice's value may be is left out: it could not be sent back."""
    wanted = typed.strip().casefold()
    found = [name for name in names if wanted in name.casefold() and len(name) <= MAX_CHOICE_CHARS]
    return [app_commands.Choice(name=name, value=name) for name in found[:MAX_CHOICES]]
