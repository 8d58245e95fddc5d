"""The Steps button under a reply whose turn ran tools: pressed, it shows (only to the presser) what
the turn did, in order: each tool, its arguments and result in brief, and how long it took.

`StepsButton` is a `DynamicItem` registered at start-up, like the confirmation buttons: its custom id
carries the turn's id, and the answer comes from the turn's records (`bot.storage.turn_steps`), so a
button answers also after a restart. Anyone who can see the reply may look (it is their channel):
the press must come from the turn's own channel (its thread, or its DM) in its guild. The press is
acknowledged (privately) before the records are read, so a slow database does not miss Discord's
three seconds; the read itself is bounded (`READ_WITHIN_S`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import discord

from bot.discord.render.stream import ReplyButton
from bot.engine.events import Cancelled, Completed, Failed
from bot.errors import DatabaseUnavailableError
from bot.storage.turn_steps import RecordedSteps, TurnStep, TurnStepStore

log = logging.getLogger(__name__)

STEPS_ID = re.compile(r"steps:(?P<turn>[0-9]{1,20})")
STEPS_LABEL = "Steps"
STEPS_EMOJI = "🧾"
MAX_DESCRIPTION_CHARS = 4096  # Discord's limit for an embed's description
NO_STEPS = "There is no record of what this reply did: it ran no tools, or its steps are no longer kept."
NOT_HERE = "These steps belong to a conversation elsewhere."
UNREADABLE = "The steps cannot be read right now; please try again in a moment."
READ_WITHIN_S = 10.0
"""How long a press waits for the records before it says they cannot be read: a safety net."""
MARKS = {"ok": "✅", "error": "⚠️", "declined": "⚠️ declined:", "cancelled": "⚠️ cancelled:"}


def steps_id(turn_id: int) -> str:
    return f"steps:{turn_id}"


def steps_buttons(done: Completed | Failed | Cancelled) -> tuple[ReplyButton, ...]:
    """The Steps button for a reply whose turn recorded steps (also one that failed or was stopped
    after them)."""
    if done.turn_id is None or not done.steps:
        return ()
    return (ReplyButton(STEPS_LABEL, steps_id(done.turn_id), STEPS_EMOJI),)


def duration_text(seconds: float) -> str:
    """ "1.2 s"; under a twentieth of a second in milliseconds, so a quick call does not read "0.0 s"."""
    return f"{seconds * 1000:.0f} ms" if seconds < 0.05 else f"{seconds:.1f} s"


def step_text(number: int, step: TurnStep) -> str:
    """One step: its number, tool and duration; its arguments; its outcome and result."""
    tool = f"{step.name} (hosted)" if step.kind == "hosted" else step.name
    head = f"**{number}. {discord.utils.escape_markdown(tool)}**"
    if step.duration_s is not None:
        head += f" · {duration_text(step.duration_s)}"
    lines = [head]
    if step.arguments:
        lines.append(f"`{_in_code(step.arguments)}`")
    result = discord.utils.escape_markdown(step.result) if step.result else ""
    lines.append(f"{MARKS.get(step.outcome, '⚠️')} {result}".rstrip())
    return "\n".join(lines)


def steps_description(steps: Sequence[TurnStep], *, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    """The steps in order, as many as fit in `limit` characters, then "… and N more".

    Each step keeps room for the "and N more" line after it, so that line always fits.
    """
    separator = "\n\n"
    parts: list[str] = []
    used = 0
    for index, step in enumerate(steps):
        text = step_text(index + 1, step)
        after = len(steps) - index - 1
        needed = len(text) + (len(separator) if parts else 0)
        reserve = len(separator + _more(after)) if after else 0
        if used + needed + reserve > limit:
            parts.append(_more(len(steps) - index))
            break
        parts.append(text)
        used += needed
    return separator.join(parts)


def _more(count: int) -> str:
    return f"… and {count} more"


def steps_embed(recorded: RecordedSteps) -> discord.Embed:
    count = len(recorded.steps)
    embed = discord.Embed(
        title="What this reply did",
        description=steps_description(recorded.steps),
        colour=discord.Colour.blurple(),
    )
    embed.set_footer(text=f"{count} tool call{'s' if count != 1 else ''}, in the order they started")
    return embed


def may_see(recorded: RecordedSteps, *, guild_id: int | None, channel_id: int | None) -> bool:
    """Whoever sees the reply where it is: the turn's own channel (its thread, or its DM) in its guild;
    a copy of the button elsewhere shows nothing. A DM whose person picked a server's assistant runs
    its turns as that server's (`guild_id` recorded), so a press in a DM goes by its channel alone."""
    in_guild = guild_id is None or guild_id == recorded.guild_id
    return in_guild and channel_id == recorded.channel_id


@runtime_checkable
class KeepsTurnSteps(Protocol):
    """A client that reads turns' steps (the bot: its storage's `turn_steps`)."""

    @property
    def turn_steps(self) -> TurnStepStore: ...


class StepsButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=STEPS_ID):
    """The Steps button of one turn's reply; `AssistantBot` registers the class with `add_dynamic_items`."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=STEPS_LABEL,
                emoji=STEPS_EMOJI,
                style=discord.ButtonStyle.secondary,
                custom_id=steps_id(turn_id),
            )
        )
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StepsButton:
        return cls(int(match["turn"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        client = interaction.client
        if not isinstance(client, KeepsTurnSteps):
            await _tell(interaction, NO_STEPS)
            return
        try:
            async with asyncio.timeout(READ_WITHIN_S):
                recorded = await client.turn_steps.of_turn(self.turn_id)
        except (DatabaseUnavailableError, TimeoutError):
            log.warning("Could not read the steps of turn %d", self.turn_id)
            await _tell(interaction, UNREADABLE)
            return
        if recorded is None:
            await _tell(interaction, NO_STEPS)
        elif not may_see(recorded, guild_id=interaction.guild_id, channel_id=interaction.channel_id):
            await _tell(interaction, NOT_HERE)
        else:
            await interaction.followup.send(
                embed=steps_embed(recorded), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )


async def _tell(interaction: discord.Interaction, sentence: str) -> None:
    """One sentence for the presser only, after the press was acknowledged."""
    await interaction.followup.send(sentence, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


def _in_code(text: str) -> str:
    """Text safe inside a one-line code span (a backtick would end it)."""
    return text.replace("`", "ˋ")
