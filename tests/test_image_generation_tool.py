"""Images drawn in a conversation ("draw me the plan"): OpenAI's hosted `image_generation` tool on the
responses backend, the `generate_image` function over the Images API on the chat backend; the image is
attached to the reply, counted in the guild's usage, and the tool is offered only where images are
enabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import GuildSettings
from bot.engine import TurnContext, UserTurn
from bot.engine.events import Completed, Failed, GeneratedFile, ToolFinished, ToolStarted, TurnEvent
from bot.engine.hosted_outputs import IMAGE_OUTPUT_TOKENS
from bot.services import Services
from bot.storage import utc_day
from standins.openai import FakeOpenAI, FunctionCall, ImageGenerationCall, ImageReply, Reply
from standins.openai.script import IMAGE_CALL_INPUT_TOKENS, IMAGE_CALL_OUTPUT_TOKENS
from standins.png import encode_png, read_png
from tests.command_support import run
from tests.conftest import ServicesFactory, settings
from tests.harness import running_bot
from tests.test_chat_e2e import wait_for_thread
from tests.test_usage_help import config_set
from tests.tool_support import ALICE, CHANNEL, GUILD, KEY
from tools.images import register_image_tools

WAIT_S = 10.0
PLAN = encode_png(6, 4, (90, 60, 30))


async def draw(services: Services, guild: GuildSettings, text: str = "draw me the plan") -> list[TurnEvent]:
    context = TurnContext(guild_id=GUILD, channel_id=CHANNEL, settings=guild)
    turn = UserTurn(text=text, author_id=ALICE, author_name="Ada")
    return [event async for event in services.engine.reply(KEY, turn, context)]


def completed(events: list[TurnEvent]) -> Completed:
    assert isinstance(events[-1], Completed), events[-1]
    return events[-1]


def tool_types(body: dict[str, Any]) -> list[str]:
    """Each offered tool's type, or a function's name."""
    names = []
    for tool in body.get("tools") or []:
        if tool["type"] != "function":
            names.append(tool["type"])
        else:
            names.append(tool.get("name") or tool["function"]["name"])
    return names


# ------------------------------------------------------------------------------------- responses


async def test_the_hosted_tool_draws_and_the_image_is_on_the_reply_with_its_prompt_and_cost(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        Reply(
            "Here is the plan.",
            hosted=[ImageGenerationCall(revised_prompt="A floor plan of a two-room flat", image=PLAN)],
            usage=(50, 20),
        )
    )
    events = await draw(services, settings(enabled_tools=("image_generation",), image_model="gpt-image-2"))
    body = fake_openai.requests_to("/v1/responses")[0].json
    assert body["tools"] == [{"type": "image_generation", "model": "gpt-image-2"}]
    [started] = [e for e in events if isinstance(e, ToolStarted)]
    assert (started.name, started.label) == ("image_generation", "Drawing an image…")
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.ok and finished.summary == "Drew an image"
    done = completed(events)
    assert done.files == (GeneratedFile("drawing-1.png", PLAN),)
    assert done.notes == ("Image drawn from: A floor plan of a two-room flat",)
    # The drawing's cost as the response reports it (`tool_usage.image_gen`), beside the model's own.
    drawn = (IMAGE_CALL_INPUT_TOKENS, IMAGE_CALL_OUTPUT_TOKENS)
    assert (done.usage.input_tokens, done.usage.output_tokens) == (50 + drawn[0], 20 + drawn[1])
    used = await services.storage.usage.user_total(GUILD, ALICE, since_day=utc_day())
    assert (used.input_tokens, used.output_tokens) == (50 + drawn[0], 20 + drawn[1])


async def test_the_reported_image_usage_is_counted_not_an_estimate(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    high = ImageGenerationCall(image=PLAN, usage=(120, 6240))
    fake_openai.responses.push(Reply("Two plans.", hosted=[high, ImageGenerationCall()], usage=(50, 20)))
    done = completed(await draw(services, settings(enabled_tools=("image_generation",))))
    assert len(done.files) == 2
    assert (done.usage.input_tokens, done.usage.output_tokens) == (
        50 + 120 + IMAGE_CALL_INPUT_TOKENS,
        20 + 6240 + IMAGE_CALL_OUTPUT_TOKENS,
    )


async def test_without_reported_image_usage_the_drawing_is_estimated_by_quality(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        Reply("Here.", hosted=[ImageGenerationCall(image=PLAN, usage=None)], usage=(50, 20))
    )
    done = completed(await draw(services, settings(enabled_tools=("image_generation",))))
    assert (done.usage.input_tokens, done.usage.output_tokens) == (50, 20 + IMAGE_OUTPUT_TOKENS["medium"])


async def test_a_drawing_is_counted_when_the_turn_fails_after_it(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        Reply(
            hosted=[ImageGenerationCall(image=PLAN)],
            calls=[FunctionCall("no_such_tool", {})],
            usage=(50, 20),
        ),
        Reply("broken", status="failed", error_message="boom"),
    )
    events = await draw(services, settings(enabled_tools=("image_generation",)))
    failed = events[-1]
    assert isinstance(failed, Failed), failed
    # The failed call reports no usage; the first call's drawing is in the turn's all the same.
    assert failed.usage.output_tokens == 20 + IMAGE_CALL_OUTPUT_TOKENS
    used = await services.storage.usage.user_total(GUILD, ALICE, since_day=utc_day())
    assert used.output_tokens == 20 + IMAGE_CALL_OUTPUT_TOKENS


async def test_a_refused_drawing_is_a_failed_step_and_no_file(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(Reply("I could not draw that.", hosted=[ImageGenerationCall(failed=True)]))
    events = await draw(services, settings(enabled_tools=("image_generation",)))
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert not finished.ok and finished.summary == "The image could not be drawn"
    done = completed(events)
    assert done.files == () and done.notes == ()


async def test_images_disabled_means_no_image_tool_on_either_backend(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_image_tools(services)
    tools = ("image_generation", "web_search")
    completed(await draw(services, settings(enabled_tools=tools, images_enabled=False)))
    completed(await draw(services, settings(enabled_tools=tools)))
    off, on = (r.json for r in fake_openai.requests_to("/v1/responses"))
    assert tool_types(off) == ["web_search"]
    assert tool_types(on) == ["web_search", "image_generation"]

    chat_tools = ("image_generation",)
    completed(await draw(services, settings(backend="chat", enabled_tools=chat_tools, images_enabled=False)))
    completed(await draw(services, settings(backend="chat", enabled_tools=chat_tools)))
    off_chat, on_chat = (r.json for r in fake_openai.requests_to("/v1/chat/completions"))
    assert "tools" not in off_chat
    assert tool_types(on_chat) == ["generate_image"]


# ------------------------------------------------------------------------------------------ chat


async def test_the_chat_backend_draws_through_the_images_api_and_counts_it(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_image_tools(services)
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("generate_image", {"prompt": "the plan of a flat", "shape": "landscape"})]),
        Reply("Here is the plan.", usage=(30, 10)),
    )
    fake_openai.images.push(ImageReply(rgb=(1, 2, 3), size=(4, 4), revised_prompt="A tidy floor plan"))
    events = await draw(services, settings(backend="chat", enabled_tools=("image_generation",)))
    done = completed(events)
    [drawing] = done.files
    assert drawing.filename == "drawing-1.png" and read_png(drawing.data).first_pixel == (1, 2, 3)
    assert done.notes == ("Image drawn from: A tidy floor plan",)
    [image_request] = fake_openai.requests_to("/v1/images/generations")
    assert image_request.json["size"] == "1536x1024" and image_request.json["prompt"] == "the plan of a flat"
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.ok and finished.summary == "Drew an image"
    # The model reads that the picture is attached (and what it was drawn from), never the bytes.
    tool_message = fake_openai.requests_to("/v1/chat/completions")[1].json["messages"][-1]
    assert tool_message["role"] == "tool" and "A tidy floor plan" in tool_message["content"]
    assert len(tool_message["content"]) < 200
    used = await services.storage.usage.user_total(GUILD, ALICE, since_day=utc_day())
    assert used.output_tokens >= 1056 + 10  # the stand-in's image tokens and the answer's


async def test_a_chat_turn_that_fails_after_drawing_leaves_no_drawing_behind(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_image_tools(services)
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("generate_image", {"prompt": "a plan", "shape": "square"})]),
        Reply("cut", status="incomplete", incomplete_reason="max_output_tokens"),
    )
    fake_openai.images.push(ImageReply(rgb=(1, 2, 3), size=(4, 4)))
    chat = settings(backend="chat", enabled_tools=("image_generation",))
    failed = (await draw(services, chat))[-1]
    assert isinstance(failed, Failed), failed
    # Taken as the turn ended, not left in the process until this conversation's next turn.
    assert services.state.tool_files.count(KEY) == 0
    assert len(fake_openai.requests_to("/v1/images/generations")) == 1


async def test_the_drawing_function_refuses_when_images_are_off_even_if_called(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_image_tools(services)
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("generate_image", {"prompt": "a plan", "shape": "square"})]),
        Reply("Sorry."),
    )
    events = await draw(
        services, settings(backend="chat", enabled_tools=("image_generation",), images_enabled=False)
    )
    assert completed(events).files == ()
    assert fake_openai.requests_to("/v1/images/generations") == []
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert not finished.ok


async def test_the_drawing_function_refuses_once_the_budget_is_spent(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    register_image_tools(services)
    await services.storage.usage.record(guild_id=GUILD, user_id=ALICE, input_tokens=0, output_tokens=900)

    async def meanwhile_spent(body: dict[str, Any]) -> Reply:
        """The turn was admitted at 900 of 1000; the member's /imagine spends the rest meanwhile."""
        await services.storage.usage.record(guild_id=GUILD, user_id=ALICE, input_tokens=0, output_tokens=200)
        return Reply(calls=[FunctionCall("generate_image", {"prompt": "a plan", "shape": "square"})])

    fake_openai.chat.push(meanwhile_spent, Reply("Sorry, no more drawings today."))
    guild = settings(backend="chat", enabled_tools=("image_generation",), daily_token_budget_user=1000)
    events = await draw(services, guild)
    assert completed(events).files == ()
    assert fake_openai.requests_to("/v1/images/generations") == []
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert not finished.ok and "daily token budget" in finished.summary


