"""/assistant end to end: the real bot, discord.py and the stand-in Discord and OpenAI servers.

An admin makes "Math Tutor" and puts it on one channel: conversations there run with its
instructions, model and tools, the other channel keeps the default, and a thread keeps the assistant it
started with.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot.assistants import AssistantProfile
from bot.config import DEFAULT_INSTRUCTIONS
from bot.storage.assistants import ChoiceScope
from bot.storage.usage import utc_day
from cogs.assistants import MAX_FIELD_VALUE_CHARS, mentions_within
from standins.discord import CALLBACK_DEFERRED_MESSAGE, CALLBACK_MODAL, FakeChannel, FakeDiscord, FakeUser
from standins.openai import FakeOpenAI, FunctionCall, Reply
from tests.command_support import WAIT_S, Answer, choices, run, settle
from tests.harness import FAST_BUCKET, Harness, build_world, running_bot
from tests.test_turn_steps import press_steps

TUTOR_INSTRUCTIONS = "You are Math Tutor: teach mathematics step by step."
TUTOR: dict[str, Any] = {
    "name": "Math Tutor",
    "model": "gpt-5.4-mini",
    "instructions": TUTOR_INSTRUCTIONS,
    "tools": "code_interpreter",
    "knowledge": False,
    "avatar": "https://example.com/tutor.png",
}
DEFAULT_MODEL = "gpt-5.5"


@contextlib.asynccontextmanager
async def two_channels(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[Harness]:
    """The usual world (#general) plus #maths, there before the bot connects."""
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        server.add_text_channel(world.guild.id, "maths")
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            yield h


def maths(h: Harness) -> FakeChannel:
    return next(c for c in h.discord.channels.values() if c.name == "maths")


async def command(
    h: Harness, name: str, options: dict[str, Any] | None = None, *, user: FakeUser, channel: FakeChannel
) -> Answer:
    return await run(h, name, options, user=user, channel_id=channel.id)


async def ask(h: Harness, channel: FakeChannel, text: str, *, user: FakeUser | None = None) -> dict[str, Any]:
    """Mention the bot in a channel and wait for its model request; returns that request's JSON."""
    sent = len(h.openai.requests_to("/v1/responses"))
    await h.discord.user_message(channel.id, user or h.alice, f"{h.bot_mention} {text}", mentions_bot=True)
    return await request_after(h, sent)


async def say_in_thread(h: Harness, thread: FakeChannel, text: str, *, user: FakeUser) -> dict[str, Any]:
    sent = len(h.openai.requests_to("/v1/responses"))
    await h.discord.user_message(thread.id, user, text)
    return await request_after(h, sent)


async def request_after(h: Harness, sent: int) -> dict[str, Any]:
    await h.discord.wait_for(lambda: len(h.openai.requests_to("/v1/responses")) > sent, timeout=WAIT_S)
    request: dict[str, Any] = h.openai.requests_to("/v1/responses")[sent].json
    return request


async def answered(h: Harness, channel_id: int, text: str) -> None:
    await h.discord.wait_for(
        lambda: any(text in m.content for m in h.discord.bot_messages(channel_id)), timeout=WAIT_S
    )


def tool_kinds(request: dict[str, Any]) -> set[str]:
    """Function tools by name, hosted tools by type."""
    return {tool.get("name") or tool["type"] for tool in request.get("tools") or []}


async def newest_thread(h: Harness, channel: FakeChannel, count: int) -> FakeChannel:
    await h.discord.wait_for(lambda: len(h.discord.threads_in(channel.id)) >= count, timeout=WAIT_S)
    return h.discord.threads_in(channel.id)[count - 1]


async def test_an_assistant_answers_in_its_channel_and_the_other_channel_keeps_the_default(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with two_channels(tmp_path, fake_openai) as h:
        admin, guild_id = h.world.admin, h.world.guild.id
        created = await command(h, "assistant create", TUTOR, user=admin, channel=h.general)
        assert created.ephemeral and created.text.startswith(
            "✅ Created **Math Tutor** · `gpt-5.4-mini` · tools: `code_interpreter` · knowledge off."
        )
        used = await command(h, "assistant use", {"name": "math tutor"}, user=admin, channel=maths(h))
        assert not used.ephemeral and used.text.startswith(
            "🔁 New conversations in this channel are answered by **Math Tutor**"
        )
        assert used.record.callbacks[0].type == CALLBACK_DEFERRED_MESSAGE  # before any read

        request = await ask(h, maths(h), "What is 6 times 7?")
        assert (request["model"], request["instructions"]) == ("gpt-5.4-mini", TUTOR_INSTRUCTIONS)
        assert tool_kinds(request) == {"code_interpreter"}  # no restaurants, rides or knowledge
        tutor_thread = await newest_thread(h, maths(h), 1)
        await answered(h, tutor_thread.id, "What is 6 times 7?")

        request = await ask(h, h.general, "Book me a table")
        assert (request["model"], request["instructions"]) == (DEFAULT_MODEL, DEFAULT_INSTRUCTIONS)
        assert "code_interpreter" not in tool_kinds(request) and "book_restaurant" in tool_kinds(request)

        # /help says who answers where, with that assistant's tools.
        helped = await command(h, "help", user=h.world.bob, channel=maths(h))
        assert helped.field("Who answers here").startswith("**Math Tutor**, a named assistant (model gpt")
        assert helped.field("What I can do for you") == "• run Python code (calculations, charts, files)"
        assert "the code interpreter gets every file" in helped.field("In a conversation")
        general_help = await command(h, "help", user=h.world.bob, channel=h.general)
        assert "Who answers here" not in general_help.text and "book tables" in general_help.text

        # The channel goes back to the default: its open thread keeps its assistant, new ones do not.
        back = await command(h, "assistant use", {"name": "default"}, user=admin, channel=maths(h))
        assert "the server's default assistant" in back.text
        in_thread = await command(h, "help", user=h.world.bob, channel=tutor_thread)
        assert in_thread.field("Who answers here").startswith("**Math Tutor**")
        request = await say_in_thread(h, tutor_thread, "And 7 times 8?", user=h.world.bob)
        assert request["model"] == "gpt-5.4-mini" and request["instructions"] == TUTOR_INSTRUCTIONS
        request = await ask(h, maths(h), "Hello again")
        assert request["model"] == DEFAULT_MODEL

        audit = await h.services.assistants.audit(guild_id)
        assert [(c.action, c.name, c.user_id) for c in audit] == [
            ("use", "default", admin.id),
            ("use", "Math Tutor", admin.id),
            ("create", "Math Tutor", admin.id),
        ]
        assert audit[2].new is not None and audit[2].new["model"] == "gpt-5.4-mini"
        shown = await command(h, "assistant audit", user=admin, channel=h.general)
        lines = shown.embeds[0]["description"].splitlines()
        assert [line.split("> ", 2)[-1] for line in lines] == [
            f"put channel <#{maths(h).id}> on the default",
            f"put channel <#{maths(h).id}> on **Math Tutor**",
            "created **Math Tutor**",
        ]


async def test_a_member_without_manage_server_can_neither_make_nor_switch_assistants(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        bob, guild_id = h.world.bob, h.world.guild.id
        await command(h, "assistant create", TUTOR, user=h.world.admin, channel=h.general)
        attempts = [
            ("assistant create", {**TUTOR, "name": "Other"}, "create assistants"),
            ("assistant edit", {"name": "Math Tutor", "model": "gpt-5.4"}, "edit assistants"),
            ("assistant delete", {"name": "Math Tutor"}, "delete assistants"),
            ("assistant use", {"name": "Math Tutor"}, "choose a channel's assistant"),
            ("assistant audit", {}, "see the assistants' changes"),
        ]
        for name, options, what in attempts:
            refused = await command(h, name, options, user=bob, channel=h.general)
            assert (
                refused.ephemeral and refused.text == f"You need the Manage Server permission to {what}."
            ), name
            assert refused.record.modal is None
        assert [a.name for a in await h.services.assistants.in_guild(guild_id)] == ["Math Tutor"]
        assert await h.services.assistants.channels_using(guild_id) == {}
        assert [c.action for c in await h.services.assistants.audit(guild_id)] == ["create"]
        listed = await command(h, "assistant list", user=bob, channel=h.general)  # members may look
        assert listed.ephemeral and "**Math Tutor** · `gpt-5.4-mini`" in listed.text
        assert "Here: **default**" in listed.text


async def test_a_threads_starter_switches_it_and_deleting_the_assistant_falls_back_to_the_default(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin, alice, bob = h.world.admin, h.alice, h.world.bob
        await command(h, "assistant create", TUTOR, user=admin, channel=h.general)
        request = await ask(h, h.general, "Help me with fractions")
        assert request["model"] == DEFAULT_MODEL
        thread = await newest_thread(h, h.general, 1)

        refused = await command(h, "assistant use", {"name": "Math Tutor"}, user=bob, channel=thread)
        assert refused.ephemeral and refused.text.startswith("Only the person who started this conversation")
        switched = await command(h, "assistant use", {"name": "Math Tutor"}, user=alice, channel=thread)
        assert not switched.ephemeral and switched.text == (
            "🔁 alice switched this conversation to **Math Tutor**."
        )
        request = await say_in_thread(h, thread, "What is a half plus a third?", user=bob)
        assert request["model"] == "gpt-5.4-mini" and request["instructions"] == TUTOR_INSTRUCTIONS
        shown_here = await command(h, "assistant list", user=bob, channel=thread)
        assert "Here: **Math Tutor**" in shown_here.text

        await command(h, "assistant use", {"name": "Math Tutor"}, user=admin, channel=h.general)
        deleted = await command(h, "assistant delete", {"name": "Math Tutor"}, user=admin, channel=h.general)
        assert deleted.ephemeral and deleted.text == (
            "🗑️ Deleted **Math Tutor**. The 1 channel and 1 thread that used it now answer with the "
            "server's default."
        )
        request = await say_in_thread(h, thread, "Thanks!", user=alice)
        assert request["model"] == DEFAULT_MODEL and request["instructions"] == DEFAULT_INSTRUCTIONS
        missing = await command(h, "assistant use", {"name": "Math Tutor"}, user=admin, channel=h.general)
        assert missing.ephemeral and missing.text == "This server has no assistant called `Math Tutor`."


async def test_names_autocomplete_and_edit_opens_the_instructions_prefilled(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin = h.world.admin
        await command(h, "assistant create", TUTOR, user=admin, channel=h.general)
        concierge = {"name": "Concierge", "model": "gpt-5.5", "tools": "restaurants, rides"}
        await command(h, "assistant create", concierge, user=admin, channel=h.general)

        offered = await choices(h, "assistant use", {"name": ""}, focused="name", user=h.alice)
        assert [c["value"] for c in offered] == ["default", "Concierge", "Math Tutor"]
        offered = await choices(h, "assistant edit", {"name": "TUT"}, focused="name", user=admin)
        assert [c["value"] for c in offered] == ["Math Tutor"]
        offered = await choices(h, "assistant create", {"tools": "rides, co"}, focused="tools", user=admin)
        assert [c["value"] for c in offered] == ["rides, code_interpreter"]

        options = {"name": "Math Tutor", "new_name": "Maths Tutor", "knowledge": True}
        shown = await settle(
            h, await h.discord.slash_command("assistant edit", options, user=admin, channel_id=h.general.id)
        )
        assert shown.response_type == CALLBACK_MODAL and shown.modal is not None
        boxes = [row["components"][0] for row in shown.modal["components"]]
        assert boxes[0]["value"] == TUTOR_INSTRUCTIONS
        submitted = await settle(h, await h.discord.submit_modal(shown, {"instructions": "Be Socratic."}))
        said = h.discord.message(submitted.followup_ids[-1])
        assert said.ephemeral and said.content.startswith(
            "✏️ Changed name, instructions, knowledge of **Maths Tutor**"
        )
        edited = await h.services.assistants.get(h.world.guild.id, "maths tutor")
        assert edited.profile.instructions == "Be Socratic." and edited.profile.knowledge
        audit = await command(h, "assistant audit", user=admin, channel=h.general)
        assert (
            audit.embeds[0]["description"]
            .splitlines()[0]
            .endswith(f"<@{admin.id}> edited **Maths Tutor**: name, instructions, knowledge")
        )

        shown_one = await command(
            h, "assistant show", {"name": "Maths Tutor"}, user=h.alice, channel=h.general
        )
        assert shown_one.field("Model") == "`gpt-5.4-mini`" and "Be Socratic." in shown_one.field(
            "Instructions"
        )
        assert shown_one.field("Tools") == "`code_interpreter`, `knowledge`"


async def test_bad_options_are_one_sentence_and_nothing_is_stored(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin = h.world.admin
        cases = [
            ({"name": "Discord Helper"}, "`name`: Discord does not allow 'discord' in a name."),
            ({"name": "everyone"}, "`name`: 'everyone' is a reserved word, not a usable name."),
            ({"avatar": "http://example.com/a.png"}, "`avatar_url`: the avatar must be an https:// URL."),
            ({"tools": "teleport"}, "`enabled_tools`: unknown tool 'teleport'"),
            ({"model": "gpt-6-ultra"}, "OpenAI has no model named `gpt-6-ultra`."),
        ]
        for changed, says in cases:
            refused = await command(
                h, "assistant create", {**TUTOR, **changed}, user=admin, channel=h.general
            )
            assert refused.ephemeral and refused.text.startswith(says), refused.text
        assert await h.services.assistants.in_guild(h.world.guild.id) == []
        await command(h, "assistant create", TUTOR, user=admin, channel=h.general)
        again = await command(
            h, "assistant create", {**TUTOR, "name": "MATH TUTOR"}, user=admin, channel=h.general
        )
        assert again.text == "This server already has an assistant called `MATH TUTOR`."


async def test_a_person_picks_a_shared_servers_assistant_for_their_dms(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        await command(h, "assistant create", TUTOR, user=h.world.admin, channel=h.general)
        dm = h.discord.dm_channel(h.alice)
        record = await h.discord.autocomplete(
            "assistant use", {"name": "tut"}, focused="name", user=h.alice, channel_id=dm.id
        )
        await settle(h, record)
        assert [c["value"] for c in record.autocomplete_choices or []] == [f"{h.world.guild.id}:Math Tutor"]

        picked = await command(h, "assistant use", {"name": "Math Tutor"}, user=h.alice, channel=dm)
        assert (
            picked.ephemeral
            and picked.text == "🔁 Our DMs are now answered by **Math Tutor** of Test Server."
        )
        sent = len(h.openai.requests_to("/v1/responses"))
        await h.discord.dm_message(h.alice, "What is a prime?")
        request = await request_after(h, sent)
        assert (request["model"], request["instructions"]) == ("gpt-5.4-mini", TUTOR_INSTRUCTIONS)

        stranger = h.discord.add_user("stranger", guilds=[])
        refused = await command(
            h, "assistant use", {"name": "Math Tutor"}, user=stranger, channel=h.discord.dm_channel(stranger)
        )
        assert (
            refused.ephemeral
            and refused.text == "No server you share with me has an assistant called `Math Tutor`."
        )

        await command(h, "assistant use", {"name": "default"}, user=h.alice, channel=dm)
        sent = len(h.openai.requests_to("/v1/responses"))
        await h.discord.dm_message(h.alice, "And now?")
        assert (await request_after(h, sent))["model"] == DEFAULT_MODEL
        assert h.discord.global_commands["assistant"].get("dm_permission") is not False


async def bot_text(h: Harness, channel_id: int, fragment: str) -> str:
    await h.discord.wait_for(
        lambda: any(fragment in m.content for m in h.discord.bot_messages(channel_id)), timeout=WAIT_S
    )
    return next(m.content for m in h.discord.bot_messages(channel_id) if fragment in m.content)


async def test_a_dm_pick_is_its_servers_turn_for_budgets_usage_and_knowledge(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin, alice, guild_id = h.world.admin, h.alice, h.world.guild.id
        librarian = {"name": "Librarian", "model": DEFAULT_MODEL, "tools": "none", "knowledge": True}
        await command(h, "assistant create", librarian, user=admin, channel=h.general)
        model = (await h.services.settings.effective(guild_id)).embedding_model
        await h.services.knowledge.remember(
            guild_id=guild_id, author_id=admin.id, text="The wifi network is Hedgehog.", model=model
        )
        dm = h.discord.dm_channel(alice)
        await command(h, "assistant use", {"name": f"{guild_id}:Librarian"}, user=alice, channel=dm)

        fake_openai.responses.push(
            Reply(calls=[FunctionCall("search_knowledge", {"query": "wifi network", "count": 1})]),
            Reply("It is Hedgehog.", usage=(900, 200)),
        )
        sent = len(h.openai.requests_to("/v1/responses"))
        await h.discord.dm_message(alice, "What is the wifi called?")
        await bot_text(h, dm.id, "It is Hedgehog.")
        replied = next(m for m in h.discord.bot_messages(dm.id) if "It is Hedgehog." in m.content)
        await h.discord.wait_for(lambda: bool(h.discord.message(replied.id).components), timeout=WAIT_S)
        steps = await press_steps(h, h.discord.message(replied.id), user=alice)  # the server's turn, here
        [shown] = steps["embeds"]
        assert "search\\_knowledge" in shown["description"] and "Found 1 passage" in shown["description"]
        searched = h.openai.requests_to("/v1/responses")[sent + 1].json
        [output] = [
            item["output"] for item in searched["input"] if item.get("type") == "function_call_output"
        ]
        assert "Hedgehog" in output and "none in DMs" not in output  # the server's knowledge
        await h.services.engine.wait_idle()
        usage = h.services.storage.usage
        assert (await usage.guild_total(guild_id, since_day=utc_day())).total_tokens >= 1100
        assert (await usage.guild_total(None, since_day=utc_day())).total_tokens == 0  # not the DMs'

        await h.services.settings.set(guild_id, "daily_token_budget_guild", "1000", user_id=admin.id)
        await h.discord.dm_message(alice, "And the password?")
        refusal = await bot_text(h, dm.id, "budget")
        assert "This server has used its daily token budget" in refusal
        bob_dm = h.discord.dm_channel(h.world.bob)  # no pick: the DMs' own budget (none)
        await h.discord.dm_message(h.world.bob, "hello")
        await bot_text(h, bob_dm.id, "echo: bob: hello")


async def test_a_dm_pick_finds_servers_this_process_does_not_hold(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        alice = h.alice
        await command(h, "assistant create", TUTOR, user=h.world.admin, channel=h.general)
        far = h.discord.add_guild("Far Server")  # the bot is in it, on another process's shard
        h.discord.add_member(far.id, alice)
        assert h.bot.get_guild(far.id) is None
        await h.services.assistants.create(
            far.id, AssistantProfile(name="Far Tutor", model=DEFAULT_MODEL), user_id=h.world.admin.id
        )
        away = h.discord.add_guild("Not Alice's")
        await h.services.assistants.create(
            away.id, AssistantProfile(name="Tutor Elsewhere", model=DEFAULT_MODEL), user_id=h.world.admin.id
        )
        dm = h.discord.dm_channel(alice)
        record = await h.discord.autocomplete(
            "assistant use", {"name": "tutor"}, focused="name", user=alice, channel_id=dm.id
        )
        await settle(h, record)
        offered = {c["value"]: c["name"] for c in record.autocomplete_choices or []}
        assert offered == {
            f"{far.id}:Far Tutor": "Far Tutor — Far Server",
            f"{h.world.guild.id}:Math Tutor": "Math Tutor — Test Server",
        }
        picked = await command(h, "assistant use", {"name": "far tutor"}, user=alice, channel=dm)
        assert picked.text == "🔁 Our DMs are now answered by **Far Tutor** of Far Server."
        refused = await command(h, "assistant use", {"name": "Tutor Elsewhere"}, user=alice, channel=dm)
        assert refused.text == "No server you share with me has an assistant called `Tutor Elsewhere`."


async def test_a_dm_pick_ends_when_the_person_leaves_its_server_and_says_so_once(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        bob, guild_id = h.world.bob, h.world.guild.id
        await command(h, "assistant create", TUTOR, user=h.world.admin, channel=h.general)
        tutor = await h.services.assistants.get(guild_id, "Math Tutor")
        await h.services.assistants.use_in_dm(bob.id, tutor)  # picked while a member
        del h.discord.guilds[guild_id].members[bob.id]  # then left (or was banned)

        dm = h.discord.dm_channel(bob)
        sent = len(h.openai.requests_to("/v1/responses"))
        await h.discord.dm_message(bob, "What is a prime?")
        assert (await request_after(h, sent))["model"] == DEFAULT_MODEL
        said = await bot_text(h, dm.id, "no longer answers our DMs")
        assert "**Math Tutor** no longer answers our DMs: you are not in its server any more" in said
        assert await h.services.assistants.chosen(ChoiceScope.DM, bob.id) is None
        await h.services.engine.wait_idle()
        await h.discord.dm_message(bob, "And now?")
        await bot_text(h, dm.id, "echo: bob: And now?")
        notes = [m for m in h.discord.bot_messages(dm.id) if "no longer answers" in m.content]
        assert len(notes) == 1


async def test_the_starter_of_a_conversation_in_someone_elses_thread_switches_it(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with FakeDiscord(
        rate_limits={"message_create": FAST_BUCKET, "message_edit": FAST_BUCKET}
    ) as server:
        world = build_world(server)
        thread = server.add_thread(world.general.id, "alice's thread", owner=world.alice)
        async with running_bot(tmp_path, fake_openai, discord=server, world=world) as h:
            await switch_in_someone_elses_thread(h, thread)


async def switch_in_someone_elses_thread(h: Harness, thread: FakeChannel) -> None:
    """Bob begins a conversation in alice's thread: he, not its owner, may switch its assistant."""
    alice, bob = h.alice, h.world.bob
    await command(h, "assistant create", TUTOR, user=h.world.admin, channel=h.general)
    sent = len(h.openai.requests_to("/v1/responses"))
    await h.discord.user_message(thread.id, bob, f"{h.bot_mention} help me", mentions_bot=True)
    await request_after(h, sent)
    await h.services.engine.wait_idle()
    assert await h.services.assistants.starter_of(thread.id) == bob.id

    refused = await command(h, "assistant use", {"name": "Math Tutor"}, user=alice, channel=thread)
    assert refused.ephemeral and refused.text.startswith("Only the person who started this conversation")
    assert refused.record.callbacks[0].type == CALLBACK_DEFERRED_MESSAGE  # acknowledged before any read
    switched = await command(h, "assistant use", {"name": "Math Tutor"}, user=bob, channel=thread)
    assert not switched.ephemeral and switched.text == "🔁 bob switched this conversation to **Math Tutor**."
    assert switched.record.callbacks[0].type == CALLBACK_DEFERRED_MESSAGE


async def test_show_lists_the_channels_an_assistant_answers_in_within_discords_limit(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai) as h:
        admin, guild_id = h.world.admin, h.world.guild.id
        await command(h, "assistant create", TUTOR, user=admin, channel=h.general)
        tutor = await h.services.assistants.get(guild_id, "Math Tutor")
        channel_ids = [1_100_000_000_000_000_000 + n for n in range(80)]  # 80 mentions: 1,840 characters
        for channel_id in channel_ids:
            await h.services.assistants.use_in_channel(guild_id, channel_id, tutor, user_id=admin.id)
        shown = await command(h, "assistant show", {"name": "Math Tutor"}, user=admin, channel=h.general)
        where = shown.field("Answers in")
        assert len(where) <= MAX_FIELD_VALUE_CHARS and where.startswith(f"<#{channel_ids[0]}> ")
        listed = where.split()
        assert listed[-2:] == [f"+{80 - len(listed) + 2}", "more"] and len(listed) - 2 > 30


@given(
    st.lists(st.integers(min_value=10**16, max_value=2**63), unique=True, max_size=200),
    st.integers(min_value=30, max_value=MAX_FIELD_VALUE_CHARS),
)
def test_channel_mentions_fit_their_field_and_count_the_rest(channel_ids: list[int], limit: int) -> None:
    text = mentions_within(channel_ids, limit)
    assert len(text) <= limit
    parts = text.split()
    shown = [part for part in parts if part.startswith("<#")]
    assert shown == [f"<#{channel_id}>" for channel_id in channel_ids[: len(shown)]]
    rest = len(channel_ids) - len(shown)
    assert parts[len(shown) :] == ([f"+{rest}", "more"] if rest else [])
