"""/usage and /help end to end: what a member and an admin see, in a server and in DMs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cogs.usage import periods
from standins.openai import FakeOpenAI, Reply
from tests.command_support import WAIT_S, run
from tests.harness import Harness, running_bot


def guild_id(h: Harness) -> int:
    return h.world.guild.id


async def config_set(h: Harness, setting: str, value: str) -> None:
    answer = await run(h, "config set", {"setting": setting, "value": value}, user=h.world.admin)
    assert "is now" in answer.text, answer.text


def test_periods_are_today_and_the_month_so_far_in_utc() -> None:
    late = dt.datetime(2026, 3, 31, 23, 59, tzinfo=dt.UTC)
    today, month = periods(late)
    assert (today.since_day, month.since_day) == ("2026-03-31", "2026-03-01")


async def test_usage_counts_the_callers_tokens_today_and_this_month(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(Reply("fine", usage=(900, 200)))
    async with running_bot(tmp_path, fake_openai) as h:
        alice = h.alice
        await h.discord.user_message(h.general.id, alice, f"{h.bot_mention} hello", mentions_bot=True)
        await h.discord.wait_for(
            lambda: any(m.content == "fine" for m in h.discord.messages_by(h.discord.bot_user)),
            timeout=WAIT_S,
        )
        usage = h.services.storage.usage
        await h.services.engine.wait_idle()  # the turn's usage is written as the turn closes
        # Another feature (e.g. /imagine) records its tokens in the same table.
        await usage.record(guild_id=guild_id(h), user_id=alice.id, input_tokens=50, output_tokens=0)
        today, month = periods()
        first_of_month = dt.date.fromisoformat(month.since_day)
        last_month = (first_of_month - dt.timedelta(days=1)).isoformat()
        await usage.record(
            guild_id=guild_id(h), user_id=alice.id, input_tokens=7, output_tokens=0, day=last_month
        )
        if month.since_day != today.since_day:
            await usage.record(
                guild_id=guild_id(h),
                user_id=alice.id,
                input_tokens=0,
                output_tokens=1000,
                day=month.since_day,
            )
        month_extra = 1000 if month.since_day != today.since_day else 0

        mine = await run(h, "usage", user=alice)
        assert mine.ephemeral
        assert mine.field("You, today") == "**1,150** tokens (950 in, 200 out) · 2 requests"
        month_tokens = 1150 + month_extra
        assert mine.field("You, this month").startswith(f"**{month_tokens:,}** tokens")
        assert mine.field("Daily budgets") == "Yours: unlimited\nThe server's (shared): unlimited"
        assert "Server, today" not in mine.text and "Top members" not in mine.text

        await config_set(h, "daily_token_budget_user", "5000")
        await config_set(h, "daily_token_budget_guild", "100k")
        budgets = (await run(h, "usage", user=alice)).field("Daily budgets").splitlines()
        assert budgets[0] == "Yours: 1,150 of 5,000 tokens used today (3,850 left)"
        assert budgets[1] == "The server's (shared): 100,000 tokens a day"
        assert budgets[2].startswith("The count resets at 00:00 UTC (in ")


async def test_admins_also_see_the_server_totals_and_top_members(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        usage = h.services.storage.usage
        alice, bob, admin = h.alice, h.world.bob, h.world.admin
        await usage.record(guild_id=guild_id(h), user_id=alice.id, input_tokens=100, output_tokens=20)
        await usage.record(guild_id=guild_id(h), user_id=bob.id, input_tokens=2500, output_tokens=500)
        await usage.record(guild_id=guild_id(h) + 1, user_id=bob.id, input_tokens=9999, output_tokens=0)
        await usage.record(guild_id=None, user_id=alice.id, input_tokens=10, output_tokens=5)
        await config_set(h, "daily_token_budget_guild", "10k")

        report = await run(h, "usage", user=admin)
        assert report.ephemeral
        assert report.field("Server, today") == "**3,120** tokens (2,600 in, 520 out) · 2 requests"
        assert (
            report.field("Top members today")
            == f"1. {bob.mention} — 3,000 tokens\n2. {alice.mention} — 120 tokens"
        )
        assert "The server's (shared): 3,120 of 10,000 tokens used today (6,880 left)" in report.text
        followup = next(
            c for c in h.discord.calls if c.kind == "webhook_execute" and "Top members" in str(c.json)
        )
        assert followup.allowed_mentions is not None and followup.allowed_mentions.get("parse") == []

        dm = await run(h, "usage", user=alice, channel_id=h.discord.dm_channel(alice).id)
        assert "Your usage in direct messages" in dm.text
        assert dm.field("You, today").startswith("**15** tokens")
        assert "Server, today" not in dm.text


async def test_help_reflects_this_servers_settings(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        first = await run(h, "help", user=h.alice)
        assert first.ephemeral and first.record.ack_latency_s is not None
        talking = first.field("Talking to me")
        assert f"Mention {h.bot_mention} in any channel" in talking and "I open a thread" in talking
        assert "You can also send me a direct message." in talking
        tools = first.field("What I can do for you")
        assert "book tables" in tools and "order rides" in tools and "I ask you before booking" in tools
        assert "`/imagine` — create images from a description" in first.field("Commands")
        assert "Limits here" not in first.text

        await config_set(h, "images_enabled", "off")
        await config_set(h, "channels", "#general")
        await config_set(h, "mention_opens_thread", "off")
        await config_set(h, "enabled_tools", "none")
        await config_set(h, "user_cooldown_s", "30")
        await config_set(h, "daily_token_budget_user", "20k")
        after = await run(h, "help", user=h.alice)
        talking = after.field("Talking to me")
        assert f"Mention {h.bot_mention} in <#{h.general.id}>." in talking and "right below" in talking
        assert (
            after.field("What I can do for you")
            == "Answer questions and chat; no tools are switched on here."
        )
        assert "`/imagine` — image generation is switched off here" in after.field("Commands")
        assert after.field("Limits here") == (
            "One message every 30 s per member.\n20,000 tokens a day per member.\nSee yours with `/usage`."
        )

        dm = await run(h, "help", user=h.alice, channel_id=h.discord.dm_channel(h.alice).id)
        assert "Just write to me here" in dm.field("Talking to me")
        assert "book tables" in dm.field("What I can do for you")  # DMs use the bot's defaults


async def test_help_lists_only_the_commands_this_bot_has(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=("cogs.chat", "cogs.help")) as h:
        commands = (await run(h, "help", user=h.alice)).field("Commands")
        assert commands == "`/help` — this message"
