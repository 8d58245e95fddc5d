"""/config end to end: the real bot, discord.py and the stand-in Discord and OpenAI servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from bot.config import DEFAULT_INSTRUCTIONS
from bot.guild_settings import SETTING_NAMES
from standins.discord import CALLBACK_MODAL, FakeChannel, FakeDiscord
from standins.openai import FakeOpenAI
from tests.command_support import WAIT_S, choices, run, settle
from tests.harness import FAST_BUCKET, Harness, build_world, running_bot

PERMISSION_REFUSAL = "You need the Manage Server permission for this."


@contextlib.asynccontextmanager
async def bot_with_channel(tmp_path: Path, fake_openai: FakeOpenAI, name: str) -> AsyncIterator[Harness]:
    """The usual world plus one more text channel, there before the bot connects."""
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        server.add_text_channel(world.guild.id, name)
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            yield h


def channel_named(h: Harness, name: str) -> FakeChannel:
    return next(c for c in h.discord.channels.values() if c.name == name)


def guild_id(h: Harness) -> int:
    return h.world.guild.id


async def config_set(h: Harness, setting: str, value: str | None = None) -> str:
    """`/config set` as the admin; the ephemeral answer's text."""
    options = {"setting": setting} if value is None else {"setting": setting, "value": value}
    answer = await run(h, "config set", options, user=h.world.admin)
    assert answer.ephemeral
    return answer.text


async def answered(h: Harness, channel_id: int, text: str) -> None:
    await h.discord.wait_for(
        lambda: any(m.content == text for m in h.discord.bot_messages(channel_id)), timeout=WAIT_S
    )


