"""Tests of the stand-in Discord server, driven by a real discord.py ``commands.Bot``.

The bot is pointed at the stand-in exactly as the real bot is, through ``bot.discord.endpoint``; if
these pass, discord.py builds its objects from the stand-in's payloads and behaves against it (rate
limits, reconnects, interactions) the way it does against Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.discord.endpoint import restore_discord_urls, use_gateway_of, use_rest_base
from standins.discord import (
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeUser,
    RateLimitRule,
    Upload,
)
from standins.png import encode_png

# Discord's buckets are 5 per 5 s; the same shape with a short window keeps the suite fast.
FAST_BUCKET = RateLimitRule(limit=5, per_s=0.5)
STARTUP_TIMEOUT_S = 5.0
EVENT_TIMEOUT_S = 5.0


def assistant_intents() -> discord.Intents:
    """The intents the assistant asks for: guilds, guild messages, DMs and message content."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    return intents


class StandInBot(commands.Bot):
    """A plain ``commands.Bot`` that, like the real bot, asks the configured server for its gateway."""

    def __init__(self, base_url: str, *, intents: discord.Intents | None = None) -> None:
        # guild_ready_timeout: discord.py waits this long after the last GUILD_CREATE before on_ready
        # (default 2 s, since Discord never says "that was the last guild").
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or assistant_intents(),
            guild_ready_timeout=0.05,
        )
        self.base_url = base_url
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def setup_hook(self) -> None:
        await use_gateway_of(self.http, self.base_url)

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def on_message(self, message: discord.Message) -> None:
        if self.user is not None and message.author.id != self.user.id:
            await self.received.put(message)

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.received.get(), EVENT_TIMEOUT_S)


