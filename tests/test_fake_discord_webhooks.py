"""The stand-in Discord's channel webhooks, driven by discord.py's own ``Webhook`` client: created and
listed by the bot with Manage Webhooks, executed by token in a channel or one of its threads, their
messages edited and deleted, with Discord's rules (names, components, thread_id) and rate limits."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import discord
import pytest

from standins.discord import FakeDiscord, RateLimitRule, permission_bits
from standins.discord.constants import DEFAULT_BOT_PERMISSIONS
from tests.test_fake_discord import StandInBot, World, running, text_channel

WEBHOOK_PERMISSIONS = DEFAULT_BOT_PERMISSIONS | permission_bits(["manage_webhooks"])


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_permissions=WEBHOOK_PERMISSIONS) as server:
        yield server


@pytest.fixture
def world(server: FakeDiscord) -> World:
    guild = server.add_guild("Test Guild")
    general = server.add_text_channel(guild.id, "general")
    alice = server.add_user("alice", guilds=[guild.id])
    return World(
        server=server,
        guild=guild,
        general=general,
        read_only=server.add_text_channel(guild.id, "no-webhooks", deny={"manage_webhooks"}),
        hidden=server.add_text_channel(guild.id, "staff", deny={"view_channel"}),
        spare=[server.add_text_channel(guild.id, "other")],
        alice=alice,
        thread=server.add_thread(general.id, "alice's question", owner=alice),
    )


@pytest.fixture
async def bot(world: World) -> AsyncIterator[StandInBot]:
    async with running(StandInBot(world.server.base_url), world.server) as bot:
        yield bot


def thread_of(bot: StandInBot, world: World) -> discord.Thread:
    thread = bot.get_channel(world.thread.id)
    assert isinstance(thread, discord.Thread)
    return thread


async def test_the_bot_creates_and_lists_its_webhook_with_its_token(world: World, bot: StandInBot) -> None:
    server = world.server
    general = text_channel(bot, world.general)
    made = await general.create_webhook(name="Assistant replies")
    assert made.token and made.channel_id == world.general.id
    assert made.user is not None and bot.user is not None and made.user.id == bot.user.id
    someone_elses = server.add_webhook(world.general.id, "Alice's feed", creator=world.alice)
    listed = {w.id: w for w in await general.webhooks()}
    assert set(listed) == {made.id, someone_elses.id}
    assert listed[made.id].token == made.token
    fetched = await bot.fetch_webhook(made.id)
    assert fetched.name == "Assistant replies" and fetched.channel_id == world.general.id
    assert server.calls_of("webhook_create")[0].status == 200
    await fetched.delete()
    assert server.webhooks_in(world.general.id) == [someone_elses]


async def test_managing_webhooks_needs_the_permission_a_text_channel_and_a_valid_name(
    world: World, bot: StandInBot
) -> None:
    denied = text_channel(bot, world.read_only)
    with pytest.raises(discord.Forbidden) as forbidden:
        await denied.create_webhook(name="Replies")
    assert forbidden.value.code == 50013
    with pytest.raises(discord.Forbidden):
        await denied.webhooks()
    general = text_channel(bot, world.general)
    for name in ("My Discord helper", "clyde", "x" * 81):
        with pytest.raises(discord.HTTPException) as invalid:
            await general.create_webhook(name=name)
        assert invalid.value.status == 400 and invalid.value.code == 50035
    thread = thread_of(bot, world)
    with pytest.raises(discord.HTTPException) as not_here:
        await bot.http.request(
            discord.http.Route("POST", "/channels/{channel_id}/webhooks", channel_id=thread.id),
            json={"name": "Replies"},
        )
    assert not_here.value.code == 50024


async def test_execute_in_a_thread_posts_under_the_username_and_reaches_the_gateway(
    world: World, bot: StandInBot
) -> None:
    server = world.server
    webhook = await text_channel(bot, world.general).create_webhook(name="Assistant replies")
    thread = thread_of(bot, world)
    sent = await webhook.send(
        "Hello from the tutor",
        username="Math Tutor",
        avatar_url="https://example.com/tutor.png",
        thread=thread,
        wait=True,
        allowed_mentions=discord.AllowedMentions.none(),
    )
    assert sent.channel.id == thread.id and sent.webhook_id == webhook.id
    assert sent.author.name == "Math Tutor" and sent.author.id == webhook.id
    received = await bot.next_message()
    assert received.id == sent.id and received.webhook_id == webhook.id
    assert received.content == "Hello from the tutor"
    [stored] = server.webhook_messages(world.thread.id)
    assert stored.author_name == "Math Tutor" and stored.avatar_url == "https://example.com/tutor.png"
    assert stored.allowed_mentions == {"parse": []}
    assert server.webhook_messages(world.general.id) == []
    call = server.calls_of("channel_webhook_execute")[0]
    assert call.channel_id == world.thread.id and call.query["thread_id"] == str(world.thread.id)
    assert server.bot_messages(world.thread.id) == []  # it is the webhook's message, not the bot's
    await webhook.send("without waiting", thread=thread)  # no wait: 204, no message body
    assert server.calls_of("channel_webhook_execute")[-1].status == 204
    assert [m.content for m in server.webhook_messages(world.thread.id)][-1] == "without waiting"


async def test_edit_with_files_and_delete_in_a_thread(world: World, bot: StandInBot) -> None:
    server = world.server
    webhook = await text_channel(bot, world.general).create_webhook(name="Assistant replies")
    thread = thread_of(bot, world)
    sent = await webhook.send("Draft", username="Math Tutor", thread=thread, wait=True)
    edited = await webhook.edit_message(
        sent.id,
        content="Final answer",
        attachments=[discord.File(io.BytesIO(b"a,b\n1,2\n"), filename="table.csv")],
        thread=thread,
    )
    assert edited.content == "Final answer" and [a.filename for a in edited.attachments] == ["table.csv"]
    stored = server.message(sent.id)
    assert stored.contents == ["Draft", "Final answer"] and stored.author_name == "Math Tutor"
    with pytest.raises(discord.NotFound) as elsewhere:  # without thread_id: looked for in the channel
        await webhook.edit_message(sent.id, content="lost")
    assert elsewhere.value.code == 10008
    await webhook.delete_message(sent.id, thread=thread)
    assert server.webhook_messages(world.thread.id) == []
    with_file = await webhook.send(
        "Here is the plot", file=discord.File(io.BytesIO(b"png"), filename="plot.png"), wait=True
    )
    assert [f.filename for f in server.message(with_file.id).files] == ["plot.png"]


async def test_thread_id_must_be_a_thread_of_the_webhooks_channel(world: World, bot: StandInBot) -> None:
    server = world.server
    other_thread = server.add_thread(world.spare[0].id, "elsewhere", owner=world.alice)
    webhook = await text_channel(bot, world.general).create_webhook(name="Assistant replies")
    for target in (discord.Object(other_thread.id), discord.Object(world.spare[0].id)):
        with pytest.raises(discord.HTTPException) as refused:
            await webhook.send("wrong place", thread=target, wait=True)
        assert refused.value.status == 400
    assert server.webhook_messages(other_thread.id) == []


async def test_usernames_follow_the_name_rules(world: World, bot: StandInBot) -> None:
    webhook = await text_channel(bot, world.general).create_webhook(name="Assistant replies")
    with pytest.raises(discord.HTTPException) as refused:
        await webhook.send("hi", username="Discord Helper", wait=True)
    assert refused.value.code == 50035


async def test_buttons_are_sent_by_the_applications_webhook_only(world: World, bot: StandInBot) -> None:
    server = world.server
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Steps", custom_id="steps:1"))
    view.stop()
    ours = await text_channel(bot, world.general).create_webhook(name="Assistant replies")
    sent = await ours.send("Done", view=view, wait=True)
    [row] = server.message(sent.id).components
    assert [c["custom_id"] for c in row["components"]] == ["steps:1"]
    record = await server.click_button(sent.id, "steps:1", user=world.alice)
    assert record.message_id == sent.id

    theirs = server.add_webhook(world.general.id, "Alice's feed", creator=world.alice)
    partial = discord.Webhook.partial(theirs.id, theirs.token, client=bot)
    with pytest.raises(discord.HTTPException) as refused:
        await partial.send("Click", view=view, wait=True)
    assert refused.value.status == 400 and refused.value.code == 50035
    plain = await partial.send("No buttons here", wait=True)
    assert server.message(plain.id).author_name == "Alice's feed"
    assert "application_id" not in server.message(plain.id).data
    assert server.message(sent.id).data["application_id"] == str(server.application_id)


async def test_a_deleted_webhook_answers_unknown_webhook(world: World, bot: StandInBot) -> None:
    server = world.server
    webhook = await text_channel(bot, world.general).create_webhook(name="Assistant replies")
    sent = await webhook.send("before", wait=True)
    server.delete_webhook(webhook.id)
    with pytest.raises(discord.NotFound) as gone:
        await webhook.send("after", wait=True)
    assert gone.value.code == 10015
    with pytest.raises(discord.NotFound):
        await webhook.edit_message(sent.id, content="after")
    assert server.webhooks_in(world.general.id) == []


async def test_webhook_buckets_are_per_webhook_and_outside_the_global_limit(
    world: World, bot: StandInBot
) -> None:
    server = world.server
    server.rate_limits["channel_webhook_execute"] = RateLimitRule(5, 0.3)
    general = text_channel(bot, world.general)
    first = await general.create_webhook(name="Replies one")
    second = await general.create_webhook(name="Replies two")
    server.global_limit = 1
    server.global_window_s = 60.0
    server.use_up_bucket("channel_webhook_execute", first.id)  # as if another process had used it
    await second.send("from the second", wait=True)  # its own bucket: not limited
    assert server.rate_limit_hits == []
    await first.send("from the first", wait=True)  # 429 on its bucket, then retried by discord.py
    [hit] = server.rate_limit_hits
    assert hit.kind == "channel_webhook_execute" and hit.scope == "user"
    assert hit.channel_id == world.general.id
    assert [m.content for m in server.webhook_messages(world.general.id)] == [
        "from the second",
        "from the first",
    ]


async def test_webhooks_share_the_per_channel_limit(world: World, bot: StandInBot) -> None:
    server = world.server
    server.limits.channel_rules["channel_webhook_execute"] = RateLimitRule(2, 0.3)
    general = text_channel(bot, world.general)
    first = await general.create_webhook(name="Replies one")
    second = await general.create_webhook(name="Replies two")
    await first.send("one", wait=True)
    await second.send("two", wait=True)
    await first.send("three", wait=True)  # a third in the channel within the window: 429, then retried
    hits = server.rate_limit_hits_of("user", "channel_webhook_execute")
    assert [h.channel_id for h in hits] == [world.general.id]
    assert [m.content for m in server.webhook_messages(world.general.id)] == ["one", "two", "three"]