async def test_admin_sets_each_kind_of_value_and_show_marks_them(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with_channel(tmp_path, fake_openai, "help-desk") as h:
        help_channel = channel_named(h, "help-desk")
        said = await config_set(h, "model", "gpt-5.4-mini")
        assert "**model** is now `gpt-5.4-mini`" in said and "was `gpt-5.5`, the default" in said
        assert "applies from the next message" in said
        await config_set(h, "mention_opens_thread", "off")
        await config_set(h, "user_cooldown_s", "30s")
        said = await config_set(h, "daily_token_budget_user", "50k")
        assert "now 50,000 tokens" in said and "was unlimited" in said
        said = await config_set(h, "channels", f"#general {help_channel.mention}")
        assert f"now <#{h.general.id}> <#{help_channel.id}>" in said
        await config_set(h, "enabled_tools", "-rides")
        await config_set(h, "timezone", "europe/paris")
        await config_set(h, "backend", "Chat")
        await config_set(h, "mod_log_channel", "help-desk")

        effective = await h.services.settings.effective(guild_id(h))
        assert effective.model == "gpt-5.4-mini" and effective.mention_opens_thread is False
        assert effective.user_cooldown_s == 30 and effective.daily_token_budget_user == 50_000
        assert effective.channels == (h.general.id, help_channel.id)
        assert effective.enabled_tools == ("restaurants", "knowledge")
        assert (effective.timezone, effective.backend) == ("Europe/Paris", "chat")
        assert effective.mod_log_channel == help_channel.id
        assert len(await h.services.storage.settings.audit(guild_id(h))) == 9

        shown = await run(h, "config show", user=h.alice)  # anyone may look
        assert shown.ephemeral and len(shown.embeds) == 1
        assert "Bot settings in Test Server" in shown.text
        assert shown.field("model") == "`gpt-5.4-mini`\n✏️ *set for this server*"
        assert shown.field("daily_token_budget_user") == "50,000 tokens\n✏️ *set for this server*"
        assert shown.field("daily_token_budget_guild") == "unlimited\n*default*"
        assert shown.field("channels").startswith(f"<#{h.general.id}> <#{help_channel.id}>")
        assert shown.field("user_cooldown_s").startswith("30 s")
        assert shown.field("mention_opens_thread").startswith("off")
        assert shown.field("instructions").startswith("“You are a helpful")
        assert "characters)\n*default*" in shown.field("instructions")
        assert "Direct messages with the bot are allowed" in shown.text

        said = await config_set(h, "channels", "all")
        assert f"**channels** is now all channels for this server (was <#{h.general.id}>" in said
        assert (await h.services.settings.effective(guild_id(h))).channels == ()


async def test_a_member_without_manage_server_cannot_change_anything(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        bob = h.world.bob
        for command, options in [
            ("config set", {"setting": "model", "value": "gpt-5.4"}),
            ("config set", {"setting": "instructions"}),
            ("config reset", {"setting": "model"}),
            ("config audit", {}),
        ]:
            refused = await run(h, command, options, user=bob)
            assert refused.ephemeral and refused.text == PERMISSION_REFUSAL, command
            assert refused.record.modal is None
        assert await h.services.storage.settings.overrides(guild_id(h)) == {}
        assert await h.services.storage.settings.audit(guild_id(h)) == []
        assert (await run(h, "config show", user=bob)).ephemeral
        synced = h.discord.global_commands["config"]
        assert synced["dm_permission"] is False  # guild only


async def test_permission_is_checked_again_when_the_instructions_box_is_sent(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin = h.world.admin
        shown = await settle(
            h,
            await h.discord.slash_command(
                "config set", {"setting": "instructions"}, user=admin, channel_id=h.general.id
            ),
        )
        h.world.guild.members[admin.id].roles.clear()  # demoted while the box was open
        submitted = await settle(h, await h.discord.submit_modal(shown, {"instructions": "Be rude."}))
        message = h.discord.message(submitted.original_message_id or 0)
        assert message.ephemeral and message.content == PERMISSION_REFUSAL
        assert await h.services.storage.settings.audit(guild_id(h)) == []


async def test_invalid_values_are_refused_with_a_clear_message_and_nothing_is_stored(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        cases = {
            ("model", "gpt-6-ultra"): "OpenAI has no model named `gpt-6-ultra`",
            ("user_cooldown_s", "soon"): "`user_cooldown_s`: give a number from 0 to 3600 (seconds).",
            ("max_queued_turns_per_user", "0"): "give a whole number from 1 to 50",
            ("enabled_tools", "teleport"): "unknown tool 'teleport'",
            ("timezone", "Mars/Olympus"): "unknown time zone 'Mars/Olympus'",
            ("channels", "#nowhere"): "`channels`: list channels like #general #help, or say `all`",
            ("channels", "<#12345>"): "`12345` is not a channel of this server.",
            ("booking_provider", "acme"): "restaurants providers this bot has: `builtin`.",
            ("colour", "blue"): "`colour` is not a setting",
            ("backend", None): "Give a value for `backend`: choose one of responses, chat.",
        }
        for (setting, value), says in cases.items():
            text = await config_set(h, setting, value)
            assert says in text, (setting, text)
        await config_set(h, "enabled_tools", "+web_search")
        text = await config_set(h, "backend", "chat")
        assert "Remove `web_search` from `enabled_tools` first" in text
        assert await h.services.storage.settings.overrides(guild_id(h)) == {
            "enabled_tools": ["restaurants", "rides", "knowledge", "web_search"]
        }
        assert len(await h.services.storage.settings.audit(guild_id(h))) == 1


async def test_instructions_are_edited_in_a_modal_and_used_by_the_next_message(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    long_instructions = "Answer like a pirate. " + "Arr! " * 1200  # more than one box holds
    async with running_bot(tmp_path, fake_openai) as h:
        shown = await settle(
            h,
            await h.discord.slash_command(
                "config set", {"setting": "instructions"}, user=h.world.admin, channel_id=h.general.id
            ),
        )
        assert shown.response_type == CALLBACK_MODAL and shown.modal is not None
        boxes = [row["components"][0] for row in shown.modal["components"]]
        assert [box["custom_id"] for box in boxes] == ["instructions", "instructions_continued"]
        assert boxes[0]["value"] == DEFAULT_INSTRUCTIONS and boxes[0]["style"] == 2  # paragraph
        first, rest = long_instructions[:4000], long_instructions[4000:]
        submitted = await settle(
            h, await h.discord.submit_modal(shown, {"instructions": first, "instructions_continued": rest})
        )
        confirmation = h.discord.message(submitted.followup_ids[-1])
        assert (
            confirmation.ephemeral
            and "**instructions** is now “Answer like a pirate." in confirmation.content
        )
        assert (await h.services.settings.effective(guild_id(h))).instructions == long_instructions.strip()

        await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} hi", mentions_bot=True)
        await h.discord.wait_for(lambda: bool(fake_openai.requests_to("/v1/responses")), timeout=WAIT_S)
        assert fake_openai.requests_to("/v1/responses")[-1].json["instructions"] == long_instructions.strip()

        reopened = await settle(
            h,
            await h.discord.slash_command(
                "config set", {"setting": "instructions"}, user=h.world.admin, channel_id=h.general.id
            ),
        )
        assert reopened.modal is not None
        values = [row["components"][0].get("value") for row in reopened.modal["components"]]
        assert "".join(values) == long_instructions.strip()  # prefilled with what is in force


async def test_a_changed_model_is_used_by_the_next_message_and_reset_brings_the_default_back(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} one", mentions_bot=True)
        await h.discord.wait_for(lambda: len(h.discord.threads_in(h.general.id)) == 1, timeout=WAIT_S)
        thread = h.discord.threads_in(h.general.id)[0]
        await answered(h, thread.id, "echo: alice: one")
        assert fake_openai.requests_to("/v1/responses")[-1].json["model"] == "gpt-5.5"

        await config_set(h, "model", "gpt-5.4-mini")
        await h.discord.user_message(thread.id, h.alice, "two")
        await answered(h, thread.id, "echo: alice: two")
        assert fake_openai.requests_to("/v1/responses")[-1].json["model"] == "gpt-5.4-mini"

        reset = await run(h, "config reset", {"setting": "model"}, user=h.world.admin)
        assert reset.ephemeral and "**model** is back to the default, `gpt-5.5`" in reset.text
        await h.discord.user_message(thread.id, h.alice, "three")
        await answered(h, thread.id, "echo: alice: three")
        assert fake_openai.requests_to("/v1/responses")[-1].json["model"] == "gpt-5.5"

        again = await run(h, "config reset", {"setting": "model"}, user=h.world.admin)
        assert "already uses the default" in again.text
        audit = await h.services.storage.settings.audit(guild_id(h))
        assert [(c.user_id, c.old_value, c.new_value) for c in audit] == [
            (h.world.admin.id, "gpt-5.4-mini", None),
            (h.world.admin.id, None, "gpt-5.4-mini"),
        ]


async def test_where_the_bot_answers_follows_the_settings_at_once(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with bot_with_channel(tmp_path, fake_openai, "quiet") as h:
        quiet = channel_named(h, "quiet")
        await config_set(h, "channels", "#general")
        await config_set(h, "mention_opens_thread", "no")
        await h.discord.user_message(quiet.id, h.alice, f"{h.bot_mention} anyone?", mentions_bot=True)
        # A later message in an allowed channel is answered, so the first one had its chance first.
        await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} here", mentions_bot=True)
        await answered(h, h.general.id, "echo: alice: here")  # in place: no thread
        assert h.discord.threads_in(h.general.id) == [] and h.discord.bot_messages(quiet.id) == []
        assert len(fake_openai.requests_to("/v1/responses")) == 1


async def test_audit_lists_who_changed_what(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        empty = await run(h, "config audit", user=h.world.admin)
        assert empty.ephemeral and "No setting has been changed" in empty.text
        await config_set(h, "images_enabled", "off")
        await config_set(h, "daily_token_budget_guild", "1M")
        await run(h, "config reset", {"setting": "images_enabled"}, user=h.world.admin)
        audit = await run(h, "config audit", user=h.world.admin)
        lines = (audit.embeds[0].get("description") or "").splitlines()
        admin = h.world.admin.mention
        assert [line.split("> ", 1)[1] for line in lines] == [
            f"{admin} reset **images_enabled**: off → default (on)",
            f"{admin} set **daily_token_budget_guild**: default (unlimited) → 1,000,000 tokens",
            f"{admin} set **images_enabled**: default (on) → off",
        ]
        assert all(line.startswith("<t:") for line in lines)


async def test_autocomplete_offers_settings_and_values(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin = h.world.admin
        found = await choices(h, "config set", {"setting": "budg"}, focused="setting", user=admin)
        assert [c["value"] for c in found] == ["daily_token_budget_guild", "daily_token_budget_user"]
        assert found[0]["name"].startswith("daily_token_budget_guild — Tokens the whole server")
        everything = await choices(h, "config set", {"setting": ""}, focused="setting", user=admin)
        assert [c["value"] for c in everything] == list(SETTING_NAMES)
        zones = await choices(
            h, "config set", {"setting": "timezone", "value": "paris"}, focused="value", user=admin
        )
        assert [c["value"] for c in zones] == ["Europe/Paris"]
        switches = await choices(
            h, "config set", {"setting": "images_enabled", "value": ""}, focused="value", user=admin
        )
        assert [c["value"] for c in switches] == ["on", "off"]
        tools = await choices(
            h, "config set", {"setting": "enabled_tools", "value": "web"}, focused="value", user=admin
        )
        assert [c["value"] for c in tools] == ["+web_search"]
        channels = await choices(
            h, "config set", {"setting": "channels", "value": "gen"}, focused="value", user=admin
        )
        assert [c["value"] for c in channels] == ["#general"]
        await config_set(h, "model", "gpt-5.4")
        resettable = await choices(h, "config reset", {"setting": ""}, focused="setting", user=admin)
        assert resettable[0] == {"name": "model — set here: gpt-5.4", "value": "model"}
