"""/usage: a member's own tokens today and this month (UTC), their budgets; admins see the server's.

Everything counted in the daily usage table shows up here: conversation turns, /imagine, embeddings
and extractions alike, since the budgets read the same rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import GuildSettings
from bot.limits import reset_time
from bot.storage import UsageTotals, utc_day

if TYPE_CHECKING:
    from bot.discord.app import AssistantBot

TOP_USERS = 5
USAGE_COLOUR = discord.Colour.teal()
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(frozen=True, slots=True)
class Period:
    """A span of UTC days ending today, as the usage table counts them."""

    label: str
    since_day: str


def periods(now: dt.datetime | None = None) -> tuple[Period, Period]:
    """Today and this month, in UTC."""
    now = now or dt.datetime.now(dt.UTC)
    return Period("today", utc_day(now)), Period("this month", utc_day(now.replace(day=1)))


def totals_line(totals: UsageTotals) -> str:
    requests = f"{totals.turns:,} request{'s' if totals.turns != 1 else ''}"
    return (
        f"**{totals.total_tokens:,}** tokens ({totals.input_tokens:,} in, {totals.output_tokens:,} out) "
        f"· {requests}"
    )


def budget_line(who: str, budget: int, used: UsageTotals | None) -> str:
    """One daily budget: its size and, when shown, how much of it is gone."""
    if budget == 0:
        return f"{who}: unlimited"
    if used is None:
        return f"{who}: {budget:,} tokens a day"
    left = max(0, budget - used.total_tokens)
    return f"{who}: {used.total_tokens:,} of {budget:,} tokens used today ({left:,} left)"


def top_lines(top: list[tuple[int, UsageTotals]]) -> str:
    if not top:
        return "Nobody yet."
    return "\n".join(
        f"{rank}. <@{user_id}> — {totals.total_tokens:,} tokens"
        for rank, (user_id, totals) in enumerate(top, 1)
    )


class UsageCog(commands.Cog):
    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Your token usage today and this month, and your budgets")
    async def usage(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = self.bot.services
        store = services.storage.usage
        guild_id = interaction.guild_id
        user_id = interaction.user.id
        settings = await services.settings.effective(guild_id)
        today, month = periods()
        mine_today = await store.user_total(guild_id, user_id, since_day=today.since_day)
        mine_month = await store.user_total(guild_id, user_id, since_day=month.since_day)
        where = "in this server" if guild_id is not None else "in direct messages"
        embed = discord.Embed(
            title="Token usage", description=f"Your usage {where} (UTC days).", colour=USAGE_COLOUR
        )
        embed.add_field(name="You, today", value=totals_line(mine_today), inline=False)
        embed.add_field(name="You, this month", value=totals_line(mine_month), inline=False)
        is_admin = guild_id is not None and interaction.permissions.manage_guild
        server_today = await store.guild_total(guild_id, since_day=today.since_day) if is_admin else None
        embed.add_field(
            name="Daily budgets", value=self._budgets(settings, mine_today, server_today), inline=False
        )
        if is_admin and guild_id is not None and server_today is not None:
            server_month = await store.guild_total(guild_id, since_day=month.since_day)
            embed.add_field(name="Server, today", value=totals_line(server_today), inline=False)
            embed.add_field(name="Server, this month", value=totals_line(server_month), inline=False)
            for period in (today, month):
                top = await store.top_users(guild_id, since_day=period.since_day, limit=TOP_USERS)
                embed.add_field(name=f"Top members {period.label}", value=top_lines(top), inline=True)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @staticmethod
    def _budgets(settings: GuildSettings, mine: UsageTotals, server: UsageTotals | None) -> str:
        """Both daily budgets; the server's use of its budget is for admins' eyes only."""
        lines = [
            budget_line("Yours", settings.daily_token_budget_user, mine),
            budget_line("The server's (shared)", settings.daily_token_budget_guild, server),
        ]
        if settings.daily_token_budget_user or settings.daily_token_budget_guild:
            lines.append(f"The count {reset_time().removeprefix('it ')}.")
        return "\n".join(lines)


async def setup(bot: AssistantBot) -> None:
    await bot.add_cog(UsageCog(bot))