class _ErrorRecords(logging.Handler):
    """Collects what discord.py logs at ERROR: a parser or dispatch failure it swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.asynccontextmanager
async def running(bot: StandInBot, server: FakeDiscord) -> AsyncIterator[StandInBot]:
    """Start ``bot`` against ``server``, yield once on_ready fired, then close it and restore the URLs.

    Fails the test if discord.py logged an error meanwhile (it logs, rather than raises, failures in
    event handlers and view/modal dispatch).
    """
    errors = _ErrorRecords()
    logging.getLogger("discord").addHandler(errors)
    use_rest_base(server.base_url)
    started = asyncio.create_task(bot.start(server.token))
    ready = asyncio.create_task(bot.ready.wait())
    try:
        done, _ = await asyncio.wait(
            {started, ready}, timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if started in done:
            started.result()  # startup failed: raise why
        if ready not in done:
            raise TimeoutError("the bot did not become ready")
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        with contextlib.suppress(Exception):
            await started
        restore_discord_urls()
        logging.getLogger("discord").removeHandler(errors)
    assert [r.getMessage() for r in errors.records] == []


@dataclass
class World:
    server: FakeDiscord
    guild: FakeGuild
    general: FakeChannel
    read_only: FakeChannel  # the bot may read but not post or start threads
    hidden: FakeChannel  # the bot cannot see it
    spare: list[FakeChannel]
    alice: FakeUser
    thread: FakeChannel  # an active thread alice started before the bot connected


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
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
        read_only=server.add_text_channel(
            guild.id, "announcements", deny={"send_messages", "create_threads"}
        ),
        hidden=server.add_text_channel(guild.id, "staff", deny={"view_channel"}),
        spare=[server.add_text_channel(guild.id, f"spare-{n}") for n in range(3)],
        alice=alice,
        thread=server.add_thread(general.id, "alice's question", owner=alice),
    )


@pytest.fixture
async def bot(world: World) -> AsyncIterator[StandInBot]:
    async with running(StandInBot(world.server.base_url), world.server) as bot:
        yield bot


def text_channel(bot: StandInBot, channel: FakeChannel) -> discord.TextChannel:
    found = bot.get_channel(channel.id)
    assert isinstance(found, discord.TextChannel)
    return found


# ------------------------------------------------------------------------------------------ connecting


async def test_bot_connects_and_sees_the_guild_on_ready(world: World, bot: StandInBot) -> None:
    server = world.server
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Test Guild"
    assert bot.user is not None and bot.user.id == server.bot_user.id
    assert bot.application_id == server.application_id
    general = text_channel(bot, world.general)
    assert general.permissions_for(guild.me).send_messages
    assert general.permissions_for(guild.me).create_public_threads
    assert [c.kind for c in server.calls[:3]] == ["user_me", "application_me", "gateway_bot"]
    assert [identify["intents"] for identify in server.identifies] == [bot.intents.value]
    assert bot.get_channel(world.thread.id) is not None  # active threads arrive in GUILD_CREATE
    assert server.gateway_connections[0].query["compress"] == "zlib-stream"


async def test_denied_permissions_show_in_the_cache_and_answer_403(world: World, bot: StandInBot) -> None:
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    read_only = text_channel(bot, world.read_only)
    assert not read_only.permissions_for(guild.me).send_messages
    assert read_only.permissions_for(guild.me).read_messages

    with pytest.raises(discord.Forbidden) as denied:
        await read_only.send("hello")
    assert denied.value.code == 50013

    with pytest.raises(discord.Forbidden) as unseen:
        await text_channel(bot, world.hidden).send("hello")
    assert unseen.value.code == 50001

    await world.server.user_message(world.read_only.id, world.alice, "start a thread here?")
    message = await bot.next_message()
    with pytest.raises(discord.Forbidden):
        await message.create_thread(name="nope")
    assert world.server.messages_by(world.server.bot_user) == []


async def test_wrong_token_fails_login(world: World) -> None:
    bot = StandInBot(world.server.base_url)
    use_rest_base(world.server.base_url)
    try:
        with pytest.raises(discord.LoginFailure):
            await bot.login("not-the-token")
    finally:
        await bot.close()
        restore_discord_urls()
    assert [(c.kind, c.status) for c in world.server.calls] == [("user_me", 401)]


async def test_members_intent_gets_the_member_list_in_chunks(world: World) -> None:
    intents = assistant_intents()
    intents.members = True
    async with running(StandInBot(world.server.base_url, intents=intents), world.server) as bot:
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.chunked
        assert {m.name for m in guild.members} == {"Assistant", "owner", "alice"}


async def test_missing_privileged_intent_closes_with_4014() -> None:
    async with FakeDiscord(privileged_intents=()) as server:
        server.add_guild()
        bot = StandInBot(server.base_url)
        use_rest_base(server.base_url)
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(bot.start(server.token), STARTUP_TIMEOUT_S)
        finally:
            await bot.close()
            restore_discord_urls()
        assert [(c.code, c.by_server) for c in server.gateway_closes] == [(4014, True)]


# ------------------------------------------------------------------------------------------ messages


async def test_bot_receives_a_guild_message_and_a_dm(world: World, bot: StandInBot) -> None:
    server = world.server
    sent = await server.user_message(world.general.id, world.alice, "what is 2+2?", mentions_bot=True)
    message = await bot.next_message()
    assert message.id == int(sent["id"])
    assert message.content == f"<@{server.bot_user.id}> what is 2+2?"
    assert isinstance(message.author, discord.Member) and message.author.name == "alice"
    assert bot.user in message.mentions
    assert message.channel.id == world.general.id

    await server.dm_message(world.alice, "a private question")
    dm = await bot.next_message()
    assert dm.guild is None and isinstance(dm.channel, discord.DMChannel)
    assert dm.content == "a private question"
    await dm.channel.send("a private answer")
    dm_channel = server.dm_channel(world.alice)
    assert [m.content for m in server.messages_in(dm_channel.id)] == [
        "a private question",
        "a private answer",
    ]

    await server.user_message(world.thread.id, world.alice, "in my thread")
    in_thread = await bot.next_message()
    assert isinstance(in_thread.channel, discord.Thread) and in_thread.channel.parent_id == world.general.id
    edited = asyncio.create_task(bot.wait_for("message_edit", timeout=EVENT_TIMEOUT_S))
    await server.user_edits_message(in_thread.id, "in my thread (edited)")
    before, after = await edited
    assert (before.content, after.content) == ("in my thread", "in my thread (edited)")


async def test_without_message_content_intent_others_messages_arrive_blank(world: World) -> None:
    intents = assistant_intents()
    intents.message_content = False
    async with running(StandInBot(world.server.base_url, intents=intents), world.server) as bot:
        await world.server.user_message(world.general.id, world.alice, "secret")
        assert (await bot.next_message()).content == ""
        await world.server.user_message(world.general.id, world.alice, "hey bot", mentions_bot=True)
        assert (await bot.next_message()).content.endswith("hey bot")


async def test_bot_sends_edits_threads_and_uploads(world: World, bot: StandInBot) -> None:
    server = world.server
    general = text_channel(bot, world.general)

    draft = await general.send("draft")
    await draft.edit(content="final answer")
    stored = server.message(draft.id)
    assert stored.contents == ["draft", "final answer"]
    assert stored.data["edited_timestamp"] is not None

    await server.user_message(world.general.id, world.alice, "let's talk")
    question = await bot.next_message()
    thread = await question.create_thread(name="Chat with alice")
    assert isinstance(thread, discord.Thread) and thread.id == question.id and thread.parent_id == general.id
    assert server.channels[thread.id].name == "Chat with alice"
    assert [d.event for d in server.dispatched].count("THREAD_CREATE") == 1
    await thread.send("in the thread")
    assert [m.content for m in server.messages_in(thread.id)] == ["in the thread"]

    await server.user_message(world.general.id, world.alice, "another topic")
    another = await bot.next_message()
    with pytest.raises(discord.HTTPException) as too_long:
        await another.create_thread(name="n" * 101)
    assert too_long.value.status == 400 and too_long.value.code == 50035
    with pytest.raises(discord.HTTPException) as twice:
        await question.create_thread(name="again")
    assert twice.value.code == 160004

    note = await general.send("here you go", file=discord.File(io.BytesIO(b"hello file"), "note.txt"))
    upload = server.message(note.id).files[0]
    assert (upload.filename, upload.data) == ("note.txt", b"hello file")
    assert await note.attachments[0].read() == b"hello file"
    assert server.calls_of("cdn", status=200)


async def test_allowed_mentions_none_is_recorded_and_pings_nobody(world: World, bot: StandInBot) -> None:
    server = world.server
    general = text_channel(bot, world.general)
    quiet = await general.send(f"{world.alice.mention} hi", allowed_mentions=discord.AllowedMentions.none())
    loud = await general.send(f"{world.alice.mention} hi")

    quiet_call, loud_call = server.calls_of("message_create")
    assert quiet_call.allowed_mentions == {"parse": []}
    assert loud_call.allowed_mentions is None
    assert server.message(quiet.id).data["mentions"] == []
    assert [u["id"] for u in server.message(loud.id).data["mentions"]] == [str(world.alice.id)]


async def test_too_long_and_empty_messages_are_rejected_like_discord(world: World, bot: StandInBot) -> None:
    general = text_channel(bot, world.general)
    with pytest.raises(discord.HTTPException) as too_long:
        await general.send("x" * 2001)
    assert too_long.value.status == 400 and too_long.value.code == 50035
    assert "Must be 2000 or fewer in length" in too_long.value.text

    with pytest.raises(discord.HTTPException) as empty:
        await general.send()
    assert empty.value.status == 400 and empty.value.code == 50006
    assert world.server.messages_in(world.general.id) == []


async def test_user_attachment_is_downloadable_from_the_stand_in_cdn(world: World, bot: StandInBot) -> None:
    png = encode_png(4, 3)
    await world.server.user_message(
        world.general.id, world.alice, "look", attachments=[Upload("cat.png", png)]
    )
    message = await bot.next_message()
    attachment = message.attachments[0]
    assert (attachment.filename, attachment.content_type, attachment.width, attachment.height) == (
        "cat.png",
        "image/png",
        4,
        3,
    )
    assert await attachment.read() == png


# ------------------------------------------------------------------------------------------ rate limits


async def test_exhausted_channel_bucket_answers_429_and_discord_py_retries(
    world: World, bot: StandInBot
) -> None:
    server = world.server
    server.use_up_bucket("message_create", world.general.id)  # as if the bot's previous run had used it
    sent = await text_channel(bot, world.general).send("after the wait")

    hits = server.rate_limit_hits_of("user", "message_create")
    assert len(hits) == 1 and hits[0].channel_id == world.general.id
    statuses = [c.status for c in server.calls_of("message_create")]
    assert statuses == [429, 200]
    first, second = server.calls_of("message_create")
    assert second.at - first.at >= hits[0].retry_after - 0.01
    assert [m.id for m in server.messages_in(world.general.id)] == [sent.id]


async def test_discord_py_paces_itself_by_the_headers_without_429(world: World, bot: StandInBot) -> None:
    server = world.server
    general = text_channel(bot, world.general)
    sent = await asyncio.gather(*(general.send(f"part {n}") for n in range(7)))

    assert server.rate_limit_hits == []
    stored = server.messages_in(world.general.id)
    assert sorted(m.id for m in stored) == sorted(m.id for m in sent)
    assert sorted(m.content for m in stored) == sorted(f"part {n}" for n in range(7))
    calls = server.calls_of("message_create")
    assert calls[-1].at - calls[0].at >= FAST_BUCKET.per_s - 0.01  # it waited for the bucket to reset


async def test_global_limit_429s_are_counted_and_messages_still_arrive(world: World, bot: StandInBot) -> None:
    server = world.server
    server.global_limit, server.global_window_s = 2, 0.2
    channels = [world.general, *world.spare]
    await asyncio.gather(*(text_channel(bot, c).send(f"to {c.name}") for c in channels))

    global_hits = server.rate_limit_hits_of("global")
    assert global_hits and all(h.kind == "message_create" for h in global_hits)
    for channel in channels:
        assert [m.content for m in server.messages_in(channel.id)] == [f"to {channel.name}"]


async def test_injected_server_errors(world: World, bot: StandInBot) -> None:
    server = world.server
    general = text_channel(bot, world.general)

    server.fail_next("message_create", 503)  # discord.py does not retry a 503
    with pytest.raises(discord.DiscordServerError):
        await general.send("lost")

    # A 500 after Discord stored the message: discord.py retries, the nonce keeps it single.
    server.fail_next("message_create", 500, applied=True)
    sent = await general.send("once", nonce=12345)
    assert [m.content for m in server.messages_in(world.general.id)] == ["once"]
    assert sent.id == server.messages_in(world.general.id)[0].id

    server.fail_next("message_edit", 429, retry_after=0.05)
    await sent.edit(content="edited")
    assert server.rate_limit_hits_of(kind="message_edit")[0].injected
    assert server.message(sent.id).content == "edited"


# ------------------------------------------------------------------------------------------ interactions


async def test_slash_command_is_synced_deferred_and_followed_up(world: World, bot: StandInBot) -> None:
    server = world.server

    @bot.tree.command(name="ask", description="Ask the assistant")
    @app_commands.describe(question="What to ask")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"Answer to {question!r}")
        await interaction.followup.send("One more thing", ephemeral=True)

    synced = await bot.tree.sync()
    assert [c.name for c in synced] == ["ask"]
    put = server.calls_of("commands_put")[0]
    assert put.json[0]["name"] == "ask" and put.json[0]["options"][0]["name"] == "question"

    record = await server.slash_command(
        "ask", {"question": "why"}, user=world.alice, channel_id=world.general.id
    )
    await server.wait_for(lambda: len(record.followup_ids) == 2)
    assert record.response_type == CALLBACK_DEFERRED_MESSAGE
    assert record.ack_latency_s is not None and record.ack_latency_s < 3
    original = server.message(record.followup_ids[0])
    assert original.id == record.original_message_id  # the first followup replaced the "thinking" message
    assert original.content == "Answer to 'why'" and not original.loading and not original.ephemeral
    extra = server.message(record.followup_ids[1])
    assert extra.content == "One more thing" and extra.ephemeral


async def test_guild_command_autocompletes_and_runs(world: World, bot: StandInBot) -> None:
    server = world.server
    guild = discord.Object(world.guild.id)
    ran: list[str] = []

    async def cities(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ["Paris", "Oslo", "Porto"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.lower().startswith(current.lower())]

    @bot.tree.command(name="weather", description="Weather in a city", guild=guild)
    @app_commands.autocomplete(city=cities)
    async def weather(
        interaction: discord.Interaction, city: str, days: app_commands.Range[int, 1, 7] = 1
    ) -> None:
        ran.append(f"{city}/{days}")
        await interaction.response.send_message(f"Sunny in {city}")

    await bot.tree.sync(guild=guild)
    assert server.calls_of("guild_commands_put", status=200)
    assert set(server.guild_commands[world.guild.id]) == {"weather"} and not server.global_commands

    typing = await server.autocomplete(
        "weather", {"city": "p"}, focused="city", user=world.alice, channel_id=world.general.id
    )
    await server.wait_for(lambda: typing.acknowledged)
    assert [c["value"] for c in typing.autocomplete_choices or []] == ["Paris", "Porto"]

    run = await server.slash_command(
        "weather", {"city": "Porto", "days": 3}, user=world.alice, channel_id=world.general.id
    )
    await server.wait_for(lambda: run.acknowledged)
    assert ran == ["Porto/3"] and run.payload["data"]["guild_id"] == str(world.guild.id)


async def test_interaction_routes_are_exempt_from_the_global_limit(world: World, bot: StandInBot) -> None:
    server = world.server

    @bot.tree.command(name="ping", description="Check the bot is alive")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)
        await interaction.edit_original_response(content="pong!")
        await interaction.followup.send("still here")

    await bot.tree.sync()
    server.global_limit, server.global_window_s = 0, 60.0  # every other route would 429
    record = await server.slash_command("ping", user=world.alice, channel_id=world.general.id)
    await server.wait_for(lambda: bool(record.followup_ids))
    assert server.rate_limit_hits == []
    original = server.message(record.original_message_id or 0)
    assert original.ephemeral and original.contents == ["pong", "pong!"]


async def test_late_interaction_response_is_unknown_interaction(world: World, bot: StandInBot) -> None:
    server = world.server
    errors: list[Exception] = []

    @bot.tree.command(name="slow", description="Answers too late")
    async def slow(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            errors.append(exc)

    await bot.tree.sync()
    server.interaction_deadline_s = 0.0  # every answer is late
    record = await server.slash_command("slow", user=world.alice, channel_id=world.general.id)
    callback = await server.wait_for_response(record)
    assert callback.status == 404 and not record.acknowledged
    await server.wait_for(lambda: bool(errors))
    assert isinstance(errors[0], discord.NotFound) and errors[0].code == 10062


async def test_button_click_reaches_the_view_callback(world: World, bot: StandInBot) -> None:
    server = world.server
    clicked: list[discord.Member | discord.User] = []

    class Confirm(discord.ui.View):
        @discord.ui.button(label="Yes", custom_id="confirm-yes", style=discord.ButtonStyle.success)
        async def yes(self, interaction: discord.Interaction, button: discord.ui.Button[Confirm]) -> None:
            clicked.append(interaction.user)
            await interaction.response.edit_message(content="Confirmed", view=None)

    prompt = await text_channel(bot, world.general).send("Are you sure?", view=Confirm())
    record = await server.click_button(prompt.id, "confirm-yes", user=world.alice)
    await server.wait_for(lambda: record.acknowledged)
    assert record.response_type == CALLBACK_UPDATE_MESSAGE
    assert [u.id for u in clicked] == [world.alice.id]
    stored = server.message(prompt.id)
    assert stored.contents == ["Are you sure?", "Confirmed"] and stored.components == []


async def test_modal_submit_reaches_the_modal(world: World, bot: StandInBot) -> None:
    server = world.server
    submitted: list[str] = []

    class Feedback(discord.ui.Modal, title="Feedback"):
        text: discord.ui.TextInput[Feedback] = discord.ui.TextInput(
            label="Your feedback", custom_id="feedback-text"
        )

        async def on_submit(self, interaction: discord.Interaction) -> None:
            submitted.append(self.text.value)
            await interaction.response.send_message("Thanks!", ephemeral=True)

    @bot.tree.command(name="feedback", description="Send feedback")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Feedback())

    await bot.tree.sync()
    shown = await server.slash_command("feedback", user=world.alice, channel_id=world.general.id)
    await server.wait_for(lambda: shown.acknowledged)
    assert shown.response_type == CALLBACK_MODAL and shown.modal is not None
    submit = await server.submit_modal(shown, {"feedback-text": "great bot"})
    await server.wait_for(lambda: submit.acknowledged)
    assert submitted == ["great bot"]
    assert server.message(submit.original_message_id or 0).content == "Thanks!"


# ------------------------------------------------------------------------------------------ gateway


async def test_gateway_disconnect_then_resume_delivers_what_was_missed(world: World, bot: StandInBot) -> None:
    server = world.server
    async with server.gateway_outage(code=4000):
        assert not server.connected
        sent = await server.user_message(world.general.id, world.alice, "while you were away")
    message = await bot.next_message()
    assert message.id == int(sent["id"])
    await asyncio.wait_for(bot.resumed.wait(), EVENT_TIMEOUT_S)
    assert len(server.identifies) == 1  # resumed, not identified again
    assert server.resumes[0].replayed >= 1
    assert server.gateway_connections[-1].path == "/resume-gateway"  # READY's resume_gateway_url
    assert [(c.code, c.by_server) for c in server.gateway_closes] == [(4000, True)]
    missed = [d for d in server.dispatched if d.event == "MESSAGE_CREATE"]
    assert [d.live for d in missed] == [False]


async def test_history_typing_reactions_replies_and_deletes(world: World, bot: StandInBot) -> None:
    server = world.server
    general = text_channel(bot, world.general)
    await server.user_message(world.general.id, world.alice, "first")
    question = await bot.next_message()

    async with general.typing():
        reply = await question.reply("a reply", mention_author=False)
    await reply.add_reaction("\N{THUMBS UP SIGN}")
    last = await general.send("last")

    history = [m.content async for m in general.history(limit=10)]
    assert history == ["last", "a reply", "first"]  # newest first, as Discord lists them
    fetched = await general.fetch_message(reply.id)
    assert fetched.reference is not None and fetched.reference.message_id == question.id
    assert [str(r.emoji) for r in fetched.reactions] == ["\N{THUMBS UP SIGN}"]
    assert server.message(reply.id).data["mentions"] == []  # mention_author=False
    assert server.calls_of("typing", status=204)

    await last.delete()
    assert [m.content for m in server.messages_in(world.general.id)] == ["first", "a reply"]
    with pytest.raises(discord.NotFound) as gone:
        await general.fetch_message(last.id)
    assert gone.value.code == 10008


async def test_bot_opens_a_dm_and_a_select_menu_reaches_its_callback(world: World, bot: StandInBot) -> None:
    server = world.server
    picked: list[str] = []

    class Choice(discord.ui.View):
        @discord.ui.select(
            custom_id="colour",
            options=[
                discord.SelectOption(label="Red", value="red"),
                discord.SelectOption(label="Blue", value="blue"),
            ],
        )
        async def colour(self, interaction: discord.Interaction, select: discord.ui.Select[Choice]) -> None:
            picked.extend(select.values)
            await interaction.response.defer()

    alice = await bot.fetch_user(world.alice.id)
    prompt = await alice.send("Pick a colour", view=Choice())
    dm_channel = server.dm_channel(world.alice)
    assert server.message(prompt.id).channel_id == dm_channel.id
    record = await server.choose(prompt.id, "colour", ["blue"], user=world.alice)
    await server.wait_for(lambda: record.acknowledged)
    assert picked == ["blue"] and "guild_id" not in record.payload
