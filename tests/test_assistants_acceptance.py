"""Issue 17's "done when", end to end: a guild admin sets up two assistants for two channels from
Discord, and members see each answer under its assistant's name, made with its instructions, model
and tools; a turn that used a tool can show its steps; the rest of the server keeps the default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from standins.discord import (
    CALLBACK_DEFERRED_MESSAGE,
    FakeChannel,
    FakeDiscord,
    StoredMessage,
    permission_bits,
)
from standins.discord.constants import DEFAULT_BOT_PERMISSIONS
from standins.discord.models import walk_components
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.command_support import WAIT_S, run
from tests.harness import FAST_BUCKET, Harness, build_world, running_bot

TUTOR: dict[str, Any] = {
    "name": "Math Tutor",
    "model": "gpt-5.4-mini",
    "instructions": "You are Math Tutor: teach mathematics step by step.",
    "tools": "code_interpreter",
    "knowledge": False,
    "avatar": "https://example.com/tutor.png",
}
CONCIERGE: dict[str, Any] = {
    "name": "Concierge",
    "model": "gpt-5.5",
    "instructions": "You are the Concierge: you find restaurants and book tables.",
    "tools": "restaurants",
    "knowledge": False,
}


def tools_of(request: dict[str, Any]) -> set[str]:
    return {tool.get("name") or tool["type"] for tool in request.get("tools") or []}


async def mention(
    h: Harness, channel: FakeChannel, text: str, user: Any
) -> tuple[dict[str, Any], FakeChannel]:
    """A member mentions the bot in a channel: the model request it made, and the thread it opened."""
    sent = len(h.openai.requests_to("/v1/responses"))
    threads = len(h.discord.threads_in(channel.id))
    await h.discord.user_message(channel.id, user, f"{h.bot_mention} {text}", mentions_bot=True)
    await h.discord.wait_for(lambda: len(h.discord.threads_in(channel.id)) > threads, timeout=WAIT_S)
    await h.discord.wait_for(lambda: len(h.openai.requests_to("/v1/responses")) > sent, timeout=WAIT_S)
    request: dict[str, Any] = h.openai.requests_to("/v1/responses")[sent].json
    return request, h.discord.threads_in(channel.id)[threads]


async def reply_in(h: Harness, thread: FakeChannel, text: str) -> StoredMessage:
    """The message in the thread, the bot's own or its webhook's, that shows `text` (once final)."""

    def found() -> StoredMessage | None:
        shown = [*h.discord.bot_messages(thread.id), *h.discord.webhook_messages(thread.id)]
        return next((m for m in shown if text in m.content), None)

    await h.discord.wait_for(lambda: found() is not None, timeout=WAIT_S)
    message = found()
    assert message is not None
    return message


async def test_two_assistants_for_two_channels_set_up_from_discord(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    permissions = DEFAULT_BOT_PERMISSIONS | permission_bits(["manage_webhooks"])
    async with FakeDiscord(
        bot_permissions=permissions, rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        maths = server.add_text_channel(world.guild.id, "maths")
        desk = server.add_text_channel(world.guild.id, "concierge-desk")
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            admin, bob = world.admin, world.bob
            # The admin sets both up from Discord.
            for profile, channel in ((TUTOR, maths), (CONCIERGE, desk)):
                created = await run(h, "assistant create", profile, user=admin, channel_id=world.general.id)
                assert created.text.startswith(f"✅ Created **{profile['name']}**"), created.text
                used = await run(
                    h, "assistant use", {"name": profile["name"]}, user=admin, channel_id=channel.id
                )
                assert profile["name"] in used.text and not used.ephemeral  # the channel sees the switch
            listed = await run(h, "assistant list", user=bob, channel_id=world.general.id)
            assert "Math Tutor" in listed.text and "Concierge" in listed.text

            # A member asks in #maths: the Math Tutor answers, under its name, with its settings.
            request, tutor_thread = await mention(h, maths, "What is 6 times 7?", bob)
            assert (request["model"], request["instructions"]) == (TUTOR["model"], TUTOR["instructions"])
            assert tools_of(request) == {"code_interpreter"}
            tutor = await reply_in(h, tutor_thread, "What is 6 times 7?")
            assert tutor.webhook_id is not None
            assert tutor.author_name == "Math Tutor" and tutor.avatar_url == TUTOR["avatar"]

            # Another asks at the desk: the Concierge runs its tool and answers under its own name.
            h.openai.responses.push(
                Reply(calls=[FunctionCall("find_restaurants", {"cuisine": "italian"})]),
                Reply("Trattoria Roma is italian."),
            )
            request, desk_thread = await mention(h, desk, "any italian place?", world.alice)
            assert (request["model"], request["instructions"]) == (
                CONCIERGE["model"],
                CONCIERGE["instructions"],
            )
            assert "find_restaurants" in tools_of(request) and "code_interpreter" not in tools_of(request)
            concierge = await reply_in(h, desk_thread, "Trattoria Roma is italian.")
            assert concierge.author_name == "Concierge" and concierge.webhook_id is not None
            assert concierge.webhook_id != tutor.webhook_id  # each channel's own webhook
            await server.wait_for(lambda: bool(server.message(concierge.id).components), timeout=WAIT_S)
            [steps] = [
                str(c["custom_id"])
                for c in walk_components(server.message(concierge.id).components)
                if str(c.get("custom_id", "")).startswith("steps:")
            ]
            click = await server.click_button(concierge.id, steps, user=bob)
            acknowledged = await server.wait_for_response(click, timeout=WAIT_S)
            assert acknowledged.type == CALLBACK_DEFERRED_MESSAGE and acknowledged.ephemeral
            await server.wait_for(lambda: bool(click.followup_ids), timeout=WAIT_S)
            shown = server.message(click.followup_ids[-1])
            assert shown.ephemeral and "find\\_restaurants" in shown.data["embeds"][0]["description"]

            # The rest of the server keeps the default: the bot itself, the server's settings.
            request, general_thread = await mention(h, world.general, "hello", bob)
            assert request["model"] == "gpt-5.5" and request["instructions"] != CONCIERGE["instructions"]
            plain = await reply_in(h, general_thread, "hello")
            assert plain.webhook_id is None and not plain.content.startswith("-# 🤖")
            assert len(server.webhooks_in(maths.id)) == len(server.webhooks_in(desk.id)) == 1