# ------------------------------------------------------------------------------------- end to end


async def test_draw_me_the_plan_end_to_end_attaches_the_image(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(
        Reply("Here is the plan.", hosted=[ImageGenerationCall(revised_prompt="A floor plan", image=PLAN)])
    )
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": ["image_generation"]}) as h:
        await h.discord.user_message(
            h.general.id, h.alice, f"{h.bot_mention} draw me the plan", mentions_bot=True
        )
        thread = await wait_for_thread(h)

        def with_image() -> bool:
            return any(m.data.get("attachments") for m in h.discord.bot_messages(thread.id))

        await h.discord.wait_for(with_image, timeout=WAIT_S)
        [message] = [m for m in h.discord.bot_messages(thread.id) if m.data.get("attachments")]
        [attachment] = message.data["attachments"]
        assert attachment["filename"] == "drawing-1.png"
        assert h.discord.file_bytes(int(attachment["id"])) == PLAN
        assert "Here is the plan." in message.content and "Image drawn from: A floor plan" in message.content
        used = await h.services.storage.usage.guild_total(h.world.guild.id, since_day=utc_day())
        assert used.output_tokens >= IMAGE_OUTPUT_TOKENS["medium"]


async def test_draw_me_the_plan_on_the_chat_backend_end_to_end(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chat.push(
        Reply(calls=[FunctionCall("generate_image", {"prompt": "a floor plan", "shape": "square"})]),
        Reply("Here is the plan."),
    )
    fake_openai.images.push(ImageReply(rgb=(9, 8, 7), size=(4, 4)))
    defaults = {"backend": "chat", "enabled_tools": ["image_generation"]}
    async with running_bot(tmp_path, fake_openai, defaults=defaults) as h:
        await h.discord.user_message(
            h.general.id, h.alice, f"{h.bot_mention} draw me the plan", mentions_bot=True
        )
        thread = await wait_for_thread(h)

        def with_image() -> bool:
            return any(m.data.get("attachments") for m in h.discord.bot_messages(thread.id))

        await h.discord.wait_for(with_image, timeout=WAIT_S)
        [message] = [m for m in h.discord.bot_messages(thread.id) if m.data.get("attachments")]
        [attachment] = message.data["attachments"]
        assert attachment["filename"] == "drawing-1.png"
        assert read_png(h.discord.file_bytes(int(attachment["id"]))).first_pixel == (9, 8, 7)
        assert "Here is the plan." in message.content
        used = await h.services.storage.usage.guild_total(h.world.guild.id, since_day=utc_day())
        assert used.output_tokens >= 1056  # the stand-in's image tokens


async def test_help_lists_drawing_only_where_images_are_enabled(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": ["image_generation"]}) as h:
        on = await run(h, "help", user=h.alice)
        assert "draw pictures in the conversation" in on.field("What I can do for you")
        await config_set(h, "images_enabled", "off")
        off = await run(h, "help", user=h.alice)
        assert "draw pictures" not in off.field("What I can do for you")
